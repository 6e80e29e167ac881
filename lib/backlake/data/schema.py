"""The bar columns, defined once.

- ``BARS_SCHEMA`` / ``BAR_COLUMNS``: a normalised bars frame, what providers return, ingest
  validates and the lake's ``bars`` table holds (plus ``ingested_at``):
  ``symbol, ts (UTC, microseconds), timeframe, open, high, low, close, volume, source``.
- ``ENGINE_COLUMNS``: the columns the engine reads from any bars frame.
- ``BAR_KEY``: what identifies a bar; the lake holds each key once.

Prices are in the quote currency of the symbol, volume in units traded.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

__all__ = ["BARS_SCHEMA", "BAR_COLUMNS", "ENGINE_COLUMNS", "BAR_KEY", "VALUE_COLUMNS", "date_filter"]

BARS_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(), "ts": pl.Datetime("us", "UTC"), "timeframe": pl.String(),
    "open": pl.Float64(), "high": pl.Float64(), "low": pl.Float64(), "close": pl.Float64(),
    "volume": pl.Float64(), "source": pl.String(),
}
BAR_COLUMNS: tuple[str, ...] = tuple(BARS_SCHEMA)
VALUE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
ENGINE_COLUMNS: tuple[str, ...] = ("symbol", "ts", *VALUE_COLUMNS)
BAR_KEY: tuple[str, ...] = ("symbol", "timeframe", "ts")


def date_filter(start: dt.date | None, end: dt.date | None) -> pl.Expr:
    """``start <= ts.date() <= end`` (UTC dates, both inclusive, either open) as timestamp
    bounds on ``ts``: the one date filter of configs, the engine and run fingerprints."""
    cond = pl.lit(True)
    if start is not None:
        cond &= pl.col("ts") >= dt.datetime.combine(start, dt.time(), dt.UTC)
    if end is not None:
        cond &= pl.col("ts") < dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC)
    return cond
