"""Ingest: validate bars, then add only the rows the lake does not hold yet.

Each bar (``symbol, timeframe, ts``) is in ``bars`` once, also when several processes ingest
overlapping bars at the same time: the rows to add are decided from the table at its latest
version and committed only if no other commit landed since (otherwise re-read and decided
again; :meth:`Lake.append_checked`).

Idempotent: ingesting the same data twice writes nothing the second time (and makes no new
``bars`` version), so runs pinned to that version stay valid.

Re-ingested bars whose values (open, high, low, close, volume; compared exactly, NaN equal to
NaN) differ from the stored bar with the same key:

- by default the whole ingest is rejected with :class:`~backlake.errors.ChangedBarsError`
  (a ``DataValidationError``) saying how many rows differ per symbol, with a sample, and
  nothing is written;
- with ``revise=True`` the differing rows are replaced and the new ones added in ONE commit
  (a Delta MERGE, :meth:`Lake.merge_checked`), a new version of ``bars``; earlier versions
  keep the old values, so runs pinned to them still replay. Identical rows are left alone.

Example::

    report = ingest_bars(Lake(), load_samples(["GOOG"]))
    report.rows_new, report.bars_version
    ingest_bars(Lake(), corrected, revise=True).rows_revised
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import polars as pl
from deltalake import DeltaTable

from backlake.data.validate import ValidationReport, validate_bars
from backlake.errors import ChangedBarsError
from backlake.lake.store import Lake

__all__ = ["IngestReport", "ingest_bars"]

KEY = ["symbol", "timeframe", "ts"]
#: the values compared between a re-ingested bar and the stored one
VALUES = ["open", "high", "low", "close", "volume"]
#: differences shown in a ChangedBarsError
SAMPLE = 5
#: the MERGE of ``revise``: same key; update a matched row only if a value differs (NULL-safe;
#: DataFusion treats NaN as equal to NaN here, as polars does)
MERGE_ON = " AND ".join(f"(t.{c} = s.{c})" for c in KEY)
VALUES_DIFFER = " OR ".join(f"(t.{c} IS DISTINCT FROM s.{c})" for c in VALUES)


@dataclass
class IngestReport:
    """``rows_new``: bars added; ``rows_existing``: identical bars already in the lake;
    ``rows_revised``: stored bars replaced by different values (``revise=True`` only);
    ``bars_version``: the version of ``bars`` holding the ingested bars (the commit this
    ingest made, or the version it found them all in)."""

    validation: ValidationReport
    rows_new: int
    rows_existing: int
    bars_version: int
    symbols: list[str]
    rows_revised: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows_new": self.rows_new, "rows_existing": self.rows_existing, "rows_revised": self.rows_revised,
            "bars_version": self.bars_version, "symbols": self.symbols,
            "validation": self.validation.to_dict(),
        }

    def summary(self) -> str:
        return (
            f"{len(self.symbols)} symbol(s): {self.rows_new} new bar(s), {self.rows_revised} revised, "
            f"{self.rows_existing} already in the lake; bars is at version {self.bars_version}\n"
            f"{self.validation.summary()}"
        )


@dataclass
class _Plan:
    """What one look at ``bars`` (at ``version``) says to do with the valid rows."""

    version: int
    new: pl.DataFrame
    changed: pl.DataFrame  # the incoming rows whose stored values differ
    diffs: pl.DataFrame  # key + stored and new values of those rows, sorted by key

    @property
    def rows(self) -> pl.DataFrame:
        """The rows to write (changed, then new), stamped with the ingest time."""
        now = pl.lit(dt.datetime.now(dt.UTC)).dt.cast_time_unit("us").alias("ingested_at")
        return pl.concat([self.changed, self.new]).with_columns(now)


def ingest_bars(lake: Lake, bars: pl.DataFrame, *, revise: bool = False) -> IngestReport:
    """Validate ``bars`` (normalised frame, see ``backlake.data``) and add the bars the lake
    lacks, each (symbol, timeframe, ts) once even under concurrent ingests.

    A bar already stored with other values rejects the whole ingest (``ChangedBarsError``,
    nothing written) unless ``revise``: then the stored bars are replaced and the new ones
    added in one commit. Identical bars are skipped; if nothing is left, nothing is written.
    """
    valid, report = validate_bars(bars)
    symbols = sorted(valid["symbol"].unique().to_list())
    timeframes = sorted(valid["timeframe"].unique().to_list())
    plans: list[_Plan] = []

    def plan(handle: DeltaTable) -> _Plan:
        stored = (
            pl.scan_delta(handle, storage_options=lake.storage_options or None)
            .filter(pl.col("symbol").is_in(symbols) & pl.col("timeframe").is_in(timeframes))
            .select(*KEY, *VALUES)
            .collect()
        )
        p = _compare(handle.version(), valid, stored)
        plans.append(p)
        return p

    def build_append(handle: DeltaTable) -> pl.DataFrame | None:
        p = plan(handle)
        if p.changed.height:
            raise _changed_error(p.diffs)
        return p.rows if p.new.height else None

    def build_merge(handle: DeltaTable) -> pl.DataFrame | None:
        p = plan(handle)
        return p.rows if p.new.height or p.changed.height else None

    if revise:
        lake.merge_checked("bars", build_merge, MERGE_ON, "ingest (revise) into bars", update_when=VALUES_DIFFER)
    else:
        lake.append_checked("bars", build_append, "ingest into bars")
    final = plans[-1]  # the look the commit (or the decision to write nothing) was based on
    new, revised = final.new.height, final.changed.height
    # a commit made with no retries lands right after the version it was decided on
    version = final.version + 1 if new or revised else final.version
    return IngestReport(
        validation=report, rows_new=new, rows_existing=valid.height - new - revised, rows_revised=revised,
        bars_version=version, symbols=symbols,
    )


def _compare(version: int, valid: pl.DataFrame, stored: pl.DataFrame) -> _Plan:
    """Split ``valid`` into new rows and rows whose stored values differ (the rest are
    identical). ``stored`` may hold a key more than once (lakes written before ingest was
    serialised); a row differs if any stored copy does."""
    if stored.is_empty():
        empty = valid.clear()
        return _Plan(version, valid, empty, pl.DataFrame())
    new = valid.join(stored, on=KEY, how="anti")
    pairs = valid.select(*KEY, *VALUES).join(stored, on=KEY, how="inner", suffix="_stored")
    differs = pl.any_horizontal([pl.col(c).ne_missing(pl.col(f"{c}_stored")) for c in VALUES])
    diffs = pairs.filter(differs).sort(KEY)
    changed = valid.join(diffs.select(KEY).unique(), on=KEY, how="semi") if diffs.height else valid.clear()
    return _Plan(version, new, changed, diffs)


def _changed_error(diffs: pl.DataFrame) -> ChangedBarsError:
    """The rejection of an ingest that would change stored bars: counts, sample, the fix."""
    keys = diffs.select(KEY).unique()
    per_symbol = dict(keys.group_by("symbol").len().sort("symbol").iter_rows())
    n = keys.height
    sample: list[dict[str, Any]] = []
    for row in diffs.unique(KEY, keep="first", maintain_order=True).head(SAMPLE).iter_rows(named=True):
        for c in VALUES:
            old, new = row[f"{c}_stored"], row[c]
            if _differ(old, new):
                sample.append({"symbol": row["symbol"], "timeframe": row["timeframe"], "ts": row["ts"],
                               "column": c, "stored": old, "new": new})
    counts = ", ".join(f"{s}: {k}" for s, k in per_symbol.items())
    lines = [
        f"{n} re-ingested bar(s) differ from the bars stored under the same (symbol, timeframe, ts) "
        f"({counts}); nothing was ingested. Re-run with --revise (ingest_bars(..., revise=True)) to "
        "replace them as a new version of bars; runs pinned to earlier versions still replay.",
        f"sample (first {min(n, SAMPLE)} of {n} bar(s); column: stored -> new):",
    ]
    for r in _by_row(sample):
        lines.append(f"  {r}")
    return ChangedBarsError("\n".join(lines), changed=per_symbol, sample=sample)


def _by_row(sample: list[dict[str, Any]]) -> list[str]:
    """One line per differing bar: its key, then every differing column."""
    out: dict[tuple[str, str, str], list[str]] = {}
    for d in sample:
        key = (d["symbol"], d["timeframe"], d["ts"].isoformat())
        out.setdefault(key, []).append(f"{d['column']}: {d['stored']!r} -> {d['new']!r}")
    return [f"{s} {tf} {ts}  " + ", ".join(cols) for (s, tf, ts), cols in out.items()]


def _differ(a: object, b: object) -> bool:
    """Exact inequality where None == None and NaN == NaN (as ``ne_missing`` in polars)."""
    if a is None or b is None:
        return (a is None) != (b is None)
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return False
    return a != b


#: A symbol as the lake stores it (a partition value): letters, digits and . _ - ^ = + (BRK.B,
#: ^GSPC, EURUSD=X), starting with a letter, a digit or ^.
SYMBOL_PATTERN = r"[A-Za-z0-9^][A-Za-z0-9._\-^=+]{0,31}"
MAX_SYNTHETIC_PERIODS = 5_000_000


def check_symbol(field: str, symbol: str) -> str:
    """``symbol`` if it can be a symbol of the lake, else ``ConfigError`` naming ``field``."""
    import re

    from backlake.errors import ConfigError

    if not isinstance(symbol, str) or not re.fullmatch(SYMBOL_PATTERN, symbol):
        raise ConfigError(f"{field}={symbol!r} is not a symbol: use 1-32 letters, digits or . _ - ^ = + starting "
                          "with a letter, a digit or ^ (e.g. GOOG, BRK.B, ^GSPC, EURUSD=X)")
    return symbol


def check_ingest_request(source: str, symbols: list[str] | None, path: str | None, symbol: str | None,
                         timeframe: str, columns: dict[str, str] | None, periods: int) -> None:
    """Everything about an ingest that can be checked before any bar is read, so a mistake is one
    line before a flow starts: the source, its path (a readable CSV or Parquet file), the symbols,
    the timeframe, the column mapping and the number of synthetic bars. ``ConfigError`` names the
    field, the value and the fix."""
    from pathlib import Path

    from backlake._suggest import unknown_name_message
    from backlake.config import TIMEFRAMES
    from backlake.data.file import _CSV_SUFFIXES, _PARQUET_SUFFIXES, DEFAULT_ALIASES
    from backlake.errors import ConfigError

    if source not in ("samples", "synthetic", "file"):
        raise ConfigError(unknown_name_message("source", source, ("samples", "synthetic", "file")))
    if timeframe not in TIMEFRAMES:
        raise ConfigError(unknown_name_message("timeframe", timeframe, TIMEFRAMES))
    for s in symbols or []:
        check_symbol("symbols", s)
    if symbols is not None and not symbols:
        raise ConfigError("symbols=[] names no symbol: leave it out for the default, or name some, e.g. GOOG")
    if source == "samples":
        from backlake.data.samples import SAMPLE_SYMBOLS

        for s in symbols or []:
            if s not in SAMPLE_SYMBOLS:
                raise ConfigError(unknown_name_message("sample symbol", s, SAMPLE_SYMBOLS))
    if source == "synthetic" and not 1 <= periods <= MAX_SYNTHETIC_PERIODS:
        raise ConfigError(f"periods={periods} is not a number of bars: use 1 to {MAX_SYNTHETIC_PERIODS:,}")
    if source != "file":
        return
    if symbol is not None:
        check_symbol("symbol", symbol)
    if not path:
        raise ConfigError("source='file' needs a path: --path FILE (a .csv, .csv.gz or .parquet file)")
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"path={path!r} does not exist: check the path")
    if not p.is_file():
        raise ConfigError(f"path={path!r} is not a file: name a .csv, .csv.gz or .parquet file")
    if not p.name.lower().endswith((*_CSV_SUFFIXES, *_PARQUET_SUFFIXES)):
        raise ConfigError(f"path={path!r} has an unsupported extension: use .csv, .csv.gz or .parquet")
    for ours, theirs in (columns or {}).items():
        if ours not in DEFAULT_ALIASES:
            raise ConfigError(unknown_name_message("columns key", ours, DEFAULT_ALIASES)
                              + "; --map takes OURS=THEIRS, e.g. --map ts=Date close='Adj Close'")
        if not theirs:
            raise ConfigError(f"--map {ours}= names no column of the file: write {ours}=<the file's column>")
