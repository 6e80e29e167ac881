"""Compiled sweep kernels: many parameter combinations simulated in parallel (``prange``),
each keeping only its metrics, so memory stays bounded whatever the grid size.

The metrics follow the definitions of ``backlake.metrics`` exactly (tests compare them); each
kernel returns one ``metrics_dt`` record per combination (fields: SWEEP_METRICS).
"""

from __future__ import annotations

import math

import numpy as np
from numba import literal_unroll, njit, prange

from backlake.engine.nb import SimOptions, simulate_nb
from backlake.engine.records import SWEEP_METRICS, ExitReason, MarketData, Record, metrics_dt
from backlake.metrics import denoise_std
from backlake.strategies.indicators import flips_above_at

__all__ = ["SWEEP_METRICS", "N_METRICS", "perf_metrics_nb", "sweep_sma_nb", "sweep_signals_nb"]

N_METRICS = len(SWEEP_METRICS)
_US_PER_YEAR = 365.25 * 86_400 * 1_000_000


@njit(cache=True)
def perf_metrics_nb(
    equity: np.ndarray, position: np.ndarray, trades: np.ndarray, t_us: np.ndarray, ppy: float,
    initial_cash: float, out: Record,
) -> None:
    """Fill ``out`` (a metrics_dt record; NaN = undefined) from one simulation's outputs
    (``trades``: trade_dt records)."""
    for name in literal_unroll(SWEEP_METRICS):
        out[name] = np.nan
    n = equity.shape[0]
    growth = equity[n - 1] / initial_cash
    out.total_return = growth - 1.0
    years = (t_us[n - 1] - t_us[0]) / _US_PER_YEAR
    if (years > 0) and (growth > 0):
        e = math.log(growth) / years
        if e < 700:
            out.cagr = math.expm1(e)
    elif (years > 0) and (growth == 0):
        out.cagr = -1.0
    # drawdown
    if equity[0] > 0:
        peak = equity[0]
        mdd = 0.0
        for i in range(n):
            if equity[i] > peak:
                peak = equity[i]
            dd = equity[i] / peak - 1.0
            if dd < mdd:
                mdd = dd
        out.max_drawdown = mdd
        if (out.cagr == out.cagr) and (mdd < 0):
            out.calmar = out.cagr / abs(mdd)
    # returns
    ok = n >= 2
    for i in range(n - 1):
        if equity[i] <= 0:
            ok = False
    if ok:
        m = n - 1
        s = 0.0
        mx = 0.0
        for i in range(m):
            r = equity[i + 1] / equity[i] - 1.0
            s += r
            mx = max(mx, abs(r))
        mean = s / m
        out.annual_return = mean * ppy
        if m >= 2:
            ss = 0.0
            down = 0.0
            for i in range(m):
                r = equity[i + 1] / equity[i] - 1.0
                ss += (r - mean) ** 2
                if r < 0:
                    down += r * r
            sd = math.sqrt(ss / (m - 1))
            sd = denoise_std(sd, mx)  # the one noise rule (backlake.metrics)
            out.annual_volatility = sd * math.sqrt(ppy)
            if sd > 0:
                out.sharpe = mean / sd * math.sqrt(ppy)
            dd_dev = math.sqrt(down / m)
            if dd_dev > 0:
                out.sortino = mean * ppy / (dd_dev * math.sqrt(ppy))
        elif m == 1:
            down = min(mean, 0.0) ** 2
            if down > 0:
                out.sortino = mean * ppy / (math.sqrt(down) * math.sqrt(ppy))
    # trades
    nt = trades.shape[0]
    out.n_trades = nt
    closed = 0
    wins = 0
    gp = 0.0
    gl = 0.0
    rsum = 0.0
    for k in range(nt):
        t = trades[k]
        if t.exit_reason == ExitReason.END_OF_DATA:
            continue
        closed += 1
        p = t.pnl
        if p > 0:
            wins += 1
            gp += p
        elif p < 0:
            gl -= p
        rsum += t.ret
    out.n_closed_trades = closed
    if closed > 0:
        out.win_rate = wins / closed
        if gl > 0:
            out.profit_factor = gp / gl
        out.avg_trade_return = rsum / closed
    # exposure
    inm = 0
    for i in range(n):
        for j in range(position.shape[1]):
            if position[i, j] != 0:
                inm += 1
                break
    out.exposure_time = inm / n


@njit(cache=True, parallel=True)
def sweep_sma_nb(
    mkt: MarketData, ma: np.ndarray, fast_idx: np.ndarray, slow_idx: np.ndarray, o: SimOptions, t_us: np.ndarray,
    ppy: float,
) -> np.ndarray:
    """SMA crossover for every (fast, slow) pair: ``ma`` holds one column per distinct window
    (computed once); pair p uses columns ``fast_idx[p]`` and ``slow_idx[p]``. One asset. The
    events are the strategy's: ``indicators.flips_above`` of fast over slow, and back."""
    n = mkt.close.shape[0]
    n_pairs = fast_idx.shape[0]
    out = np.empty(n_pairs, dtype=metrics_dt)
    no_weights = np.full((1, 1), np.nan)
    for p in prange(n_pairs):
        f = ma[:, fast_idx[p]]
        s = ma[:, slow_idx[p]]
        entries = np.zeros((n, 1), dtype=np.bool_)
        exits = np.zeros((n, 1), dtype=np.bool_)
        for i in range(1, n):
            if flips_above_at(f[i - 1], s[i - 1], f[i], s[i]):
                entries[i, 0] = True
            elif flips_above_at(s[i - 1], f[i - 1], s[i], f[i]):
                exits[i, 0] = True
        eq, _cash, pos, tr, _costs = simulate_nb(mkt, entries, exits, no_weights, False, o)
        perf_metrics_nb(eq, pos, tr, t_us, ppy, o.initial_cash, out[p])
    return out


@njit(cache=True, parallel=True)
def sweep_signals_nb(
    mkt: MarketData, entries: np.ndarray, exits: np.ndarray, weights: np.ndarray, use_weights: bool, o: SimOptions,
    t_us: np.ndarray, ppy: float,
) -> np.ndarray:
    """Any strategy: ``entries`` / ``exits`` / ``weights`` are ``(n_combos, n_bars, n_assets)``."""
    c = entries.shape[0] if not use_weights else weights.shape[0]
    out = np.empty(c, dtype=metrics_dt)
    m = mkt.close.shape[1]
    no_events = np.zeros((mkt.close.shape[0], m), dtype=np.bool_)
    no_weights = np.full((1, m), np.nan)
    for k in prange(c):
        if use_weights:
            eq, _cash, pos, tr, _costs = simulate_nb(mkt, no_events, no_events, weights[k], True, o)
        else:
            eq, _cash, pos, tr, _costs = simulate_nb(mkt, entries[k], exits[k], no_weights, False, o)
        perf_metrics_nb(eq, pos, tr, t_us, ppy, o.initial_cash, out[k])
    return out
