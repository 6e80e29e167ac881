"""Performance metrics of a backtest: returns, risk, benchmark-relative and trade statistics.

Conventions (every metric's unit is in ``METRIC_UNITS``):

- Returns and drawdowns are fractions (0.12 = 12 %); drawdowns are negative.
- Per-bar returns are the simple returns of the equity curve, ``r[i] = equity[i] /
  equity[i-1] - 1`` (n bars give n - 1 returns). The risk-free rate is 0.
- Ratios and volatilities are annualised with ``periods_per_year`` (see
  ``backlake.calendars``); ``cagr`` and the drawdown duration in days use calendar time
  (a year is 365.25 days).
- ``total_return`` and ``cagr`` are measured from ``initial_cash``; drawdowns from the peaks
  of the equity curve itself (the same as the ``drawdown`` column of the ``equity`` table).
- A value that is undefined is None, never NaN or inf: fewer than 2 returns for a standard
  deviation, zero variance (a standard deviation of at most 1e-12 times the largest absolute
  return, i.e. rounding noise), no losing bar for Sortino/omega, no drawdown for Calmar, no
  (closed) trades for trade statistics, no benchmark or exposure given.
- Missing data is rejected, not skipped: a NaN or infinite value in ``equity``,
  ``benchmark_equity`` or ``exposure``, or in a trade's ``pnl`` / ``return_pct``, raises
  ``DataValidationError`` (a ``ValueError``) naming the input and the first bad position.
  Skipping bars would silently merge two returns into one. Null ``mae`` / ``mfe`` /
  ``bars_held`` values are left out of their averages.
- If the equity curve touches zero or goes negative, per-bar returns stop being defined and
  every returns-based metric is None; ``total_return`` and ``max_drawdown`` still report it.
- Naive timestamps are taken as UTC.

Trade statistics use the closed trades (``exit_reason != "end_of_data"``) except
``n_trades``, which counts every row including the trade still open at the end. A winner is a
trade with ``pnl > 0``, a loser one with ``pnl < 0``; a break-even trade is neither and breaks
both streaks. Streaks follow exit order (``exit_ts``, then ``trade_id``).
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import numpy as np
import polars as pl
from numba import vectorize

from backlake.errors import DataValidationError

__all__ = [
    "HEADLINE_METRICS",
    "METRIC_UNITS",
    "compute_metrics",
    "unit_kind",
    "monthly_returns",
    "segment_metrics",
]

#: The metrics stored on each row of the ``runs`` table.
HEADLINE_METRICS = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "n_trades")

#: Every metric ``compute_metrics`` returns, in display order -> its unit and definition.
METRIC_UNITS: dict[str, str] = {
    # returns and risk, from the equity curve
    "total_return": "fraction; final equity / initial_cash - 1",
    "cagr": "fraction per year; (final equity / initial_cash) ** (1 / years) - 1, "
            "years = (last ts - first ts) / 365.25 days",
    "annual_return": "fraction per year; arithmetic mean of per-bar returns x periods_per_year",
    "annual_volatility": "fraction, annualised; std of per-bar returns (ddof=1) x sqrt(periods_per_year)",
    "sharpe": "ratio, annualised; mean / std (ddof=1) of per-bar returns x sqrt(periods_per_year), risk-free rate 0",
    "sortino": "ratio, annualised; mean of per-bar returns / sqrt(mean(min(r, 0) ** 2) over all bars) "
               "x sqrt(periods_per_year)",
    "calmar": "ratio; cagr / |max_drawdown|",
    "max_drawdown": "fraction, <= 0; lowest equity / running peak - 1",
    "max_drawdown_duration_bars": "bars; longest stretch below a previous peak, from the peak bar to the recovery bar "
                                  "(or the last bar)",
    "max_drawdown_duration_days": "days (calendar, fractional); longest time below a previous peak, from the peak to "
                                  "the recovery (or the last bar)",
    "omega": "ratio; sum of positive per-bar returns / |sum of negative per-bar returns| (threshold 0)",
    "ulcer_index": "fraction; sqrt(mean(drawdown ** 2)) over all bars, drawdown = equity / running peak - 1",
    "tail_ratio": "ratio; |95th percentile| / |5th percentile| of per-bar returns (linear interpolation)",
    # versus the benchmark (None without one)
    "benchmark_return": "fraction; last benchmark value / first benchmark value - 1",
    "benchmark_sharpe": "ratio, annualised; Sharpe of the benchmark's per-bar returns",
    "excess_return": "fraction; total_return - benchmark_return",
    "alpha": "fraction per year; (mean(r) - beta x mean(b)) x periods_per_year, r and b per-bar returns",
    "beta": "ratio; cov(r, b) / var(b), both ddof=1",
    "r_squared": "ratio in [0, 1]; corr(r, b) ** 2",
    "information_ratio": "ratio, annualised; mean(r - b) / std(r - b) (ddof=1) x sqrt(periods_per_year)",
    "tracking_error": "fraction, annualised; std(r - b) (ddof=1) x sqrt(periods_per_year)",
    # trades (closed trades unless stated)
    "n_trades": "count; every trade, including one still open at the end",
    "n_closed_trades": "count; trades with exit_reason != 'end_of_data'",
    "win_rate": "fraction; share of closed trades with pnl > 0",
    "profit_factor": "ratio; gross profit / gross loss of closed-trade pnl (None without a loss)",
    "avg_trade_return": "fraction; mean return_pct of closed trades",
    "avg_trade_pnl": "currency of initial_cash; mean pnl of closed trades",
    "avg_winner": "fraction; mean return_pct of closed trades with pnl > 0",
    "avg_loser": "fraction; mean return_pct of closed trades with pnl < 0",
    "best_trade": "fraction; highest return_pct of a closed trade",
    "worst_trade": "fraction; lowest return_pct of a closed trade",
    "avg_bars_held": "bars; mean bars_held of closed trades",
    "max_consecutive_wins": "count; longest run of winners in exit order",
    "max_consecutive_losses": "count; longest run of losers in exit order",
    "avg_mae": "fraction of entry price; mean maximum adverse excursion of closed trades",
    "avg_mfe": "fraction of entry price; mean maximum favourable excursion of closed trades",
    "exposure_time": "fraction; share of bars with non-zero gross exposure (None without exposure)",
}

#: The one noise rule of every Sharpe, Sortino, volatility and std in backlake (compiled sweep
#: kernels, Monte Carlo paths and overfitting scores included): a std at most this times the
#: largest |value| is rounding noise, i.e. exactly zero.
NOISE_RTOL = 1e-12


@vectorize(["float64(float64, float64)"], cache=True)  # type: ignore[no-untyped-call, untyped-decorator]  # numba is untyped
def denoise_std(sd: float, max_abs: float) -> float:
    """``sd``, or exactly 0.0 when it is rounding noise next to ``max_abs`` (the largest
    absolute value of the series); a ufunc, usable on arrays and inside numba kernels."""
    return 0.0 if sd <= NOISE_RTOL * max_abs else sd

_US_PER_DAY = 86_400 * 1_000_000
_US_PER_YEAR = 365.25 * _US_PER_DAY
_TRADE_NEEDS = ("exit_ts", "pnl", "return_pct", "bars_held", "mae", "mfe", "exit_reason")


# ---------------------------------------------------------------------------------------------
def unit_kind(name: str) -> str:
    """How metric ``name`` is displayed, from its unit in :data:`METRIC_UNITS`: ``pct``
    (fractions), ``ratio``, ``count`` (trades, bars), ``days``, ``money`` (currency, and every
    cost or P&L figure without a unit of its own) or ``num`` (anything else). The CLI and the
    pages format numbers by this one map."""
    unit = METRIC_UNITS.get(name, "")
    if not unit:
        return "money" if "cost" in name or name.endswith("pnl") else "num"
    head = unit.split(";")[0]
    for prefix, kind in (("fraction", "pct"), ("ratio", "ratio"), ("count", "count"), ("bars", "count"),
                         ("days", "days"), ("currency", "money")):
        if head.startswith(prefix):
            return kind
    return "num"


# public API


def compute_metrics(
    equity: np.ndarray,
    ts: np.ndarray,
    trades: pl.DataFrame,
    periods_per_year: float,
    initial_cash: float,
    *,
    benchmark_equity: np.ndarray | None = None,
    exposure: np.ndarray | None = None,
) -> dict[str, float | None]:
    """Every metric of ``METRIC_UNITS`` (same keys, same order) for one run.

    Args:
        equity: portfolio value per bar, float64, e.g. ``[100_000.0, 100_250.0, ...]``.
        ts: the bars' timestamps, datetime64 (naive = UTC), sorted ascending, same length.
        trades: the trades table (columns of ``engine.result.TRADE_COLUMNS``); may be empty.
        periods_per_year: bars per year, e.g. 252 for daily equities (``calendars.periods_per_year``).
        initial_cash: the starting capital that ``total_return`` and ``cagr`` are measured from.
        benchmark_equity: the benchmark's value per bar (same length), or None.
        exposure: gross exposure per bar as a fraction of equity (same length), or None.

    Returns:
        ``{name: value}``; undefined values are None (see the module docstring).

    Raises:
        DataValidationError: non-finite inputs, mismatched lengths, unsorted ``ts``.
        ValueError: ``periods_per_year`` or ``initial_cash`` not finite and positive.

    Example::

        m = compute_metrics(equity, ts, trades, 252.0, 100_000.0)
        m["sharpe"], m["max_drawdown"]
    """
    eq, t, bench, expo = _inputs(equity, ts, periods_per_year, initial_cash, benchmark_equity, exposure)
    return _metrics(eq, t, trades, float(periods_per_year), float(initial_cash), bench, expo)


def monthly_returns(equity: np.ndarray, ts: np.ndarray) -> pl.DataFrame:
    """Return of each calendar month (UTC): columns ``year``, ``month`` (1-12), ``ret`` (fraction).

    A month's return compounds every bar inside it: its last equity over the previous month's
    last equity, minus 1. The first month is measured from the first bar. Months without a bar
    have no row. ``ret`` is null if the base equity is not positive.

    Example: equity ``[100, 110]`` on Jan 31 and Feb 28 gives ``(Jan, 0.0), (Feb, 0.10)``.
    """
    eq = _as_values(equity, "equity")
    t = _as_ts(ts, eq.size)
    schema = {"year": pl.Int32, "month": pl.Int32, "ret": pl.Float64}
    if eq.size == 0:
        return pl.DataFrame(schema=schema)
    last = (
        pl.DataFrame({"ts": t, "equity": eq})
        .group_by(pl.col("ts").dt.year().alias("year"), pl.col("ts").dt.month().alias("month"), maintain_order=True)
        .agg(pl.col("equity").last().alias("last"))
    )
    base = last["last"].shift(1).fill_null(float(eq[0]))
    ret = pl.when(base > 0).then(last["last"] / base - 1.0).otherwise(None)
    return last.with_columns(ret=ret).select(
        pl.col("year").cast(pl.Int32), pl.col("month").cast(pl.Int32), pl.col("ret").cast(pl.Float64)
    )


def segment_metrics(
    equity: np.ndarray,
    ts: np.ndarray,
    trades: pl.DataFrame,
    periods_per_year: float,
    initial_cash: float,
    *,
    split: datetime | date,
    benchmark_equity: np.ndarray | None = None,
    exposure: np.ndarray | None = None,
) -> dict[str, dict[str, float | None]]:
    """Metrics of the whole run and of its in-sample / out-of-sample parts.

    Returns ``{"full": ..., "is": ..., "oos": ...}``, each as from ``compute_metrics``.
    IS holds the bars with ``ts < split``, OOS those with ``ts >= split`` (a ``date`` means
    its midnight; an aware ``datetime`` is converted to UTC). Each segment is measured on its
    own bars only: IS starts where the run starts, so it is rebased to ``initial_cash`` like
    the full run; OOS is rebased to the equity of its first bar, so the return of the boundary
    bar (last IS bar -> first OOS bar) belongs to neither segment. Benchmark and exposure are
    cut the same way. A segment's trades are those whose ``entry_ts`` falls in it (a trade
    entered in IS and exited in OOS counts in IS, with its whole pnl). A segment without bars
    has every equity metric None.

    Example::

        seg = segment_metrics(eq, ts, trades, 252.0, 1e5, split=date(2020, 1, 1))
        seg["oos"]["sharpe"]
    """
    eq, t, bench, expo = _inputs(equity, ts, periods_per_year, initial_cash, benchmark_equity, exposure)
    ppy, cash = float(periods_per_year), float(initial_cash)
    cut = _split_ts(split)
    k = int(np.searchsorted(t, cut, side="left"))  # t is sorted: bars [0, k) are IS, [k, n) OOS

    if trades.height:
        if "entry_ts" not in trades.columns or not trades["entry_ts"].dtype.is_temporal():
            raise DataValidationError(
                "trades needs a datetime 'entry_ts' column: segment_metrics assigns trades to segments by entry time"
            )
        entry_us, cut_us = pl.col("entry_ts").dt.epoch("us"), int(cut.astype(np.int64))
        is_trades, oos_trades = trades.filter(entry_us < cut_us), trades.filter(entry_us >= cut_us)
    else:
        is_trades = oos_trades = trades

    def part(sl: slice, tr: pl.DataFrame, start: float) -> dict[str, float | None]:
        return _metrics(
            eq[sl], t[sl], tr, ppy, start,
            None if bench is None else bench[sl], None if expo is None else expo[sl],
        )

    oos_start = float(eq[k]) if k < eq.size else cash
    return {
        "full": _metrics(eq, t, trades, ppy, cash, bench, expo),
        "is": part(slice(0, k), is_trades, cash),
        "oos": part(slice(k, None), oos_trades, oos_start),
    }


# ---------------------------------------------------------------------------------------------
# validation


def _inputs(
    equity: np.ndarray, ts: np.ndarray, periods_per_year: float, initial_cash: float,
    benchmark_equity: np.ndarray | None, exposure: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Validated (equity, ts, benchmark or None, exposure or None) arrays."""
    _check_positive("initial_cash", initial_cash)
    _check_positive("periods_per_year", periods_per_year)
    eq = _as_values(equity, "equity")
    t = _as_ts(ts, eq.size)
    bench = None if benchmark_equity is None else _as_values(benchmark_equity, "benchmark_equity", eq.size)
    expo = None if exposure is None else _as_values(exposure, "exposure", eq.size)
    return eq, t, bench, expo


