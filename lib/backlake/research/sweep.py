"""``sweep(cfg, grid, bars)``: every combination of a parameter grid, compute only (no lake).

Example::

    df = sweep(cfg, {"fast": range(5, 51), "slow": range(20, 201, 2)}, bars)
    df.sort("sharpe", descending=True).head()

Indicators are computed once per distinct window (SMA crossover has a dedicated path; other
strategies share indicator results through ``indicator_cache``); combinations are simulated
in parallel chunks by a compiled kernel that keeps only metrics, so memory is bounded by the
chunk size. Combinations that fail the strategy's own validation (e.g. fast >= slow) are
skipped and counted, not an error.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, overload

import numpy as np
import polars as pl
from pydantic import ValidationError

from backlake._suggest import unknown_name_message
from backlake.config import BacktestConfig
from backlake.engine.core import Prepared, _risk_inputs, prepare, sim_options
from backlake.engine.nb_sweep import SWEEP_METRICS, sweep_signals_nb, sweep_sma_nb
from backlake.engine.records import MarketData, metrics_dt
from backlake.errors import BacktestError, ConfigError
from backlake.strategies import get_strategy
from backlake.strategies.indicators import indicator_cache, sma

__all__ = ["sweep", "SweepReport", "expand_grid", "validate_combinations", "SWEEP_METRICS"]

log = logging.getLogger(__name__)

# The sweep kernels already use every core (prange). Chunks that several threads of one
# process (e.g. Prefect's thread task runner) sweep at once take turns on the kernels instead
# of oversubscribing the cores; separate processes (Dask workers) are not affected.
_KERNEL_LOCK = threading.Lock()

# open, high, low, close, volume: float64 (n_bars, n_assets), as the kernels take them
_OHLCV: TypeAlias = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass
class SweepReport:
    n_combinations: int
    n_valid: int
    n_skipped: int
    skipped: list[dict[str, Any]] = field(default_factory=list)  # first few, with the reason


def expand_grid(cfg: BacktestConfig, grid: Mapping[str, Iterable[Any]]) -> tuple[list[dict[str, Any]], SweepReport]:
    """Cartesian product of ``grid`` (parameter -> values) over ``cfg.params``; combinations the
    strategy's parameter model rejects are skipped and counted."""
    model = get_strategy(cfg.strategy).params_model
    if not grid:
        raise ConfigError("grid is empty: give at least one parameter with a list of values, e.g. {\"fast\": [5, 10]}")
    keys = list(grid)
    for k in keys:
        if k not in model.model_fields:
            raise ConfigError("grid: " + unknown_name_message(f"parameter of {cfg.strategy}", k, model.model_fields))
    values = []
    for k in keys:
        raw = grid[k]
        if isinstance(raw, (str, bytes, Mapping)) or not isinstance(raw, Iterable):
            example = json.dumps({k: [raw]}, default=str)
            raise ConfigError(f"grid[{k!r}]={raw!r} is not a list of values: write e.g. {example}")
        v = list(raw)
        if not v:
            raise ConfigError(f"grid[{k!r}] is empty: list at least one value")
        seen = [json.dumps(x, sort_keys=True, default=str) for x in v]
        dupes = sorted({x for x in seen if seen.count(x) > 1})
        if dupes:
            raise ConfigError(f"grid[{k!r}] lists {', '.join(dupes)} more than once: list each value once "
                              "(the same combination would run twice)")
        values.append(v)
    combos: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    total = 0
    for combo in itertools.product(*values):
        total += 1
        params = {**cfg.params, **dict(zip(keys, combo))}
        try:
            combos.append(model.model_validate(params).model_dump(mode="json"))
        except ValidationError as e:
            if len(skipped) < 5:
                skipped.append({"params": params, "reason": e.errors()[0]["msg"].removeprefix("Value error, ")})
    report = SweepReport(total, len(combos), total - len(combos), skipped)
    if not combos:
        reason = f" (e.g. {skipped[0]['params']}: {skipped[0]['reason']})" if skipped else ""
        raise ConfigError(f"grid has no valid combination: all {total} fail {cfg.strategy}'s validation{reason}")
    return combos, report


