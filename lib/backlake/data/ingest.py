"""Ingest: validate bars, then append only the rows the lake does not hold yet.

Idempotent: ingesting the same data twice writes nothing the second time (and makes no new
``bars`` version), so runs pinned to that version stay valid.

Example::

    report = ingest_bars(Lake(), load_samples(["GOOG"]))
    report.rows_new, report.bars_version
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from backlake.data.validate import ValidationReport, validate_bars
from backlake.lake.store import Lake

__all__ = ["IngestReport", "ingest_bars"]

KEY = ["symbol", "timeframe", "ts"]


@dataclass
class IngestReport:
    validation: ValidationReport
    rows_new: int
    rows_existing: int
    bars_version: int
    symbols: list[str]

    def to_dict(self) -> dict:
        return {
            "rows_new": self.rows_new, "rows_existing": self.rows_existing,
            "bars_version": self.bars_version, "symbols": self.symbols,
            "validation": self.validation.to_dict(),
        }

    def summary(self) -> str:
        return (
            f"{len(self.symbols)} symbol(s): {self.rows_new} new bar(s), {self.rows_existing} already in "
            f"the lake; bars is at version {self.bars_version}\n{self.validation.summary()}"
        )


def ingest_bars(lake: Lake, bars: pl.DataFrame) -> IngestReport:
    """Validate ``bars`` (normalised frame, see ``backlake.data``) and append the new rows."""
    valid, report = validate_bars(bars)
    symbols = sorted(valid["symbol"].unique().to_list())
    existing = lake.read("bars", columns=KEY, where={"symbol": symbols})
    if existing.height:
        new = valid.join(existing.select(KEY), on=KEY, how="anti")
    else:
        new = valid
    if new.height:
        new = new.with_columns(pl.lit(dt.datetime.now(dt.timezone.utc)).dt.cast_time_unit("us").alias("ingested_at"))
        lake.append("bars", new)
    return IngestReport(
        validation=report, rows_new=new.height, rows_existing=valid.height - new.height,
        bars_version=lake.version("bars"), symbols=symbols,
    )
