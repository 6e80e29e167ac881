"""The data a run reads, pinned: the bars at one ``bars`` version, and their fingerprint.

The fingerprint hashes exactly the rows the engine uses: the universe's bars of the config's
timeframe between its start and end dates, and the benchmark's bars up to the end date (the
engine may carry the benchmark's last close from before the start). Ingesting other
symbols, other timeframes or dates after ``end`` leaves it unchanged; revising one used bar
changes it.

Example::

    pinned = pin(lake, cfg)                    # latest bars version
    pinned.bars, pinned.versions, pinned.fingerprint
    pin(lake, cfg, version=pinned.versions["bars"])  # replay: the same rows again
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import polars as pl

from backlake.config import BacktestConfig
from backlake.data.schema import ENGINE_COLUMNS, date_filter
from backlake.lake.store import Lake

__all__ = ["Pinned", "load_bars", "fingerprint", "used_rows", "pin"]

_PRICES = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class Pinned:
    """Bars read at ``versions["bars"]`` and the fingerprint of the rows a config uses."""

    bars: pl.DataFrame
    versions: dict[str, int]
    fingerprint: str


def load_bars(lake: Lake, cfg: BacktestConfig, version: int) -> pl.DataFrame:
    """The bars a config needs (universe + benchmark, its timeframe) at ``bars`` version ``version``."""
    return lake.read(
        "bars", version=version, columns=["timeframe", *ENGINE_COLUMNS],
        where={"symbol": _symbols(cfg), "timeframe": cfg.timeframe},
    )


def _symbols(cfg: BacktestConfig) -> list[str]:
    return list(dict.fromkeys(cfg.symbols + ([cfg.benchmark] if cfg.benchmark else [])))


def used_rows(cfg: BacktestConfig, bars: pl.DataFrame) -> pl.DataFrame:
    """The rows of ``bars`` a run of ``cfg`` can read, sorted by symbol and ts."""
    within = date_filter(cfg.start, cfg.end)
    until = date_filter(None, cfg.end)
    universe = pl.col("symbol").is_in(cfg.symbols)
    bench = pl.col("symbol") == cfg.benchmark if cfg.benchmark else pl.lit(False)
    frame = bars.filter(pl.col("timeframe") == cfg.timeframe) if "timeframe" in bars.columns else bars
    return frame.filter((universe & within) | (bench & until)).unique(
        subset=["symbol", "ts"], keep="first", maintain_order=True).sort("symbol", "ts")


def fingerprint(cfg: BacktestConfig, bars: pl.DataFrame) -> str:
    """sha256 (16 hex) of the rows a run of ``cfg`` uses: symbol, ts and the five values."""
    rows = used_rows(cfg, bars)
    h = hashlib.sha256(cfg.timeframe.encode())
    h.update(np.int64(rows.height).tobytes())
    h.update("\x1f".join(rows["symbol"].to_list()).encode())
    h.update(rows["ts"].dt.epoch("us").to_numpy().astype(np.int64).tobytes())
    for c in _PRICES:
        h.update(np.ascontiguousarray(rows[c].cast(pl.Float64).to_numpy(), dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


def pin(lake: Lake, cfg: BacktestConfig, version: int | None = None) -> Pinned:
    """Read the bars ``cfg`` needs at ``version`` (the latest by default) and fingerprint them."""
    v = lake.version("bars") if version is None else version
    bars = load_bars(lake, cfg, v)
    return Pinned(bars, {"bars": v}, fingerprint(cfg, bars))