def _check_positive(name: str, value: float) -> None:
    try:
        ok = math.isfinite(value) and value > 0
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"{name}={value!r}: must be a finite number > 0")


def _as_values(x: np.ndarray, name: str, n: int | None = None) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise DataValidationError(f"{name} must be one-dimensional (one value per bar), got shape {arr.shape}")
    if n is not None and arr.size != n:
        raise DataValidationError(f"{name} has {arr.size} values but equity has {n}: give one value per bar")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise DataValidationError(
            f"{name} has {int(bad.sum())} NaN/inf value(s), the first at bar {int(np.argmax(bad))}: "
            "metrics need a finite value on every bar; fill or drop those bars first"
        )
    return arr


def _as_ts(ts: np.ndarray, n: int) -> np.ndarray:
    try:
        arr = np.asarray(ts).astype("datetime64[us]")
    except (TypeError, ValueError) as e:
        raise DataValidationError(f"ts must be datetime64 values (one per bar): {e}") from e
    if arr.ndim != 1 or arr.size != n:
        raise DataValidationError(f"ts has shape {arr.shape} but equity has {n} values: give one timestamp per bar")
    if np.isnat(arr).any():
        raise DataValidationError(f"ts has a missing timestamp (NaT) at bar {int(np.argmax(np.isnat(arr)))}")
    if n > 1 and (np.diff(arr.astype(np.int64)) < 0).any():
        raise DataValidationError("ts is not sorted ascending: sort the bars by ts before computing metrics")
    return arr


