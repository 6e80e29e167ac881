"""Committing runs: child rows first, the ``runs`` rows last, then the end events.

Every kind of run is committed by :func:`commit` from :class:`RunRecord` s. For a batch of
records it makes one commit per child table (``equity``, ``trades``, ``metrics``, and each
research run's ``trials`` / ``windows``), one to ``runs`` and one to ``run_events``:

1. child rows, each table's rows of a run marked once (application transaction
   ``<run_id>`` / ``trials:<run_id>:<batch>`` / ``windows:<run_id>``), so a retried commit
   writes nothing twice and a sweep resumed after a crash skips its landed batches;
2. the ``runs`` rows (at most one per run; a completed row is never replaced), last: readers
   join completed runs only, so a crash leaves nothing half-written in view;
3. ``completed`` / ``failed`` events, once per generation (:func:`backlake.runs.events.finish`).

Example::

    commit(lake, [RunRecord(run_id=..., kind="backtest", config=cfg, ...)], attempt)
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from backlake.config import BacktestConfig
from backlake.lake.store import Lake
from backlake.runs.events import Attempt, End, finish
from backlake.runs.ids import code_version

__all__ = ["RunRecord", "commit", "runs_row", "metrics_rows", "completed_runs", "child_marks",
           "CHILD_TABLES", "MAX_TRIAL_BATCHES", "COST_SUMMARY", "cost_summary"]

#: Child tables keyed by run_id, written for every completed run that has the frame (``ic`` and
#: ``weights``: alpha runs).
CHILD_TABLES = ("equity", "trades", "metrics", "ic", "weights")
#: A sweep's trials land in at most this many batch commits (``trials:<run_id>:<batch>``).
MAX_TRIAL_BATCHES = 8


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class RunRecord:
    """One run ready to commit (any kind). ``segments``: segment -> metric -> value (``full``
    at least for completed runs); ``headline``: the metrics shown in ``runs``; ``request``: what
    besides the config makes the job (a grid, a study...), stored in ``runs.config``."""

    run_id: str
    kind: str
    config: BacktestConfig
    data_versions: dict[str, int]
    fingerprint: str
    started_at: dt.datetime
    generation: int = 0
    status: str = "completed"
    error: str | None = None
    parent_id: str | None = None
    params: dict[str, Any] | None = None
    request: dict[str, Any] = field(default_factory=dict)
    headline: dict[str, Any] = field(default_factory=dict)
    segments: dict[str, dict[str, Any]] = field(default_factory=dict)
    equity: pl.DataFrame | None = None
    trades: pl.DataFrame | None = None
    trials: pl.DataFrame | None = None
    windows: pl.DataFrame | None = None
    ic: pl.DataFrame | None = None
    weights: pl.DataFrame | None = None
    finished_at: dt.datetime = field(default_factory=_now)


def child_marks(run_id: str) -> dict[str, list[str]]:
    """table -> the application ids that mark a run's rows in it (see :func:`commit`)."""
    return {
        **{t: [run_id] for t in CHILD_TABLES},
        "trials": [f"trials:{run_id}:{b}" for b in range(MAX_TRIAL_BATCHES)] + [f"trials:{run_id}:all"],
        "windows": [f"windows:{run_id}"],
    }


def metrics_rows(run_id: str, segments: dict[str, dict[str, Any]]) -> pl.DataFrame:
    """``metrics`` rows: one per (segment, metric)."""
    return pl.DataFrame({
        "run_id": run_id,
        "segment": [s for s, vals in segments.items() for _ in vals],
        "name": [n for vals in segments.values() for n in vals],
        "value": [None if v is None else float(v) for vals in segments.values() for v in vals.values()],
    }, schema={"run_id": pl.String, "segment": pl.String, "name": pl.String, "value": pl.Float64})


#: The cost summary on a run's ``runs`` row (money over the whole run): runs column -> the
#: per-bar equity column it adds up.
COST_SUMMARY = {"total_costs": "costs", "cost_commission": "cost_commission", "cost_fees": "cost_fees",
                "cost_slippage": "cost_slippage", "cost_impact": "cost_impact"}


