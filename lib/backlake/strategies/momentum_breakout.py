"""Channel (Donchian / turtle-style) momentum breakout."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from backlake.strategies.base import BarData, Signals, StrategyParams, register
from backlake.strategies.indicators import rolling_max, rolling_min


class MomentumBreakoutParams(StrategyParams):
    """Parameters of ``momentum_breakout``: the two channel lengths, in bars."""

    window: int = Field(
        default=20, ge=1, description="Entry channel: the previous highs whose max the close must beat, in bars.",
    )
    exit_window: int = Field(
        default=10, ge=1, description="Exit channel: the previous lows whose min the close must break, in bars.",
    )


@register(
    "momentum_breakout", MomentumBreakoutParams,
    rule=("long when the close beats the highest high of the last window bars, out below the lowest low of"
          " exit_window bars"),
)
def momentum_breakout(data: BarData, params: MomentumBreakoutParams) -> Signals:
    """Entry on every bar whose close is above the highest high of the previous ``window``
    bars (bars N-window..N-1; the current bar is excluded, else a close could never beat
    it). Exit on every bar whose close is below the lowest low of the previous
    ``exit_window`` bars. Both can never fire on the same bar. The first possible entry
    is at bar ``window``, the first possible exit at bar ``exit_window``."""
    close = data["close"]
    with np.errstate(invalid="ignore"):
        entries = close > rolling_max(data["high"], params.window, exclude_current=True)
        exits = close < rolling_min(data["low"], params.exit_window, exclude_current=True)
    return Signals(entries=entries, exits=exits, warmup=min(params.window, params.exit_window))
