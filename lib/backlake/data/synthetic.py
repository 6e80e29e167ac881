"""Seeded synthetic bars: correlated geometric Brownian motion for several symbols.

Each symbol's close follows ``dS/S = drift dt + vol dW`` with ``drift`` and ``vol`` annualised
(``0.05`` = 5 % a year) and ``dt`` = one bar in years (``1 / periods_per_year``). The
Brownian motions of any two symbols have correlation ``correlation``. Each bar opens at the
previous close plus a small gap; high/low extend beyond open/close, so every bar satisfies
``low <= min(open, close) <= max(open, close) <= high``, all prices > 0 and volume > 0.

Timestamps follow ``calendar`` (UTC, no holidays):

| calendar | ``1d`` | intraday |
|---|---|---|
| ``equity`` | Monday-Friday | Monday-Friday, bars starting 14:30 to before 21:00 |
| ``fx`` | Monday-Friday | 24x5: Sunday 21:00 to Friday 21:00 |
| ``crypto`` | every day | 24x7 |

``1w`` bars start on the first Monday on/after ``start`` (crypto: on ``start``); ``1mo`` bars
on the 1st of each month from the first one on/after ``start``.

Example::

    bars = synthetic_bars(("SYN0", "SYN1"), periods=500, timeframe="1h", seed=7)
    bars.equals(synthetic_bars(("SYN0", "SYN1"), periods=500, timeframe="1h", seed=7))  # True
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence

import numpy as np
import polars as pl

from backlake._suggest import unknown_name_message
from backlake.calendars import bar_duration_seconds, periods_per_year
from backlake.config import TIMEFRAMES
from backlake.data.validate import BARS_SCHEMA
from backlake.errors import ConfigError

__all__ = ["synthetic_bars"]

CALENDARS = ("equity", "fx", "crypto")
_US = 1_000_000
_DAY = 86_400 * _US
_HOUR = 3_600 * _US
_SESSION = (14 * _HOUR + 30 * 60 * _US, 21 * _HOUR)  # equity session, UTC time of day


def synthetic_bars(
    symbols: Sequence[str] | str = ("SYN0", "SYN1", "SYN2"),
    *,
    start: str | dt.date | dt.datetime = "2015-01-01",
    periods: int = 2520,
    timeframe: str = "1d",
    seed: int = 0,
    calendar: str = "equity",
    drift: float = 0.05,
    vol: float = 0.2,
    correlation: float = 0.3,
    start_price: float = 100.0,
) -> pl.DataFrame:
    """``periods`` bars per symbol as a normalised bars frame; same arguments -> same frame.

    ``start``: first timestamp (ISO string, date or datetime; naive means UTC). ``drift`` and
    ``vol``: annualised (fractions per year). ``correlation``: pairwise, in (-1, 1).
    ``start_price``: first open, in the quote currency. ``source`` is ``"synthetic:seed=<seed>"``.
    Raises ``ConfigError`` naming the bad argument.

    Example::

        synthetic_bars(("A", "B"), periods=252, seed=1, correlation=0.8)  # 504 rows
    """
    names = _check(symbols, periods, timeframe, seed, calendar, drift, vol, correlation, start_price)
    ts = _timestamps(_parse_start(start), periods, timeframe, calendar)

    rng = np.random.default_rng(seed)
    n = len(names)
    years = 1.0 / periods_per_year(timeframe, calendar)  # type: ignore[arg-type]
    step_vol = vol * math.sqrt(years)
    corr = np.full((n, n), correlation) + np.eye(n) * (1.0 - correlation)
    shocks = rng.standard_normal((periods, n)) @ np.linalg.cholesky(corr).T
    log_ret = (drift - 0.5 * vol**2) * years + step_vol * shocks
    close = start_price * np.exp(np.cumsum(log_ret, axis=0))
    prev_close = np.vstack([np.full((1, n), start_price), close[:-1]])
    open_ = prev_close * np.exp(0.1 * step_vol * rng.standard_normal((periods, n)))
    open_[0] = start_price
    high = np.maximum(open_, close) * np.exp(0.5 * step_vol * np.abs(rng.standard_normal((periods, n))))
    low = np.minimum(open_, close) * np.exp(-0.5 * step_vol * np.abs(rng.standard_normal((periods, n))))
    bar_days = bar_duration_seconds(timeframe) / 86_400
    volume = 1e6 * bar_days * np.exp(0.3 * rng.standard_normal((periods, n)))

    ts_series = pl.Series("ts", np.tile(ts, n)).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    frame = pl.DataFrame({
        "symbol": np.repeat(np.array(names, dtype=object), periods).tolist(),
        "ts": ts_series,
        "timeframe": timeframe,
        "open": open_.T.ravel(), "high": high.T.ravel(), "low": low.T.ravel(),
        "close": close.T.ravel(), "volume": volume.T.ravel(),
        "source": f"synthetic:seed={seed}",
    })
    return frame.select(pl.col(c).cast(t) for c, t in BARS_SCHEMA.items())


def _check(
    symbols: Sequence[str] | str, periods: int, timeframe: str, seed: int, calendar: str, drift: float, vol: float,
    correlation: float, start_price: float,
) -> list[str]:
    # checked at run time too: values come from JSON and the CLI, not only from typed callers
    names = [symbols] if isinstance(symbols, str) else list(symbols)
    if not names or any(not isinstance(s, str) or not s.strip() for s in names):
        raise ConfigError(f"symbols={symbols!r} must be a non-empty list of non-empty names, e.g. ('SYN0',)")
    if len(set(names)) != len(names):
        raise ConfigError(f"symbols={symbols!r} lists a symbol twice")
    if isinstance(periods, bool) or not isinstance(periods, int) or periods < 1:
        raise ConfigError(f"periods={periods!r} must be a whole number >= 1 (bars per symbol)")
    if timeframe not in TIMEFRAMES:
        raise ConfigError("timeframe: " + unknown_name_message("timeframe", str(timeframe), TIMEFRAMES))
    if calendar not in CALENDARS:
        raise ConfigError("calendar: " + unknown_name_message("calendar", str(calendar), CALENDARS))
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed={seed!r} must be a whole number >= 0")
    if not math.isfinite(drift):
        raise ConfigError(f"drift={drift!r} must be a finite annual rate, e.g. 0.05")
    if not (math.isfinite(vol) and vol >= 0):
        raise ConfigError(f"vol={vol!r} must be an annual volatility >= 0, e.g. 0.2")
    if not -1 < correlation < 1:
        raise ConfigError(f"correlation={correlation!r} must be strictly between -1 and 1, e.g. 0.3")
    if len(names) > 2 and correlation <= -1 / (len(names) - 1):
        raise ConfigError(
            f"correlation={correlation!r} is impossible for {len(names)} symbols: pairwise "
            f"correlation must be > {-1 / (len(names) - 1):.4f}"
        )
    if not (math.isfinite(start_price) and start_price > 0):
        raise ConfigError(f"start_price={start_price!r} must be a price > 0, e.g. 100.0")
    return names


def _parse_start(start: str | dt.date | dt.datetime) -> dt.datetime:
    if isinstance(start, str):
        try:
            start = dt.datetime.fromisoformat(start)
        except ValueError:
            raise ConfigError(f"start={start!r} is not an ISO date: use e.g. '2015-01-01'") from None
    if not isinstance(start, dt.datetime):
        if not isinstance(start, dt.date):
            raise ConfigError(f"start={start!r} must be an ISO date string, a date or a datetime")
        start = dt.datetime(start.year, start.month, start.day)
    if start.tzinfo is None:
        return start.replace(tzinfo=dt.UTC)
    return start.astimezone(dt.UTC)


def _timestamps(start: dt.datetime, periods: int, timeframe: str, calendar: str) -> np.ndarray:
    """``periods`` bar start times (int64 microseconds since the epoch, UTC)."""
    start_us = int((start - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) / dt.timedelta(microseconds=1))
    midnight = start_us - start_us % _DAY
    if timeframe == "1mo":
        year, month = start.year, start.month + (start.day > 1 or start_us > midnight)
        out = []
        for i in range(periods):
            y, m = divmod(month - 1 + i, 12)
            out.append(int(dt.datetime(year + y, m + 1, 1, tzinfo=dt.UTC).timestamp()) * _US)
        return np.array(out, dtype=np.int64)
    first = midnight if start_us == midnight else midnight + _DAY
    if timeframe == "1w":
        if calendar != "crypto":
            first += ((7 - _weekday(np.array([first]))[0]) % 7) * _DAY  # next Monday
        return first + np.arange(periods, dtype=np.int64) * 7 * _DAY
    if timeframe == "1d":
        keep = _all if calendar == "crypto" else _weekdays
        return _grid(first, _DAY, keep, periods)
    step = bar_duration_seconds(timeframe) * _US
    anchor = midnight + (_SESSION[0] if calendar == "equity" else 0)
    keep = {"equity": _in_session, "fx": _fx_open, "crypto": _all}[calendar]
    return _grid(anchor, step, lambda t: keep(t) & (t >= start_us), periods)


def _grid(anchor: int, step: int, keep: Callable[[np.ndarray], np.ndarray], periods: int) -> np.ndarray:
    """The first ``periods`` points of ``anchor + k * step`` (k >= 0) that ``keep`` accepts."""
    n = 2 * periods + 64
    while True:
        t: np.ndarray = anchor + np.arange(n, dtype=np.int64) * step
        t = t[keep(t)]
        if len(t) >= periods:
            return t[:periods]
        n *= 2


def _weekday(t: np.ndarray) -> np.ndarray:
    return (t // _DAY + 3) % 7  # Monday = 0 (1970-01-01 was a Thursday)


def _all(t: np.ndarray) -> np.ndarray:
    return np.ones(len(t), dtype=bool)


def _weekdays(t: np.ndarray) -> np.ndarray:
    return _weekday(t) < 5


def _in_session(t: np.ndarray) -> np.ndarray:
    tod = t % _DAY
    return _weekdays(t) & (tod >= _SESSION[0]) & (tod < _SESSION[1])


def _fx_open(t: np.ndarray) -> np.ndarray:
    wd, tod = _weekday(t), t % _DAY
    closed: np.ndarray = ((wd == 4) & (tod >= 21 * _HOUR)) | (wd == 5) | ((wd == 6) & (tod < 21 * _HOUR))
    return ~closed
