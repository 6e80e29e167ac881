"""An aligned panel of daily bars: dates x symbols, NaN where a symbol has no bar.

Symbols enter and leave: a date belongs to the panel when any of its symbols has a bar that
day, and a symbol without a bar on a date has NaN in every field there (missing data is never
a zero).

Example::

    panel = panel_from_bars(load_samples(list(UNIVERSES["sp500_stocks"])))
    panel.close.shape     # (n_dates, 20)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from backlake.errors import ConfigError, DataValidationError

__all__ = ["Panel", "panel_from_bars"]

FIELDS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class Panel:
    """``dates`` datetime64[D] ascending (n); ``symbols`` (m); each field float64 ``(n, m)``."""

    dates: np.ndarray
    symbols: list[str]
    close: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    volume: np.ndarray

    def __post_init__(self) -> None:
        n, m = len(self.dates), len(self.symbols)
        for name in FIELDS:
            shape = getattr(self, name).shape
            if shape != (n, m):
                raise ValueError(f"Panel.{name} has shape {shape}, expected ({n}, {m})")
        if n > 1 and not bool(np.all(self.dates[1:] > self.dates[:-1])):
            raise ValueError("Panel.dates must be strictly ascending")

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.dates), len(self.symbols)

    def has_volume(self, j: int) -> bool:
        """Whether symbol ``j`` has a positive volume on any of its bars (close-only data has 0)."""
        v = self.volume[:, j]
        return bool(np.any(np.isfinite(v) & (v > 0)))

    def slice_rows(self, start: int, stop: int | None = None) -> Panel:
        """Rows ``start:stop`` (the same symbols)."""
        rows = slice(start, stop)
        return Panel(self.dates[rows], list(self.symbols), self.close[rows], self.open[rows], self.high[rows],
                     self.low[rows], self.volume[rows])

    @classmethod
    def from_arrays(
        cls, dates: np.ndarray, symbols: list[str], close: np.ndarray, *, open: np.ndarray | None = None,
        high: np.ndarray | None = None, low: np.ndarray | None = None, volume: np.ndarray | None = None,
    ) -> Panel:
        """A panel from arrays; missing fields are the close (open/high/low) or NaN (volume)."""
        c = np.asarray(close, dtype=np.float64)
        d = np.asarray(dates).astype("datetime64[D]")

        def arr(a: np.ndarray | None, default: np.ndarray) -> np.ndarray:
            return default.copy() if a is None else np.asarray(a, dtype=np.float64)

        return cls(d, list(symbols), c, arr(open, c), arr(high, c), arr(low, c), arr(volume, np.full_like(c, np.nan)))


def panel_from_bars(bars: pl.DataFrame, timeframe: str = "1d", *, symbols: list[str] | None = None) -> Panel:
    """Pivot long bars (symbol, ts, open, high, low, close, volume[, timeframe]) into a panel.

    Rows of another ``timeframe`` are dropped when the frame has that column. Dates are the UTC
    calendar dates of ``ts``; a date is in the panel when any symbol has a bar that day.
    ``symbols``: the columns, in this order (symbols without bars are all-NaN columns); default
    the symbols of ``bars``, sorted. Two bars of one symbol on one date: DataValidationError."""
    need = ["symbol", "ts", "close"]
    lacking = [c for c in need if c not in bars.columns]
    if lacking:
        raise DataValidationError(f"bars lack column(s) {lacking}; expected symbol, ts, open, high, low, close, volume")
    if "timeframe" in bars.columns:
        bars = bars.filter(pl.col("timeframe") == timeframe)
    date_expr = pl.col("ts").dt.date() if bars.schema["ts"] != pl.Date else pl.col("ts")
    frame = bars.select(
        pl.col("symbol").cast(pl.String), date_expr.alias("date"),
        *[(pl.col(f) if f in bars.columns else pl.lit(None)).cast(pl.Float64).fill_nan(None).alias(f) for f in FIELDS],
    )
    names = sorted(frame["symbol"].unique().to_list()) if symbols is None else list(symbols)
    if len(set(names)) != len(names):
        raise ConfigError(f"symbols={names!r} lists a symbol twice")
    frame = frame.filter(pl.col("symbol").is_in(names))
    dates = frame.select(pl.col("date").unique().sort())["date"].to_numpy().astype("datetime64[D]")
    n, m = len(dates), len(names)
    out = {f: np.full((n, m), np.nan) for f in FIELDS}
    if frame.height:
        col_of = {s: j for j, s in enumerate(names)}
        cols = frame["symbol"].replace_strict(col_of, return_dtype=pl.Int64).to_numpy()
        rows = np.searchsorted(dates, frame["date"].to_numpy().astype("datetime64[D]"))
        flat = rows * m + cols
        if len(flat) and int(np.bincount(flat, minlength=n * m).max()) > 1:
            dup = frame.filter(pl.struct("symbol", "date").is_duplicated()).row(0, named=True)
            raise DataValidationError(
                f"two {timeframe} bars of {dup['symbol']} on {dup['date']}: a panel holds one bar per symbol and date")
        for f in FIELDS:
            out[f].ravel()[flat] = frame[f].to_numpy().astype(np.float64)
    return Panel(dates, names, out["close"], out["open"], out["high"], out["low"], out["volume"])
