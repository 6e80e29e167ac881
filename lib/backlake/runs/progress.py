"""Durable progress of running runs: the ``run_progress`` table.

The flows report progress through :mod:`backlake.progress` (chunks of a sweep, Optuna trials,
walk-forward windows, Monte Carlo seeds); :class:`LakeProgress` is a listener that writes
those reports of one run to the lake, so the runs page can show ``3/8 chunks (38 %)`` while
the run is going. Writes are throttled: the first report and the final one (``done ==
total``) are written at once, the others at most one commit per ``min_interval`` seconds per
run (the latest report wins; a timer writes a held-back report once the interval is over).
Each write is one cheap append carrying an application transaction
``progress:<run_id>:<attempt>`` (its version the write's sequence number), so a retried write
adds nothing. A failed write is logged and dropped: progress never fails a run.

Readers take the latest row of each run for the attempt that holds it (:func:`latest`);
maintenance deletes the rows of runs that ended before its retention cut-off (:func:`prune`).

Example::

    with recording(lake, run_id, attempt.id, job="sweep 3f2a1b0c9d8e"):
        progress.report("sweep 3f2a1b0c9d8e", 3, 8, "chunks")   # -> a run_progress row
    latest(lake, [run_id])   # run_id, attempt, ts, done, total, unit
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import polars as pl
from deltalake import DeltaTable, Transaction

from backlake import progress
from backlake.lake.store import Lake

__all__ = ["LakeProgress", "recording", "latest", "prune", "DEFAULT_INTERVAL", "TABLE"]

TABLE = "run_progress"
#: Seconds between two progress commits of one run (the final report is always written).
DEFAULT_INTERVAL = 5.0

log = logging.getLogger("backlake.runs.progress")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LakeProgress:
    """A :mod:`backlake.progress` listener writing ``run_id``'s progress (the reports of
    ``job``; every report when ``job`` is None) as ``attempt`` to the lake, throttled (see
    the module docstring). ``writes`` counts the rows written, ``failures`` the writes that
    failed (logged, never raised). Call :meth:`close` at the end (writes a held-back report)."""

    def __init__(self, lake: Lake, run_id: str, attempt: str, *, job: str | None = None,
                 min_interval: float = DEFAULT_INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        self.lake, self.run_id, self.attempt, self.job = lake, run_id, attempt, job
        self.min_interval = float(min_interval)
        self.clock = clock
        self.writes = 0
        self.failures = 0
        self._lock = threading.Lock()
        self._pending: progress.Progress | None = None
        self._written: tuple[int, int, str] | None = None
        self._last: float | None = None
        self._timer: threading.Timer | None = None
        self._closed = False

    @property
    def app_id(self) -> str:
        return f"progress:{self.run_id}:{self.attempt}"

    def __call__(self, event: progress.Progress) -> None:
        if self.job is not None and event.job != self.job:
            return
        with self._lock:
            if self._closed:
                return
            self._pending = event
            now = self.clock()
            final = event.total > 0 and event.done >= event.total
            if final or self._last is None or now - self._last >= self.min_interval:
                self._write_locked()
            elif self._timer is None:
                delay = max(0.0, self.min_interval - (now - self._last))
                self._timer = threading.Timer(delay, self._on_timer)
                self._timer.daemon = True
                self._timer.start()

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            if not self._closed:
                self._write_locked()

    def flush(self) -> None:
        """Write the held-back report now (if any)."""
        with self._lock:
            self._write_locked()

    def close(self) -> None:
        """Stop the timer and write the held-back report; later reports are ignored."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._write_locked()
            self._closed = True

    def _write_locked(self) -> None:
        event, self._pending = self._pending, None
        if event is None:
            return
        key = (event.done, event.total, event.unit)
        if key == self._written:  # the same figures again: nothing new to show
            return
        self._last = self.clock()
        seq = self.writes + self.failures + 1
        row = pl.DataFrame(
            {"run_id": [self.run_id], "attempt": [self.attempt], "ts": [_now()], "done": [event.done],
             "total": [event.total], "unit": [event.unit]},
            schema={"run_id": pl.String, "attempt": pl.String, "ts": pl.Datetime("us", "UTC"), "done": pl.Int64,
                    "total": pl.Int64, "unit": pl.String},
        )
        app_id = self.app_id

        def build(table: DeltaTable) -> tuple[pl.DataFrame | None, list[Transaction]]:
            if (table.transaction_version(app_id) or 0) >= seq:  # a retry of a write that landed
                return None, []
            stamp = int(time.time() * 1000)
            return row, [Transaction(app_id=app_id, version=seq, last_updated=stamp)]

        try:
            self.lake.append_checked(TABLE, build, f"record the progress of run {self.run_id}", strict=False)
            self.writes += 1
            self._written = key
        except Exception:
            self.failures += 1
            log.warning("could not record the progress of run %s (%d/%d %s); the run goes on", self.run_id,
                        event.done, event.total, event.unit, exc_info=True)


@contextlib.contextmanager
def recording(lake: Lake, run_id: str, attempt: str, *, job: str | None = None,
              min_interval: float = DEFAULT_INTERVAL) -> Iterator[LakeProgress]:
    """While the block runs, write ``job``'s progress reports for ``run_id`` to the lake
    (a :class:`LakeProgress` listening to :mod:`backlake.progress`); at the end, the last
    report held back is written."""
    writer = LakeProgress(lake, run_id, attempt, job=job, min_interval=min_interval)
    try:
        with progress.listening(writer):
            yield writer
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def latest(lake: Lake, run_ids: Sequence[str]) -> pl.DataFrame:
    """The latest progress row of each of ``run_ids`` (any attempt): run_id, attempt, ts,
    done, total, unit. Empty when none was recorded."""
    schema: dict[str, pl.DataType] = {
        "run_id": pl.String(), "attempt": pl.String(), "ts": pl.Datetime("us", "UTC"), "done": pl.Int64(),
        "total": pl.Int64(), "unit": pl.String()}
    if not run_ids or not lake.exists(TABLE):
        return pl.DataFrame(schema=schema)
    return (lake.read(TABLE, where={"run_id": list(run_ids)}).sort("ts", "done")
            .group_by("run_id", maintain_order=True).last().select(list(schema)).sort("run_id"))


def prune(lake: Lake, before: dt.datetime, *, dry_run: bool = False) -> int:
    """Delete the progress rows of runs whose latest event is a terminal one (completed,
    failed, cancelled, crashed) recorded before ``before``; returns how many rows (to be)
    deleted. Rows of runs still pending or running, or that ended later, stay."""
    from backlake.runs.events import TERMINAL

    if not lake.exists(TABLE) or not lake.exists("run_events"):
        return 0
    rows = lake.read(TABLE, columns=["run_id"])
    if rows.is_empty():
        return 0
    ids = rows["run_id"].unique().to_list()
    last = (lake.read("run_events", columns=["run_id", "status", "ts"], where={"run_id": ids})
            .sort("ts").group_by("run_id").last())
    ended = last.filter(pl.col("status").is_in(list(TERMINAL)) & (pl.col("ts") < before))["run_id"].to_list()
    n = int(rows.filter(pl.col("run_id").is_in(ended)).height)
    if not n or dry_run:
        return n
    quoted = ", ".join("'" + r.replace("'", "''") + "'" for r in sorted(ended))
    lake.delete(TABLE, f"run_id IN ({quoted})", "delete the progress of ended runs")
    return n
