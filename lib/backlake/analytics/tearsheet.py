"""Tear-sheet analytics of one backtest, from what the lake stores (pure: frames in, frames out).

- :func:`drawdown_periods`: the worst drawdowns of an equity curve, each with its peak, trough,
  recovery, depth and length (the same underwater runs as ``max_drawdown`` and
  ``max_drawdown_duration_bars`` in :mod:`backlake.metrics`).
- :func:`yearly_returns`: the return of each calendar year, compounded like
  :func:`backlake.metrics.monthly_returns` (a year's last equity over the previous year's last
  equity; the first year from the first bar), so a year is the product of its months.
- :func:`asset_rollup`: per symbol of a universe, from the run's trades and its bars: P&L,
  contribution to the total return, win rate, exposure.
- :func:`asset_correlation`: the correlation of the assets' own close-to-close returns (from the
  ``bars`` the run read), each pair on the dates both have.
- :func:`oos_split`: where a run with in-sample / out-of-sample segments was split.

Example::

    import numpy as np
    eq = np.array([100.0, 110.0, 99.0, 121.0, 110.0])
    ts = np.array(["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04", "2020-01-05"], "datetime64[us]")
    drawdown_periods(eq, ts)   # 2 rows: depth -0.1 (peak Jan 2, trough Jan 3, recovered Jan 4), then
                               # depth -0.0909 (peak Jan 4, trough Jan 5, not recovered)
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from backlake.errors import DataValidationError
from backlake.metrics import _as_ts, _as_values, _longest_runs

__all__ = [
    "DRAWDOWN_COLUMNS", "ASSET_COLUMNS", "drawdown_periods", "yearly_returns", "asset_rollup",
    "asset_correlation", "oos_split",
]

_US_PER_DAY = 86_400 * 1_000_000
_TS = pl.Datetime("us")

#: Columns of :func:`drawdown_periods`.
DRAWDOWN_COLUMNS = ("peak_ts", "trough_ts", "recovery_ts", "depth", "length_bars", "length_days", "recovered")
#: Columns of :func:`asset_rollup`.
ASSET_COLUMNS = ("symbol", "n_trades", "n_closed_trades", "pnl", "contribution", "pnl_share", "win_rate",
                 "exposure", "fees")


def drawdown_periods(equity: np.ndarray, ts: np.ndarray, *, top: int = 5) -> pl.DataFrame:
    """The ``top`` deepest drawdown periods, deepest first (ties: the earlier first).

    A period is a run of bars below the running peak: ``peak_ts`` is the bar before it (the
    peak), ``trough_ts`` its lowest bar (the first, on ties), ``recovery_ts`` the first bar back
    at or above the peak (null when the curve never recovered: ``recovered`` false). ``depth``
    is trough / peak - 1 (a fraction < 0); ``length_bars`` and ``length_days`` run from the peak
    to the recovery, or to the last bar when not recovered (the definition of
    ``max_drawdown_duration_bars`` / ``_days``). Timestamps are naive UTC. Empty when the curve
    never falls below a peak or starts at or below zero.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top={top!r}: give how many drawdown periods to return, a whole number >= 1, e.g. 5")
    eq = _as_values(equity, "equity")
    t = _as_ts(ts, eq.size)
    schema: dict[str, pl.DataType] = {
        "peak_ts": _TS, "trough_ts": _TS, "recovery_ts": _TS, "depth": pl.Float64(), "length_bars": pl.Int64(),
        "length_days": pl.Float64(), "recovered": pl.Boolean(),
    }
    if eq.size == 0 or eq[0] <= 0:
        return pl.DataFrame(schema=schema)
    n = eq.size
    peak = np.maximum.accumulate(eq)
    dd = eq / peak - 1.0
    starts, ends = _longest_runs(eq < peak)
    t_us = t.astype(np.int64)
    rows: list[dict[str, Any]] = []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        trough = s + int(np.argmin(dd[s:e]))
        stop = min(e, n - 1)
        rows.append({
            "peak_ts": _naive(t[s - 1]), "trough_ts": _naive(t[trough]), "recovery_ts": _naive(t[e]) if e < n else None,
            "depth": float(dd[trough]), "length_bars": stop - (s - 1),
            "length_days": float(t_us[stop] - t_us[s - 1]) / _US_PER_DAY, "recovered": e < n,
        })
    rows.sort(key=lambda r: r["depth"])  # stable: equal depths keep time order
    return pl.DataFrame(rows[:top], schema=schema)


