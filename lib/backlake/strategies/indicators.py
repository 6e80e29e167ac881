"""Causal indicators over 1-D or 2-D (bars x assets) float arrays: the value at bar N uses
bars 0..N only. NaN until enough bars are available.

Conventions shared by every function here:

- a 1-D input gives a 1-D output, a 2-D input ``(n_bars, n_assets)`` works column by column;
- windows are counted in bars; a window that holds a NaN gives NaN (as :func:`sma`), except
  the recursive averages (:func:`ema`, :func:`wilder_ma` and what is built on them), which
  skip NaN inputs: leading NaNs (an asset that starts later) delay the seed, and a NaN after
  the seed gives NaN at that bar while the average carries on from its last value.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeAlias, TypeVar

import numpy as np
from numba import njit
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "sma", "ema", "wilder_ma", "wilder_rsi", "true_range", "atr", "rolling_max", "rolling_min",
    "rolling_std", "rolling_percentile_rank", "pct_change", "crosses_above", "crosses_below",
    "flips_above", "flips_below", "crosses_above_at", "flips_above_at", "indicator_cache",
]

# Rolling reductions materialise (rows x assets x window) values; work in chunks of this many.
_CHUNK_ELEMENTS = 1 << 22


F = TypeVar("F", bound=Callable[..., np.ndarray])

# Sweeps compute each indicator once per distinct window: inside ``indicator_cache(inputs)``,
# calls on the registered input arrays (the bars) are memoised by (function, arrays, args).
_Store: TypeAlias = dict[tuple[Any, ...], np.ndarray]  # (function, arrays, args) -> result
_CACHE: ContextVar[tuple[_Store, frozenset[int]] | None] = ContextVar("indicator_cache", default=None)


@contextlib.contextmanager
def indicator_cache(*inputs: np.ndarray) -> Iterator[_Store]:
    """Memoise indicator calls whose array arguments are among ``inputs`` (kept alive by the
    caller, so their ids stay unique) for the duration of the block."""
    store: _Store = {}
    token = _CACHE.set((store, frozenset(id(a) for a in inputs)))
    try:
        yield store
    finally:
        _CACHE.reset(token)


def _cached(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> np.ndarray:
        ctx = _CACHE.get()
        if ctx is None:
            return fn(*args, **kwargs)
        store, known = ctx
        key: list[Any] = [fn.__name__]
        for a in args:
            if isinstance(a, np.ndarray):
                if id(a) not in known:
                    return fn(*args, **kwargs)
                key.append(("array", id(a)))
            else:
                key.append(a)
        key.append(tuple(sorted(kwargs.items())))
        k = tuple(key)
        if k not in store:
            out = fn(*args, **kwargs)
            out.setflags(write=False)  # shared between combinations: nobody may modify it
            store[k] = out
        return store[k]

    return wrapper  # type: ignore[return-value]


def _2d(x: np.ndarray) -> tuple[np.ndarray, bool]:
    x = np.asarray(x, dtype=np.float64)
    return (x[:, None], True) if x.ndim == 1 else (x, False)


def _check_window(name: str, window: int) -> None:
    if int(window) != window or window < 1:
        raise ValueError(f"{name}={window!r} must be a whole number of bars >= 1")


@_cached
def sma(x: np.ndarray, window: int) -> np.ndarray:
    """Simple moving average of the last ``window`` values (NaN before, or if any is NaN)."""
    a, flat = _2d(x)
    out = np.full(a.shape, np.nan)
    n = a.shape[0]
    if window >= 1 and n >= window:
        c = np.cumsum(a, axis=0)
        out[window - 1] = c[window - 1] / window
        out[window:] = (c[window:] - c[:-window]) / window
    return out[:, 0] if flat else out


@njit(cache=True)
def _sma_seeded_ewm_nb(a: np.ndarray, window: int, alpha: float) -> np.ndarray:
    """Per column: ``y = mean(first window valid x)``, then ``y += alpha * (x - y)``.

    NaN inputs are skipped (output NaN at that bar, state kept)."""
    n, m = a.shape
    out = np.full((n, m), np.nan)
    for j in range(m):
        count = 0
        total = 0.0
        state = 0.0
        for i in range(n):
            x = a[i, j]
            if np.isnan(x):
                continue
            if count < window:
                total += x
                count += 1
                if count == window:
                    state = total / window
                    out[i, j] = state
            else:
                state += alpha * (x - state)
                out[i, j] = state
    return out


def _ewm(x: np.ndarray, window: int, alpha: float) -> np.ndarray:
    a, flat = _2d(x)
    out = _sma_seeded_ewm_nb(np.ascontiguousarray(a), int(window), float(alpha))
    return out[:, 0] if flat else out


@_cached
def ema(x: np.ndarray, window: int) -> np.ndarray:
    """Exponential moving average, ``alpha = 2 / (window + 1)``, seeded with the SMA of the
    first ``window`` values: ``ema[window-1] = mean(x[0:window])``, then
    ``ema[t] = ema[t-1] + alpha * (x[t] - ema[t-1])``. NaN before the seed."""
    _check_window("window", window)
    return _ewm(x, window, 2.0 / (window + 1.0))


@_cached
def wilder_ma(x: np.ndarray, window: int) -> np.ndarray:
    """Wilder's smoothing (an EMA with ``alpha = 1 / window``), seeded with the SMA of the
    first ``window`` values: ``y[t] = (y[t-1] * (window - 1) + x[t]) / window``."""
    _check_window("window", window)
    return _ewm(x, window, 1.0 / window)


def _prev(a: np.ndarray) -> np.ndarray:
    """``a`` shifted down one bar (NaN at bar 0)."""
    out = np.empty_like(a)
    out[:1] = np.nan
    out[1:] = a[:-1]
    return out


@_cached
def wilder_rsi(close: np.ndarray, window: int = 14) -> np.ndarray:
    """Wilder's RSI in 0..100. With ``d[t] = close[t] - close[t-1]``, gains ``max(d, 0)`` and
    losses ``max(-d, 0)`` are Wilder-smoothed (:func:`wilder_ma`: the first average is the
    mean of the first ``window`` changes), and ``RSI = 100 * avg_gain / (avg_gain + avg_loss)``
    (= ``100 - 100 / (1 + RS)``): 100 when there were no losses, 50 when prices did not move.
    The first value is at bar ``window`` (it needs ``window + 1`` closes)."""
    _check_window("window", window)
    c, flat = _2d(close)
    d = c - _prev(c)
    avg_gain = wilder_ma(np.where(d > 0, d, np.where(np.isnan(d), np.nan, 0.0)), window)
    avg_loss = wilder_ma(np.where(d < 0, -d, np.where(np.isnan(d), np.nan, 0.0)), window)
    total = avg_gain + avg_loss
    with np.errstate(invalid="ignore", divide="ignore"):
        rsi = np.where(total > 0, 100.0 * avg_gain / total, np.where(np.isnan(total), np.nan, 50.0))
    return rsi[:, 0] if flat else rsi


@_cached
def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """``max(high - low, |high - prev_close|, |low - prev_close|)``; ``high - low`` on bar 0
    (and wherever the previous close is NaN)."""
    h, flat = _2d(high)
    lo, _ = _2d(low)
    pc = _prev(_2d(close)[0])
    gap = np.fmax(np.abs(h - pc), np.abs(lo - pc))  # NaN only where prev close is NaN
    tr: np.ndarray = np.fmax(h - lo, np.where(np.isnan(h - lo), np.nan, gap))
    return tr[:, 0] if flat else tr


@_cached
def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int = 14) -> np.ndarray:
    """Average true range: :func:`wilder_ma` of :func:`true_range`. The first value, at bar
    ``window - 1``, is the mean of the first ``window`` true ranges (bar 0's is high - low)."""
    return wilder_ma(true_range(high, low, close), window)


def _rolling_reduce(
    x: np.ndarray, window: int, reduce: Callable[..., np.ndarray], exclude_current: bool = False
) -> np.ndarray:
    """``reduce(windows, axis=-1)`` over the last ``window`` values, in memory-bounded chunks.
    With ``exclude_current`` the window is the ``window`` bars before this one."""
    _check_window("window", window)
    a, flat = _2d(x)
    n, m = a.shape
    out = np.full(a.shape, np.nan)
    if n >= window:
        # one contiguous row per asset, so that each window is contiguous in memory
        views = sliding_window_view(np.ascontiguousarray(a.T), window, axis=1)  # (m, n - window + 1, window)
        step = max(1, _CHUNK_ELEMENTS // max(1, m * window))
        for s in range(0, views.shape[1], step):
            out[window - 1 + s : window - 1 + s + step] = reduce(views[:, s : s + step], axis=-1).T
    if exclude_current:
        out = _prev(out)
    return out[:, 0] if flat else out


@_cached
def rolling_max(x: np.ndarray, window: int, *, exclude_current: bool = False) -> np.ndarray:
    """Max of the last ``window`` values (bars N-window+1..N); with ``exclude_current=True``,
    of the ``window`` values before this bar (bars N-window..N-1), as a channel breakout needs."""
    return _rolling_reduce(x, window, np.max, exclude_current)


@_cached
def rolling_min(x: np.ndarray, window: int, *, exclude_current: bool = False) -> np.ndarray:
    """Min of the last ``window`` values; ``exclude_current`` as in :func:`rolling_max`."""
    return _rolling_reduce(x, window, np.min, exclude_current)


@_cached
def rolling_std(x: np.ndarray, window: int) -> np.ndarray:
    """Population standard deviation (ddof=0) of the last ``window`` values."""
    return _rolling_reduce(x, window, np.std)


@_cached
def rolling_percentile_rank(x: np.ndarray, lookback: int) -> np.ndarray:
    """Fraction (0..1] of the last ``lookback`` values, the current one included, that are
    ``<=`` the current value: 1.0 at a new high of the window, ``1/lookback`` at a new low."""
    _check_window("lookback", lookback)

    def rank(w: np.ndarray, axis: int) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            r = np.count_nonzero(w <= w[..., -1:], axis=axis) / lookback
        return np.where(np.isnan(w).any(axis=axis), np.nan, r)

    return _rolling_reduce(x, lookback, rank)


@_cached
def pct_change(x: np.ndarray, n: int = 1) -> np.ndarray:
    """Return over ``n`` bars: ``x[t] / x[t - n] - 1`` (NaN for the first ``n`` bars)."""
    _check_window("n", n)
    a, flat = _2d(x)
    out = np.full(a.shape, np.nan)
    if a.shape[0] > n:
        with np.errstate(invalid="ignore", divide="ignore"):
            out[n:] = a[n:] / a[:-n] - 1.0
    return out[:, 0] if flat else out


# -- crossings ------------------------------------------------------------------------------------
# The one definition of a cross, in its two meanings: each strategy keeps the one it documents,
# and the compiled SMA sweep (engine/nb_sweep.py) calls the same per-bar predicates.
#
# - ``crosses_above(a, b)``: ``a > b`` starts to hold at bar t: ``a[t-1] <= b[t-1]`` and
#   ``a[t] > b[t]``; a bar exactly at ``b`` counts as not above, so leaving it upwards is a cross
#   (a line against a level or a band: RSI, Bollinger, MACD);
# - ``flips_above(a, b)``: the order of the two flips from strictly below to strictly above:
#   ``a[t-1] < b[t-1]`` and ``a[t] > b[t]``; a bar where they are equal hides the cross (as
#   backtesting.py's ``crossover``: the SMA crossover).
#
# ``*_below(a, b)`` is ``*_above`` with ``a`` and ``b`` swapped. A NaN on either bar gives False;
# bar 0 is never a cross.


@njit(cache=True)
def crosses_above_at(a_prev: float, b_prev: float, a: float, b: float) -> bool:
    """At one bar: ``a > b`` starts to hold (``a_prev <= b_prev`` and ``a > b``)."""
    return (a_prev <= b_prev) and (a > b)


@njit(cache=True)
def flips_above_at(a_prev: float, b_prev: float, a: float, b: float) -> bool:
    """At one bar: ``a`` goes from strictly below ``b`` to strictly above (``a_prev < b_prev``
    and ``a > b``)."""
    return (a_prev < b_prev) and (a > b)


@njit(cache=True)
def _crossings_nb(a: np.ndarray, b: np.ndarray, flips: bool) -> np.ndarray:
    n, m = a.shape
    out = np.zeros((n, m), dtype=np.bool_)
    for j in range(m):
        for i in range(1, n):
            if flips:
                out[i, j] = flips_above_at(a[i - 1, j], b[i - 1, j], a[i, j], b[i, j])
            else:
                out[i, j] = crosses_above_at(a[i - 1, j], b[i - 1, j], a[i, j], b[i, j])
    return out


def _crossings(a: np.ndarray, b: np.ndarray | float, *, flips: bool, below: bool) -> np.ndarray:
    x = np.asarray(a, dtype=np.float64)
    y = np.broadcast_to(np.asarray(b, dtype=np.float64), x.shape)
    if below:
        x, y = y, x
    flat = x.ndim == 1
    out: np.ndarray = _crossings_nb(x[:, None] if flat else x, y[:, None] if flat else y, flips)
    return out[:, 0] if flat else out


def crosses_above(a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    """True on the bars where ``a > b`` starts to hold: ``a[t] > b[t]`` and
    ``a[t-1] <= b[t-1]``. ``b`` is an array of ``a``'s shape or a number. NaN gives False."""
    return _crossings(a, b, flips=False, below=False)


def crosses_below(a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    """True on the bars where ``a < b`` starts to hold: ``a[t] < b[t]`` and
    ``a[t-1] >= b[t-1]``. ``b`` is an array of ``a``'s shape or a number. NaN gives False."""
    return _crossings(a, b, flips=False, below=True)


def flips_above(a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    """True on the bars where ``a`` goes from strictly below ``b`` to strictly above:
    ``a[t-1] < b[t-1]`` and ``a[t] > b[t]`` (a bar where they are equal is no cross). ``b`` is
    an array of ``a``'s shape or a number. NaN gives False."""
    return _crossings(a, b, flips=True, below=False)


def flips_below(a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    """True on the bars where ``a`` goes from strictly above ``b`` to strictly below:
    ``a[t-1] > b[t-1]`` and ``a[t] < b[t]``. As :func:`flips_above` otherwise."""
    return _crossings(a, b, flips=True, below=True)
