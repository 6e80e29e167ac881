"""Prefect flow ``regression``: replay golden runs at their pinned data versions, record the
report in the lake (``regression_reports``) and as a Markdown artifact (key
``regression-report``), and fail with a readable diff when any metric left its tolerance.

The goldens are the lake's ``goldens`` table (``backlake goldens add RUN``) unless the
``goldens`` parameter gives a JSON file or a list of dicts. No goldens: an empty report, and
the flow passes."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from backlake.errors import BacklakeError, ConfigError
from backlake.lake import Lake
from backlake.runs.goldens import NO_GOLDENS, goldens_from_lake
from backlake.runs.regression import (
    REPORT_SCHEMA,
    Golden,
    RegressionError,
    error_rows,
    format_drift,
    golden_run,
    load_goldens,
    markdown_report,
    record_report,
    regress,
    report_frame,
)
from flows._common import label_flow_run, open_lake

#: the key of the Markdown artifact each regression flow run publishes
ARTIFACT_KEY = "regression-report"
#: what the report's ``source`` says when the goldens came from the lake
LAKE_SOURCE = "lake: goldens"


def load(goldens: str | list[dict[str, Any]] | None, lake: Lake) -> tuple[list[Golden], str]:
    """(goldens, source): the lake's goldens when ``goldens`` is None, else the file or list."""
    if goldens is None:
        return goldens_from_lake(lake), LAKE_SOURCE
    source = str(goldens) if isinstance(goldens, str) else f"parameter: {len(goldens)} golden(s)"
    return load_goldens(goldens), source


def check(items: list[Golden], lake: Lake, *, from_lake: bool) -> None:
    """Every golden a completed backtest in the lake, else a ConfigError naming it (and, for
    the lake's goldens, how to stop replaying it)."""
    for g in items:
        try:
            golden_run(lake, g.run_id)
        except ConfigError as e:
            fix = f" (or stop replaying it: `backlake goldens remove {g.run_id}`)" if from_lake else ""
            raise ConfigError(f"golden {e}{fix}") from None


def _run_name() -> str:
    """``regression 3 goldens``: the flow run's name, from its parameters."""
    from prefect.runtime import flow_run

    params = flow_run.parameters or {}
    try:
        n = len(load(params.get("goldens"), open_lake(params.get("lake_uri")))[0])
    except Exception:  # the flow itself reports bad parameters
        return "regression"
    return f"regression {n} golden{'' if n == 1 else 's'}"


@task(cache_policy=NO_CACHE, task_run_name="replay-{golden.run_id}")
def replay_task(golden: Golden, lake_uri: str | None) -> list[dict[str, Any]]:
    """Replay one golden run: its drift rows, or one row with the error if it cannot be replayed."""
    try:
        return regress(open_lake(lake_uri), [golden]).to_dicts()
    except BacklakeError as e:
        return error_rows(golden, e).to_dicts()
    except Exception as e:  # a bug: recorded with the report, traceback in the task's log
        get_run_logger().exception("replaying %s failed", golden.run_id)
        return error_rows(golden, f"{type(e).__name__}: {e}").to_dicts()


@flow(name="regression", flow_run_name=_run_name)
def regression_flow(goldens: str | list[dict[str, Any]] | None = None, lake_uri: str | None = None) -> list[dict]:
    """Replay every golden run (in parallel; default: the lake's ``goldens`` table, or a JSON
    file / list of dicts); record the report in ``regression_reports`` and as the Markdown
    artifact ``regression-report``, then fail listing the drift if any. Returns the report
    rows (one per golden x metric; [] when there are no goldens)."""
    from prefect.runtime import flow_run

    label_flow_run("regression")
    log = get_run_logger()
    lake = open_lake(lake_uri)
    items, source = load(goldens, lake)  # errors before any task
    check(items, lake, from_lake=goldens is None)
    if not items:
        log.info(NO_GOLDENS)
        create_markdown_artifact(markdown_report(pl.DataFrame(schema=REPORT_SCHEMA), source), key=ARTIFACT_KEY,
                                 description="regression: no goldens yet")
        return []
    report_id = str(flow_run.id or uuid.uuid4())
    futures = [replay_task.submit(g, lake_uri) for g in items]
    report = pl.DataFrame([r for f in futures for r in f.result()], schema=REPORT_SCHEMA)
    ts = dt.datetime.now(dt.UTC)
    record_report(lake, report, report_id, source, ts)  # drift or not, in the lake first
    create_markdown_artifact(markdown_report(report, source, report_id), key=ARTIFACT_KEY,
                             description=f"regression of {len(items)} golden run(s) from {source}")
    diff = format_drift(report)
    if diff:
        raise RegressionError(f"{diff}\nthe report: backlake sql \"SELECT * FROM regression_reports "
                              f"WHERE report_id = '{report_id}' AND NOT ok\"")
    log.info("%d golden run(s), %d metric(s): all within tolerance (report %s)", len(items), report.height, report_id)
    return report_frame(report, report_id, source, ts).to_dicts()
