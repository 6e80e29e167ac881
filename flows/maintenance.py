"""Prefect flow ``maintenance``: compaction, checkpoints, vacuum (keeping every pinned
version replayable) and retention of old failed/cancelled runs."""

from __future__ import annotations

from prefect import flow, get_run_logger

from backlake.lake.maintenance import maintain
from flows._common import open_lake


@flow(name="maintenance")
def maintenance_flow(
    compact: bool = True, checkpoint: bool = True, vacuum_retention_hours: float | None = 168.0,
    failed_retention_days: float | None = 30.0, dry_run: bool = False, lake_uri: str | None = None,
) -> dict:
    """Maintain every lake table; returns the per-table report."""
    report = maintain(open_lake(lake_uri), compact=compact, checkpoint=checkpoint,
                      vacuum_retention_hours=vacuum_retention_hours,
                      failed_retention_days=failed_retention_days, dry_run=dry_run)
    log = get_run_logger()
    for note in report.notes:
        log.info(note)
    return {"tables": report.tables, "deleted_runs": report.deleted_runs, "notes": report.notes}