def _split_ts(split: datetime | date) -> np.datetime64:
    if isinstance(split, datetime):
        if split.tzinfo is not None:
            split = split.astimezone(UTC).replace(tzinfo=None)
        return np.datetime64(split, "us")
    if isinstance(split, date):
        day: np.datetime64 = np.datetime64(split, "D").astype("datetime64[us]")
        return day
    if isinstance(split, np.datetime64):
        return split.astype("datetime64[us]")
    raise TypeError(f"split={split!r}: expected a datetime or a date")


# ---------------------------------------------------------------------------------------------
# kernels (arrays in, floats or None out)


def _metrics(
    eq: np.ndarray,
    t: np.ndarray,
    trades: pl.DataFrame,
    ppy: float,
    cash: float,
    bench: np.ndarray | None,
    expo: np.ndarray | None,
) -> dict[str, float | None]:
    out: dict[str, float | None] = dict.fromkeys(METRIC_UNITS)
    r = _returns(eq)
    out.update(_return_metrics(eq, t, r, ppy, cash))
    if bench is not None:
        out.update(_benchmark_metrics(r, bench, ppy, out["total_return"]))
    out.update(_trade_metrics(trades))
    if expo is not None and expo.size:
        out["exposure_time"] = float(np.mean(np.abs(expo) > 0))
    return {k: _finite(v) for k, v in out.items()}


