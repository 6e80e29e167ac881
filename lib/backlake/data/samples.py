"""The real sample data shipped in ``backlake/data/samples/`` (read locally, never downloaded).

| symbol(s) | timeframe | file | origin |
|---|---|---|---|
| ``SP500``, ``NASDAQ`` | ``1d`` | ``sp500.csv.gz``, ``nasdaq.csv.gz`` | the ``arch`` package (``Close``, not ``Adj Close``) |
| ``GOOG`` | ``1d`` | ``GOOG.csv.gz`` | the ``backtesting`` package's test data |
| ``BTCUSD`` | ``1mo`` | ``BTCUSD.csv.gz`` | ``backtesting``: MONTHLY bars dated at month end, 2012-2024 |
| ``EURUSD`` | ``1h`` | ``EURUSD.csv.gz`` | ``backtesting``: hourly bars, timestamps taken as UTC |
| ``AAPL`` ... ``XOM`` (20) | ``1d`` | ``sp500_dataset.csv.gz`` | ``skfolio``: daily closes only |

Prices are in USD (EURUSD: USD per EUR); volume in shares/units traded. The skfolio file has
closes only, so its bars have ``open = high = low = close`` and ``volume = 0.0``, and their
``source`` says so (``"skfolio:sp500_dataset(close-only)"``).

Example::

    bars = load_samples(["GOOG", "EURUSD"])
    valid, report = validate_bars(bars)
"""  # noqa: E501 - the table rows above are kept whole

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from backlake._suggest import unknown_name_message
from backlake.config import UNIVERSES
from backlake.data.file import read_bars_file
from backlake.data.validate import BARS_SCHEMA
from backlake.errors import ConfigError

__all__ = ["SAMPLE_SYMBOLS", "SAMPLES_DIR", "load_samples"]

SAMPLES_DIR = Path(__file__).with_name("samples")

# symbol -> (file, timeframe, source, read_bars_file keyword arguments)
_OHLCV_FILES: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    "SP500": ("sp500.csv.gz", "1d", "arch:sp500", {"columns": {"ts": "Date"}, "ts_format": "%m/%d/%Y"}),
    "NASDAQ": ("nasdaq.csv.gz", "1d", "arch:nasdaq", {"columns": {"ts": "Date"}, "ts_format": "%m/%d/%Y"}),
    "GOOG": ("GOOG.csv.gz", "1d", "backtesting:GOOG", {"ts_format": "%Y-%m-%d"}),
    "BTCUSD": ("BTCUSD.csv.gz", "1mo", "backtesting:BTCUSD", {"ts_format": "%Y-%m-%d"}),
    "EURUSD": ("EURUSD.csv.gz", "1h", "backtesting:EURUSD", {"ts_format": "%Y-%m-%d %H:%M:%S", "timezone": "UTC"}),
}
_CLOSES_FILE = "sp500_dataset.csv.gz"
_CLOSES_SOURCE = "skfolio:sp500_dataset(close-only)"
_CLOSE_SYMBOLS: tuple[str, ...] = UNIVERSES["sp500_stocks"]  # the file's 20 ticker columns

#: Every sample symbol -> its timeframe.
SAMPLE_SYMBOLS: dict[str, str] = {
    **{sym: spec[1] for sym, spec in _OHLCV_FILES.items()},
    **{sym: "1d" for sym in _CLOSE_SYMBOLS},
}


def load_samples(symbols: list[str] | None = None) -> pl.DataFrame:
    """Normalised bars of ``symbols`` (default: all of ``SAMPLE_SYMBOLS``), NOT yet validated.

    Rows come in the order of ``symbols``, each symbol sorted by time as in its file. Raises
    ``ConfigError`` naming the closest sample symbol for an unknown one.

    Example::

        load_samples(["SP500"]).height  # 5031 daily bars, 1999-01-04 .. 2018-12-31
    """
    wanted = list(dict.fromkeys(SAMPLE_SYMBOLS if symbols is None else symbols))
    for sym in wanted:
        if sym not in SAMPLE_SYMBOLS:
            raise ConfigError(unknown_name_message("sample symbol", sym, SAMPLE_SYMBOLS))
    if not wanted:
        raise ConfigError("symbols=[] names no sample: pass None for all, or e.g. ['GOOG']")

    closes = [s for s in wanted if s in _CLOSE_SYMBOLS]
    close_bars = _close_only(closes) if closes else None
    frames = []
    for sym in wanted:
        if sym in _OHLCV_FILES:
            file, timeframe, source, kwargs = _OHLCV_FILES[sym]
            frames.append(
                read_bars_file(SAMPLES_DIR / file, symbol=sym, timeframe=timeframe, source=source, **kwargs)
            )
        else:
            frames.append(close_bars.filter(pl.col("symbol") == sym))  # type: ignore[union-attr]
    return pl.concat(frames, how="vertical")


def _close_only(symbols: list[str]) -> pl.DataFrame:
    """Long bars from skfolio's wide file of daily closes: open = high = low = close, volume 0."""
    wide = pl.read_csv(SAMPLES_DIR / _CLOSES_FILE, schema_overrides={"Date": pl.String})
    close = pl.col("close")
    return (
        wide.select("Date", *symbols)
        .unpivot(index="Date", variable_name="symbol", value_name="close")
        .select(
            "symbol",
            pl.col("Date").str.to_datetime("%Y-%m-%d", strict=False, time_unit="us")
            .dt.replace_time_zone("UTC").alias("ts"),
            pl.lit("1d").alias("timeframe"),
            close.alias("open"), close.alias("high"), close.alias("low"), close,
            pl.lit(0.0).alias("volume"),
            pl.lit(_CLOSES_SOURCE).alias("source"),
        )
        .select(pl.col(c).cast(t) for c, t in BARS_SCHEMA.items())
    )
