"""Backtest runs: plan (pin the data, name the run), execute (the engine on the pinned bars),
then :func:`backlake.runs.commit.commit`.

Example::

    planned = plan_runs(lake, configs)
    started = claim(lake, [p.run_id for p in planned if not p.done], attempt)
    outcomes = [execute_run(lake, p) for p in planned if p.run_id in started.claimed]
    commit(lake, [o.record(started.claimed[o.planned.run_id]) for o in outcomes], attempt)
"""

from __future__ import annotations

import datetime as dt
import threading
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from backlake.config import BacktestConfig
from backlake.engine import BacktestResult, run_backtest
from backlake.errors import BacklakeError
from backlake.lake.store import Lake
from backlake.runs.commit import RunRecord, commit, completed_runs
from backlake.runs.data import fingerprint, load_bars
from backlake.runs.events import Attempt, claim
from backlake.runs.ids import run_id

__all__ = ["PlannedRun", "RunOutcome", "plan_runs", "execute_run", "commit_outcomes", "run_submitted",
           "backtest_request", "cached_bars"]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def backtest_request(cfg: BacktestConfig) -> dict[str, Any]:
    """What identifies a backtest besides its data: the config."""
    return {"config": cfg.model_dump(mode="json")}


@dataclass(frozen=True)
class PlannedRun:
    """A backtest to do: its config, the data it is pinned to, and whether it is done."""

    run_id: str
    config: BacktestConfig
    data_versions: dict[str, int]
    fingerprint: str
    kind: str = "backtest"
    parent_id: str | None = None
    done: bool = False


@dataclass
class RunOutcome:
    planned: PlannedRun
    result: BacktestResult | None
    error: str | None
    started_at: dt.datetime
    finished_at: dt.datetime = field(default_factory=_now)

    @property
    def status(self) -> str:
        return "completed" if self.result is not None else "failed"

    def record(self, generation: int) -> RunRecord:
        """The outcome as a record to commit, for the claimed ``generation``."""
        p, res = self.planned, self.result
        return RunRecord(
            run_id=p.run_id, kind=p.kind, config=p.config, data_versions=p.data_versions,
            fingerprint=p.fingerprint, started_at=self.started_at, finished_at=self.finished_at,
            generation=generation, status=self.status, error=self.error, parent_id=p.parent_id,
            headline=res.metrics if res is not None else {},
            segments=(res.segments or {"full": res.metrics}) if res is not None else {},
            equity=res.equity if res is not None else None, trades=res.trades if res is not None else None,
        )


_BARS_CACHE: dict[tuple[str, tuple[str, ...], str | None, str, int], pl.DataFrame] = {}
_BARS_LOCK = threading.Lock()
_BARS_CACHE_SIZE = 8


def cached_bars(lake: Lake, cfg: BacktestConfig, version: int) -> pl.DataFrame:
    """:func:`load_bars`, kept for the next run (or task) of the same symbols at the same
    version in this process (a Delta version never changes, so the copy cannot go stale);
    read once even when threads ask at the same time."""
    key = (lake.settings.lake_uri, tuple(cfg.symbols), cfg.benchmark, cfg.timeframe, version)
    with _BARS_LOCK:
        hit = _BARS_CACHE.get(key)
        if hit is None:
            hit = load_bars(lake, cfg, version)
            if len(_BARS_CACHE) >= _BARS_CACHE_SIZE:
                _BARS_CACHE.pop(next(iter(_BARS_CACHE)))
            _BARS_CACHE[key] = hit
    return hit


def plan_runs(
    lake: Lake, configs: Iterable[BacktestConfig], *, kind: str = "backtest", parent_id: str | None = None,
    version: int | None = None,
) -> list[PlannedRun]:
    """Pin each config to the ``bars`` version (the latest by default), name its run from its
    config and the fingerprint of the rows it uses, and mark runs already completed."""
    v = lake.version("bars") if version is None else version
    planned = []
    for c in configs:
        fp = fingerprint(c, cached_bars(lake, c, v))
        planned.append(PlannedRun(run_id(kind, backtest_request(c), fp), c, {"bars": v}, fp, kind, parent_id))
    done = completed_runs(lake, [p.run_id for p in planned])
    return [
        PlannedRun(p.run_id, p.config, p.data_versions, p.fingerprint, p.kind, p.parent_id, p.run_id in done)
        for p in planned
    ]


def execute_run(lake: Lake, planned: PlannedRun) -> RunOutcome:
    """Compute one run on its pinned data. Errors become a failed outcome with the message."""
    started = _now()
    try:
        bars = cached_bars(lake, planned.config, planned.data_versions["bars"])
        result = run_backtest(planned.config, bars, validated=True)
        return RunOutcome(planned, result, None, started)
    except BacklakeError as e:
        return RunOutcome(planned, None, f"{type(e).__name__}: {e}", started)
    except Exception as e:  # an engine bug: keep the traceback for the failed run's record
        tb = "".join(traceback.format_exception_only(type(e), e)).strip()
        return RunOutcome(planned, None, f"{tb}\n{traceback.format_exc(limit=5)}", started)


def commit_outcomes(
    lake: Lake, outcomes: Sequence[RunOutcome], *, attempt: Attempt | None = None, created_by: str | None = None,
) -> list[str]:
    """Commit computed backtests for ``attempt`` (a new one by default), claiming first the
    runs it does not hold yet; runs already completed, or held by another live attempt, are
    left alone. Returns the run ids committed."""
    attempt = attempt or Attempt.new()
    done = completed_runs(lake, [o.planned.run_id for o in outcomes])
    started = claim(lake, [o.planned.run_id for o in outcomes if o.planned.run_id not in done], attempt)
    mine = [o for o in outcomes if o.planned.run_id in started.claimed]
    commit(lake, [o.record(started.claimed[o.planned.run_id]) for o in mine], attempt, created_by=created_by)
    return [o.planned.run_id for o in mine]


def run_submitted(
    lake: Lake, config: BacktestConfig, *, created_by: str, cancelled: Callable[[], bool] = lambda: False,
    attempt: Attempt | None = None,
) -> tuple[str, str | None, str]:
    """Plan, execute and commit one submitted backtest as ``created_by``: ``(status, run_id,
    message)`` with status completed, failed or cancelled. ``cancelled()`` is asked before the
    run starts and again before its commit, so a cancelled job writes nothing. A run already
    in the lake (the same config on the same data) is that run, committed again by no one."""
    (planned,) = plan_runs(lake, [config])
    if planned.done:
        return "completed", planned.run_id, "already in the lake (the same config on the same data)"
    if cancelled():
        return "cancelled", None, "stopped before it ran; nothing was written"
    outcome = execute_run(lake, planned)
    if cancelled():
        return "cancelled", None, "stopped before its commit; nothing was written"
    committed = commit_outcomes(lake, [outcome], attempt=attempt, created_by=created_by)
    if not committed:
        return "completed", planned.run_id, "another attempt is running or has run it"
    if outcome.error:
        return "failed", planned.run_id, outcome.error.splitlines()[0]
    return "completed", planned.run_id, ""
