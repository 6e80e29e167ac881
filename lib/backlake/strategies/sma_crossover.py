"""Simple moving-average crossover."""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from backlake.strategies.base import BarData, Signals, StrategyParams, register
from backlake.strategies.indicators import sma


class SmaCrossoverParams(StrategyParams):
    fast: int = Field(default=10, ge=1, description="Fast SMA window, in bars.")
    slow: int = Field(default=30, ge=2, description="Slow SMA window, in bars.")

    @model_validator(mode="after")
    def _fast_below_slow(self) -> "SmaCrossoverParams":
        if self.fast >= self.slow:
            raise ValueError(
                f"fast={self.fast} must be smaller than slow={self.slow}: lower fast or raise slow"
            )
        return self


def crossover(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(up, down): bars where ``a`` goes from strictly below ``b`` to strictly above (and back)."""
    prev_a = np.roll(a, 1, axis=0)
    prev_b = np.roll(b, 1, axis=0)
    prev_a[:1] = np.nan
    prev_b[:1] = np.nan
    with np.errstate(invalid="ignore"):
        up = (prev_a < prev_b) & (a > b)
        down = (prev_a > prev_b) & (a < b)
    return up, down


@register("sma_crossover", SmaCrossoverParams)
def sma_crossover(data: BarData, params: SmaCrossoverParams) -> Signals:
    """Bullish when the fast SMA of the close crosses above the slow SMA, bearish when it
    crosses back below. A cross is counted on the bar where the order of the two averages
    flips (strictly below -> strictly above), so a signal fires once per cross, not on every
    bar the fast average stays above."""
    close = data["close"]
    up, down = crossover(sma(close, params.fast), sma(close, params.slow))
    return Signals(entries=up, exits=down, warmup=params.slow)
