"""Fama-French factor returns: the shipped monthly data, user files, and the lake's ``factors`` table.

The shipped data (``backlake/data/samples/ff_factors_monthly.csv.gz``) is Kenneth French's
monthly US research factors, 1949-01 .. 2017-03 (819 months), as the ``linearmodels`` package
ships them (``linearmodels.datasets.french``, from the Ken French data library,
https://mba.tuck.dartmouth.edu/pages/faculty/ken.french/data_library.html): ``MktRF`` (market
minus the risk-free rate), ``SMB`` (size), ``HML`` (value), ``Mom`` (momentum) and ``RF``
(the one-month T-bill rate), decimal returns (0.0194 = 1.94 %), one row per month dated at the
month's last day. It is the only Fama-French data available offline here: there is no daily set
and no 5-factor set (``RMW``, ``CMA``). Newer or other data (French's 5-factor file, later
months) loads from a CSV in the same wide layout, or as downloaded from French's library:
:func:`load_french` / :func:`ingest_factors` ``(path, units=...)``.

In the lake (table ``factors``, key ``(model, factor, date)``) the columns are stored long:

- model ``ff3``: ``MktRF``, ``SMB``, ``HML``, ``RF`` (a file with ``RMW`` and ``CMA`` columns
  is French's 5-factor set instead, whose SMB differs: model ``ff5`` with ``MktRF``, ``SMB``,
  ``HML``, ``RMW``, ``CMA``, ``RF``);
- model ``mom``: ``Mom``.

:func:`read_factors` puts them back into the wide frame a regression uses, per model:
``capm`` (MktRF), ``ff3`` (MktRF, SMB, HML), ``carhart4`` (ff3 + Mom), ``ff5`` (when a 5-factor
file was ingested); each with ``RF``.

Example::

    ingest_factors(Lake())                               # the shipped data: 4,095 rows, then 0
    ingest_factors(Lake(), "F-F_Research_Data_5_Factors_2x3.csv", units="percent")
    read_factors(Lake(), "carhart4")                     # date, MktRF, SMB, HML, Mom, RF
"""

from __future__ import annotations

import calendar
import datetime as dt
import gzip
import io
import re
from pathlib import Path
from typing import Literal

import polars as pl
from deltalake import DeltaTable

from backlake._suggest import unknown_name_message
from backlake.errors import ConfigError
from backlake.lake.schemas import KEYS
from backlake.lake.store import Lake

__all__ = [
    "FACTOR_COLUMNS",
    "MODELS",
    "SHIPPED_FILE",
    "SHIPPED_SOURCE",
    "ingest_factors",
    "load_french",
    "model_factors",
    "read_factors",
]

#: the shipped file (decimal returns, month-end dates)
SHIPPED_FILE = Path(__file__).resolve().parents[1] / "data" / "samples" / "ff_factors_monthly.csv.gz"
#: the ``source`` of the shipped rows (the date range is appended)
SHIPPED_SOURCE = ("Ken French data library (mba.tuck.dartmouth.edu/pages/faculty/ken.french/data_library.html) "
                  "via linearmodels 7.1 datasets.french")

#: the factor columns a file may have, in storage order (RF last)
FACTOR_COLUMNS: tuple[str, ...] = ("MktRF", "SMB", "HML", "RMW", "CMA", "Mom", "RF")
_REQUIRED_COLUMNS = ("MktRF", "SMB", "HML", "RF")

#: regression model -> its factors (RF is always read with them, for excess returns)
MODELS: dict[str, tuple[str, ...]] = {
    "capm": ("MktRF",),
    "ff3": ("MktRF", "SMB", "HML"),
    "carhart4": ("MktRF", "SMB", "HML", "Mom"),
    "ff5": ("MktRF", "SMB", "HML", "RMW", "CMA"),
}
#: regression model -> the stored models its factors come from (joined on date)
_STORED: dict[str, tuple[str, ...]] = {"capm": ("ff3",), "ff3": ("ff3",), "carhart4": ("ff3", "mom"), "ff5": ("ff5",)}

#: stored and ingested values closer than this are the same (a percent file's x / 100 may differ
#: from the shipped float in the last bit; French's data has 4 decimals as decimal returns)
SAME_VALUE = 1e-12
#: a decimal file whose |value| exceeds this (a 100 % monthly factor return) is percent, surely
_DECIMAL_LIMIT = 1.0
_MERGE_ON = " AND ".join(f"(t.{c} = s.{c})" for c in KEYS["factors"])
_DIFFER = "t.value IS DISTINCT FROM s.value"


def model_factors(model: str) -> tuple[str, ...]:
    """The factor columns of regression ``model`` (ConfigError naming the valid models)."""
    if model not in MODELS:
        raise ConfigError(unknown_name_message("factor model", model, MODELS))
    return MODELS[model]


