"""Compiled sweep kernels: many parameter combinations simulated in parallel (``prange``),
each keeping only its metrics, so memory stays bounded whatever the grid size.

The metrics follow the definitions of ``backlake.metrics`` exactly (tests compare them).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from backlake.engine.nb import T_PNL, T_REASON, T_RET, EXIT_END_OF_DATA, SimOptions, simulate_nb

SWEEP_METRICS = (
    "total_return", "cagr", "annual_return", "annual_volatility", "sharpe", "sortino", "calmar",
    "max_drawdown", "n_trades", "n_closed_trades", "win_rate", "profit_factor", "avg_trade_return",
    "exposure_time",
)
N_METRICS = len(SWEEP_METRICS)
_REL_ZERO = 1e-12
_US_PER_YEAR = 365.25 * 86_400 * 1_000_000


@njit(cache=True)
def perf_metrics_nb(equity, position, trades, t_us, ppy, initial_cash, out) -> None:
    """Fill ``out`` (SWEEP_METRICS order; NaN = undefined) from one simulation's outputs."""
    for k in range(N_METRICS):
        out[k] = np.nan
    n = equity.shape[0]
    growth = equity[n - 1] / initial_cash
    out[0] = growth - 1.0
    years = (t_us[n - 1] - t_us[0]) / _US_PER_YEAR
    if years > 0 and growth > 0:
        e = math.log(growth) / years
        if e < 700:
            out[1] = math.expm1(e)
    elif years > 0 and growth == 0:
        out[1] = -1.0
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
        out[7] = mdd
        if out[1] == out[1] and mdd < 0:
            out[6] = out[1] / abs(mdd)
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
        out[2] = mean * ppy
        if m >= 2:
            ss = 0.0
            down = 0.0
            for i in range(m):
                r = equity[i + 1] / equity[i] - 1.0
                ss += (r - mean) ** 2
                if r < 0:
                    down += r * r
            sd = math.sqrt(ss / (m - 1))
            if sd <= _REL_ZERO * mx:
                sd = 0.0
            out[3] = sd * math.sqrt(ppy)
            if sd > 0:
                out[4] = mean / sd * math.sqrt(ppy)
            dd_dev = math.sqrt(down / m)
            if dd_dev > 0:
                out[5] = mean * ppy / (dd_dev * math.sqrt(ppy))
        elif m == 1:
            down = min(mean, 0.0) ** 2
            if down > 0:
                out[5] = mean * ppy / (math.sqrt(down) * math.sqrt(ppy))
    # trades
    nt = trades.shape[0]
    out[8] = nt
    closed = 0
    wins = 0
    gp = 0.0
    gl = 0.0
    rsum = 0.0
    for k in range(nt):
        if trades[k, T_REASON] == EXIT_END_OF_DATA:
            continue
        closed += 1
        p = trades[k, T_PNL]
        if p > 0:
            wins += 1
            gp += p
        elif p < 0:
            gl -= p
        rsum += trades[k, T_RET]
    out[9] = closed
    if closed > 0:
        out[10] = wins / closed
        if gl > 0:
            out[11] = gp / gl
        out[12] = rsum / closed
    # exposure
    inm = 0
    for i in range(n):
        for j in range(position.shape[1]):
            if position[i, j] != 0:
                inm += 1
                break
    out[13] = inm / n


@njit(cache=True, parallel=True)
def sweep_sma_nb(open_, high, low, close, volume, ma, fast_idx, slow_idx, sigma, adv, tradable, o: SimOptions, t_us,
                 ppy):
    """SMA crossover for every (fast, slow) pair: ``ma`` holds one column per distinct window
    (computed once); pair p uses columns ``fast_idx[p]`` and ``slow_idx[p]``. One asset."""
    n = close.shape[0]
    n_pairs = fast_idx.shape[0]
    out = np.full((n_pairs, N_METRICS), np.nan)
    dummy_w = np.full((1, 1), np.nan)
    for p in prange(n_pairs):
        f = ma[:, fast_idx[p]]
        s = ma[:, slow_idx[p]]
        entries = np.zeros((n, 1), dtype=np.bool_)
        exits = np.zeros((n, 1), dtype=np.bool_)
        for i in range(1, n):
            if f[i - 1] < s[i - 1] and f[i] > s[i]:
                entries[i, 0] = True
            elif f[i - 1] > s[i - 1] and f[i] < s[i]:
                exits[i, 0] = True
        eq, _cash, pos, tr = simulate_nb(open_, high, low, close, volume, entries, exits, dummy_w, False, sigma, adv, tradable, o)
        perf_metrics_nb(eq, pos, tr, t_us, ppy, o.initial_cash, out[p])
    return out


@njit(cache=True, parallel=True)
def sweep_signals_nb(open_, high, low, close, volume, entries, exits, weights, use_weights, sigma, adv,
                     tradable, o: SimOptions, t_us, ppy):
    """Any strategy: ``entries`` / ``exits`` / ``weights`` are ``(n_combos, n_bars, n_assets)``."""
    c = entries.shape[0] if not use_weights else weights.shape[0]
    out = np.full((c, N_METRICS), np.nan)
    m = close.shape[1]
    no_events = np.zeros((close.shape[0], m), dtype=np.bool_)
    no_weights = np.full((1, m), np.nan)
    for k in prange(c):
        if use_weights:
            eq, _cash, pos, tr = simulate_nb(open_, high, low, close, volume, no_events, no_events, weights[k],
                                             True, sigma, adv, tradable, o)
        else:
            eq, _cash, pos, tr = simulate_nb(open_, high, low, close, volume, entries[k], exits[k], no_weights,
                                             False, sigma, adv, tradable, o)
        perf_metrics_nb(eq, pos, tr, t_us, ppy, o.initial_cash, out[k])
    return out
