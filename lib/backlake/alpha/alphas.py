"""The shipped alphas. Every score is oriented so that a HIGHER score means a HIGHER expected
return (long the top, short the bottom).

Rules common to all of them:

- point-in-time: the score at date t reads panel rows t - lookback(params) .. t only;
- a symbol is scored at t only when it has a bar at t and every bar its formula reads is there:
  a missing bar or an incomplete look-back window gives NaN (never a zero, never an imputed
  value); so symbols entering the panel are scored once they have enough history;
- windows are counted in panel rows (trading days of the panel);
- features are fixed names per alpha (the window itself is a parameter).

| alpha | score at t | features |
|---|---|---|
| ``momentum_12_1`` | ``close[t-skip] / close[t-lookback] - 1`` | ret_12_1, close_t_skip, close_t_lookback |
| ``reversal_5d`` | ``-(close[t] / close[t-window] - 1)`` | ret_5d, close_t, close_t_window |
| ``low_volatility`` | ``-std(r[t-window+1..t])``, r = daily close return, sample std (ddof=1) | vol_63 |
| ``rsi_cs`` | ``50 - RSI[t]`` (RSI with simple averages, see below): low RSI scores high | rsi, avg_gain, avg_loss |
| ``high_52w`` | ``close[t] / max(close[t-window+1..t]) - 1`` (<= 0) | close, high_252 |
| ``volume_momentum`` | ``ret_12_1 * rel_volume`` | ret_12_1, rel_volume, volume_short, volume_long |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Self

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import Field, model_validator

from backlake.alpha.panel import Panel
from backlake.alpha.registry import AlphaOutput, AlphaParams, check_alpha_data, register_alpha

__all__ = [
    "MomentumParams", "ReversalParams", "LowVolatilityParams", "RsiCsParams", "High52wParams",
    "VolumeMomentumParams", "lag", "rolling",
]

#: rolling reductions work on chunks of about this many values (bounded temporary memory)
_CHUNK = 1 << 22


def lag(a: np.ndarray, k: int) -> np.ndarray:
    """``a`` shifted down ``k`` rows (row t holds row t-k; NaN for the first ``k`` rows)."""
    out = np.full(a.shape, np.nan)
    if k == 0:
        out[:] = a
    elif k < a.shape[0]:
        out[k:] = a[:-k]
    return out


def rolling(a: np.ndarray, window: int, reduce: Callable[..., np.ndarray]) -> np.ndarray:
    """``reduce(values, axis=-1)`` over rows t-window+1..t of each column (NaN for the first
    window-1 rows; a NaN inside a window propagates as the reduction does). Each value is
    computed from its own window only, so it is the same whatever rows precede the window."""
    n, m = a.shape
    out = np.full((n, m), np.nan)
    if n < window or m == 0:
        return out
    views = sliding_window_view(np.ascontiguousarray(a.T), window, axis=1)  # (m, n-window+1, window)
    step = max(1, _CHUNK // max(1, m * window))
    for s in range(0, views.shape[1], step):
        out[window - 1 + s: window - 1 + s + step] = reduce(views[:, s: s + step], axis=-1).T
    return out


def _has_bar(panel: Panel) -> np.ndarray:
    return np.asarray(np.isfinite(panel.close))


def _masked(x: np.ndarray, keep: np.ndarray) -> np.ndarray:
    return np.where(keep & np.isfinite(x), x, np.nan)


def _ret(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        r = a / b - 1.0
    return np.where(np.isfinite(r), r, np.nan)


# -- momentum_12_1 -------------------------------------------------------------------------------
class MomentumParams(AlphaParams):
    """Parameters of ``momentum_12_1`` (windows in trading days)."""

    lookback: int = Field(default=252, ge=2, le=2520, description="Start of the return window: t - lookback.")
    skip: int = Field(default=21, ge=0, le=2519,
                      description="End of the return window: t - skip (skips the short-term reversal month).")

    @model_validator(mode="after")
    def _skip_below_lookback(self) -> Self:
        if self.skip >= self.lookback:
            raise ValueError(f"skip={self.skip} must be less than lookback={self.lookback}: lower skip")
        return self

    def history_bars(self) -> int:
        return self.lookback


def _momentum(panel: Panel, lookback: int, skip: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c_skip, c_lb = lag(panel.close, skip), lag(panel.close, lookback)
    ret = _masked(_ret(c_skip, c_lb), _has_bar(panel))
    ok = np.isfinite(ret)
    return ret, np.where(ok, c_skip, np.nan), np.where(ok, c_lb, np.nan)


@register_alpha("momentum_12_1", MomentumParams,
                description="12-1 momentum: the return from t-lookback to t-skip (default 252 to 21 days)")
def momentum_12_1(panel: Panel, params: MomentumParams) -> AlphaOutput:
    """``score[t] = close[t-skip] / close[t-lookback] - 1`` (the last ``skip`` days are left
    out: the short-term reversal). NaN unless the symbol has bars at t, t-skip and t-lookback."""
    ret, c_skip, c_lb = _momentum(panel, params.lookback, params.skip)
    return AlphaOutput(ret, {"ret_12_1": ret, "close_t_skip": c_skip, "close_t_lookback": c_lb})


# -- reversal_5d ---------------------------------------------------------------------------------
class ReversalParams(AlphaParams):
    """Parameters of ``reversal_5d``."""

    window: int = Field(default=5, ge=1, le=252, description="Return window in trading days (t - window .. t).")

    def history_bars(self) -> int:
        return self.window


@register_alpha("reversal_5d", ReversalParams, description="short-term reversal: minus the 5-day return")
def reversal_5d(panel: Panel, params: ReversalParams) -> AlphaOutput:
    """``score[t] = -(close[t] / close[t-window] - 1)``: last week's losers score high."""
    c_w = lag(panel.close, params.window)
    ret = _masked(_ret(panel.close, c_w), _has_bar(panel))
    ok = np.isfinite(ret)
    return AlphaOutput(-ret, {"ret_5d": ret, "close_t": np.where(ok, panel.close, np.nan),
                              "close_t_window": np.where(ok, c_w, np.nan)})