def load_french(
    path: str | Path | None = None, *, units: Literal["percent", "decimal"] | None = None,
    source: str | None = None,
) -> pl.DataFrame:
    """Monthly factor returns as rows of the ``factors`` table (model, factor, date, value,
    freq, source), sorted by model, factor and date.

    ``path`` None: the shipped Ken French data (decimal). Otherwise a CSV (optionally gzip) in
    the wide layout ``date, MktRF, SMB, HML[, Mom][, RMW, CMA], RF`` (French's ``Mkt-RF``
    spelling and an unnamed first date column are accepted; extra columns are ignored; a file
    as downloaded from French's library loads as it is: its description lines and its annual
    section are skipped), one row per month; dates as ``YYYYMM`` (French's), ``YYYY-MM`` or
    ``YYYY-MM-DD``, stored as the month's last day. ``units`` (required for a file):
    ``"percent"`` (French's CSVs: 1.94 means 1.94 %) or ``"decimal"``. ``source`` defaults to
    the file's name. A file with ``RMW`` and ``CMA`` is model ``ff5``, else ``ff3``; ``Mom`` is
    model ``mom``.

    Bad files raise ConfigError in one line naming the file, the column or row and the fix.
    """
    if path is None:
        where, unit = SHIPPED_FILE, "decimal"
        origin = SHIPPED_SOURCE if source is None else source
    else:
        where = Path(path)
        if units not in ("percent", "decimal"):
            raise ConfigError(
                f"units={units!r} for the factor file {where}: say whether its values are percent "
                "(French's CSVs: 1.94 = 1.94 %) or decimal (0.0194): units='percent' or units='decimal'")
        unit = units
        origin = f"file {where.name} ({unit})" if source is None else source
    if not where.is_file():
        raise ConfigError(f"factor file {where} does not exist: give the path of a CSV (date, MktRF, SMB, HML, RF)")
    try:
        data = where.read_bytes()
        text = (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode("utf-8-sig")
        raw = pl.read_csv(io.StringIO(_table_text(text)), infer_schema=False)
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError, EOFError) as e:
        raise ConfigError(f"factor file {where} is not a readable CSV ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}); give a CSV with a header row") from e
    return _parse(raw, where, unit, origin)


