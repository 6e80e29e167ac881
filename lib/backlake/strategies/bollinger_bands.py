"""Bollinger band mean reversion: buy a close below the lower band, sell back at the middle."""

from __future__ import annotations

from pydantic import Field

from backlake.strategies.base import BarData, Signals, StrategyParams, register
from backlake.strategies.indicators import crosses_above, crosses_below, rolling_std, sma


class BollingerBandsParams(StrategyParams):
    """Parameters of ``bollinger_bands``."""

    window: int = Field(default=20, ge=2, description="Window of the middle band (SMA) and of the std, in bars.")
    num_std: float = Field(
        default=2.0, gt=0, description="Band half-width, in population standard deviations of the close.",
    )


@register(
    "bollinger_bands", BollingerBandsParams,
    rule=("long when the close crosses below the lower band (SMA - num_std x std), out when it crosses above"
          " the middle band"),
)
def bollinger_bands(data: BarData, params: BollingerBandsParams) -> Signals:
    """Middle band = SMA(close, ``window``); lower band = middle - ``num_std`` x the population
    std (ddof=0) of the same ``window`` closes. Entry on the bar where the CLOSE crosses below
    the lower band (close[N] < lower[N] and close[N-1] >= lower[N-1]); an intraday low below
    the band with a close above it is not an entry. Exit on the bar where the close crosses
    above the middle band (close[N] > middle[N] and close[N-1] <= middle[N-1]). The first
    bands are at bar ``window - 1``, the first possible event at bar ``window``."""
    close = data["close"]
    middle = sma(close, params.window)
    lower = middle - params.num_std * rolling_std(close, params.window)
    return Signals(
        entries=crosses_below(close, lower), exits=crosses_above(close, middle), warmup=params.window,
    )
