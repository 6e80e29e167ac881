"""The run write protocol.

A run's id is the hash of its config id and the Delta versions of the data it read, so the
same config on the same data is the same run. For a batch of runs:

1. ``run_events``: ``pending`` then ``running`` (one commit each for the whole batch);
2. child rows (``equity``, ``trades``, ``metrics``): one commit per table, idempotent per
   run_id (application transactions), so a retry writes nothing twice;
3. the ``runs`` rows: one MERGE on run_id, last, so a run is visible only once its children
   are in (readers join completed runs only);
4. ``run_events``: ``completed`` or ``failed`` with the error.

Runs already completed in the lake are not computed again.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import subprocess
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from backlake.config import BacktestConfig, canonical_hash
from backlake.engine import BacktestResult, run_backtest
from backlake.errors import BacklakeError
from backlake.lake.store import Lake

__all__ = [
    "PlannedRun", "RunOutcome", "plan_runs", "run_id_for", "record_events", "execute_run",
    "commit_outcomes", "load_bars", "code_version", "runs_row", "completed_runs",
]

CHILD_TABLES = ("equity", "trades", "metrics")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def run_id_for(config_id: str, data_versions: dict[str, int]) -> str:
    """The run's id: hash of the config id and the data versions it reads."""
    return canonical_hash({"config_id": config_id, "data_versions": data_versions})


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``<package version>+<git sha>`` (``BACKLAKE_CODE_VERSION`` overrides, e.g. in images)."""
    from backlake import __version__

    if os.environ.get("BACKLAKE_CODE_VERSION"):
        return os.environ["BACKLAKE_CODE_VERSION"]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


@dataclass(frozen=True)
class PlannedRun:
    """A run to do: its config, the data versions it is pinned to, and whether it is done."""

    run_id: str
    config: BacktestConfig
    data_versions: dict[str, int]
    kind: str = "backtest"
    parent_id: str | None = None
    done: bool = False

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id, "config": self.config.model_dump(mode="json"),
            "data_versions": self.data_versions, "kind": self.kind, "parent_id": self.parent_id,
            "done": self.done,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "PlannedRun":
        return cls(
            run_id=d["run_id"], config=BacktestConfig.model_validate(d["config"]),
            data_versions=dict(d["data_versions"]), kind=d.get("kind", "backtest"),
            parent_id=d.get("parent_id"), done=bool(d.get("done", False)),
        )


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


def plan_runs(
    lake: Lake, configs: Iterable[BacktestConfig], *, kind: str = "backtest", parent_id: str | None = None
) -> list[PlannedRun]:
    """Pin each config to the current ``bars`` version and mark runs already completed."""
    versions = {"bars": lake.version("bars")}
    planned = [
        PlannedRun(run_id_for(c.id, versions), c, versions, kind, parent_id) for c in configs
    ]
    done = completed_runs(lake, [p.run_id for p in planned])
    return [
        PlannedRun(p.run_id, p.config, p.data_versions, p.kind, p.parent_id, p.run_id in done)
        for p in planned
    ]


def completed_runs(lake: Lake, run_ids: Sequence[str]) -> set[str]:
    if not run_ids:
        return set()
    runs = lake.read(
        "runs", columns=["run_id"],
        where={"run_id": list(run_ids), "status": "completed"},
    )
    return set(runs["run_id"].to_list())


def record_events(
    lake: Lake, run_ids: Sequence[str], status: str, messages: Sequence[str] | str = "",
    *, attempt: str | None = None,
) -> None:
    """One ``run_events`` commit for a batch of runs changing to ``status``.

    With ``attempt`` (a token that stays the same when a task is retried), the events are
    written once per (attempt, status, run): a retried commit adds no duplicate events.
    """
    if not run_ids:
        return
    msgs = [messages] * len(run_ids) if isinstance(messages, str) else list(messages)
    rows = pl.DataFrame({
        "run_id": list(run_ids), "status": [status] * len(run_ids),
        "ts": [_now()] * len(run_ids), "message": msgs,
    }, schema={"run_id": pl.String, "status": pl.String, "ts": pl.Datetime("us", "UTC"), "message": pl.String})
    if attempt is None:
        lake.append("run_events", rows)
    else:
        lake.append_for_runs("run_events", rows, run_ids, app_prefix=f"event:{attempt}:{status}:")


def load_bars(lake: Lake, cfg: BacktestConfig, version: int) -> pl.DataFrame:
    """The bars a config needs (universe + benchmark, its timeframe) at ``bars`` version ``version``."""
    symbols = cfg.symbols + ([cfg.benchmark] if cfg.benchmark else [])
    return lake.read(
        "bars", version=version,
        columns=["symbol", "ts", "timeframe", "open", "high", "low", "close", "volume"],
        where={"symbol": symbols, "timeframe": cfg.timeframe},
    )


def execute_run(lake: Lake, planned: PlannedRun) -> RunOutcome:
    """Compute one run on its pinned data. Errors become a failed outcome with the message."""
    started = _now()
    try:
        bars = load_bars(lake, planned.config, planned.data_versions["bars"])
        result = run_backtest(planned.config, bars)
        return RunOutcome(planned, result, None, started)
    except BacklakeError as e:
        return RunOutcome(planned, None, f"{type(e).__name__}: {e}", started)
    except Exception as e:  # an engine bug: keep the traceback for the failed run's record
        tb = "".join(traceback.format_exception_only(type(e), e)).strip()
        return RunOutcome(planned, None, f"{tb}\n{traceback.format_exc(limit=5)}", started)


def commit_outcomes(lake: Lake, outcomes: Sequence[RunOutcome], *, created_by: str | None = None) -> None:
    """Write a batch of outcomes: children, then ``runs`` (MERGE), then the final events."""
    if not outcomes:
        return
    ok = [o for o in outcomes if o.result is not None]
    ok_ids = [o.planned.run_id for o in ok]
    if ok:
        children = _child_frames(ok)
        for table in CHILD_TABLES:
            lake.append_for_runs(table, children[table], ok_ids)
    user = created_by or lake.settings.user
    lake.upsert_runs(pl.DataFrame([_runs_row(o, user) for o in outcomes], infer_schema_length=None))
    # the outcomes' start times identify this attempt: a retried commit re-sends the same ones
    attempt = canonical_hash(sorted((o.planned.run_id, o.started_at.isoformat()) for o in outcomes))
    record_events(lake, ok_ids, "completed", attempt=attempt)
    failed = [o for o in outcomes if o.result is None]
    record_events(
        lake, [o.planned.run_id for o in failed], "failed", [o.error or "" for o in failed], attempt=attempt
    )


def _child_frames(outcomes: Sequence[RunOutcome]) -> dict[str, pl.DataFrame]:
    eq, tr, me = [], [], []
    for o in outcomes:
        rid = o.planned.run_id
        res = o.result
        assert res is not None
        eq.append(res.equity.with_columns(pl.lit(rid).alias("run_id")))
        tr.append(res.trades.with_columns(pl.lit(rid).alias("run_id")))
        segments = res.segments or {"full": res.metrics}
        me.append(pl.DataFrame({
            "run_id": rid,
            "segment": [seg for seg, vals in segments.items() for _ in vals],
            "name": [name for vals in segments.values() for name in vals],
            "value": [None if v is None else float(v) for vals in segments.values() for v in vals.values()],
        }, schema={"run_id": pl.String, "segment": pl.String, "name": pl.String, "value": pl.Float64}))
    return {
        "equity": pl.concat(eq, how="vertical_relaxed"),
        "trades": pl.concat(tr, how="vertical_relaxed"),
        "metrics": pl.concat(me),
    }


def _runs_row(o: RunOutcome, user: str) -> dict:
    return runs_row(
        o.planned.run_id, o.planned.config, kind=o.planned.kind, parent_id=o.planned.parent_id,
        metrics=o.result.metrics if o.result is not None else {}, data_versions=o.planned.data_versions,
        started_at=o.started_at, finished_at=o.finished_at, status=o.status, error=o.error, user=user,
    )


def runs_row(
    run_id: str, cfg: BacktestConfig, *, kind: str, metrics: dict, data_versions: dict, started_at: dt.datetime,
    finished_at: dt.datetime, status: str, error: str | None, user: str, parent_id: str | None = None,
    params: dict | None = None, config: dict | None = None,
) -> dict:
    """One ``runs`` row. ``params`` / ``config`` override the config's own (e.g. a sweep's
    best parameters, and its config with the grid)."""
    n_trades = metrics.get("n_trades")
    return {
        "run_id": run_id, "parent_id": parent_id, "kind": kind,
        "strategy": cfg.strategy, "symbols": ",".join(cfg.symbols), "timeframe": cfg.timeframe,
        "params": json.dumps(cfg.params if params is None else params, sort_keys=True),
        "config": json.dumps(cfg.model_dump(mode="json") if config is None else config, sort_keys=True),
        "config_id": cfg.id, "data_versions": json.dumps(data_versions, sort_keys=True),
        "code_version": code_version(), "created_by": user, "created_at": started_at,
        "finished_at": finished_at, "status": status, "error": error,
        "total_return": metrics.get("total_return"), "cagr": metrics.get("cagr"), "sharpe": metrics.get("sharpe"),
        "sortino": metrics.get("sortino"), "max_drawdown": metrics.get("max_drawdown"),
        "n_trades": int(n_trades) if n_trades is not None else None,
    }