# -- low_volatility ------------------------------------------------------------------------------
class LowVolatilityParams(AlphaParams):
    """Parameters of ``low_volatility``."""

    window: int = Field(default=63, ge=2, le=1260,
                        description="Number of daily returns in the volatility window (needs window + 1 closes).")

    def history_bars(self) -> int:
        return self.window


def _std1(w: np.ndarray, axis: int) -> np.ndarray:
    return np.asarray(np.std(w, axis=axis, ddof=1))


@register_alpha("low_volatility", LowVolatilityParams,
                description="low volatility: minus the std of daily returns over 63 days")
def low_volatility(panel: Panel, params: LowVolatilityParams) -> AlphaOutput:
    """``score[t] = -std(r[t-window+1..t])`` with ``r[t] = close[t] / close[t-1] - 1`` and the
    sample standard deviation (ddof=1), not annualised: calm names score high. Any missing
    close in the window gives NaN."""
    r = _ret(panel.close, lag(panel.close, 1))
    vol = _masked(rolling(r, params.window, _std1), _has_bar(panel))
    return AlphaOutput(-vol, {"vol_63": vol})


# -- rsi_cs --------------------------------------------------------------------------------------
class RsiCsParams(AlphaParams):
    """Parameters of ``rsi_cs``."""

    window: int = Field(default=14, ge=2, le=252, description="RSI window: number of daily close changes averaged.")

    def history_bars(self) -> int:
        return self.window


@register_alpha("rsi_cs", RsiCsParams,
                description="cross-sectional RSI, mean reversion: 50 minus the 14-day RSI (oversold names score high)")
def rsi_cs(panel: Panel, params: RsiCsParams) -> AlphaOutput:
    """With ``d = close[t] - close[t-1]``: ``avg_gain`` / ``avg_loss`` are the SIMPLE means of
    ``max(d, 0)`` / ``max(-d, 0)`` over the last ``window`` changes (Cutler's RSI: a finite
    window, unlike Wilder's recursive smoothing, so a score depends on ``window + 1`` closes
    only), ``RSI = 100 * avg_gain / (avg_gain + avg_loss)`` (50 when nothing moved), and
    ``score = 50 - RSI``: oriented as mean reversion, low RSI (oversold) scores high. Ranked
    across the universe per date by the weight methods (hence cross-sectional)."""
    d = panel.close - lag(panel.close, 1)
    with np.errstate(invalid="ignore"):
        gain = np.where(np.isnan(d), np.nan, np.maximum(d, 0.0))
        loss = np.where(np.isnan(d), np.nan, np.maximum(-d, 0.0))
    keep = _has_bar(panel)
    avg_gain = _masked(rolling(gain, params.window, np.mean), keep)
    avg_loss = _masked(rolling(loss, params.window, np.mean), keep)
    total = avg_gain + avg_loss
    with np.errstate(invalid="ignore", divide="ignore"):
        rsi = np.where(total > 0, 100.0 * avg_gain / total, np.where(np.isnan(total), np.nan, 50.0))
    return AlphaOutput(50.0 - rsi, {"rsi": rsi, "avg_gain": avg_gain, "avg_loss": avg_loss})