def validate_combinations(
    cfg: BacktestConfig, combos: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], SweepReport]:
    """Validate explicit parameter combinations; invalid ones are skipped and counted."""
    model = get_strategy(cfg.strategy).params_model
    if not combos:
        raise ConfigError("no combinations given: pass at least one parameter dict")
    valid: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for c in combos:
        for k in c:
            if k not in model.model_fields:
                raise ConfigError(unknown_name_message(f"parameter of {cfg.strategy}", k, model.model_fields))
        params = {**cfg.params, **c}
        try:
            valid.append(model.model_validate(params).model_dump(mode="json"))
        except ValidationError as e:
            if len(skipped) < 5:
                skipped.append({"params": params, "reason": e.errors()[0]["msg"].removeprefix("Value error, ")})
    report = SweepReport(len(combos), len(valid), len(combos) - len(valid), skipped)
    if not valid:
        raise ConfigError(f"none of the {len(combos)} combinations passes {cfg.strategy}'s validation")
    return valid, report


@overload
def sweep(
    cfg: BacktestConfig,
    grid: Mapping[str, Iterable[Any]] | Sequence[Mapping[str, Any]],
    bars: pl.DataFrame,
    *,
    chunk_size: int = ...,
    return_report: Literal[False] = ...,
    validated: bool = ...,
) -> pl.DataFrame: ...
@overload
def sweep(
    cfg: BacktestConfig,
    grid: Mapping[str, Iterable[Any]] | Sequence[Mapping[str, Any]],
    bars: pl.DataFrame,
    *,
    chunk_size: int = ...,
    return_report: Literal[True],
    validated: bool = ...,
) -> tuple[pl.DataFrame, SweepReport]: ...
@overload
def sweep(
    cfg: BacktestConfig,
    grid: Mapping[str, Iterable[Any]] | Sequence[Mapping[str, Any]],
    bars: pl.DataFrame,
    *,
    chunk_size: int = ...,
    return_report: bool,
    validated: bool = ...,
) -> pl.DataFrame | tuple[pl.DataFrame, SweepReport]: ...
def sweep(
    cfg: BacktestConfig,
    grid: Mapping[str, Iterable[Any]] | Sequence[Mapping[str, Any]],
    bars: pl.DataFrame,
    *,
    chunk_size: int = 256,
    return_report: bool = False,
    validated: bool = False,
) -> pl.DataFrame | tuple[pl.DataFrame, SweepReport]:
    """One row per valid combination: the swept parameters, then SWEEP_METRICS.

    ``grid`` is parameter -> values (the cartesian product is swept), or an explicit list of
    parameter dicts (one combination each; how the sweep flow hands a chunk to a task).
    ``chunk_size`` bounds memory for strategies without a dedicated path (signals of that many
    combinations are held at once). With ``return_report=True`` also returns the
    :class:`SweepReport` (how many combinations were skipped and why). ``validated``: the bars
    were read from the lake, so the engine does not check their rows again (see ``run_backtest``).
    """
    if isinstance(grid, Mapping):
        combos, report = expand_grid(cfg, grid)
        keys = list(grid)
    else:
        combos, report = validate_combinations(cfg, grid)
        keys = list(dict.fromkeys(k for c in grid for k in c))
    if report.n_skipped:
        log.info("sweep: skipped %d of %d combinations that fail validation", report.n_skipped, report.n_combinations)
    prep = prepare(cfg, bars, validated=validated)
    sigma, adv = _risk_inputs(cfg, prep)
    d = prep.data
    t_us = prep.ts.dt.replace_time_zone(None).dt.cast_time_unit("us").to_physical().to_numpy()
    ppy = prep.periods_per_year
    args: _OHLCV = (d["open"], d["high"], d["low"], d["close"], d["volume"])
    if cfg.strategy == "sma_crossover" and d["close"].shape[1] == 1:
        metrics = _sweep_sma(cfg, combos, prep, args, sigma, adv, t_us, ppy)
    else:
        metrics = _sweep_generic(cfg, combos, prep, args, sigma, adv, t_us, ppy, chunk_size)
    frame = pl.DataFrame({k: [c[k] for c in combos] for k in keys})
    stats = pl.DataFrame({name: metrics[name] for name in SWEEP_METRICS}).fill_nan(None)
    out = pl.concat([frame, stats], how="horizontal")
    return (out, report) if return_report else out


