"""Simple moving-average crossover."""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from backlake.strategies.base import Signals, StrategyParams, register
from backlake.strategies.indicators import sma


class SmaCrossoverParams(StrategyParams):
    fast: int = Field(default=10, ge=1, description="Fast SMA window, in bars.")
    slow: int = Field(default=30, ge=2, description="Slow SMA window, in bars.")

    @model_validator(mode="after")
    def _fast_below_slow(self) -> "SmaCrossoverParams":
        if self.fast >= self.slow:
            raise ValueError(
                f"fast={self.fast} must be smaller than slow={self.slow}: "
                "lower fast or raise slow"
            )
        return self


@register("sma_crossover", SmaCrossoverParams)
def sma_crossover(data: dict[str, np.ndarray], params: SmaCrossoverParams) -> Signals:
    """Go long when the fast SMA of the close crosses above the slow SMA; exit when it crosses
    back below. A cross is counted on the bar where the order of the two averages flips
    (strictly below -> strictly above), so a signal fires once per cross, not on every bar
    the fast average stays above."""
    close = data["close"]
    fast, slow = sma(close, params.fast), sma(close, params.slow)
    prev_fast, prev_slow = np.roll(fast, 1), np.roll(slow, 1)
    prev_fast[:1] = np.nan
    prev_slow[:1] = np.nan
    with np.errstate(invalid="ignore"):
        entries = (prev_fast < prev_slow) & (fast > slow)
        exits = (prev_fast > prev_slow) & (fast < slow)
    return Signals(entries=entries, exits=exits, warmup=params.slow)
