"""Trading calendars and annualisation.

Annualisation factor = bars per year for the bar size and the asset's calendar:

| calendar | trading days / year | hours / day |
|---|---|---|
| equity (default) | 252 | 6.5 |
| fx | 260 | 24 |
| crypto | 365 | 24 |

so daily equities use 252, daily crypto 365, hourly FX 260 x 24 = 6240. Weekly bars use 52
and monthly bars 12 whatever the calendar.
"""

from __future__ import annotations

from typing import Literal

Calendar = Literal["equity", "fx", "crypto"]

#: Calendars of the shipped sample symbols; anything else is treated as an equity.
SYMBOL_CALENDARS: dict[str, Calendar] = {"BTCUSD": "crypto", "EURUSD": "fx"}

_DAYS: dict[str, int] = {"equity": 252, "fx": 260, "crypto": 365}
_HOURS: dict[str, float] = {"equity": 6.5, "fx": 24.0, "crypto": 24.0}
_MINUTES = {"1m": 1, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "4h": 240}


def calendar_of(symbol: str) -> Calendar:
    return SYMBOL_CALENDARS.get(symbol, "equity")


def periods_per_year(timeframe: str, calendar: Calendar = "equity") -> float:
    """Bars per year for ``timeframe`` on ``calendar`` (see the module docstring)."""
    if timeframe == "1d":
        return float(_DAYS[calendar])
    if timeframe == "1w":
        return 52.0
    if timeframe == "1mo":
        return 12.0
    if timeframe in _MINUTES:
        return _DAYS[calendar] * _HOURS[calendar] * 60.0 / _MINUTES[timeframe]
    raise ValueError(f"unknown timeframe {timeframe!r}")


def bar_duration_seconds(timeframe: str) -> int:
    """Nominal length of one bar in seconds (a month counts as 31 days)."""
    if timeframe in _MINUTES:
        return _MINUTES[timeframe] * 60
    return {"1d": 86_400, "1w": 7 * 86_400, "1mo": 31 * 86_400}[timeframe]