def _sweep_sma(
    cfg: BacktestConfig, combos: Sequence[Mapping[str, Any]], prep: Prepared, args: _OHLCV,
    sigma: np.ndarray, adv: np.ndarray, t_us: np.ndarray, ppy: float,
) -> np.ndarray:
    windows = sorted({c["fast"] for c in combos} | {c["slow"] for c in combos})
    col = {w: i for i, w in enumerate(windows)}
    close = prep.data["close"][:, 0]
    ma = np.empty((close.size, len(windows)))
    for w, i in col.items():
        ma[:, i] = sma(close, w)
    fast_idx = np.array([col[c["fast"]] for c in combos], dtype=np.int64)
    slow_idx = np.array([col[c["slow"]] for c in combos], dtype=np.int64)
    opts = sim_options(cfg, ppy)
    mkt = MarketData(*args, sigma, adv, prep.tradable)
    with _KERNEL_LOCK:
        metrics: np.ndarray = sweep_sma_nb(mkt, ma, fast_idx, slow_idx, opts, t_us, ppy)  # metrics_dt records
    return metrics


def _sweep_generic(
    cfg: BacktestConfig, combos: Sequence[Mapping[str, Any]], prep: Prepared, args: _OHLCV,
    sigma: np.ndarray, adv: np.ndarray, t_us: np.ndarray, ppy: float, chunk_size: int,
) -> np.ndarray:
    spec = get_strategy(cfg.strategy)
    d = prep.data
    n, m = d["close"].shape
    out = np.empty(len(combos), dtype=metrics_dt)
    mkt = MarketData(*args, sigma, adv, prep.tradable)
    arrays = [d[k] for k in ("open", "high", "low", "close", "volume")]
    with indicator_cache(*arrays):
        for start in range(0, len(combos), max(1, chunk_size)):
            chunk = combos[start : start + chunk_size]
            sigs = []
            for c in chunk:
                try:
                    sigs.append(spec.signal_fn(d, spec.params_model.model_validate(c)))
                except Exception as exc:
                    raise BacktestError(f"strategy {cfg.strategy!r} failed with params {c}: {exc}") from exc
            # combinations with different strategy holding limits run as separate batches
            by_hold: dict[int | None, list[int]] = {}
            for k, s in enumerate(sigs):
                by_hold.setdefault(s.max_hold_bars, []).append(k)
            for hold, idx in by_hold.items():
                opts = sim_options(cfg, ppy, hold)
                use_w = sigs[idx[0]].weights is not None
                if use_w:
                    w = np.stack([np.asarray(sigs[k].weights, dtype=np.float64) for k in idx])
                    e = x = np.zeros((1, n, m), dtype=np.bool_)
                else:
                    e = np.stack([np.asarray(sigs[k].entries, dtype=np.bool_) for k in idx])
                    x = np.stack([np.asarray(sigs[k].exits, dtype=np.bool_) for k in idx])
                    w = np.full((1, n, m), np.nan)
                with _KERNEL_LOCK:
                    res = sweep_signals_nb(mkt, e, x, w, use_w, opts, t_us, ppy)
                out[[start + k for k in idx]] = res
    return out
