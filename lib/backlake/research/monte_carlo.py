"""Monte Carlo robustness: how different could a backtest have looked by chance?

Each method turns one base backtest into ``n_paths`` alternative equity paths and reports
per path ``total_return`` (fraction, from ``initial_cash``), ``max_drawdown`` (fraction <= 0,
from the path's own running peak) and ``sharpe`` (annualised, risk-free 0; null when the
path's returns have no variance):

- ``trade_bootstrap``: draw as many closed trades as the base had, with replacement, and
  compound their ``return_pct`` in sequence from ``initial_cash`` (as if each trade were fully
  invested, one at a time). The path has one point per trade, so ``sharpe`` is over per-trade
  returns, annualised by the base's trades per year (closed trades / calendar years covered).
- ``return_shuffle``: permute the base equity's per-bar returns. The total return is the
  same product on every path (up to rounding); the order, hence the drawdown, changes.
- ``block_bootstrap``: rebuild the per-bar return series from contiguous blocks of
  ``block_size`` returns starting at uniform positions, wrapping around the end (circular),
  cut to the original length; keeps short-range autocorrelation.
- ``random_entry``: re-price every trade's entry uniformly within its entry bar's
  [low, high], same quantity and same exit. A trade's P&L moves by
  ``-sign * qty * (new entry - entry)`` and the base equity moves by that from its entry bar
  on. Approximation: fees, sizing and the cash constraint are those of the original fill, and
  stops/exits are not re-evaluated.

The per-bar methods start each path at the base's first equity value and annualise with the
config's periods per year. Paths are seeded: the same (seed, method, n_paths, block_size)
gives the same frame.

Fan-out: :func:`simulate_paths` is one seed chunk (a small frame out), :func:`summarize` the
aggregate; :func:`monte_carlo` runs the base backtest once and both.

Example::

    mc = monte_carlo(cfg, bars, method="block_bootstrap", n_paths=1000, seeds=(0, 1))
    mc.summary.ci["max_drawdown"], mc.summary.prob_ruin
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import polars as pl

from backlake._suggest import unknown_name_message
from backlake.calendars import calendar_of, periods_per_year
from backlake.config import BacktestConfig
from backlake.engine.core import run_backtest
from backlake.engine.result import BacktestResult
from backlake.errors import ConfigError
from backlake.metrics import denoise_std

__all__ = [
    "check_args", "METHODS", "PATH_METRICS", "McSummary", "MonteCarloResult", "simulate_paths", "summarize",
    "monte_carlo",
]

METHODS: tuple[str, ...] = ("trade_bootstrap", "return_shuffle", "block_bootstrap", "random_entry")
PATH_METRICS: tuple[str, ...] = ("total_return", "max_drawdown", "sharpe")
_CHUNK = 256  # paths simulated per vectorised batch (bounds memory)
_US_PER_YEAR = 365.25 * 86_400 * 1_000_000

# (rng, k) -> k rows of paths (equity, or equity shifts), one column per point
_Draw: TypeAlias = Callable[[np.random.Generator, int], np.ndarray]


@dataclass(frozen=True)
class McSummary:
    """``ci``: metric -> (low, median, high) over the paths, low/high the (1 - confidence) / 2
    and (1 + confidence) / 2 quantiles (linear interpolation; null paths left out; None when
    every path is null). ``prob_ruin``: share of paths with ``max_drawdown <= -ruin_drawdown``."""

    ci: dict[str, tuple[float | None, float | None, float | None]]
    prob_ruin: float
    n_paths: int
    confidence: float
    ruin_drawdown: float


@dataclass(frozen=True)
class MonteCarloResult:
    """``base``: the backtest simulated; ``paths``: seed, path, total_return, max_drawdown,
    sharpe (one row per path and seed); ``summary``: over all of them."""

    base: BacktestResult
    method: str
    paths: pl.DataFrame
    summary: McSummary


def simulate_paths(
    base: BacktestResult,
    bars: pl.DataFrame | None,
    *,
    method: str,
    n_paths: int,
    seed: int,
    block_size: int = 20,
) -> pl.DataFrame:
    """``n_paths`` alternative paths of ``base`` by ``method`` (see the module docstring).

    ``bars``: the bars the base ran on (needed by ``random_entry`` only, for entry bars'
    low/high). ``block_size``: returns per block (``block_bootstrap``), 1..n_returns.
    Returns columns path (0..n_paths-1), total_return, max_drawdown, sharpe.

    Example::

        simulate_paths(res, bars, method="return_shuffle", n_paths=500, seed=3)
    """
    _check_common(method, n_paths, block_size)
    check_whole_number("seed", seed, 0, "e.g. 0")
    draw, per_year = _path_maker(base, bars, method, block_size)
    rng = np.random.default_rng(seed)
    parts = [_path_stats(draw(rng, min(_CHUNK, n_paths - lo)), base.config.initial_cash, per_year)
             for lo in range(0, n_paths, _CHUNK)]
    tr, dd, sh = (np.concatenate(x) for x in zip(*parts))
    return pl.DataFrame({
        "path": np.arange(n_paths, dtype=np.int64), "total_return": tr, "max_drawdown": dd, "sharpe": sh,
    }).fill_nan(None)


def summarize(paths: pl.DataFrame, *, confidence: float = 0.95, ruin_drawdown: float = 0.5) -> McSummary:
    """Confidence intervals and probability of ruin over simulated paths.

    ``confidence``: in (0, 1), e.g. 0.95 for the 2.5 % .. 97.5 % quantiles; ``ruin_drawdown``:
    a fraction in (0, 1], e.g. 0.5 = a 50 % drawdown counts as ruin.

    Example::

        s = summarize(simulate_paths(res, bars, method="block_bootstrap", n_paths=1000, seed=0))
        low, median, high = s.ci["total_return"]
    """
    _check_summary_args(confidence, ruin_drawdown)
    missing = [c for c in PATH_METRICS if c not in paths.columns]
    if missing or paths.is_empty():
        raise ConfigError(
            f"paths needs rows with columns {list(PATH_METRICS)} (missing {missing}): pass simulate_paths' frame"
        )
    q = ((1 - confidence) / 2, 0.5, (1 + confidence) / 2)
    ci: dict[str, tuple[float | None, float | None, float | None]] = {}
    for name in PATH_METRICS:
        v = paths[name].cast(pl.Float64).fill_nan(None).drop_nulls().to_numpy()
        if v.size:
            low, median, high = (float(x) for x in np.quantile(v, q))
            ci[name] = (low, median, high)
        else:
            ci[name] = (None, None, None)
    dd = paths["max_drawdown"].cast(pl.Float64).fill_nan(None).fill_null(0.0).to_numpy()
    return McSummary(ci, float(np.mean(dd <= -ruin_drawdown)), paths.height, confidence, ruin_drawdown)


def monte_carlo(
    cfg: BacktestConfig,
    bars: pl.DataFrame,
    *,
    method: str,
    n_paths: int = 1000,
    seeds: Sequence[int] = (0,),
    block_size: int = 20,
    confidence: float = 0.95,
    ruin_drawdown: float = 0.5,
    validated: bool = False,
) -> MonteCarloResult:
    """Run ``cfg`` once, simulate ``n_paths`` per seed, summarise all of them. ``validated``:
    ``bars`` were read from the lake (see ``run_backtest``).

    Example::

        monte_carlo(cfg, bars, method="trade_bootstrap", n_paths=2000, seeds=(0, 1, 2)).summary
    """
    seeds = check_args(method=method, n_paths=n_paths, seeds=seeds, block_size=block_size, confidence=confidence,
                       ruin_drawdown=ruin_drawdown)
    base = run_backtest(cfg, bars, validated=validated)
    frames = [
        simulate_paths(base, bars, method=method, n_paths=n_paths, seed=s, block_size=block_size)
        .select(pl.lit(s, dtype=pl.Int64).alias("seed"), pl.all())
        for s in seeds
    ]
    paths = pl.concat(frames)
    return MonteCarloResult(base, method, paths, summarize(paths, confidence=confidence, ruin_drawdown=ruin_drawdown))


# ---------------------------------------------------------------------------------------------
# path generation (arrays in, arrays out)


def _path_maker(
    base: BacktestResult, bars: pl.DataFrame | None, method: str, block_size: int
) -> tuple[_Draw, float]:
    """Check the base has what ``method`` needs; return (draw(rng, k) -> (k, n_points) equity
    paths, points per year for the Sharpe)."""
    cfg = base.config
    if method == "trade_bootstrap":
        trade_r, per_year = _trade_inputs(base)
        n = trade_r.size
        return lambda rng, k: _compound(trade_r[rng.integers(0, n, (k, n))], cfg.initial_cash), per_year
    ppy = periods_per_year(cfg.timeframe, calendar_of(cfg.symbols[0]))
    eq = base.equity["equity"].to_numpy()
    r = eq[1:] / eq[:-1] - 1.0
    if r.size < 2:
        raise ConfigError(f"the base backtest has {eq.size} bar(s): {method} needs at least 3")
    if method == "return_shuffle":
        return lambda rng, k: _compound(rng.permuted(np.tile(r, (k, 1)), axis=1), eq[0]), ppy
    if method == "block_bootstrap":
        if block_size > r.size:
            raise ConfigError(
                f"block_size={block_size} is longer than the {r.size} per-bar returns: use at most {r.size}"
            )
        return lambda rng, k: _compound(r[_block_indices(r.size, block_size, k, rng)], eq[0]), ppy
    shifts = _entry_shifts(base, bars)  # random_entry
    return lambda rng, k: eq[None, :] - shifts(rng, k), ppy


def _compound(r: np.ndarray, start: float) -> np.ndarray:
    """(k, n) returns -> (k, n + 1) equity paths starting at ``start``."""
    growth = np.cumprod(1.0 + r, axis=1)
    return start * np.hstack([np.ones((r.shape[0], 1)), growth])


def _block_indices(n: int, block: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """(k, n) indices: ceil(n / block) circular blocks per path, cut to n."""
    n_blocks = -(-n // block)
    starts = rng.integers(0, n, (k, n_blocks))
    idx = (starts[:, :, None] + np.arange(block)[None, None, :]) % n
    return idx.reshape(k, n_blocks * block)[:, :n]


def _path_stats(eq: np.ndarray, initial_cash: float, per_year: float) -> tuple[np.ndarray, ...]:
    """(total_return, max_drawdown, sharpe) of each row of equity paths (k, n_points)."""
    total = eq[:, -1] / initial_cash - 1.0
    peak = np.maximum.accumulate(eq, axis=1)
    mdd = (eq / peak - 1.0).min(axis=1)
    r = eq[:, 1:] / eq[:, :-1] - 1.0
    if r.shape[1] < 2:
        return total, mdd, np.full(eq.shape[0], np.nan)
    sd = denoise_std(r.std(axis=1, ddof=1), np.abs(r).max(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = np.where(sd > 0, r.mean(axis=1) / sd * math.sqrt(per_year), np.nan)
    return total, mdd, sharpe


def _trade_inputs(base: BacktestResult) -> tuple[np.ndarray, float]:
    """Closed trades' return_pct and closed trades per calendar year of the base period."""
    closed = base.trades.filter(pl.col("exit_reason") != "end_of_data")
    if closed.is_empty():
        raise ConfigError(
            "the base backtest has no closed trade: trade_bootstrap needs at least one (use another method)"
        )
    ts = base.equity["ts"]
    years = (ts[-1] - ts[0]).total_seconds() * 1e6 / _US_PER_YEAR
    return closed["return_pct"].to_numpy(), closed.height / years if years > 0 else float(closed.height)


