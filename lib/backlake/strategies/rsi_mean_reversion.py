"""RSI mean reversion: buy an oversold dip, sell the bounce (or after a fixed holding time)."""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from backlake.strategies.base import BarData, Signals, StrategyParams, register
from backlake.strategies.indicators import crosses_above, crosses_below, wilder_rsi


class RsiMeanReversionParams(StrategyParams):
    """Parameters of ``rsi_mean_reversion``; RSI levels are in points (0-100)."""

    window: int = Field(default=14, ge=2, description="Wilder RSI window, in bars.")
    oversold: float = Field(
        default=30.0, gt=0, lt=100,
        description="Entry level, in RSI points (0-100): entry when the RSI crosses below it.",
    )
    exit_level: float = Field(
        default=50.0, gt=0, lt=100,
        description="Exit level, in RSI points (0-100): exit when the RSI crosses above it.",
    )
    max_hold_bars: int = Field(
        default=10, ge=1, description="Close a position once it has been held this many bars, in bars.",
    )

    @model_validator(mode="after")
    def _oversold_below_exit(self) -> RsiMeanReversionParams:
        if self.oversold >= self.exit_level:
            raise ValueError(
                f"oversold={self.oversold:g} must be below exit_level={self.exit_level:g}: "
                "lower oversold or raise exit_level (e.g. oversold=30, exit_level=50)"
            )
        return self


def rsi_events(close: np.ndarray, params: RsiMeanReversionParams) -> tuple[np.ndarray, np.ndarray]:
    """(entries, exits): the RSI crossing below ``oversold`` / above ``exit_level``."""
    rsi = wilder_rsi(close, params.window)
    return crosses_below(rsi, params.oversold), crosses_above(rsi, params.exit_level)


@register(
    "rsi_mean_reversion", RsiMeanReversionParams,
    rule="long when RSI(window) crosses below oversold, out when it crosses above exit_level or after max_hold_bars",
)
def rsi_mean_reversion(data: BarData, params: RsiMeanReversionParams) -> Signals:
    """Wilder RSI(``window``) of the close. Entry on the bar where the RSI crosses below
    ``oversold`` (RSI[N] < oversold and RSI[N-1] >= oversold), so one entry per downward
    cross, not one per bar spent below. Exit on the bar where the RSI crosses above
    ``exit_level`` (RSI[N] > exit_level and RSI[N-1] <= exit_level). Positions are also
    closed by the engine after ``max_hold_bars`` bars (``Signals.max_hold_bars``). The
    first RSI value is at bar ``window``, the first possible signal at bar ``window + 1``."""
    entries, exits = rsi_events(data["close"], params)
    return Signals(entries=entries, exits=exits, warmup=params.window + 1, max_hold_bars=params.max_hold_bars)