def _finite(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _returns(x: np.ndarray) -> np.ndarray | None:
    """Simple per-bar returns; None when a base value is not positive (returns undefined)."""
    if x.size < 2:
        return np.empty(0)
    prev = x[:-1]
    if (prev <= 0).any():
        return None
    r: np.ndarray = x[1:] / prev - 1.0
    return r


def _std(r: np.ndarray) -> float | None:
    """Sample std (ddof=1); None below 2 values; exactly 0.0 when it is rounding noise."""
    if r.size < 2:
        return None
    return float(denoise_std(float(np.std(r, ddof=1)), float(np.max(np.abs(r)))))


def _sharpe(r: np.ndarray | None, ppy: float) -> float | None:
    if r is None:
        return None
    sd = _std(r)
    return float(np.mean(r)) / sd * math.sqrt(ppy) if sd else None


def _cagr(growth: float, years: float) -> float | None:
    if years <= 0 or growth < 0:
        return None
    if growth == 0:
        return -1.0
    exponent = math.log(growth) / years
    return math.expm1(exponent) if exponent < 700 else None  # beyond that the value overflows


def _longest_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) indices of each run of True in ``mask``."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def _longest_run(mask: np.ndarray) -> int:
    starts, ends = _longest_runs(mask)
    return int((ends - starts).max()) if starts.size else 0