# -- high_52w ------------------------------------------------------------------------------------
class High52wParams(AlphaParams):
    """Parameters of ``high_52w``."""

    window: int = Field(default=252, ge=2, le=2520,
                        description="Window of the high in trading days, today included (252: 52 weeks).")

    def history_bars(self) -> int:
        return self.window - 1


@register_alpha("high_52w", High52wParams,
                description="distance from the 52-week high: close / 252-day max close - 1")
def high_52w(panel: Panel, params: High52wParams) -> AlphaOutput:
    """``score[t] = close[t] / max(close[t-window+1..t]) - 1`` (0 at a new high, negative
    below it): names near their high score high. Uses closes (close-only data has no highs)."""
    high = _masked(rolling(panel.close, params.window, np.max), _has_bar(panel))
    score = _ret(panel.close, high)
    ok = np.isfinite(score)
    return AlphaOutput(score, {"close": np.where(ok, panel.close, np.nan), "high_252": np.where(ok, high, np.nan)})


# -- volume_momentum -----------------------------------------------------------------------------
class VolumeMomentumParams(AlphaParams):
    """Parameters of ``volume_momentum`` (windows in trading days)."""

    lookback: int = Field(default=252, ge=2, le=2520, description="Start of the momentum window: t - lookback.")
    skip: int = Field(default=21, ge=0, le=2519, description="End of the momentum window: t - skip.")
    volume_short: int = Field(default=21, ge=1, le=1260, description="Recent volume window (days up to t).")
    volume_long: int = Field(default=252, ge=2, le=2520, description="Baseline volume window (days up to t).")

    @model_validator(mode="after")
    def _windows_in_order(self) -> Self:
        if self.skip >= self.lookback:
            raise ValueError(f"skip={self.skip} must be less than lookback={self.lookback}: lower skip")
        if self.volume_short >= self.volume_long:
            raise ValueError(f"volume_short={self.volume_short} must be less than volume_long={self.volume_long}: "
                             "lower volume_short")
        return self

    def history_bars(self) -> int:
        return max(self.lookback, self.volume_long - 1)


@register_alpha("volume_momentum", VolumeMomentumParams, needs_volume=True,
                description="volume-scaled momentum: 12-1 momentum x recent / baseline volume (needs volume)")
def volume_momentum(panel: Panel, params: VolumeMomentumParams) -> AlphaOutput:
    """``score[t] = ret_12_1[t] * rel_volume[t]`` with ``ret_12_1`` as in ``momentum_12_1``
    and ``rel_volume = mean(volume over volume_short days) / mean(volume over volume_long
    days)`` (windows ending at t): momentum confirmed by rising participation scores higher.
    NaN where a volume in either window is missing or the baseline is 0. Refused (ConfigError)
    when a symbol with bars has no volume at all (close-only data)."""
    check_alpha_data("volume_momentum", panel)
    ret, _, _ = _momentum(panel, params.lookback, params.skip)
    keep = _has_bar(panel)
    v_short = _masked(rolling(panel.volume, params.volume_short, np.mean), keep)
    v_long = _masked(rolling(panel.volume, params.volume_long, np.mean), keep)
    rel = _ret(v_short, v_long) + 1.0
    score = ret * rel
    ok = np.isfinite(score)
    return AlphaOutput(score, {"ret_12_1": np.where(ok, ret, np.nan), "rel_volume": np.where(ok, rel, np.nan),
                               "volume_short": np.where(ok, v_short, np.nan),
                               "volume_long": np.where(ok, v_long, np.nan)})