def yearly_returns(equity: np.ndarray, ts: np.ndarray) -> pl.DataFrame:
    """Return of each calendar year (UTC): columns ``year``, ``ret`` (fraction).

    A year's return is its last equity over the previous year's last equity, minus 1; the
    first year is measured from the first bar. Years without a bar have no row; ``ret`` is null
    when the base equity is not positive.

    Example: equity ``[100, 110, 99]`` on 2020-01-01, 2020-12-31, 2021-06-30 gives
    ``(2020, 0.10), (2021, -0.10)``.
    """
    eq = _as_values(equity, "equity")
    t = _as_ts(ts, eq.size)
    schema = {"year": pl.Int32, "ret": pl.Float64}
    if eq.size == 0:
        return pl.DataFrame(schema=schema)
    last = (
        pl.DataFrame({"ts": t, "equity": eq})
        .group_by(pl.col("ts").dt.year().alias("year"), maintain_order=True)
        .agg(pl.col("equity").last().alias("last"))
    )
    base = last["last"].shift(1).fill_null(float(eq[0]))
    ret = pl.when(base > 0).then(last["last"] / base - 1.0).otherwise(None)
    return last.with_columns(ret=ret).select(pl.col("year").cast(pl.Int32), pl.col("ret").cast(pl.Float64))


def asset_rollup(trades: pl.DataFrame, ts: np.ndarray, *, initial_cash: float,
                 symbols: Sequence[str] = ()) -> pl.DataFrame:
    """Per symbol: ``n_trades`` (every trade), ``n_closed_trades``, ``pnl`` (sum of every
    trade's pnl, the one open at the end marked to the last close), ``contribution`` (pnl /
    ``initial_cash``: its share of the total return, in return points), ``pnl_share`` (pnl /
    the sum of |pnl| over the symbols, so shares of winners and losers keep their sign; null
    when every symbol made 0), ``win_rate`` (closed trades with pnl > 0 / closed trades; null
    without a closed trade), ``exposure`` (share of the run's bars ``ts`` with a position in
    it: ``entry_ts <= ts < exit_ts``, up to and including the last bar for a trade still open
    at the end, counting a bar once when trades overlap), ``fees``.

    ``trades`` has the ``trades`` table's columns (``symbol, entry_ts, exit_ts, pnl, fees,
    exit_reason``); ``symbols`` lists the universe (symbols without a trade get zero rows),
    in display order after the traded ones sorted by pnl, largest first.
    """
    if not (np.isfinite(initial_cash) and initial_cash > 0):
        raise ValueError(f"initial_cash={initial_cash!r}: must be a finite number > 0 (the run's config)")
    need = ("symbol", "entry_ts", "exit_ts", "pnl", "fees", "exit_reason")
    missing = [c for c in need if c not in trades.columns]
    if missing:
        raise DataValidationError(f"trades lacks column(s) {missing}: pass the trades table's rows")
    bars = np.sort(np.asarray(ts).astype("datetime64[us]"))
    n_bars = bars.size
    names = list(dict.fromkeys([*trades["symbol"].to_list(), *symbols]))
    gross = float(trades.group_by("symbol").agg(pl.col("pnl").sum())["pnl"].abs().sum()) if trades.height else 0.0
    rows: list[dict[str, Any]] = []
    for sym in names:
        tr = trades.filter(pl.col("symbol") == sym)
        closed = tr.filter(pl.col("exit_reason") != "end_of_data")
        held = np.zeros(n_bars, dtype=bool)
        for entry, exit_, reason in zip(tr["entry_ts"].to_list(), tr["exit_ts"].to_list(),
                                        tr["exit_reason"].to_list(), strict=True):
            lo = np.searchsorted(bars, np.datetime64(_naive(entry), "us"), side="left")
            last = exit_ is None or reason == "end_of_data"
            hi = n_bars if exit_ is None else np.searchsorted(
                bars, np.datetime64(_naive(exit_), "us"), side="right" if last else "left")
            held[lo:hi] = True
        pnl = float(tr["pnl"].sum()) if tr.height else 0.0
        rows.append({
            "symbol": sym, "n_trades": tr.height, "n_closed_trades": closed.height, "pnl": pnl,
            "contribution": pnl / initial_cash, "pnl_share": pnl / gross if gross > 0 else None,
            "win_rate": float((closed["pnl"] > 0).mean()) if closed.height else None,  # type: ignore[arg-type]
            "exposure": float(held.mean()) if n_bars else None,
            "fees": float(tr["fees"].fill_null(0.0).sum()) if tr.height else 0.0,
        })
    rows.sort(key=lambda r: -r["pnl"])
    schema: dict[str, pl.DataType] = {
        "symbol": pl.String(), "n_trades": pl.Int64(), "n_closed_trades": pl.Int64(), "pnl": pl.Float64(),
        "contribution": pl.Float64(), "pnl_share": pl.Float64(), "win_rate": pl.Float64(),
        "exposure": pl.Float64(), "fees": pl.Float64(),
    }
    return pl.DataFrame(rows, schema=schema)


