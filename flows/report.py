"""Prefect flow ``report``: render the tear sheet of every run completed since the last report
run into the reports prefix beside the lake (``<lake root>/_reports/<run_id>.html``, local or
S3; ``dashboards.report.ReportStore``). Scheduled daily (deployment ``report-daily`` in
prefect.yaml); the page ``/report?run=<id>`` shows the stored report.

Idempotent: a run that already has a stored report is skipped, and the flow keeps the time of
its last run in ``_reports/_state.json`` (the first run looks back ``since_hours``). Runs are
picked by when they finished, with an hour of overlap so a run committed just after a report
run still gets its report the next time. A run whose rendering fails is logged and left for
the next run (the others are stored).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger

from flows._common import label_flow_run

#: Overlap with the previous report run (runs committed late are not missed).
OVERLAP = timedelta(hours=1)


def runs_to_report(store: Any, since: datetime) -> list[str]:
    """Completed runs that finished (or were created) at or after ``since``, oldest first."""
    df = store.query(
        "SELECT run_id FROM runs WHERE status = 'completed' AND coalesce(finished_at, created_at) >= ? "
        "ORDER BY coalesce(finished_at, created_at), run_id", [since],
    )
    return [str(r) for r in dict.fromkeys(df["run_id"].tolist())]


@flow(name="report", flow_run_name="report")
def report_flow(lake_uri: str | None = None, since_hours: float = 24.0, limit: int = 500) -> dict[str, Any]:
    """Render and store the reports of the runs completed since the last report run (at most
    ``limit`` per run of the flow); returns what was written, skipped and failed."""
    from backlake.errors import ConfigError
    from backlake.settings import get_settings
    from dashboards.report import ReportStore, report_html
    from dashboards.store import LakeStore

    if not since_hours > 0:
        raise ConfigError(f"since_hours={since_hours}: give a positive number of hours (e.g. 24)")
    if limit < 1:
        raise ConfigError(f"limit={limit}: give at least 1 report per run")
    label_flow_run("report")
    log = get_run_logger()
    settings = get_settings(lake_uri=lake_uri) if lake_uri else get_settings()
    started = datetime.now(UTC)
    reports = ReportStore(settings)
    state = reports.state()
    try:
        since = datetime.fromisoformat(str(state["last_run_at"])) - OVERLAP
    except (KeyError, ValueError):
        since = started - timedelta(hours=since_hours)
    store = LakeStore(settings)
    written: list[str] = []
    failed: dict[str, str] = {}
    try:
        candidates = runs_to_report(store, since)
        existing = reports.names()
        todo = [r for r in candidates if r not in existing]
        skipped = len(candidates) - len(todo)
        for run_id in todo[:limit]:
            try:
                uri = reports.write(run_id, report_html(store, run_id))
            except Exception as e:  # one broken run must not keep the others from their reports
                failed[run_id] = f"{type(e).__name__}: {e}"
                log.warning("report of run %s failed: %s", run_id, failed[run_id])
                continue
            written.append(run_id)
            log.info("report of run %s: %s", run_id, uri)
    finally:
        store.close()
    left = max(0, len(todo) - limit)
    # a failed or left-over run: the next run looks back as far again (and skips what is stored)
    mark = started if not failed and not left else since + OVERLAP
    reports.save_state({"last_run_at": mark.isoformat(), "written": len(written), "failed": sorted(failed)})
    log.info("reports: %d written, %d already there, %d failed, %d left for the next run (since %s) in %s",
             len(written), skipped, len(failed), left, since.isoformat(), reports.root)
    return {"written": written, "skipped": skipped, "failed": failed, "left": left, "since": since.isoformat(),
            "root": reports.root}


if __name__ == "__main__":
    print(report_flow())
