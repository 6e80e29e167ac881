"""Lake maintenance: reaping crashed runs, clearing their debris, compaction, checkpoints,
vacuum and retention of old terminal runs.

- Reaping: a run left ``running`` whose attempt is gone (a process on this host that no longer
  exists, a Prefect flow run that ended, or a claim older than ``stale_after_hours``) gets a
  ``crashed`` event (``backlake.runs.events.reap``); the run can then be run again.
- Debris: child rows (equity, trades, metrics, trials, windows) of runs that never completed
  and ended (crashed, failed, cancelled) before the retention cut-off are deleted, and their
  marks cleared so a rerun writes them again.
- Vacuum removes files no version needs any more, and files that never made it into a commit
  (a writer that lost a race or died mid-write), older than the retention.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from deltalake import DeltaTable

from backlake.lake.schemas import TABLES
from backlake.lake.store import Lake

__all__ = ["maintain", "MaintenanceReport", "pinned_versions", "check_maintenance_options"]

#: Upper bounds of the maintenance options: a century (a larger span overflows the date arithmetic).
MAX_RETENTION_HOURS = 876_000.0
MAX_FAILED_DAYS = 36_500.0


def check_maintenance_options(vacuum_retention_hours: float | None, failed_retention_days: float | None,
                              stale_after_hours: float) -> None:
    """Refuse, before anything is touched, a retention that would delete what it should keep: a
    negative vacuum retention makes every older version unreadable by time travel, negative failed
    days expire runs that failed a moment ago, a stale timeout of zero or less reaps runs that are
    still running on another host. ``ConfigError`` names the option, the value and the range."""
    import math

    from backlake.errors import ConfigError

    def check(option: str, value: float | None, low: float, high: float, low_ok: bool, hint: str) -> None:
        if value is None:
            return
        v = float(value)
        if not math.isfinite(v) or v < low or (v == low and not low_ok) or v > high:
            bound = f"{'>=' if low_ok else '>'} {low:g} and <= {high:,.0f}"
            raise ConfigError(f"{option}={value!r} is not a valid value: use a number {bound} ({hint})")

    check("--retention-hours", vacuum_retention_hours, 0.0, MAX_RETENTION_HOURS, True,
          "versions younger than this stay readable by time travel; the default is 168")
    check("--failed-days", failed_retention_days, 0.0, MAX_FAILED_DAYS, True,
          "failed and cancelled runs older than this are deleted; the default is 30")
    check("--stale-hours", stale_after_hours, 0.0, MAX_RETENTION_HOURS, False,
          "a run left running this long without a live attempt is reaped as crashed; the default is 6")


@dataclass
class MaintenanceReport:
    tables: list[dict[str, Any]] = field(default_factory=list)
    deleted_runs: int = 0
    reaped_runs: list[str] = field(default_factory=list)
    debris_runs: list[str] = field(default_factory=list)
    #: run_progress rows deleted: those of runs that ended before the retention cut-off
    progress_rows: int = 0
    notes: list[str] = field(default_factory=list)


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
            return dt.datetime.fromtimestamp(h["timestamp"] / 1000, tz=dt.UTC)
    return None


def maintain(
    lake: Lake, *, compact: bool = True, checkpoint: bool = True, vacuum_retention_hours: float | None = 168.0,
    failed_retention_days: float | None = 30.0, stale_after_hours: float = 6.0, dry_run: bool = False,
    is_alive: Callable[[str], bool | None] | None = None, expire_only_user: str | None = None,
) -> MaintenanceReport:
    """Run maintenance over every existing table (see the module docstring).
    ``expire_only_user``: expire only the failed/cancelled runs whose ``created_by`` is this
    user (a researcher's ``backlake maintain``); None expires anyone's."""
    from backlake.runs.events import reap

    report = MaintenanceReport()
    now = dt.datetime.now(dt.UTC)
    report.reaped_runs = reap(lake, stale_after=dt.timedelta(hours=stale_after_hours), is_alive=is_alive,
                              dry_run=dry_run)
    if failed_retention_days is not None:
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=failed_retention_days)  # after reaping
        report.debris_runs = _delete_debris(lake, cutoff, dry_run)
        from backlake.runs.progress import prune as prune_progress

        report.progress_rows = prune_progress(lake, cutoff, dry_run=dry_run)
        if lake.exists("runs"):
            report.deleted_runs = _expire_terminal_runs(lake, cutoff, dry_run, only_user=expire_only_user)
    pins = pinned_versions(lake)
    for name in TABLES:
        if not lake.exists(name):
            continue
        table = DeltaTable(lake.uri(name), storage_options=lake.storage_options or None)
        row: dict[str, Any] = {"table": name, "version_before": table.version()}
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
                                   enforce_retention_duration=False, full=True)
            row["vacuum_retention_hours"] = round(hours, 1)
            row["files_vacuumed"] = len(removed)
            row["oldest_pinned_version"] = pins.get(name)
        row["version_after"] = table.version()
        report.tables.append(row)
    return report


def _expire_terminal_runs(lake: Lake, before: dt.datetime, dry_run: bool, *, only_user: str | None = None) -> int:
    """Delete failed/cancelled runs (and their events) that finished before ``before``; with
    ``only_user``, only the runs that user created."""
    runs = lake.read("runs", columns=["run_id", "status", "finished_at", "created_by"])
    old = runs.filter(pl.col("status").is_in(["failed", "cancelled"]) & (pl.col("finished_at") < before))
    if only_user is not None:
        old = old.filter(pl.col("created_by") == only_user)
    ids = old["run_id"].to_list()
    if not ids or dry_run:
        return len(ids)
    quoted = ", ".join("'" + i.replace("'", "''") + "'" for i in ids)
    for name in ("run_events", "runs"):
        DeltaTable(lake.uri(name), storage_options=lake.storage_options or None).delete(f"run_id IN ({quoted})")
    return len(ids)


def _delete_debris(lake: Lake, before: dt.datetime, dry_run: bool) -> list[str]:
    """Delete the child rows of runs that never completed and whose last event is a terminal
    one (crashed, failed, cancelled) before ``before``; clear their marks."""
    from backlake.runs.commit import child_marks
    from backlake.runs.events import TERMINAL

    if not lake.exists("run_events"):
        return []
    events = lake.read("run_events", columns=["run_id", "status", "ts"])
    last = events.sort("ts").group_by("run_id").last()
    ended = last.filter(pl.col("status").is_in([s for s in TERMINAL if s != "completed"]) & (pl.col("ts") < before))
    ids = set(ended["run_id"].to_list())
    if lake.exists("runs"):
        ids -= set(lake.read("runs", columns=["run_id"], where={"status": "completed"})["run_id"].to_list())
    if not ids:
        return []
    found: set[str] = set()
    for table, key in (("equity", "run_id"), ("trades", "run_id"), ("metrics", "run_id"),
                       ("trials", "parent_id"), ("windows", "parent_id")):
        if not lake.exists(table):
            continue
        present = set(lake.read(table, columns=[key], where={key: sorted(ids)})[key].unique().to_list())
        if not present:
            continue
        found |= present
        if dry_run:
            continue
        quoted = ", ".join("'" + r.replace("'", "''") + "'" for r in sorted(present))
        marks = [m for r in sorted(present) for m in child_marks(r)[table]]
        lake.delete_marked(table, f"{key} IN ({quoted})", marks, f"delete debris from {table}")
    return sorted(found)
