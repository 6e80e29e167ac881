"""Simple moving-average crossover."""

from __future__ import annotations

from pydantic import Field, model_validator

from backlake.strategies.base import BarData, Signals, StrategyParams, register
from backlake.strategies.indicators import flips_above, flips_below, sma


class SmaCrossoverParams(StrategyParams):
    fast: int = Field(default=10, ge=1, description="Fast SMA window, in bars.")
    slow: int = Field(default=30, ge=2, description="Slow SMA window, in bars.")

    @model_validator(mode="after")
    def _fast_below_slow(self) -> SmaCrossoverParams:
        if self.fast >= self.slow:
            raise ValueError(
                f"fast={self.fast} must be smaller than slow={self.slow}: lower fast or raise slow"
            )
        return self


@register(
    "sma_crossover", SmaCrossoverParams,
    rule="long when SMA(fast) crosses above SMA(slow), out when it crosses back below",
)
def sma_crossover(data: BarData, params: SmaCrossoverParams) -> Signals:
    """Bullish when the fast SMA of the close crosses above the slow SMA, bearish when it
    crosses back below. A cross is counted on the bar where the order of the two averages
    flips (strictly below -> strictly above), so a signal fires once per cross, not on every
    bar the fast average stays above."""
    close = data["close"]
    fast, slow = sma(close, params.fast), sma(close, params.slow)
    return Signals(entries=flips_above(fast, slow), exits=flips_below(fast, slow), warmup=params.slow)
