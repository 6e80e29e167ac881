"""Writing a research job (optimize, walk-forward, Monte Carlo) as one run of its own, under
the lake's run protocol: child rows first (each write idempotent on the run id), the
``runs`` row last, then the ``completed`` event.

The run id is the hash of the job's kind, its full request and the data versions it read, so
re-running the same job on the same data is the same run (and is not recomputed).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from backlake.config import BacktestConfig, canonical_hash
from backlake.lake.runs import completed_runs, record_events, runs_row
from backlake.lake.store import Lake

__all__ = ["research_run_id", "already_done", "commit_research_run"]


def research_run_id(kind: str, request: dict[str, Any], data_versions: dict[str, int]) -> str:
    return canonical_hash({"kind": kind, "request": request, "data_versions": data_versions})


def already_done(lake: Lake, run_id: str) -> bool:
    return run_id in completed_runs(lake, [run_id])


def _metrics_rows(run_id: str, segments: dict[str, dict[str, float | None]]) -> pl.DataFrame:
    return pl.DataFrame({
        "run_id": run_id,
        "segment": [s for s, vals in segments.items() for _ in vals],
        "name": [n for vals in segments.values() for n in vals],
        "value": [None if v is None else float(v) for vals in segments.values() for v in vals.values()],
    }, schema={"run_id": pl.String, "segment": pl.String, "name": pl.String, "value": pl.Float64})


def commit_research_run(
    lake: Lake, *, run_id: str, kind: str, cfg: BacktestConfig, request: dict[str, Any],
    data_versions: dict[str, int], started_at: dt.datetime, params: dict[str, Any],
    segments: dict[str, dict[str, float | None]], headline: dict[str, float | None],
    equity: pl.DataFrame | None = None, trades: pl.DataFrame | None = None,
    trials: pl.DataFrame | None = None, windows: pl.DataFrame | None = None,
) -> None:
    """Children (equity, trades, metrics, trials, windows) then the runs row, then the event."""
    if equity is not None and equity.height:
        eq = equity.with_columns(pl.lit(run_id).alias("run_id"))
        for col, default in (("cash", None), ("gross_exposure", None), ("net_exposure", None),
                             ("benchmark_equity", None)):
            if col not in eq.columns:
                eq = eq.with_columns(pl.lit(default, dtype=pl.Float64).alias(col))
        if "drawdown" not in eq.columns:
            eq = eq.with_columns((pl.col("equity") / pl.col("equity").cum_max() - 1).alias("drawdown"))
        lake.append_for_runs("equity", eq, [run_id])
    if trades is not None and trades.height:
        t = trades.with_columns(pl.lit(run_id).alias("run_id"), pl.int_range(1, trades.height + 1).alias("trade_id"))
        lake.append_for_runs("trades", t, [run_id])
    lake.append_for_runs("metrics", _metrics_rows(run_id, segments), [run_id])
    if trials is not None and trials.height:
        lake.append_once("trials", trials.with_columns(pl.lit(run_id).alias("parent_id")), f"trials:{run_id}:all")
    if windows is not None and windows.height:
        lake.append_once("windows", windows, f"windows:{run_id}")
    now = dt.datetime.now(dt.timezone.utc)
    row = runs_row(run_id, cfg, kind=kind, metrics=headline, data_versions=data_versions, started_at=started_at,
                   finished_at=now, status="completed", error=None, user=lake.settings.user, params=params,
                   config={**cfg.model_dump(mode="json"), **request})
    lake.upsert_runs(pl.DataFrame([row], infer_schema_length=None))
    record_events(lake, [run_id], "completed", attempt=f"{kind}:{run_id}")
