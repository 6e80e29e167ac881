"""RSI mean reversion that stands aside while volatility is unusually high."""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from backlake.strategies.base import BarData, Signals, register
from backlake.strategies.indicators import atr, rolling_percentile_rank
from backlake.strategies.rsi_mean_reversion import RsiMeanReversionParams, rsi_events


class RsiVolFilterParams(RsiMeanReversionParams):
    """Parameters of ``rsi_vol_filter``: those of ``rsi_mean_reversion`` plus the ATR filter."""

    atr_window: int = Field(default=14, ge=1, description="ATR window (Wilder smoothing), in bars.")
    lookback: int = Field(
        default=252, ge=2, description="Bars over which the ATR's percentile rank is taken, in bars.",
    )
    max_atr_percentile: float = Field(
        default=0.8, gt=0, le=1,
        description="Highest ATR percentile rank at which an entry is allowed, a fraction (0-1].",
    )

    @model_validator(mode="after")
    def _filter_can_pass(self) -> RsiVolFilterParams:
        lowest = 1.0 / self.lookback
        if self.max_atr_percentile < lowest:
            raise ValueError(
                f"max_atr_percentile={self.max_atr_percentile:g} is below 1/lookback={lowest:.4g} "
                f"(lookback={self.lookback}), the lowest rank an ATR can have, so no entry could "
                "ever pass: raise max_atr_percentile or lookback"
            )
        return self


@register(
    "rsi_vol_filter", RsiVolFilterParams,
    rule=("rsi_mean_reversion entries taken only when the ATR percentile over lookback bars is at most"
          " max_atr_percentile"),
)
def rsi_vol_filter(data: BarData, params: RsiVolFilterParams) -> Signals:
    """Entries as ``rsi_mean_reversion`` (the Wilder RSI(``window``) crossing below
    ``oversold``), kept only where the ATR(``atr_window``) percentile rank is at most
    ``max_atr_percentile``: the rank is the fraction of the last ``lookback`` ATR values,
    the current one included, that are <= the current ATR. A crossing on a bar with a higher
    rank, or before the rank exists (the first ``atr_window + lookback - 2`` bars), is
    dropped, not delayed. Exits as ``rsi_mean_reversion``: the RSI crossing above
    ``exit_level``, or ``max_hold_bars`` bars held. The first possible exit is at bar
    ``window + 1``, the first possible entry at bar max(window + 1, atr_window + lookback - 2)."""
    entries, exits = rsi_events(data["close"], params)
    rank = rolling_percentile_rank(atr(data["high"], data["low"], data["close"], params.atr_window), params.lookback)
    with np.errstate(invalid="ignore"):
        calm = rank <= params.max_atr_percentile  # NaN (warm-up) -> False
    return Signals(
        entries=entries & calm, exits=exits,
        warmup=params.window + 1,
        max_hold_bars=params.max_hold_bars,
    )
