"""Read bars from a CSV (optionally gzip-compressed) or Parquet file into a normalised frame.

Columns are found by name, case-insensitively: ``date/datetime/timestamp/time/ts`` (or an
unnamed first column) -> ``ts``; ``open, high, low, close, volume``; ``symbol/ticker``. Pass
``columns`` (OUR name -> THEIR name) for anything else, e.g. ``{"close": "Adj Close"}``.

Timestamps: strings are parsed with ``ts_format`` (a chrono/strftime format such as
``"%m/%d/%Y"``) or, without it, with the best-matching of a few common formats. Naive
timestamps are taken to be in ``timezone`` and converted to UTC; plain dates become midnight
UTC. A value that cannot be parsed keeps its row with a null ``ts``, which ``validate_bars``
then counts (and skips) as ``missing_value`` -- nothing is dropped silently.

Example::

    bars = read_bars_file("spx.csv.gz", symbol="SPX", columns={"ts": "Date", "close": "Adj Close"},
                          ts_format="%m/%d/%Y")
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from backlake._suggest import unknown_name_message
from backlake.config import TIMEFRAMES
from backlake.data.validate import BARS_SCHEMA
from backlake.errors import ConfigError

__all__ = ["read_bars_file", "DEFAULT_ALIASES"]

#: Our column -> the names (lower case, in order of preference) matched by default.
DEFAULT_ALIASES: dict[str, tuple[str, ...]] = {
    "symbol": ("symbol", "ticker"),
    "ts": ("ts", "timestamp", "datetime", "date", "time"),
    "open": ("open",), "high": ("high",), "low": ("low",), "close": ("close",),
    "volume": ("volume",),
}
_REQUIRED = ("ts", "open", "high", "low", "close")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_CSV_SUFFIXES = (".csv", ".csv.gz", ".txt", ".txt.gz")
_NULLS = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"]

#: Formats tried (on a sample of the values) when ``ts_format`` is not given.
_AUTO_FORMATS = (
    "%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%#z", "%Y-%m-%d %H:%M:%S%#z",
    "%Y-%m-%dT%H:%M:%S%.f%#z", "%Y%m%d", "%Y/%m/%d", "%m/%d/%Y", "%d/%m/%Y", "%d.%m.%Y",
    "%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S",
)
_TIME_DIRECTIVE = re.compile(r"%[-#]?[HIMSTRrcsfpPkl+]|%\.f|%z|%Z|%:z|%#z")


def read_bars_file(
    path: str | Path,
    *,
    symbol: str | None = None,
    timeframe: str = "1d",
    columns: Mapping[str, str] | None = None,
    ts_format: str | None = None,
    timezone: str = "UTC",
    source: str | None = None,
) -> pl.DataFrame:
    """Read ``path`` (CSV, CSV.gz or Parquet) into a normalised bars frame (not yet validated).

    - ``symbol``: the symbol of every row; required when the file has no symbol column, and
      when given it overrides that column.
    - ``timeframe``: bar size of every row, one of ``backlake.config.TIMEFRAMES``.
    - ``columns``: OUR column name -> THEIR column name, overriding the default matching.
    - ``ts_format``: strftime-style format of string timestamps (default: auto-detected).
    - ``timezone``: IANA zone of naive timestamps (dates always become midnight UTC).
    - ``source``: lineage string stored with each row (default ``"file:<file name>"``).

    Prices are taken as given (quote currency). A file without a volume column gets
    ``volume = 0.0`` on every row. Raises ``ConfigError`` for a bad argument, an unreadable
    file, or a missing column (the message lists the file's columns and the ``columns`` fix).

    Example::

        read_bars_file("GOOG.csv.gz", symbol="GOOG")              # Date,Open,High,Low,Close,Volume
        read_bars_file("prices.parquet", columns={"ts": "Day", "symbol": "Code"})
    """
    path = Path(path)
    _check_args(timeframe, timezone, columns)
    raw = _read(path)
    mapping = _resolve_columns(raw.columns, columns or {}, path, symbol_given=symbol is not None)

    exprs: list[pl.Expr | pl.Series] = []
    if symbol is not None:
        exprs.append(pl.lit(symbol, pl.String).alias("symbol"))
    else:
        exprs.append(pl.col(mapping["symbol"]).cast(pl.String).str.strip_chars().alias("symbol"))
    exprs.append(_parse_ts(raw[mapping["ts"]], ts_format, timezone, path).alias("ts"))
    exprs.append(pl.lit(timeframe, pl.String).alias("timeframe"))
    for name in ("open", "high", "low", "close", "volume"):
        if name in mapping:
            exprs.append(_to_float(raw, mapping[name]).alias(name))
        else:  # only volume may be absent
            exprs.append(pl.lit(0.0, pl.Float64).alias(name))
    exprs.append(pl.lit(source or f"file:{path.name}", pl.String).alias("source"))
    return raw.select(exprs).select(pl.col(c).cast(t) for c, t in BARS_SCHEMA.items())


def _check_args(timeframe: str, timezone: str, columns: Mapping[str, str] | None) -> None:
    if timeframe not in TIMEFRAMES:
        raise ConfigError(unknown_name_message("timeframe", timeframe, TIMEFRAMES))
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"timezone={timezone!r} is not an IANA time zone: use e.g. 'UTC', 'America/New_York'"
        ) from None
    for ours in columns or {}:
        if ours not in DEFAULT_ALIASES:
            raise ConfigError(
                unknown_name_message("columns key", ours, DEFAULT_ALIASES)
                + "; columns maps OUR column name -> the file's column name"
            )


def _read(path: Path) -> pl.DataFrame:
    name = path.name.lower()
    if not path.is_file():
        raise ConfigError(f"path={str(path)!r} is not a file: check the path")
    try:
        if name.endswith(_PARQUET_SUFFIXES):
            return pl.read_parquet(path)
        if name.endswith(_CSV_SUFFIXES):
            # every column as text first: timestamps are parsed here, numbers cast leniently
            return pl.read_csv(path, infer_schema=False, null_values=_NULLS)
    except (pl.exceptions.PolarsError, OSError) as e:
        raise ConfigError(f"path={str(path)!r} could not be read: {e}") from None
    raise ConfigError(
        f"path={str(path)!r} has an unsupported extension: use .csv, .csv.gz or .parquet"
    )


def _resolve_columns(
    have: list[str], columns: Mapping[str, str], path: Path, *, symbol_given: bool
) -> dict[str, str]:
    """Our column -> the file's column, from ``columns`` first, then the default aliases."""
    lower = {c.strip().lower(): c for c in reversed(have)}  # first column wins on a clash
    mapping: dict[str, str] = {}
    for ours, aliases in DEFAULT_ALIASES.items():
        if ours in columns:
            theirs = columns[ours]
            if theirs not in have:
                raise ConfigError(
                    f"columns[{ours!r}]={theirs!r} is not a column of {path.name} "
                    f"(its columns: {have}): fix the name in columns"
                )
            mapping[ours] = theirs
            continue
        found = next((lower[a] for a in aliases if a in lower), None)
        if found is None and ours == "ts" and have and have[0].strip() in ("", "index", "__index_level_0__"):
            found = have[0]  # an unnamed first column, as pandas writes an index
        if found is not None:
            mapping[ours] = found
    needed = [*_REQUIRED, *(() if symbol_given else ("symbol",))]
    absent = [c for c in needed if c not in mapping]
    if absent:
        hint = "pass symbol='...' or " if absent == ["symbol"] else ""
        example = ", ".join(f"'{c}': '<their name>'" for c in absent)
        raise ConfigError(
            f"{path.name} has no column for {absent} (its columns: {have}): {hint}"
            f"map them with columns={{{example}}}"
        )
    return mapping


def _to_float(raw: pl.DataFrame, name: str) -> pl.Expr:
    """Cast to Float64; text that is not a number becomes null (then ``missing_value``)."""
    col = pl.col(name)
    if raw.schema[name] == pl.String:
        col = col.str.strip_chars()
    return col.cast(pl.Float64, strict=False)


def _parse_ts(values: pl.Series, ts_format: str | None, timezone: str, path: Path) -> pl.Series:
    """Parse ``values`` to Datetime("us", "UTC"); unparseable values become null."""
    dtype = values.dtype
    if dtype == pl.Date:
        return values.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if isinstance(dtype, pl.Datetime):
        return _to_utc(values, timezone)
    if dtype != pl.String:
        raise ConfigError(
            f"timestamp column {values.name!r} of {path.name} has type {dtype}: store dates or "
            "datetimes (or strings and pass ts_format=...)"
        )
    text = values.str.strip_chars()
    fmt = ts_format or _guess_format(text)
    if fmt is None:
        parsed = pl.Series(values.name, [None] * len(values), pl.Datetime("us", "UTC"))
    else:
        parsed = text.str.to_datetime(fmt, strict=False, time_unit="us")
        if not _TIME_DIRECTIVE.search(fmt):
            parsed = parsed.dt.replace_time_zone("UTC")  # a date: midnight UTC
    sample = text.drop_nulls()
    if sample.len() and parsed.null_count() == len(parsed):
        how = f"ts_format={ts_format!r}" if ts_format else "any common format"
        raise ConfigError(
            f"no value of column {values.name!r} in {path.name} matches {how} "
            f"(first value {sample[0]!r}): pass ts_format, e.g. ts_format='%m/%d/%Y %H:%M'"
        )
    return _to_utc(parsed, timezone)


def _to_utc(values: pl.Series, timezone: str) -> pl.Series:
    dtype = values.dtype  # a Datetime: _parse_ts passes nothing else
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        values = values.dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null")
    return values.dt.convert_time_zone("UTC").dt.cast_time_unit("us")


def _guess_format(text: pl.Series, sample_size: int = 500) -> str | None:
    """The format in ``_AUTO_FORMATS`` that parses most of a sample (first one on a tie)."""
    sample = text.drop_nulls().head(sample_size)
    if sample.len() == 0:
        return None
    best, best_ok = None, 0
    for fmt in _AUTO_FORMATS:
        try:
            ok = sample.str.to_datetime(fmt, strict=False).drop_nulls().len()
        except pl.exceptions.PolarsError:
            continue
        if ok > best_ok:
            best, best_ok = fmt, ok
    return best
