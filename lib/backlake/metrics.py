"""Performance metrics. Units: returns and drawdowns are fractions (0.12 = 12 %), drawdowns are
negative; ratios are annualised with ``periods_per_year`` (see ``backlake.calendars``); the
risk-free rate is 0."""

from __future__ import annotations

import math

import numpy as np
import polars as pl

__all__ = ["compute_metrics", "HEADLINE_METRICS"]

HEADLINE_METRICS = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "n_trades")


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def compute_metrics(
    equity: np.ndarray,
    ts: np.ndarray,
    trades: pl.DataFrame,
    periods_per_year: float,
    initial_cash: float,
) -> dict[str, float | None]:
    """Metrics from an equity curve (one value per bar) and the trades table.

    ``ts`` is datetime64; CAGR uses the calendar time from the first to the last bar.
    A metric that is undefined (e.g. Sharpe of a flat curve) is None.
    """
    equity = np.asarray(equity, dtype=np.float64)
    out: dict[str, float | None] = {}
    final = equity[-1] if equity.size else initial_cash
    out["total_return"] = _finite(final / initial_cash - 1.0)

    years = 0.0
    if equity.size > 1:
        span = (ts[-1] - ts[0]) / np.timedelta64(1, "s")
        years = float(span) / (365.25 * 86_400)
    out["cagr"] = _finite((final / initial_cash) ** (1.0 / years) - 1.0) if years > 0 and final > 0 else None

    rets = np.diff(equity) / equity[:-1] if equity.size > 1 else np.empty(0)
    rets = rets[np.isfinite(rets)]
    ann = math.sqrt(periods_per_year)
    if rets.size > 1:
        sd = rets.std(ddof=1)
        out["annual_volatility"] = _finite(sd * ann)
        out["sharpe"] = _finite(rets.mean() / sd * ann) if sd > 0 else None
        downside = math.sqrt(float(np.mean(np.minimum(rets, 0.0) ** 2)))
        out["sortino"] = _finite(rets.mean() / downside * ann) if downside > 0 else None
    else:
        out["annual_volatility"] = out["sharpe"] = out["sortino"] = None

    if equity.size:
        peak = np.maximum.accumulate(equity)
        out["max_drawdown"] = _finite(float(np.min(equity / peak - 1.0)))
    else:
        out["max_drawdown"] = None

    closed = trades.filter(pl.col("exit_reason") != "end_of_data") if trades.height else trades
    out["n_trades"] = float(trades.height)
    out["n_closed_trades"] = float(closed.height)
    if closed.height:
        pnl = closed["pnl"].to_numpy()
        out["win_rate"] = _finite(float(np.mean(pnl > 0)))
    else:
        out["win_rate"] = None
    return out
