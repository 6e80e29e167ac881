"""Lake maintenance: compaction, checkpoints, vacuum and retention of old terminal runs.

Vacuum never removes a file that a stored run's pinned data version needs: for ``bars`` the
retention window is stretched back to the commit time of the oldest version any run pins
(and the report says which version that is). Other tables use the requested retention; the
report lists, per table, the oldest version that stays readable by time travel.

Example::

    report = maintain(Lake(), vacuum_retention_hours=168, failed_retention_days=30)
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import polars as pl
from deltalake import DeltaTable

from backlake.lake.schemas import TABLES
from backlake.lake.store import Lake

__all__ = ["maintain", "MaintenanceReport", "pinned_versions"]


@dataclass
class MaintenanceReport:
    tables: list[dict] = field(default_factory=list)
    deleted_runs: int = 0
    notes: list[str] = field(default_factory=list)

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.tables) if self.tables else pl.DataFrame()


def pinned_versions(lake: Lake) -> dict[str, int]:
    """table -> oldest Delta version any stored run pins in its data_versions."""
    if not lake.exists("runs"):
        return {}
    out: dict[str, int] = {}
    for dv in lake.read("runs", columns=["data_versions"])["data_versions"].drop_nulls().to_list():
        for table, v in json.loads(dv).items():
            out[table] = min(out.get(table, v), int(v))
    return out


def _commit_time(table: DeltaTable, version: int) -> dt.datetime | None:
    for h in table.history():
        if int(h.get("version", -1)) == version:
            return dt.datetime.fromtimestamp(h["timestamp"] / 1000, tz=dt.timezone.utc)
    return None


def maintain(
    lake: Lake, *, compact: bool = True, checkpoint: bool = True, vacuum_retention_hours: float | None = 168.0,
    failed_retention_days: float | None = 30.0, dry_run: bool = False,
) -> MaintenanceReport:
    """Run maintenance over every existing table (see the module docstring)."""
    report = MaintenanceReport()
    now = dt.datetime.now(dt.timezone.utc)
    if failed_retention_days is not None and lake.exists("runs"):
        report.deleted_runs = _expire_terminal_runs(lake, now - dt.timedelta(days=failed_retention_days), dry_run)
    pins = pinned_versions(lake)
    for name in TABLES:
        if not lake.exists(name):
            continue
        table = DeltaTable(lake.uri(name), storage_options=lake.storage_options or None)
        row: dict = {"table": name, "version_before": table.version()}
        if compact and not dry_run:
            m = table.optimize.compact()
            row["files_removed"] = int(m.get("numFilesRemoved", 0))
            row["files_added"] = int(m.get("numFilesAdded", 0))
        if checkpoint and not dry_run:
            table.create_checkpoint()
        if vacuum_retention_hours is not None:
            hours = float(vacuum_retention_hours)
            if name in pins:
                t = _commit_time(table, pins[name])
                if t is not None:
                    needed = (now - t).total_seconds() / 3600 + 1.0
                    if needed > hours:
                        report.notes.append(
                            f"{name}: retention stretched from {vacuum_retention_hours:g} h to {needed:.1f} h "
                            f"to keep version {pins[name]} (pinned by a stored run) replayable"
                        )
                        hours = needed
            removed = table.vacuum(retention_hours=int(hours + 0.999), dry_run=dry_run,
                                   enforce_retention_duration=False)
            row["vacuum_retention_hours"] = round(hours, 1)
            row["files_vacuumed"] = len(removed)
            row["oldest_pinned_version"] = pins.get(name)
        row["version_after"] = table.version()
        report.tables.append(row)
    return report


def _expire_terminal_runs(lake: Lake, before: dt.datetime, dry_run: bool) -> int:
    """Delete failed/cancelled runs (and their events) that finished before ``before``."""
    runs = lake.read("runs", columns=["run_id", "status", "finished_at"])
    old = runs.filter(pl.col("status").is_in(["failed", "cancelled"]) & (pl.col("finished_at") < before))
    ids = old["run_id"].to_list()
    if not ids or dry_run:
        return len(ids)
    quoted = ", ".join("'" + i.replace("'", "''") + "'" for i in ids)
    for name in ("run_events", "runs"):
        DeltaTable(lake.uri(name), storage_options=lake.storage_options or None).delete(f"run_id IN ({quoted})")
    return len(ids)