def cost_summary(equity: pl.DataFrame | None) -> dict[str, float]:
    """The run's cost summary (:data:`COST_SUMMARY`) from its equity's per-bar costs; empty (null
    columns) when the equity records none (an older engine, or a stitched walk-forward curve)."""
    if equity is None or "costs" not in equity.columns or equity["costs"].null_count() == equity.height:
        return {}
    return {name: float(equity[col].sum()) for name, col in COST_SUMMARY.items() if col in equity.columns}


def _equity_rows(run_id: str, equity: pl.DataFrame) -> pl.DataFrame:
    eq = equity.with_columns(pl.lit(run_id).alias("run_id"))
    if "drawdown" not in eq.columns:
        eq = eq.with_columns((pl.col("equity") / pl.col("equity").cum_max() - 1).alias("drawdown"))
    return eq


def _trades_rows(run_id: str, trades: pl.DataFrame) -> pl.DataFrame:
    t = trades.with_columns(pl.lit(run_id).alias("run_id"))
    if "trade_id" not in t.columns:
        t = t.with_columns(pl.int_range(1, t.height + 1, dtype=pl.Int64).alias("trade_id"))
    return t


def runs_row(rec: RunRecord, user: str) -> dict[str, Any]:
    """The run's ``runs`` row."""
    cfg, m = rec.config, rec.headline
    n_trades = m.get("n_trades")
    config = {**cfg.model_dump(mode="json"), **rec.request}
    return {
        "run_id": rec.run_id, "parent_id": rec.parent_id, "kind": rec.kind,
        "strategy": cfg.strategy, "symbols": ",".join(cfg.symbols), "timeframe": cfg.timeframe,
        "params": json.dumps(cfg.params if rec.params is None else rec.params, sort_keys=True),
        "config": json.dumps(config, sort_keys=True), "config_id": cfg.id,
        "data_versions": json.dumps(rec.data_versions, sort_keys=True), "data_fingerprint": rec.fingerprint,
        "code_version": code_version(), "created_by": user, "created_at": rec.started_at,
        "finished_at": rec.finished_at, "status": rec.status, "error": rec.error,
        "total_return": m.get("total_return"), "cagr": m.get("cagr"), "sharpe": m.get("sharpe"),
        "sortino": m.get("sortino"), "max_drawdown": m.get("max_drawdown"),
        "n_trades": int(n_trades) if n_trades is not None else None,
        **cost_summary(rec.equity),
    }


def completed_runs(lake: Lake, run_ids: Sequence[str]) -> set[str]:
    """The run ids among ``run_ids`` that are completed in the lake."""
    if not run_ids:
        return set()
    runs = lake.read("runs", columns=["run_id"], where={"run_id": list(run_ids), "status": "completed"})
    return set(runs["run_id"].to_list())


def commit(lake: Lake, records: Sequence[RunRecord], attempt: Attempt, *, created_by: str | None = None) -> None:
    """Write a batch of runs (see the module docstring). Idempotent: a retry adds nothing."""
    if not records:
        return
    ok = [r for r in records if r.status == "completed"]
    ids = [r.run_id for r in ok]
    frames: dict[str, list[pl.DataFrame]] = {t: [] for t in CHILD_TABLES}
    for r in ok:
        if r.equity is not None and r.equity.height:
            frames["equity"].append(_equity_rows(r.run_id, r.equity))
        if r.trades is not None and r.trades.height:
            frames["trades"].append(_trades_rows(r.run_id, r.trades))
        if r.segments:
            frames["metrics"].append(metrics_rows(r.run_id, r.segments))
        for table, rows in (("ic", r.ic), ("weights", r.weights)):
            if rows is not None and rows.height:
                frames[table].append(rows.with_columns(pl.lit(r.run_id).alias("run_id")))
    for table, parts in frames.items():
        if parts:
            lake.append_for_runs(table, pl.concat(parts, how="diagonal_relaxed"), ids)
    for r in ok:
        if r.trials is not None and r.trials.height:
            trials = r.trials if "parent_id" in r.trials.columns else r.trials.with_columns(
                pl.lit(r.run_id).alias("parent_id"))
            lake.append_once("trials", trials, f"trials:{r.run_id}:all")
        if r.windows is not None and r.windows.height:
            lake.append_once("windows", r.windows, f"windows:{r.run_id}")
    user = created_by or lake.settings.user
    lake.upsert_runs(pl.DataFrame([runs_row(r, user) for r in records], infer_schema_length=None))
    finish(lake, [End(r.run_id, r.generation, r.status, r.error or "") for r in records], attempt)
