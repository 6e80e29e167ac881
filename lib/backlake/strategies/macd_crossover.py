"""MACD crossover: trend following on the MACD line against its signal line."""

from __future__ import annotations

from pydantic import Field, model_validator

from backlake.strategies.base import BarData, Signals, StrategyParams, register
from backlake.strategies.indicators import crosses_above, crosses_below, ema


class MacdCrossoverParams(StrategyParams):
    """Parameters of ``macd_crossover``: three EMA windows, in bars."""

    fast: int = Field(default=12, ge=1, description="Fast EMA window of the close, in bars.")
    slow: int = Field(default=26, ge=2, description="Slow EMA window of the close, in bars.")
    signal: int = Field(default=9, ge=1, description="EMA window of the MACD line (the signal line), in bars.")

    @model_validator(mode="after")
    def _fast_below_slow(self) -> MacdCrossoverParams:
        if self.fast >= self.slow:
            raise ValueError(
                f"fast={self.fast} must be smaller than slow={self.slow}: lower fast or raise slow "
                "(e.g. fast=12, slow=26)"
            )
        return self


@register(
    "macd_crossover", MacdCrossoverParams,
    rule="long when MACD (EMA fast - EMA slow) crosses above its signal EMA, out when it crosses below",
)
def macd_crossover(data: BarData, params: MacdCrossoverParams) -> Signals:
    """MACD = EMA(close, ``fast``) - EMA(close, ``slow``); signal line = EMA(MACD, ``signal``).
    Each EMA uses alpha = 2 / (window + 1) and is seeded with the SMA of its first ``window``
    values. Entry on the bar where MACD crosses above the signal line (MACD[N] > signal[N]
    and MACD[N-1] <= signal[N-1]); exit on the bar where it crosses below. The first
    signal-line value is at bar ``slow + signal - 2``, the first possible event one bar later."""
    close = data["close"]
    macd = ema(close, params.fast) - ema(close, params.slow)
    line = ema(macd, params.signal)
    return Signals(
        entries=crosses_above(macd, line), exits=crosses_below(macd, line),
        warmup=params.slow + params.signal - 1,
    )