def _entry_shifts(base: BacktestResult, bars: pl.DataFrame | None) -> _Draw:
    """A function (rng, k) -> (k, n_bars) equity shifts from re-priced entries."""
    low, high, entry, signed_qty, entry_idx = _entry_inputs(base, bars)
    n_bars = base.equity.height

    def shifts(rng: np.random.Generator, k: int) -> np.ndarray:
        prices = _random_prices(low, high, k, rng)
        delta = signed_qty[None, :] * (prices - entry[None, :])  # extra cost of each new entry
        out = np.zeros((k, n_bars))
        np.add.at(out, (slice(None), entry_idx), delta)  # type: ignore[arg-type]  # numpy's stub omits tuple indices
        return np.cumsum(out, axis=1)

    return shifts


def _random_prices(low: np.ndarray, high: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """(k, n_trades) entry prices uniform in each trade's entry bar [low, high]."""
    prices: np.ndarray = low[None, :] + rng.random((k, low.size)) * (high - low)[None, :]
    return prices


def _entry_inputs(
    base: BacktestResult, bars: pl.DataFrame | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per trade: entry bar low, high, entry price, signed qty, entry bar position."""
    if bars is None:
        raise ConfigError("random_entry needs the bars the base ran on (their low/high): pass bars")
    trades = base.trades
    if trades.is_empty():
        raise ConfigError("the base backtest has no trade: random_entry has nothing to re-price (use another method)")
    if "timeframe" in bars.columns:
        bars = bars.filter(pl.col("timeframe") == base.config.timeframe)
    ranges = bars.select(
        "symbol", pl.col("ts").cast(trades["entry_ts"].dtype).alias("entry_ts"), "low", "high",
    ).unique(["symbol", "entry_ts"], keep="first")
    joined = trades.join(ranges, on=["symbol", "entry_ts"], how="left", maintain_order="left")
    if joined["low"].null_count():
        row = joined.filter(pl.col("low").is_null()).row(0, named=True)
        raise ConfigError(
            f"bars has no {row['symbol']} bar at {row['entry_ts']} (the entry of trade {row['trade_id']}): "
            "pass the bars the base backtest ran on"
        )
    ts = base.equity["ts"]
    idx = np.searchsorted(ts.to_physical().to_numpy(), joined["entry_ts"].to_physical().to_numpy())
    sign = np.where(joined["direction"].to_numpy() == "long", 1.0, -1.0)
    return (joined["low"].to_numpy(), joined["high"].to_numpy(), joined["entry_price"].to_numpy(),
            sign * joined["qty"].to_numpy(), idx)


# ---------------------------------------------------------------------------------------------
# validation


#: Paths per seed at most (each path redraws the whole return series).
MAX_PATHS = 1_000_000


def check_args(
    *, method: str, n_paths: int, seeds: Sequence[int], block_size: int, confidence: float, ruin_drawdown: float,
) -> list[int]:
    """Every check of a Monte Carlo job's arguments (ConfigError naming the field); the seeds."""
    _check_common(method, n_paths, block_size)
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence):
        raise ConfigError(f"seeds={seeds!r} must be a list of whole numbers, e.g. [0, 1, 2]")
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds={seeds!r} must list at least one seed, each once, e.g. (0, 1, 2)")
    for s in seeds:
        check_whole_number("seeds[]", s, 0, "e.g. (0, 1, 2)", 2**32 - 1)
    _check_summary_args(confidence, ruin_drawdown)
    return seeds


def _check_common(method: str, n_paths: int, block_size: int) -> None:
    if method not in METHODS:
        raise ConfigError("method: " + unknown_name_message("method", str(method), METHODS))
    check_whole_number("n_paths", n_paths, 1, "e.g. 1000", MAX_PATHS)
    check_whole_number("block_size", block_size, 1, "returns per block, e.g. 20")


def _check_summary_args(confidence: float, ruin_drawdown: float) -> None:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ConfigError(f"confidence={confidence!r} must be strictly between 0 and 1, e.g. 0.95")
    if isinstance(ruin_drawdown, bool) or not isinstance(ruin_drawdown, (int, float)) or not 0 < ruin_drawdown <= 1:
        raise ConfigError(f"ruin_drawdown={ruin_drawdown!r} must be a fraction in (0, 1], e.g. 0.5 for a 50 % drawdown")


def check_whole_number(name: str, value: object, minimum: int, example: str, maximum: int | None = None) -> None:
    """ConfigError unless ``value`` is a whole number (not a bool) >= ``minimum`` (and <= ``maximum``)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name}={value!r} must be a whole number >= {minimum}, {example}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={value!r} is more than {maximum:,}: use {minimum} to {maximum:,}, {example}")
