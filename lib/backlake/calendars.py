"""Trading calendars and annualisation.

Annualisation factor = bars per year for the bar size and the asset's calendar:

| calendar | trading days / year | hours / day |
|---|---|---|
| equity (default) | 252 | 6.5 |
| fx | 260 | 24 |
| crypto | 365 | 24 |

so daily equities use 252, daily crypto 365, hourly FX 260 x 24 = 6240. Weekly bars use 52
and monthly bars 12 whatever the calendar.

Sessions: the ``equity`` calendar's trading days are the New York Stock Exchange's (XNYS, from
``exchange_calendars``: holidays and one-off closures such as 2 January 2007 or Hurricane
Sandy's 29-30 October 2012), from 1990 to the end of next year. :func:`missing_sessions` counts
the sessions between two dates, which is how a missing stretch of daily bars is told from a
market closure.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Literal

import numpy as np
import numpy.typing as npt

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


#: The exchange whose sessions a calendar's daily bars follow (none: every day, or weekdays).
EXCHANGES: dict[str, str] = {"equity": "XNYS"}
SESSIONS_FROM = "1990-01-01"


@functools.lru_cache(maxsize=4)
def sessions(calendar: Calendar) -> npt.NDArray[np.datetime64] | None:
    """The trading days of ``calendar``'s exchange (sorted ``datetime64[D]``) from 1990 to the
    end of next year, or None when it has no exchange (fx, crypto)."""
    exchange = EXCHANGES.get(calendar)
    if exchange is None:
        return None
    import exchange_calendars

    end = f"{dt.date.today().year + 1}-12-31"
    days = exchange_calendars.get_calendar(exchange, start=SESSIONS_FROM, end=end).sessions
    return np.asarray(days.values.astype("datetime64[D]"))


def missing_sessions(calendar: Calendar, after: npt.ArrayLike, before: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """For each pair of dates, the number of ``calendar`` sessions strictly between ``after``
    and ``before``; -1 where the pair is outside the sessions known (or the calendar has none)."""
    a = np.asarray(after, dtype="datetime64[D]")
    b = np.asarray(before, dtype="datetime64[D]")
    days = sessions(calendar)
    if days is None or not len(days):
        return np.full(a.shape, -1, dtype=np.int64)
    n = np.searchsorted(days, b, side="left") - np.searchsorted(days, a, side="right")
    known = (a >= days[0]) & (b <= days[-1])
    return np.where(known, np.maximum(n, 0), -1).astype(np.int64)