def _table_text(text: str) -> str:
    """The monthly table of a factor CSV. A file as downloaded from French's library has
    description lines before the header (the line with ``Mkt-RF``) and an annual section after
    the monthly rows (from the line saying ``Annual``): both are left out. Blank lines are
    skipped."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if "mktrf" in _norm(line)), 0)
    out = []
    for line in lines[start:]:
        if "annual" in line.lower():
            break
        if line.strip().strip(","):
            out.append(line)
    return "\n".join(out) + "\n"


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).lower()


def _parse(raw: pl.DataFrame, where: Path, unit: str, origin: str) -> pl.DataFrame:
    cols = raw.columns
    date_col = next((c for c in cols if _norm(c) in ("date", "dates", "month")), None)
    if date_col is None and cols and _norm(cols[0]) in ("", "duplicated0"):
        date_col = cols[0]
    if date_col is None:
        raise ConfigError(f"factor file {where} has no date column (columns: {', '.join(cols)}): "
                          "name the first column 'date'")
    by_norm = {_norm(c): c for c in cols}
    found = {f: by_norm[_norm(f)] for f in FACTOR_COLUMNS if _norm(f) in by_norm}
    missing = [f for f in _REQUIRED_COLUMNS if f not in found]
    if missing:
        raise ConfigError(f"factor file {where} lacks column(s) {', '.join(missing)} (it has {', '.join(cols)}): "
                          "it needs date, MktRF, SMB, HML and RF (Mom, RMW, CMA optional)")
    if ("RMW" in found) != ("CMA" in found):
        have, lack = ("RMW", "CMA") if "RMW" in found else ("CMA", "RMW")
        raise ConfigError(f"factor file {where} has {have} but not {lack}: a 5-factor file needs both")
    if raw.height == 0:
        raise ConfigError(f"factor file {where} has no rows")

    dates = [_parse_month(v, i, where) for i, v in enumerate(raw[date_col].to_list())]
    seen: dict[dt.date, int] = {}
    for i, d in enumerate(dates):
        if d in seen:
            raise ConfigError(f"factor file {where} has the month {d:%Y-%m} twice (rows {seen[d] + 2} and {i + 2}): "
                              "it must hold monthly data, one row per month")
        seen[d] = i
    scale = 100.0 if unit == "percent" else 1.0
    values: dict[str, list[float]] = {}
    for f, col in found.items():
        vals = []
        for i, v in enumerate(raw[col].to_list()):
            try:
                x = float(v.strip()) if v is not None and v.strip() else None
            except ValueError:
                x = None
            if x is None or x != x:
                what = "is empty" if v is None or not v.strip() else f"{v!r} is not a number"
                raise ConfigError(f"factor file {where} row {i + 2} column {col} {what}: every month needs "
                                  "every factor's return")
            vals.append(x / scale)
        if unit == "decimal" and f != "RF" and max(abs(x) for x in vals) > _DECIMAL_LIMIT:
            raise ConfigError(f"factor file {where} column {col} has |values| above {_DECIMAL_LIMIT:g} with "
                              "units='decimal': they look like percent; use units='percent'")
        values[f] = vals

    first, last = min(dates), max(dates)
    full_source = f"{origin}; monthly {first:%Y-%m}..{last:%Y-%m}"
    base = "ff5" if "RMW" in found else "ff3"
    frames = [
        pl.DataFrame({"model": "mom" if f == "Mom" else base, "factor": f, "date": dates, "value": vals,
                      "freq": "monthly", "source": full_source},
                     schema={"model": pl.String, "factor": pl.String, "date": pl.Date, "value": pl.Float64,
                             "freq": pl.String, "source": pl.String})
        for f, vals in values.items()
    ]
    return pl.concat(frames).sort("model", "factor", "date")


_MONTH_PATTERNS = (
    re.compile(r"^(\d{4})(\d{2})$"),  # French: 192607
    re.compile(r"^(\d{4})[-/](\d{1,2})$"),  # 1926-07
    re.compile(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})$"),  # 1926-07-31
)


def _parse_month(value: str | None, i: int, where: Path) -> dt.date:
    """The last day of the month ``value`` names (ConfigError naming row and value)."""
    text = (value or "").strip()
    for pat in _MONTH_PATTERNS:
        m = pat.match(text)
        if not m:
            continue
        year, month = int(m.group(1)), int(m.group(2))
        if not 1 <= month <= 12:
            break
        last = calendar.monthrange(year, month)[1]
        if len(m.groups()) == 3 and not 1 <= int(m.group(3)) <= last:
            break
        return dt.date(year, month, last)
    raise ConfigError(f"factor file {where} row {i + 2}: bad date {value!r}; use YYYYMM, YYYY-MM or YYYY-MM-DD "
                      "(one row per month)")


def ingest_factors(
    lake: Lake, path: str | Path | None = None, *, units: Literal["percent", "decimal"] | None = None,
    source: str | None = None,
) -> int:
    """Store :func:`load_french` ``(path, units=..., source=...)`` in the lake's ``factors``
    table; returns the rows written (added or revised; 0 when the lake holds them all).

    Idempotent: a MERGE on the key (model, factor, date) in one commit that inserts the
    rows the table lacks and replaces a stored row (value and source) only where the value
    differs (by more than :data:`SAME_VALUE`), so re-running writes nothing (and makes no new
    version), a revised file replaces the revised months (the last ingest wins), and a stored
    row with the same value keeps its source. Earlier table versions keep the old values.
    Concurrent ingests are serialised (:meth:`Lake.merge_checked`)."""
    rows = load_french(path, units=units, source=source)
    written: list[int] = []

    def build(handle: DeltaTable) -> pl.DataFrame | None:
        stored = (pl.scan_delta(handle, storage_options=lake.storage_options or None)
                  .filter(pl.col("model").is_in(rows["model"].unique().to_list()))
                  .select(*KEYS["factors"], "value").collect())
        key = list(KEYS["factors"])
        if stored.is_empty():
            todo = rows
        else:
            pairs = rows.join(stored, on=key, how="left", suffix="_t")
            differs = pl.col("value_t").is_null() | ((pl.col("value") - pl.col("value_t")).abs() > SAME_VALUE)
            todo = pairs.filter(differs).select(rows.columns)
        written.append(todo.height)
        return todo if todo.height else None

    lake.merge_checked("factors", build, _MERGE_ON, "ingest factors", update_when=_DIFFER)
    return written[-1] if written else 0


def read_factors(lake: Lake, model: str = "ff3", *, version: int | None = None) -> pl.DataFrame:
    """The wide factor frame of regression ``model``: ``date`` then its factors (see
    :data:`MODELS`) then ``RF``, one row per month with every factor present, sorted by date.
    ConfigError for an unknown model or when the lake holds none of its factors (run
    :func:`ingest_factors`; ``ff5`` needs a 5-factor file)."""
    factors = model_factors(model)
    stored = _STORED[model]
    long = lake.read("factors", version=version, where={"model": list(stored)})
    wide: pl.DataFrame | None = None
    for m in stored:
        part = long.filter(pl.col("model") == m)
        if part.is_empty():
            hint = ("ingest a 5-factor file (e.g. F-F_Research_Data_5_Factors_2x3.csv from Ken French's data "
                    "library, or a CSV with columns date, MktRF, SMB, HML, RMW, CMA, RF): "
                    "`backlake alpha factors --path FILE --units percent`") if m == "ff5" else \
                "ingest them first: `backlake alpha factors`"
            raise ConfigError(f"the lake's factors table has no {m!r} factors (needed by model {model!r}): {hint}")
        piv = part.pivot(on="factor", index="date", values="value", aggregate_function="first")
        if wide is None:
            wide = piv
        else:
            wide = wide.join(piv.select("date", *[c for c in piv.columns if c not in wide.columns]),
                             on="date", how="inner")
    assert wide is not None
    want = [*factors, "RF"]
    lacking = [c for c in want if c not in wide.columns]
    if lacking:
        raise ConfigError(f"the lake's factors for model {model!r} lack {', '.join(lacking)}: "
                          "re-ingest the factor file")
    return wide.select("date", *want).drop_nulls().sort("date")