def _return_metrics(
    eq: np.ndarray, t: np.ndarray, r: np.ndarray | None, ppy: float, cash: float
) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    n = eq.size
    if n == 0:
        return out
    growth = float(eq[-1]) / cash if cash > 0 else math.nan
    out["total_return"] = growth - 1.0
    years = float((t[-1] - t[0]).astype(np.int64)) / _US_PER_YEAR
    out["cagr"] = _cagr(growth, years) if math.isfinite(growth) else None

    if eq[0] > 0:  # drawdowns are measured from positive peaks
        peak = np.maximum.accumulate(eq)
        dd = eq / peak - 1.0
        out["max_drawdown"] = mdd = float(dd.min())
        out["ulcer_index"] = math.sqrt(float(np.mean(dd**2)))
        starts, ends = _longest_runs(eq < peak)  # underwater runs; the bar before each is its peak
        if starts.size:
            stop = np.minimum(ends, n - 1)  # recovery bar, or the last bar if never recovered
            t_us = t.astype(np.int64)
            out["max_drawdown_duration_bars"] = float((stop - (starts - 1)).max())
            out["max_drawdown_duration_days"] = float((t_us[stop] - t_us[starts - 1]).max()) / _US_PER_DAY
        else:
            out["max_drawdown_duration_bars"] = out["max_drawdown_duration_days"] = 0.0
        if out["cagr"] is not None and mdd < 0:
            out["calmar"] = out["cagr"] / abs(mdd)

    if r is None or r.size == 0:
        return out
    mean = float(np.mean(r))
    out["annual_return"] = mean * ppy
    sd = _std(r)
    if sd is not None:
        out["annual_volatility"] = sd * math.sqrt(ppy)
        out["sharpe"] = _sharpe(r, ppy)
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    if downside > 0:
        out["sortino"] = mean * ppy / (downside * math.sqrt(ppy))
    losses = -float(r[r < 0].sum())
    if losses > 0:
        out["omega"] = float(r[r > 0].sum()) / losses
    p5 = abs(float(np.percentile(r, 5)))
    if p5 > 0:
        out["tail_ratio"] = abs(float(np.percentile(r, 95))) / p5
    return out


