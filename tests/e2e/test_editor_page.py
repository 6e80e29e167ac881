"""The config editor (/editor) in a real browser: `backlake dashboard` with a users file, a
researcher fills the form, sees an inline error, fixes it, goes to JSON and back, copies the
JSON, submits (a Prefect flow run on the session's server), follows the link to the run, and
opens "Edit a copy" from it; a viewer sees the editor disabled with the reason.

The lake, users, server and browser fixtures are those of test_auth.py (GOOG daily bars, alice
and bob researchers, vera a viewer). Screenshots go to /tmp/editor-*.png.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.e2e.test_auth import (  # noqa: F401  (fixtures: auth_lake, server, session)
    SUBMIT_TIMEOUT_MS,
    AuthLake,
    Session,
    auth_lake,
    server,
    session,
    signed_in,
)

SHOTS = Path("/tmp")


def shot(s: Session, name: str) -> None:
    s.page.screenshot(path=str(SHOTS / f"editor-{name}.png"), full_page=True)


def field(s: Session, path: str):
    return s.page.locator(f".field-{path.replace('.', '-')} input")


def set_field(s: Session, path: str, value: str) -> None:
    box = field(s, path)
    box.fill(value)
    box.press("Enter")
    box.blur()


def issue(s: Session, path: str, kind: str = "error"):
    return s.page.locator(f".bl-{kind}[data-field='{path}']")


def open_editor(s: Session, base: str, name: str, query: str = "") -> None:
    signed_in(s, base, name)
    s.page.goto(f"{base}/editor{query}")
    s.page.locator(".config-editor").wait_for()
    s.page.locator(".bl-summary").get_by_text(re.compile("Valid|error")).first.wait_for()


@pytest.mark.browser
def test_researcher_edits_checks_and_submits(session: Session, server: str, auth_lake: AuthLake) -> None:  # noqa: F811
    from playwright.sync_api import expect

    s, page = session, session.page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    open_editor(s, server, "alice")
    expect(field(s, "params.fast")).to_have_value("10")
    page.locator(".bl-ok").get_by_text("Valid").wait_for()
    # a bad value: the error is shown next to its field and blocks the submission
    set_field(s, "params.fast", "0")
    issue(s, "params.fast").get_by_text("greater than or equal to 1").wait_for()
    expect(page.locator(".submit-editor button")).to_be_disabled()
    shot(s, "inline-error")
    # an unknown symbol names the closest one the lake holds (checked while fast is still wrong)
    set_field(s, "universe", "GOOGL")
    issue(s, "universe").get_by_text("did you mean 'GOOG'").wait_for()
    page.locator(".bl-summary").get_by_text("2 errors").wait_for()
    set_field(s, "universe", "GOOG")
    issue(s, "universe").wait_for(state="detached")
    set_field(s, "params.fast", "7")
    issue(s, "params.fast").wait_for(state="detached")
    set_field(s, "costs.commission_bps", "12.5")
    page.locator(".bl-ok").get_by_text("Valid").wait_for()
    expect(page.locator(".submit-editor button")).to_be_enabled()
    # the data gap warning is advisory
    issue(s, "universe", "warning").first.wait_for()
    shot(s, "form")

    # form -> JSON -> form: nothing lost
    page.locator(".mode-json button").click()
    text = page.locator(".config-json textarea")
    text.wait_for()
    config = json.loads(text.input_value())
    assert config == {"strategy": "sma_crossover", "params": {"fast": 7}, "universe": ["GOOG"],
                      "costs": {"commission_bps": 12.5, "slippage_bps": 2}}, config
    # invalid JSON blocks the switch, with the line and column
    text.fill(text.input_value().replace('"universe"', '"universe" ['))
    page.locator(".mode-form button").click()
    page.locator(".json-error").get_by_text(re.compile(r"line \d+, column \d+")).wait_for()
    assert page.locator(".form-view").is_hidden()
    shot(s, "json-error")
    text.fill(json.dumps(config, indent=2))
    page.locator(".json-error").wait_for(state="detached")
    page.locator(".mode-form button").click()
    page.locator(".form-view").wait_for()
    expect(field(s, "params.fast")).to_have_value("7")
    expect(field(s, "costs.commission_bps")).to_have_value("12.5")
    # copy JSON puts the form's config on the clipboard
    page.locator(".copy-json button").click()
    page.locator(".copy-json button").get_by_text("Copied").wait_for()
    assert json.loads(page.evaluate("navigator.clipboard.readText()")) == config

    # submit: the job runs as alice, the page follows it and links to the run
    before = set(auth_lake.created_by())
    page.locator(".submit-editor button").click()
    page.locator(".job-status .job-state").get_by_text("completed").wait_for(timeout=SUBMIT_TIMEOUT_MS)
    new = set(auth_lake.created_by()) - before
    assert len(new) == 1, new
    (run_id,) = new
    assert auth_lake.created_by()[run_id] == "alice"
    shot(s, "completed")
    page.locator("a.open-run").click()
    page.wait_for_url(f"**/app?run={run_id}")
    page.locator(".runs-table .tabulator-row.tabulator-selected", has_text=run_id).wait_for()
    page.locator(".run-detail").get_by_text(f"Run {run_id}").first.wait_for()
    shot(s, "run-opened")

    # Edit a copy: the editor opens with that run's config (defaults folded away)
    page.locator("a.edit-copy").click()
    page.wait_for_url(f"**/editor?from={run_id}")
    page.locator(".editor-note").get_by_text(run_id).wait_for()
    expect(field(s, "params.fast")).to_have_value("7")
    expect(field(s, "costs.commission_bps")).to_have_value("12.5")
    page.locator(".mode-json button").click()
    assert json.loads(page.locator(".config-json textarea").input_value()) == config
    shot(s, "edit-copy")
    # ./app?run=<id> of someone else's run: alice starts on "Mine", the page shows everyone's to open it
    (bobs,) = auth_lake.runs_by["bob"]
    page.goto(f"{server}/app?run={bobs}")
    page.locator(".runs-table .tabulator-row.tabulator-selected", has_text=bobs).wait_for()
    assert page.locator(".owner-filter .bk-btn.bk-active").inner_text() == "Everyone"
    page.locator(".run-detail").get_by_text(f"Run {bobs}").first.wait_for()
    assert s.errors == []


@pytest.mark.browser
def test_viewer_sees_the_editor_disabled(session: Session, server: str) -> None:  # noqa: F811
    from playwright.sync_api import expect

    s, page = session, session.page
    open_editor(s, server, "vera")
    page.locator(".editor-denied").get_by_text("needs the researcher or admin role").wait_for()
    expect(page.locator(".submit-editor button")).to_be_disabled()
    expect(field(s, "params.fast")).to_be_disabled()
    shot(s, "viewer")
    assert s.errors == []