def asset_correlation(closes: pl.DataFrame, *, min_common: int = 3) -> pl.DataFrame:
    """Correlation of the close-to-close returns of each symbol in ``closes`` (columns
    ``symbol, ts, close``): a square frame, column ``symbol`` then one column per symbol (in
    first-seen order). A return is ``close[i] / close[i-1] - 1`` on the symbol's own
    consecutive bars; each pair is correlated on the dates both have a return, null below
    ``min_common`` such dates or when either series is constant there. The diagonal is 1 for a
    symbol with a non-constant return series."""
    need = ("symbol", "ts", "close")
    if any(c not in closes.columns for c in need):
        raise DataValidationError(f"closes needs columns {list(need)}, got {closes.columns}")
    syms = list(dict.fromkeys(closes["symbol"].to_list()))
    rets = (
        closes.sort("symbol", "ts")
        .with_columns(ret=(pl.col("close") / pl.col("close").shift(1) - 1.0).over("symbol"))
        .filter(pl.col("ret").is_not_null() & pl.col("ret").is_finite())
        .pivot(on="symbol", index="ts", values="ret")
        .sort("ts")
    )
    out: dict[str, list[float | None]] = {s: [] for s in syms}
    for a in syms:
        for b in syms:
            out[b].append(_pair_corr(rets, a, b, min_common))
    return pl.DataFrame({"symbol": syms, **out}, schema={"symbol": pl.String, **dict.fromkeys(syms, pl.Float64)})


def oos_split(ts: np.ndarray, config: Mapping[str, Any] | str | None) -> dt.datetime | None:
    """The first out-of-sample bar of a run whose metrics have ``is`` / ``oos`` segments, from
    its stored config (``oos_start``, or ``oos_fraction``: the last ``round(n * fraction)`` of
    the run's ``n`` bars, default 0.3; ``backlake.research.optimize.split_timestamp``'s rule)
    and its equity timestamps ``ts`` (sorted). None when there is no split to show."""
    cfg = _config(config)
    t = np.sort(np.asarray(ts).astype("datetime64[us]"))
    n = t.size
    if n < 4:
        return None
    start = cfg.get("oos_start")
    if start:
        try:
            cut = np.datetime64(_naive(dt.datetime.fromisoformat(str(start))), "us")
        except ValueError:
            return None
        k = int((t < cut).sum())
    else:
        frac = cfg.get("oos_fraction", 0.3)
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 < frac < 1:
            return None
        k = n - round(n * frac)
    if not 0 < k < n:
        return None
    return _naive(t[k])


# -- helpers ------------------------------------------------------------------------------------
def _naive(x: Any) -> dt.datetime:
    """A timestamp as a naive UTC datetime."""
    if isinstance(x, np.datetime64):
        x = x.astype("datetime64[us]").astype(dt.datetime)
    if not isinstance(x, dt.datetime):
        x = dt.datetime.combine(x, dt.time())
    out: dt.datetime = x.astimezone(dt.UTC).replace(tzinfo=None) if x.tzinfo else x
    return out


def _config(config: Mapping[str, Any] | str | None) -> dict[str, Any]:
    if isinstance(config, str):
        try:
            loaded = json.loads(config)
        except ValueError:
            return {}
        return loaded if isinstance(loaded, dict) else {}
    return dict(config or {})


def _pair_corr(rets: pl.DataFrame, a: str, b: str, min_common: int) -> float | None:
    if a not in rets.columns or b not in rets.columns:
        return None
    both = rets.select(pl.col(a).alias("a"), pl.col(b).alias("b")).drop_nulls()
    if both.height < min_common:
        return None
    x, y = both["a"].to_numpy(), both["b"].to_numpy()
    if np.std(x) == 0 or np.std(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])