def _benchmark_metrics(
    r: np.ndarray | None, bench: np.ndarray, ppy: float, total_return: float | None
) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    if bench.size == 0:
        return out
    if bench[0] > 0:
        out["benchmark_return"] = bench_return = float(bench[-1] / bench[0] - 1.0)
        if total_return is not None:
            out["excess_return"] = total_return - bench_return
    b = _returns(bench)
    out["benchmark_sharpe"] = _sharpe(b, ppy)
    if r is None or b is None or r.size < 2:
        return out
    active = r - b
    sd_a = _std(active)
    assert sd_a is not None  # r.size >= 2, so active has at least 2 values
    out["tracking_error"] = sd_a * math.sqrt(ppy)
    if sd_a:
        out["information_ratio"] = float(np.mean(active)) / sd_a * math.sqrt(ppy)
    sd_b, sd_r = _std(b), _std(r)
    if sd_b:
        cov = float(np.sum((r - r.mean()) * (b - b.mean()))) / (r.size - 1)
        beta = cov / sd_b**2
        out["beta"] = beta
        out["alpha"] = (float(np.mean(r)) - beta * float(np.mean(b))) * ppy
        if sd_r:
            out["r_squared"] = min(1.0, (cov / (sd_r * sd_b)) ** 2)
    return out


def _trade_metrics(trades: pl.DataFrame) -> dict[str, float | None]:
    out: dict[str, float | None] = {"n_trades": float(trades.height), "n_closed_trades": 0.0}
    if trades.height == 0:
        return out
    missing = [c for c in _TRADE_NEEDS if c not in trades.columns]
    if missing:
        raise DataValidationError(
            f"trades is missing column(s) {missing}: expected the columns of engine.result.TRADE_COLUMNS"
        )
    for col in ("pnl", "return_pct"):
        bad = trades[col].cast(pl.Float64).fill_null(math.nan).to_numpy()
        if not np.isfinite(bad).all():
            i = int(np.argmax(~np.isfinite(bad)))
            raise DataValidationError(
                f"trades.{col} has a null/NaN/inf value (row {i}): every trade needs a finite {col}"
            )

    order = ["exit_ts", "trade_id"] if "trade_id" in trades.columns else ["exit_ts"]
    closed = trades.filter(pl.col("exit_reason").ne_missing("end_of_data")).sort(
        order, nulls_last=True, maintain_order=True
    )
    out["n_closed_trades"] = float(closed.height)
    if closed.height == 0:
        return out

    pnl = closed["pnl"].cast(pl.Float64).to_numpy()
    ret = closed["return_pct"].cast(pl.Float64).to_numpy()
    win, loss = pnl > 0, pnl < 0
    out["win_rate"] = float(win.mean())
    gross_loss = -float(pnl[loss].sum())
    if gross_loss > 0:
        out["profit_factor"] = float(pnl[win].sum()) / gross_loss
    out["avg_trade_return"] = float(ret.mean())
    out["avg_trade_pnl"] = float(pnl.mean())
    out["avg_winner"] = float(ret[win].mean()) if win.any() else None
    out["avg_loser"] = float(ret[loss].mean()) if loss.any() else None
    out["best_trade"] = float(ret.max())
    out["worst_trade"] = float(ret.min())
    out["max_consecutive_wins"] = float(_longest_run(win))
    out["max_consecutive_losses"] = float(_longest_run(loss))
    for col, name in (("bars_held", "avg_bars_held"), ("mae", "avg_mae"), ("mfe", "avg_mfe")):
        vals = closed[col].cast(pl.Float64).fill_nan(None).drop_nulls()
        mean = vals.mean()  # Float64 without nulls: a float, None when empty
        out[name] = float(mean) if vals.len() and isinstance(mean, float) else None
    return out
