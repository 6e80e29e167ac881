"""Prefect flow ``maintenance``: reaping crashed runs and their debris, compaction,
checkpoints, vacuum (keeping every pinned version replayable) and retention of old
failed/cancelled runs."""

from __future__ import annotations

from prefect import flow, get_run_logger

from backlake.lake.maintenance import check_maintenance_options, maintain
from flows._common import flow_run_namer, label_flow_run, open_lake, prefect_alive


@flow(name="maintenance", flow_run_name=flow_run_namer("maintenance"))
def maintenance_flow(
    compact: bool = True, checkpoint: bool = True, vacuum_retention_hours: float | None = 168.0,
    failed_retention_days: float | None = 30.0, stale_after_hours: float = 6.0, dry_run: bool = False,
    lake_uri: str | None = None,
) -> dict:
    """Maintain every lake table; returns the per-table report."""
    check_maintenance_options(vacuum_retention_hours, failed_retention_days, stale_after_hours)
    label_flow_run("maintenance")
    report = maintain(open_lake(lake_uri), compact=compact, checkpoint=checkpoint,
                      vacuum_retention_hours=vacuum_retention_hours,
                      failed_retention_days=failed_retention_days, stale_after_hours=stale_after_hours,
                      dry_run=dry_run, is_alive=prefect_alive)
    log = get_run_logger()
    for note in report.notes:
        log.info(note)
    return {"tables": report.tables, "deleted_runs": report.deleted_runs, "reaped_runs": report.reaped_runs,
            "debris_runs": report.debris_runs, "notes": report.notes}
