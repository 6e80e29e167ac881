"""The config editor (``/editor``): build a backtest config with a form or as JSON (one state,
two views), see its errors next to each field and its warnings, and submit it.

- The form is generated from the models: the strategy's parameters from its params model,
  universe, dates, timeframe, cash, direction, benchmark, seed, then sizing, costs (market
  impact on/off, US and India fees) and execution (``backlake.config_check.form_fields``).
- Form -> JSON writes the config with the defaults folded away; JSON -> form is refused, with
  the reason shown inline (a parse error with its line and column, an unknown key naming the
  closest valid one), when the form could not show the JSON without losing something.
- Validation is ``backlake.config_check.check_config``: the library's ``BacktestConfig`` and the
  planning step's lake checks (symbols, timeframes, dates). Errors block the submission; warnings
  (no costs, under a year, data gaps) do not.
- Submit queues the backtest on the dashboard's job queue (``dashboards.jobs``: a Prefect flow
  run of the signed-in user); the page follows the job and links to the run when it completes
  (``./app?run=<id>``). ``./editor?from=<run_id>`` opens a copy of a stored run's config.
  Viewers see everything disabled, with the reason.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Mapping
from typing import Any

import panel as pn

from backlake.config import UNIVERSES, BacktestConfig
from backlake.config_check import (
    ConfigReport,
    FormField,
    Issue,
    check_config,
    config_from_values,
    fold,
    form_fields,
    form_values,
)
from backlake.errors import BacklakeError
from backlake.lake.store import Lake
from backlake.runs.checks import Coverage, coverage
from backlake.settings import get_settings
from backlake.strategies import get_strategy
from dashboards.identity import Identity, submit_gate
from dashboards.jobs import Job, JobQueue

__all__ = ["ConfigEditor", "DEFAULT_CONFIG", "run_config_copy", "json_error"]

#: What a new editor holds.
DEFAULT_CONFIG: dict[str, Any] = {
    "strategy": "sma_crossover", "params": {"fast": 10, "slow": 30}, "universe": ["GOOG"],
    "costs": {"commission_bps": 5, "slippage_bps": 2},
}
SYMBOLS = "Symbols"
SECTIONS = (("", "Universe and period"), ("sizing", "Sizing"), ("costs", "Costs"), ("execution", "Execution"))
SUBSECTIONS = {"costs.impact": "Market impact", "costs.us": "US fees (market = us)",
               "costs.india": "India fees (market = india)"}
LABELS = {"initial_cash": "Initial cash", "sec_fee_rate": "SEC fee rate", "finra_taf_per_share": "FINRA TAF / share",
          "finra_taf_max": "FINRA TAF max", "stt_rate": "STT rate", "gst_rate": "GST rate", "sebi_rate": "SEBI rate",
          "commission_bps": "Commission (bps)", "slippage_bps": "Slippage (bps)", "k": "k"}
STATES = ("queued", "running", "completed", "failed", "cancelled")

CSS = """
.bl-issue { font-size: 0.8rem; line-height: 1.25; margin-top: 2px; }
.bl-error { color: #b42318; }
.bl-warning { color: #8a5a00; }
.bl-issue pre { background: #fff4f2; border: 1px solid #f3c5bd; padding: 6px 8px; margin: 4px 0 0; font-size: 0.8rem;
  white-space: pre; overflow-x: auto; }
.bl-summary ul { margin: 4px 0 8px 18px; padding: 0; font-size: 0.85rem; }
.bl-summary li { margin-bottom: 3px; }
.bl-summary .bl-head { font-weight: 600; margin: 2px 0; }
.bl-ok { color: #1e7a3a; font-weight: 600; }
.bl-job { font-size: 0.9rem; }
.bl-steps { display: flex; gap: 4px; margin: 6px 0; }
.bl-step { flex: 1; text-align: center; padding: 3px 0; border-radius: 4px; background: #eef1f4; color: #6b7785;
  font-size: 0.78rem; }
.bl-step.done { background: #d8eadf; color: #1e7a3a; }
.bl-step.now { background: #1f3b57; color: #fff; font-weight: 600; }
.bl-step.failed { background: #f8d7d3; color: #b42318; font-weight: 600; }
.bl-job a { font-weight: 600; }
"""
JSON_CSS = ":host textarea { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.85rem; }"

#: Copies the JSON view's text (kept current in both modes) to the clipboard.
COPY_JS = """
const text = (src.value_input != null && src.value_input !== '') ? src.value_input : src.value;
const fallback = () => {
  const ta = document.createElement('textarea'); ta.value = text; document.body.appendChild(ta);
  ta.select(); document.execCommand('copy'); ta.remove();
};
if (navigator.clipboard && window.isSecureContext) { navigator.clipboard.writeText(text).catch(fallback); }
else { fallback(); }
btn.label = 'Copied ✓';
setTimeout(() => { btn.label = 'Copy JSON'; }, 1500);
"""


def label(f: FormField) -> str:
    return LABELS.get(f.name, f.name.replace("_", " ").capitalize())


def _json_text(value: Any) -> str:
    """An object-valued parameter as the one-line JSON its text box shows."""
    return "" if value is None else json.dumps(value, sort_keys=True)


def _json_value(text: str | None) -> Any:
    """The object typed into a JSON text box (``{}`` when empty); text that is not JSON is
    passed on as it is, so validation names the field and what it expects."""
    if not (text or "").strip():
        return {}
    try:
        return json.loads(str(text))
    except json.JSONDecodeError:
        return text


def json_error(text: str, err: json.JSONDecodeError) -> str:
    """The parse error as HTML: line, column, the message, the line with a caret under the column."""
    lines = text.splitlines() or [""]
    line = lines[min(err.lineno, len(lines)) - 1]
    caret = " " * max(err.colno - 1, 0) + "^"
    return (f"<div class='bl-issue bl-error json-error'><b>Not valid JSON</b> — line {err.lineno}, column "
            f"{err.colno}: {html.escape(err.msg)}<pre>{html.escape(line)}\n{caret}</pre>"
            "Fix it to switch back to the form.</div>")


def run_config_copy(config_json: str | None) -> dict[str, Any] | None:
    """A stored run's config as the editor loads it: only the keys that differ from the
    defaults (the strategy's parameter defaults included); None when it cannot be read."""
    try:
        stored = json.loads(config_json or "")
    except ValueError:
        return None
    if not isinstance(stored, dict):
        return None
    data = {k: v for k, v in stored.items() if k in BacktestConfig.model_fields}
    try:
        return fold(BacktestConfig.model_validate(data).model_dump(mode="json"))
    except (BacklakeError, ValueError):  # a config this version no longer takes: as stored, folded
        return fold(data)


def _issues_html(issues: list[Issue], kind: str, field: str) -> str:
    return "".join(
        f"<div class='bl-issue bl-{kind}' data-field='{html.escape(field)}'>{'⚠ ' if kind == 'warning' else ''}"
        f"{html.escape(i.message if i.field == field else str(i))}</div>"
        for i in issues
    )


class ConfigEditor(pn.viewable.Viewer):
    """The editor of one session: form and JSON views of one config, its check, its job."""

    def __init__(self, identity: Identity, jobs: JobQueue | None, lake: Lake | None,
                 initial: Mapping[str, Any] | None = None, note: str = "", **params: Any) -> None:
        super().__init__(**params)
        self.identity, self.jobs, self.lake = identity, jobs, lake
        self.allowed, self.why = submit_gate(identity)
        self.allowed = self.allowed and jobs is not None
        self.mode = "form"
        self.job_id: int | None = None
        self.report: ConfigReport | None = None
        self._cov: dict[tuple[str, ...], Coverage] = {}
        self._quiet = False  # True while the code sets widgets (no re-check per widget)
        self._widgets: dict[str, pn.widgets.Widget] = {}
        self._issue_panes: dict[str, pn.pane.HTML] = {}
        self._param_box = pn.FlexBox(sizing_mode="stretch_width", css_classes=["params-box"])
        self._rule = pn.pane.Markdown("", css_classes=["strategy-rule"], sizing_mode="stretch_width",
                                      margin=(0, 10))
        self.note = pn.pane.Alert(note, alert_type="info", visible=bool(note), css_classes=["editor-note"],
                                  sizing_mode="stretch_width")
        self.denied = pn.pane.Alert(self.why, alert_type="warning", visible=not self.allowed and bool(self.why),
                                    css_classes=["editor-denied"], sizing_mode="stretch_width")

        # the two views
        self.form_button = pn.widgets.Button(label="Form", color="primary", width=90,
                                             css_classes=["mode-form"])
        self.json_button = pn.widgets.Button(label="JSON", color="light", width=90,
                                             css_classes=["mode-json"])
        self.form_button.on_click(lambda _e: self.to_form())
        self.json_button.on_click(lambda _e: self.to_json())
        self.copy_button = pn.widgets.Button(label="Copy JSON", color="light", width=110,
                                             css_classes=["copy-json"])
        self.json_text = pn.widgets.TextAreaInput(
            value="", height=560, sizing_mode="stretch_width", disabled=not self.allowed,
            css_classes=["config-json"], stylesheets=[JSON_CSS],
        )
        self.copy_button.js_on_click(args={"src": self.json_text, "btn": self.copy_button}, code=COPY_JS)
        self.json_text.param.watch(self._on_json_input, "value_input")
        self.json_issue = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width",
                                       css_classes=["json-issues"])
        self.json_view = pn.Column(self.json_text, self.json_issue, visible=False, sizing_mode="stretch_width",
                                   css_classes=["json-view"])

        self._build_fixed()
        self.form_view = pn.Column(*self._cards(), sizing_mode="stretch_width", css_classes=["form-view"])

        # check, submit, follow
        self.summary = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width", css_classes=["bl-summary"])
        self.submit_button = pn.widgets.Button(label="Submit backtest", color="primary",
                                               disabled=not self.allowed, sizing_mode="stretch_width",
                                               css_classes=["submit-editor"])
        self.submit_button.on_click(lambda _e: self.submit())
        self.feedback = pn.pane.Alert("", alert_type="danger", visible=False, sizing_mode="stretch_width",
                                      css_classes=["submit-feedback"])
        self.job_pane = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width", css_classes=["job-status"])
        self.job_progress = pn.indicators.Progress(active=False, value=-1, max=100, visible=False, height=10,
                                                   sizing_mode="stretch_width", bar_color="primary")
        self._job_version = -1

        self.set_values(self._values_of(initial or DEFAULT_CONFIG))
        self.check()

    # -- building the form -------------------------------------------------------------------------
    def _widget(self, f: FormField, value: Any = None) -> pn.widgets.Widget:
        common: dict[str, Any] = {
            "label": label(f), "disabled": not self.allowed,
            "css_classes": [f"field-{f.path.replace('.', '-')}"],
            "width": 215,
        }
        tip = " ".join(x for x in (f.description, f"({f.bounds})" if f.bounds else "") if x)
        if tip:
            common["description"] = tip
        w: pn.widgets.Widget
        if f.kind == "int":
            w = pn.widgets.IntInput(value=value, placeholder="none" if f.optional else "", **common)
        elif f.kind == "float":
            w = pn.widgets.FloatInput(value=value, placeholder="none" if f.optional else "", **common)
        elif f.kind == "bool":
            common.pop("description", None)
            w = pn.widgets.Checkbox(value=bool(value), **common)
        elif f.kind == "toggle":
            common.pop("description", None)
            common["label"] = f"Apply {SUBSECTIONS.get(f.path, label(f)).lower()}"
            w = pn.widgets.Checkbox(value=bool(value), **common)
        elif f.kind == "choice":
            w = pn.widgets.Select(options=list(f.choices), value=value if value in f.choices else f.choices[0],
                                  **common)
        elif f.kind == "date":
            w = pn.widgets.DatePicker(value=value, **common)
        elif f.kind == "json":
            w = pn.widgets.TextInput(value=_json_text(value), placeholder="{}", **common)
        else:
            w = pn.widgets.TextInput(value=value or "", placeholder="none" if f.optional else "", **common)
        w.param.watch(self._on_change, "value")
        self._widgets[f.path] = w
        return w

    def _block(self, f: FormField) -> pn.Column:
        pane = pn.pane.HTML("", stylesheets=[CSS], width=215, margin=(0, 10), css_classes=["field-issues"])
        self._issue_panes[f.path] = pane
        w = self._widgets.get(f.path) or self._widget(f)
        return pn.Column(w, pane, width=235, margin=(0, 4, 6, 0))

    def _section_pane(self, path: str) -> pn.pane.HTML:
        pane = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width", margin=(0, 10),
                            css_classes=["section-issues"])
        self._issue_panes[path] = pane
        return pane

    def _build_fixed(self) -> None:
        fields = [f for f in form_fields(str(DEFAULT_CONFIG["strategy"])) if f.section != "params"]
        self._fields = {f.path: f for f in fields}
        strategy = self._fields["strategy"]
        self._widget(strategy, DEFAULT_CONFIG["strategy"])
        self._widgets["strategy"].width = 300
        self.universe_kind = pn.widgets.Select(
            label="Universe", options=[SYMBOLS, *UNIVERSES], value=SYMBOLS, width=215, disabled=not self.allowed,
            css_classes=["field-universe-kind"], description="A list of symbols, or a named universe.",
        )
        self.symbols = pn.widgets.TextInput(
            label="Symbols (comma separated)", placeholder="GOOG, AAPL", width=215, disabled=not self.allowed,
            css_classes=["field-universe"],
        )
        self.universe_kind.param.watch(self._on_change, "value")
        self.symbols.param.watch(self._on_change, "value")

    def _cards(self) -> list[pn.viewable.Viewable]:
        strategy_card = pn.Card(
            pn.Row(self._widgets["strategy"], self._rule, sizing_mode="stretch_width"),
            self._section_pane("strategy"), self._section_pane("params"), self._param_box,
            title="Strategy", sizing_mode="stretch_width", collapsible=False, css_classes=["card-strategy"],
        )
        cards: list[pn.viewable.Viewable] = [strategy_card]
        for section, title in SECTIONS:
            blocks: list[pn.viewable.Viewable] = []
            if not section:
                universe_pane = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width", margin=(0, 10),
                                             css_classes=["field-issues"])
                self._issue_panes["universe"] = universe_pane
                blocks.append(pn.Column(pn.Row(self.universe_kind, self.symbols), universe_pane, width=470,
                                        margin=(0, 4, 6, 0)))
            sub_rows: dict[str, list[pn.viewable.Viewable]] = {}
            for f in self._fields.values():
                if f.path in ("strategy", "universe") or f.section.split(".")[0] != section:
                    continue
                if f.path in SUBSECTIONS:
                    sub_rows.setdefault(f.path, []).append(self._block(f))
                elif f.section in SUBSECTIONS:
                    sub_rows.setdefault(f.section, []).append(self._block(f))
                else:
                    blocks.append(self._block(f))
            parts: list[pn.viewable.Viewable] = [self._section_pane(section)] if section else []
            parts.append(pn.FlexBox(*blocks, sizing_mode="stretch_width"))
            for sub, items in sub_rows.items():
                if sub == "costs.impact":
                    parts.append(pn.pane.Markdown(f"**{SUBSECTIONS[sub]}**", margin=(8, 10, 0, 10)))
                    parts.append(pn.FlexBox(*items, sizing_mode="stretch_width"))
                else:  # the fee schedules: folded until wanted
                    parts.append(pn.Card(pn.FlexBox(*items, sizing_mode="stretch_width"), title=SUBSECTIONS[sub],
                                         collapsed=True, sizing_mode="stretch_width", margin=(6, 10),
                                         header_background="#f4f6f8", css_classes=[f"card-{sub.replace('.', '-')}"]))
            cards.append(pn.Card(*parts, title=title, sizing_mode="stretch_width", collapsible=False,
                                 css_classes=[f"card-{section or 'main'}"]))
        return cards

    def _build_params(self, strategy: str, values: Mapping[str, Any]) -> None:
        """The parameter controls of ``strategy`` (generated from its params model)."""
        for path in [p for p in self._widgets if p.startswith("params.")]:
            del self._widgets[path]
            self._issue_panes.pop(path, None)
        fields = [f for f in form_fields(strategy) if f.section == "params"]
        for f in fields:
            self._fields[f.path] = f
        for p in [p for p in self._fields if p.startswith("params.") and p not in {f.path for f in fields}]:
            del self._fields[p]
        blocks = []
        for f in fields:
            self._widget(f, values.get(f.path, f.default))
            blocks.append(self._block(f))
        self._param_box.objects = blocks
        spec = get_strategy(strategy)
        self._rule.object = f"*{spec.rule}*" if spec.rule else ""

    # -- state ---------------------------------------------------------------------------------------
    @staticmethod
    def _values_of(config: Mapping[str, Any]) -> dict[str, Any]:
        values, issues = form_values(config)
        if issues:  # a stored config this form cannot show: start from the default instead
            values, _ = form_values(DEFAULT_CONFIG)
        return values

    def values(self) -> dict[str, Any]:
        """``path -> value`` of every control (what :func:`config_from_values` takes)."""
        out: dict[str, Any] = {}
        for path, w in self._widgets.items():
            f = self._fields[path]
            value = w.value
            if f.kind == "text":
                value = value or None
            elif f.kind == "json":
                value = _json_value(value)
            out[path] = value
        if self.universe_kind.value == SYMBOLS:
            out["universe"] = [s.strip() for s in (self.symbols.value or "").split(",") if s.strip()]
        else:
            out["universe"] = self.universe_kind.value
        return out

    def set_values(self, values: Mapping[str, Any]) -> None:
        """Show ``values`` (from :func:`form_values`) in the controls."""
        self._quiet = True
        try:
            strategy = str(values["strategy"])
            self._widgets["strategy"].value = strategy
            self._build_params(strategy, values)
            for path, w in self._widgets.items():
                if path in values and path != "strategy":
                    value = values[path]
                    f = self._fields[path]
                    w.value = (value or "") if f.kind == "text" else _json_text(value) if f.kind == "json" else value
            universe = values.get("universe")
            if isinstance(universe, str):
                self.universe_kind.value, self.symbols.value = universe, ""
            else:
                self.universe_kind.value, self.symbols.value = SYMBOLS, ", ".join(universe or [])
            self._sync_visibility()
        finally:
            self._quiet = False

    def config(self) -> dict[str, Any]:
        """The config the form shows, defaults folded away."""
        return config_from_values(self.values())

    def config_json(self) -> str:
        return json.dumps(self.config(), indent=2)

    def _sync_visibility(self) -> None:
        self.symbols.visible = self.universe_kind.value == SYMBOLS
        impact_on = bool(self._widgets["costs.impact"].value)
        for path, w in self._widgets.items():
            if path.startswith("costs.impact."):
                w.disabled = not (self.allowed and impact_on)

    # -- events --------------------------------------------------------------------------------------
    def _on_change(self, event: Any) -> None:
        if self._quiet:
            return
        if event.obj is self._widgets.get("strategy"):
            self._quiet = True
            try:
                self._build_params(str(event.new), {})
            finally:
                self._quiet = False
        self._sync_visibility()
        self.check()

    def _on_json_input(self, event: Any) -> None:
        if self.mode == "json" and not self._quiet:
            self.check()

    def to_json(self) -> None:
        """Show the JSON view of the form's config."""
        if self.mode == "json":
            return
        self.mode = "json"
        self._set_json(self.config_json())
        self.form_view.visible, self.json_view.visible = False, True
        self.form_button.color, self.json_button.color = "light", "primary"
        self.check()

    def to_form(self) -> bool:
        """Show the JSON's config in the form; refused (False, reason shown) when the text is not
        JSON or holds something the form cannot show (an unknown key, a value of the wrong type)."""
        if self.mode == "form":
            return True
        text = self._json_value()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            self.json_issue.object = json_error(text, e)
            return False
        if not isinstance(data, dict):
            self.json_issue.object = ("<div class='bl-issue bl-error json-error'>The config must be a JSON object "
                                      "(<code>{...}</code>) of key → value.</div>")
            return False
        values, issues = form_values(data)
        if issues:
            self.json_issue.object = (
                "<div class='bl-issue bl-error json-error'><b>The form cannot show this config</b> — fix it here "
                "first:</div>" + _issues_html(issues, "error", ""))
            return False
        self.set_values(values)
        self.mode = "form"
        self.form_view.visible, self.json_view.visible = True, False
        self.form_button.color, self.json_button.color = "primary", "light"
        self.check()
        return True

    def _json_value(self) -> str:
        return self.json_text.value_input if self.json_text.value_input is not None else self.json_text.value

    def _set_json(self, text: str) -> None:
        self._quiet = True
        try:
            self.json_text.value = text
            self.json_text.value_input = text
        finally:
            self._quiet = False

    # -- checking ------------------------------------------------------------------------------------
    def current(self) -> tuple[dict[str, Any] | None, str]:
        """(the config of the visible view, or None with the reason as HTML)."""
        if self.mode == "form":
            return self.config(), ""
        text = self._json_value()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            return None, json_error(text, e)
        if not isinstance(data, dict):
            return None, "<div class='bl-issue bl-error json-error'>The config must be a JSON object.</div>"
        return data, ""

    def _coverage(self, symbols: list[str]) -> Coverage:
        """The lake's coverage of ``symbols``, read once per session and set of symbols."""
        key = tuple(symbols)
        if key not in self._cov and self.lake is not None:
            self._cov[key] = coverage(self.lake, symbols)
        return self._cov[key]

    def check(self) -> ConfigReport | None:
        """Check the current config; show each issue next to its field and the summary."""
        data, problem = self.current()
        if self.mode == "form":
            self._set_json(json.dumps(data, indent=2))
        if data is None:
            self.report = None
            self.json_issue.object = problem
            self.summary.object = "<div class='bl-head bl-error'>Not valid JSON: see the message under the text.</div>"
            self.submit_button.disabled = True
            return None
        self.json_issue.object = ""
        lake_note = ""
        try:
            report = check_config(data, coverage_of=self._coverage if self.lake is not None else None)
        except BacklakeError as e:
            report = check_config(data)
            lake_note = f"Could not check against the lake: {e}"
        self.report = report
        self._show(report, lake_note)
        return report

    def _anchor(self, field: str) -> str:
        """The pane an issue of ``field`` is shown in: the field's own, else its nearest section."""
        path = field
        while path and path not in self._issue_panes:
            path = path.rsplit(".", 1)[0] if "." in path else ""
        return path

    def _show(self, report: ConfigReport, lake_note: str) -> None:
        shown: dict[str, tuple[list[Issue], list[Issue]]] = {}
        for kind, issues in (("error", report.errors), ("warning", report.warnings)):
            for i in issues:
                anchor = self._anchor(i.field)
                shown.setdefault(anchor, ([], []))[0 if kind == "error" else 1].append(i)
        for path, pane in self._issue_panes.items():
            errors, warnings = shown.get(path, ([], []))
            pane.object = _issues_html(errors, "error", path) + _issues_html(warnings, "warning", path)
        if self.mode == "json":
            self.json_issue.object = _issues_html(list(report.errors), "error", "") + _issues_html(
                list(report.warnings), "warning", "")
        parts = []
        if report.errors:
            n = len(report.errors)
            parts.append(f"<div class='bl-head bl-error'>{n} error{'s' if n != 1 else ''} — fix before submitting"
                         "</div><ul class='bl-error'>" + "".join(f"<li>{html.escape(str(i))}</li>"
                                                               for i in report.errors) + "</ul>")
        elif self.allowed:
            parts.append("<div class='bl-ok'>✓ Valid — ready to submit</div>")
        else:
            parts.append("<div class='bl-ok'>✓ Valid</div><div>Your role cannot submit it (see above).</div>")
        if report.warnings:
            n = len(report.warnings)
            parts.append(f"<div class='bl-head bl-warning'>{n} warning{'s' if n != 1 else ''} (advisory)</div>"
                         "<ul class='bl-warning'>" + "".join(f"<li>{html.escape(str(i))}</li>"
                                                            for i in report.warnings) + "</ul>")
        if lake_note:
            parts.append(f"<div class='bl-warning'>{html.escape(lake_note)}</div>")
        self.summary.object = "".join(parts)
        self.submit_button.disabled = not (self.allowed and report.ok)

    # -- submitting ----------------------------------------------------------------------------------
    def submit(self) -> Job | None:
        """Queue the config as the signed-in user (its role as it is now); None when refused."""
        report = self.check()
        if report is None or not report.ok or report.config is None:
            self._say("Not submitted: fix the errors shown next to the fields first.")
            return None
        if self.jobs is None:
            self._say("Submitting is not available on this server (no job queue).")
            return None
        try:
            job = self.jobs.submit(self.identity.current(), report.config)
        except BacklakeError as e:
            self._say(f"Not submitted: {html.escape(str(e))}")
            return None
        self.feedback.visible = False
        self.job_id = job.id
        self._job_version = -1
        self.poll()
        return job

    def _say(self, text: str) -> None:
        self.feedback.object, self.feedback.visible = text, True

    def poll(self) -> None:
        """Follow the submitted job (a periodic callback of the session calls this)."""
        if self.jobs is None or self.job_id is None or self.jobs.version == self._job_version:
            return
        self._job_version = self.jobs.version
        job = self.jobs.get(self.job_id)
        self.job_pane.object = job_html(job)
        self.job_progress.visible = job.active  # indeterminate while queued or running
        self.job_progress.value = -1 if job.active else 100
        self.job_progress.active = job.active

    def __panel__(self) -> pn.viewable.Viewable:
        who = html.escape(self.identity.name or "?")
        submitted = f"and submitted as **{who}**" if self.allowed else "(read only: your role cannot submit)"
        intro = pn.pane.Markdown(
            "Build a backtest config with the **form** or as **JSON** (one config, two views); it is checked "
            f"against the lake as you edit {submitted}.", sizing_mode="stretch_width", margin=(0, 10),
        )
        toolbar = pn.Row(self.form_button, self.json_button, pn.Spacer(sizing_mode="stretch_width"),
                         self.copy_button, sizing_mode="stretch_width")
        side = pn.Column(
            pn.pane.Markdown("#### Check", margin=(0, 10)), self.summary, self.submit_button, self.feedback,
            pn.pane.Markdown("#### Job", margin=(10, 10, 0, 10)), self.job_progress, self.job_pane,
            width=380, css_classes=["editor-side"],
            styles={"border-left": "1px solid #e3e6ea", "padding-left": "8px"},
        )
        self.job_pane.object = self.job_pane.object or "<div class='bl-job'>Nothing submitted yet.</div>"
        return pn.Column(
            self.denied, self.note, intro,
            pn.Row(pn.Column(toolbar, self.form_view, self.json_view, sizing_mode="stretch_width"), side,
                   sizing_mode="stretch_width"),
            sizing_mode="stretch_width", css_classes=["config-editor"],
        )


def job_html(job: Job) -> str:
    """The job's state as steps (queued → running → done), its message and the link to its run."""
    end = job.status if job.status in ("completed", "failed", "cancelled") else "completed"
    steps = ("queued", "running", end)
    at = steps.index(job.status) if job.status in steps else 0
    cells = []
    for n, step in enumerate(steps):
        cls = "now" if n == at else ("done" if n < at else "")
        if n == at and job.status in ("failed", "cancelled"):
            cls = "failed"
        if n == at and job.status == "completed":
            cls = "done"
        cells.append(f"<div class='bl-step {cls}'>{step}</div>")
    finished = job.finished_at or dt.datetime.now(dt.UTC)
    took = (finished - job.submitted_at).total_seconds()
    lines = [f"<div><b>Job #{job.id}</b> · {html.escape(job.config.strategy)} on "
             f"{html.escape(', '.join(job.config.symbols))} · by {html.escape(job.owner)}</div>",
             f"<div class='bl-steps'>{''.join(cells)}</div>",
             f"<div>State: <b class='job-state'>{job.status}</b> · {took:.0f} s</div>"]
    if job.message:
        lines.append(f"<div class='{'bl-error' if job.status == 'failed' else ''}'>{html.escape(job.message)}</div>")
    if job.run_id and job.status == "completed":
        rid = html.escape(job.run_id)
        lines.append(f"<div style='margin-top:6px'><a class='open-run' href='./app?run={rid}'>Open run {rid} "
                     "in the runs page →</a></div>")
    return f"<div class='bl-job job-{job.status}'>{''.join(lines)}</div>"


def _from_run(run_id: str) -> tuple[dict[str, Any] | None, str]:
    """(the folded config of stored run ``run_id``, the note to show)."""
    from dashboards.store import LakeStore

    store = LakeStore()
    try:
        run = store.run(run_id)
    except BacklakeError as e:
        return None, f"Cannot read run `{run_id}`: {e}"
    finally:
        store.close()
    if run is None:
        return None, f"Run `{run_id}` is not in the lake (or not completed): starting from the default config."
    config = run_config_copy(run["config"])
    if config is None:
        return None, f"Run `{run_id}` has no readable config: starting from the default config."
    _, problems = form_values(config)
    if problems:
        return None, (f"Run `{run_id}`'s config cannot be edited in this version's form "
                      f"({'; '.join(map(str, problems))}): starting from the default config.")
    from dashboards.details.backtest import run_title

    return config, (f"A copy of run **`{run_id}`** ({run_title(run)}): only the keys it set, defaults folded away. "
                    "Submitting makes a new run.")


def _session_arg(name: str) -> str | None:
    raw = (pn.state.session_args or {}).get(name)
    if not raw:
        return None
    value = raw[0].decode() if isinstance(raw[0], bytes) else str(raw[0])
    return value.strip() or None


if __name__.startswith("bokeh_app"):  # served by `panel serve` (not imported by a test)
    from dashboards.jobs import shared_queue
    from dashboards.layout import page

    pn.extension(sizing_mode="stretch_width")
    template, identity = page("editor", "New backtest")
    if identity is not None:
        initial, note = None, ""
        source = _session_arg("from")
        if source:
            initial, note = _from_run(source)
        try:
            lake: Lake | None = Lake(get_settings())
        except BacklakeError:
            lake = None
        editor = ConfigEditor(identity, shared_queue(), lake, initial, note)
        template.main.append(editor)
        pn.state.add_periodic_callback(editor.poll, period=1000)
    template.servable(title="backlake — new backtest")
