"""Opening range breakout (intraday): buy the first close above the session's opening range."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from backlake.strategies.base import BarData, Signals, StrategyParams, register


class OpeningRangeBreakoutParams(StrategyParams):
    """Parameters of ``opening_range_breakout``, in bars of the data's timeframe."""

    range_bars: int = Field(
        default=6, ge=1, description="Bars at the start of each session that form the opening range, in bars.",
    )
    hold_bars: int = Field(default=12, ge=1,
                           description="Bars a position is held before the engine closes it, in bars.")


def session_positions(ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(session, starts, pos): each bar's session number (UTC calendar day of ``ts``, which
    must be sorted), the first bar index of every session, and each bar's index within its
    session (0 for the session's first bar)."""
    day = np.asarray(ts).astype("datetime64[D]")
    new = np.ones(day.shape[0], dtype=bool)
    new[1:] = day[1:] != day[:-1]
    starts = np.flatnonzero(new)
    session = np.cumsum(new) - 1
    return session, starts, np.arange(day.shape[0]) - starts[session]


@register(
    "opening_range_breakout", OpeningRangeBreakoutParams, intraday_only=True,
    rule=("long once a session when the close breaks above the high of its first range_bars bars, out after"
          " hold_bars bars"),
)
def opening_range_breakout(data: BarData, params: OpeningRangeBreakoutParams) -> Signals:
    """Sessions are the UTC calendar days of ``ts``. The opening range of a session is the
    highest high of its first ``range_bars`` bars. Entry on the first later bar of the same
    session (index within the session >= ``range_bars``) whose close is above that range
    high: at most one entry per session and asset. There are no exit events (exits all
    False): ``Signals.max_hold_bars = hold_bars``, so the engine closes each position after
    exactly ``hold_bars`` bars. Sessions shorter than ``range_bars + 1`` bars never enter."""
    close = np.asarray(data["close"], dtype=np.float64)
    ts = data.get("ts")
    if ts is None or len(ts) != close.shape[0]:
        raise ValueError(
            "opening_range_breakout needs data['ts'] with one timestamp per bar to find the sessions "
            f"(got {'none' if ts is None else len(ts)} for {close.shape[0]} bars)"
        )
    entries = np.zeros(close.shape, dtype=bool)
    if close.shape[0]:
        session, starts, pos = session_positions(ts)
        in_range = (pos < params.range_bars)[:, None]
        masked = np.where(in_range, np.asarray(data["high"], dtype=np.float64), -np.inf)
        range_high = np.maximum.reduceat(masked, starts, axis=0)[session]  # NaN high in range -> NaN
        with np.errstate(invalid="ignore"):
            breakout = ~in_range & (close > range_high)
        count = np.cumsum(breakout, axis=0)
        before = np.vstack([np.zeros((1, close.shape[1]), dtype=count.dtype), count])[starts]
        entries = breakout & (count - before[session] == 1)
    return Signals(
        entries=entries, exits=np.zeros(close.shape, dtype=bool),
        warmup=params.range_bars, max_hold_bars=params.hold_bars,
    )
