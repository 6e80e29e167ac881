"""Validate a normalised bars frame: skip and count bad rows, count (but keep) gaps.

A normalised bars frame has exactly these columns, in this order (see ``BARS_SCHEMA``):
``symbol, ts (UTC, microseconds), timeframe, open, high, low, close, volume, source``.
Prices are in the quote currency of the symbol, volume in units traded.

Per-row rules (a bad row is skipped and counted once per rule it breaks, never silently
dropped):

- ``missing_value``: null, NaN or infinite ``ts/open/high/low/close/volume`` (or a null
  ``symbol``/``timeframe``, or a blank ``symbol``);
- ``non_positive_price``: any of ``open/high/low/close`` <= 0;
- ``ohlc_inconsistent``: ``high < max(open, close)``, ``low > min(open, close)`` or ``high < low``;
- ``negative_volume``: ``volume < 0``;
- ``duplicate``: a repeated ``(symbol, timeframe, ts)``; the first occurrence in input order
  is kept, later ones are skipped.

Rule ``gap`` skips nothing: it counts missing stretches of bars per symbol and timeframe on
the symbol's calendar (``backlake.calendars.calendar_of``), after the bad rows are removed:

| timeframe | equity | fx | crypto |
|---|---|---|---|
| ``1d`` | a New York Stock Exchange session without a bar (holidays and closures are not gaps; outside the sessions known, 1990 to next year: > 4 calendar days apart) | > 4 calendar days apart | > 1 day apart |
| ``1w`` / ``1mo`` | > 7 / > 35 days apart | same | same |
| intraday | > 1 bar apart within a UTC day; between days > 4 calendar days | > 1 bar apart, except across the weekend (Fri 20:00 to Sun 23:00 UTC, DST slack included) | > 1 bar apart (24/7) |

Example::

    valid, report = validate_bars(bars)
    print(report.summary())
    report.counts["duplicate"], report.gaps
"""  # noqa: E501 - the table rows above are kept whole

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from backlake.calendars import EXCHANGES, Calendar, bar_duration_seconds, calendar_of, missing_sessions
from backlake.config import TIMEFRAMES
from backlake.data.schema import BAR_COLUMNS, BARS_SCHEMA
from backlake.errors import DataValidationError

__all__ = ["BARS_SCHEMA", "BAR_COLUMNS", "RULES", "SKIP_RULES", "ValidationReport", "validate_bars", "check_bars"]

#: Rules that skip a row, then the counting-only rule ``gap``.
SKIP_RULES = ("missing_value", "non_positive_price", "ohlc_inconsistent", "negative_volume", "duplicate")
RULES = (*SKIP_RULES, "gap")

PRICES = ("open", "high", "low", "close")
MAX_EXAMPLES = 10
_KEY = ["symbol", "timeframe", "ts"]
_DAY_US = 86_400 * 1_000_000
_HOUR_US = 3_600 * 1_000_000
# The fx weekend in seconds since Monday 00:00 UTC, with an hour of slack for DST and brokers.
_FX_WEEKEND_START_US = 4 * _DAY_US + 20 * _HOUR_US  # Friday 20:00
_FX_WEEKEND_END_US = 6 * _DAY_US + 23 * _HOUR_US  # Sunday 23:00 (last missing bar start allowed)


@dataclass
class ValidationReport:
    """What ``validate_bars`` found.

    ``counts``: rule -> rows breaking it, for every rule in ``RULES`` (``gap``: number of gaps).
    ``examples``: up to 10 skipped rows, each with its ``rule`` and 0-based input ``row``.
    ``gap_examples``: up to 10 gaps as ``{symbol, timeframe, from, to}`` (ISO timestamps of
    the bars either side). ``per_symbol``: symbol -> rows_in, rows_valid, rows_skipped, gaps.
    """

    rows_in: int
    rows_valid: int
    rows_skipped: int
    counts: dict[str, int]
    gaps: int
    examples: list[dict[str, Any]] = field(default_factory=list)
    gap_examples: list[dict[str, Any]] = field(default_factory=list)
    per_symbol: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (timestamps as ISO strings, NaN/inf as strings)."""
        return {
            "rows_in": self.rows_in, "rows_valid": self.rows_valid, "rows_skipped": self.rows_skipped,
            "counts": dict(self.counts), "gaps": self.gaps,
            "examples": [dict(e) for e in self.examples],
            "gap_examples": [dict(g) for g in self.gap_examples],
            "per_symbol": {s: dict(v) for s, v in self.per_symbol.items()},
        }

    def summary(self) -> str:
        """Multi-line human-readable text: totals, counts per rule, per symbol, examples."""
        lines = [
            f"validated {self.rows_in} row(s): {self.rows_valid} valid, "
            f"{self.rows_skipped} skipped, {self.gaps} gap(s)"
        ]
        for rule in RULES:
            note = "  (counted, not skipped)" if rule == "gap" else ""
            lines.append(f"  {rule:<20} {self.counts.get(rule, 0)}{note}")
        if self.per_symbol:
            lines.append("per symbol:")
            for sym, c in self.per_symbol.items():
                lines.append(
                    f"  {sym:<10} rows_in={c['rows_in']} valid={c['rows_valid']} "
                    f"skipped={c['rows_skipped']} gaps={c['gaps']}"
                )
        if self.examples:
            lines.append("skipped rows (examples):")
            for e in self.examples:
                values = ", ".join(f"{k}={e[k]}" for k in ("open", "high", "low", "close", "volume"))
                lines.append(f"  row {e['row']} {e['symbol']} {e['ts']}: {e['rule']} ({values})")
        if self.gap_examples:
            lines.append("gaps (examples):")
            for g in self.gap_examples:
                lines.append(f"  {g['symbol']} {g['timeframe']}: {g['from']} -> {g['to']}")
        return "\n".join(lines)


def validate_bars(
    df: pl.DataFrame, *, calendars: Mapping[str, Calendar] | None = None
) -> tuple[pl.DataFrame, ValidationReport]:
    """Split ``df`` into its valid rows and a ``ValidationReport`` (rules: module docstring).

    ``calendars`` overrides ``calendar_of(symbol)`` for the gap rule (e.g. synthetic symbols).
    Returns the valid rows with exactly ``BAR_COLUMNS`` (extra columns are left out), sorted by
    symbol, timeframe, ts. Raises ``DataValidationError`` when a required column is missing or
    has an unusable type, or when no row is valid (the message has the counts per rule).

    Example::

        valid, report = validate_bars(load_samples(["GOOG"]))
        assert report.rows_skipped == 0
    """
    frame = _normalise_types(df)
    flags = frame.with_row_index("row").with_columns(_rule_exprs())
    bad = pl.any_horizontal([pl.col(f"_{r}") for r in SKIP_RULES])
    flags = flags.with_columns(_bad=bad)
    counts = {r: int(flags[f"_{r}"].sum()) for r in SKIP_RULES}
    valid = flags.filter(~pl.col("_bad")).select(BAR_COLUMNS).sort(_KEY)

    rows_in, rows_valid = frame.height, valid.height
    if rows_valid == 0:
        counts["gap"] = 0
        per_rule = ", ".join(f"{r}={counts[r]}" for r in SKIP_RULES)
        err = DataValidationError(
            f"no valid bar among {rows_in} row(s) ({per_rule}); fix the source data "
            "(prices > 0, low <= open/close <= high, volume >= 0, no nulls) and validate again"
        )
        err.report = _report(flags, valid, counts, pl.DataFrame())  # type: ignore[attr-defined]
        raise err

    gaps = _find_gaps(valid, calendars or {})
    counts["gap"] = gaps.height
    return valid, _report(flags, valid, counts, gaps)


def check_bars(rows: pl.DataFrame) -> None:
    """The engine's guard on bars handed to it directly (``symbol, ts`` and the prices of the
    rows a backtest uses): raise ``DataValidationError`` naming the first symbol with a repeated
    ``ts`` (rule ``duplicate``) or a missing, non-finite or non-positive price (rules
    ``missing_value`` / ``non_positive_price``).

    Bars read from the lake were validated once, by ingest (:func:`validate_bars`), and are not
    checked again: the run protocol hands them to the engine with ``validated=True``.
    """
    if rows.is_empty():
        return
    dup = rows.group_by("symbol", maintain_order=True).agg(repeated=pl.len() > pl.col("ts").n_unique())
    if dup["repeated"].any():
        raise DataValidationError(
            f"{dup.filter('repeated')['symbol'][0]} has duplicate timestamps; validate and ingest the bars first")
    bad = rows.filter(pl.any_horizontal([_bad_price(p) for p in PRICES]))
    if bad.height:
        sym = bad["symbol"][0]
        raise DataValidationError(
            f"{sym} has {int((bad['symbol'] == sym).sum())} bar(s) with missing or non-positive prices; "
            "validate and ingest the bars first (backlake ingest reports and skips them)"
        )


def _bad_price(col: str) -> pl.Expr:
    """A price that breaks ``missing_value`` or ``non_positive_price``."""
    return ~(pl.col(col).is_finite() & (pl.col(col) > 0)).fill_null(False)


# -- input checks ---------------------------------------------------------------------------
def _normalise_types(df: pl.DataFrame) -> pl.DataFrame:
    """Check the required columns exist and cast them to ``BARS_SCHEMA`` (or raise)."""
    missing = [c for c in BAR_COLUMNS if c not in df.columns]
    if missing:
        raise DataValidationError(
            f"bars frame is missing column(s) {missing} (it has {df.columns}); counts per rule: "
            "none computed. A bars frame needs " + ", ".join(BAR_COLUMNS) +
            ": build it with backlake.data.file.read_bars_file, load_samples or synthetic_bars"
        )
    exprs = []
    for name, dtype in BARS_SCHEMA.items():
        have = df.schema[name]
        if name == "ts":
            exprs.append(_ts_to_utc(have))
        elif dtype == pl.String:
            exprs.append(pl.col(name).cast(pl.String))
        elif have.is_numeric() or have == pl.Null:
            exprs.append(pl.col(name).cast(pl.Float64))
        else:
            raise DataValidationError(
                f"column {name!r} has type {have}, expected a number: cast it with "
                f"pl.col({name!r}).cast(pl.Float64, strict=False) (unparseable values become null)"
            )
    frame = df.select(exprs)
    unknown = frame.filter(pl.col("timeframe").is_not_null() & ~pl.col("timeframe").is_in(TIMEFRAMES))
    if unknown.height:
        values = sorted(unknown["timeframe"].unique().to_list())
        raise DataValidationError(
            f"column 'timeframe' has unknown value(s) {values}: use one of {', '.join(TIMEFRAMES)}"
        )
    return frame


def _ts_to_utc(have: pl.DataType) -> pl.Expr:
    col = pl.col("ts")
    if isinstance(have, pl.Datetime):
        if have.time_zone is None:
            raise DataValidationError(
                "column 'ts' has naive timestamps (no time zone): localise them, e.g. "
                "pl.col('ts').dt.replace_time_zone('UTC'), or read the file with read_bars_file(timezone=...)"
            )
        return col.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    if have == pl.Date:
        return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if have == pl.Null:
        return col.cast(pl.Datetime("us", "UTC"))
    raise DataValidationError(
        f"column 'ts' has type {have}, expected Datetime(UTC): parse it first, e.g. "
        "pl.col('ts').str.to_datetime(strict=False).dt.replace_time_zone('UTC')"
    )


# -- per-row rules ----------------------------------------------------------------------------
def _rule_exprs() -> list[pl.Expr]:
    """One boolean column ``_<rule>`` per skipping rule; a rule on a missing value is False."""
    num = {c: pl.when(pl.col(c).is_finite()).then(pl.col(c)) for c in (*PRICES, "volume")}
    missing = pl.any_horizontal(
        [pl.col(c).is_null() for c in ("symbol", "timeframe", "ts")]
        + [pl.col("symbol").str.strip_chars().eq("").fill_null(False)]  # blank: a null symbol once stored
        + [~pl.col(c).is_finite().fill_null(False) for c in (*PRICES, "volume")]
    )
    o, h, lo, c = (num[p] for p in PRICES)
    inconsistent = (h < pl.max_horizontal(o, c)) | (lo > pl.min_horizontal(o, c)) | (h < lo)
    first = pl.struct(_KEY).is_first_distinct()
    return [
        missing.alias("_missing_value"),
        pl.any_horizontal([(num[p] <= 0).fill_null(False) for p in PRICES]).alias("_non_positive_price"),
        # each comparison must see its operands; a null operand means "not this rule"
        pl.when(pl.all_horizontal([num[p].is_not_null() for p in PRICES]))
        .then(inconsistent).otherwise(False).alias("_ohlc_inconsistent"),
        (num["volume"] < 0).fill_null(False).alias("_negative_volume"),
        (pl.col("ts").is_not_null() & ~first).alias("_duplicate"),
    ]


# -- gaps -----------------------------------------------------------------------------------
def _find_gaps(valid: pl.DataFrame, calendars: Mapping[str, Calendar]) -> pl.DataFrame:
    """One row (symbol, timeframe, from, to) per missing stretch in the sorted valid bars."""
    symbols = valid["symbol"].unique().to_list()
    cal_map = {s: calendars.get(s, calendar_of(s)) for s in symbols}
    interval_us = {tf: bar_duration_seconds(tf) * 1_000_000 for tf in TIMEFRAMES}
    day = pl.duration(days=1)

    prev = pl.col("ts").shift(1).over(["symbol", "timeframe"])
    delta = pl.col("ts") - prev
    cal = pl.col("symbol").replace_strict(cal_map, return_dtype=pl.String)
    step = pl.duration(microseconds=pl.col("timeframe").replace_strict(interval_us, return_dtype=pl.Int64))
    day_diff = (pl.col("ts").dt.date() - prev.dt.date()).dt.total_days()

    # fx: the missing stretch [prev + step, ts - step] lies inside one weekend window
    first_missing = prev + step
    last_missing = pl.col("ts") - step
    since_monday = (
        (first_missing.dt.weekday().cast(pl.Int64) - 1) * _DAY_US
        + (first_missing - first_missing.dt.truncate("1d")).dt.total_microseconds()
    )
    week_start = first_missing - pl.duration(microseconds=since_monday)
    in_weekend = (since_monday >= _FX_WEEKEND_START_US) & (
        (last_missing - week_start).dt.total_microseconds() <= _FX_WEEKEND_END_US
    )

    intraday = (
        pl.when(cal == "crypto").then(delta > step)
        .when(cal == "fx").then((delta > step) & ~in_weekend)
        .otherwise(pl.when(day_diff == 0).then(delta > step).otherwise(day_diff > 4))
    )
    is_gap = (
        pl.when(pl.col("timeframe") == "1d")
        .then(pl.when(cal == "crypto").then(delta > day).otherwise(delta > 4 * day))
        .when(pl.col("timeframe") == "1w").then(delta > 7 * day)
        .when(pl.col("timeframe") == "1mo").then(delta > 35 * day)
        .otherwise(intraday)
    )
    flagged = valid.with_columns(prev.alias("from"), is_gap.fill_null(False).alias("_gap"), cal.alias("_cal"))
    flagged = _session_gaps(flagged)
    return flagged.filter(pl.col("_gap")).select("symbol", "timeframe", "from", pl.col("ts").alias("to"))


def _session_gaps(flagged: pl.DataFrame) -> pl.DataFrame:
    """Daily bars of a calendar with an exchange (equities: XNYS): a gap is a session of the
    exchange with no bar, so holidays and one-off closures are not gaps and a missing weekday
    is; pairs outside the sessions known keep the calendar-day rule."""
    daily = (pl.col("timeframe") == "1d") & pl.col("from").is_not_null() & pl.col("_cal").is_in(list(EXCHANGES))
    skipped = (pl.col("ts").dt.date() - pl.col("from").dt.date()).dt.total_days() > 1
    flagged = flagged.with_row_index("_i")
    cand = flagged.filter(daily & skipped)
    if cand.height:
        missing = np.zeros(cand.height, dtype=np.int64)
        for calendar in cand["_cal"].unique().to_list():
            mask = (cand["_cal"] == calendar).to_numpy()
            missing[mask] = missing_sessions(calendar, cand.filter(pl.Series(mask))["from"].dt.date().to_numpy(),
                                             cand.filter(pl.Series(mask))["ts"].dt.date().to_numpy())
        decided = cand.select("_i", pl.Series("_missing", missing))
        flagged = flagged.join(decided, on="_i", how="left").with_columns(
            pl.when(pl.col("_missing") >= 0).then(pl.col("_missing") > 0).otherwise(pl.col("_gap")).alias("_gap"))
    return flagged


# -- report ---------------------------------------------------------------------------------
def _report(flags: pl.DataFrame, valid: pl.DataFrame, counts: dict[str, int], gaps: pl.DataFrame) -> ValidationReport:
    per_symbol: dict[str, dict[str, int]] = {}
    by_symbol = flags.group_by("symbol").agg(
        pl.len().alias("rows_in"), pl.col("_bad").sum().alias("rows_skipped")
    ).sort("symbol", nulls_last=True)
    gap_counts = dict(gaps.group_by("symbol").len().iter_rows()) if gaps.height else {}
    for sym, rows_in, skipped in by_symbol.iter_rows():
        key = "<null>" if sym is None else sym
        per_symbol[key] = {
            "rows_in": rows_in, "rows_valid": rows_in - skipped, "rows_skipped": skipped,
            "gaps": gap_counts.get(sym, 0),
        }
    return ValidationReport(
        rows_in=flags.height, rows_valid=valid.height, rows_skipped=flags.height - valid.height,
        counts={r: counts.get(r, 0) for r in RULES}, gaps=counts.get("gap", 0),
        examples=_examples(flags),
        gap_examples=[
            {"symbol": s, "timeframe": tf, "from": _jsonable(a), "to": _jsonable(b)}
            for s, tf, a, b in _spread(gaps).head(MAX_EXAMPLES).iter_rows()
        ] if gaps.height else [],
        per_symbol=per_symbol,
    )


def _spread(gaps: pl.DataFrame) -> pl.DataFrame:
    """Gaps reordered so the examples show each symbol's first gap before anyone's second."""
    nth = pl.int_range(pl.len()).over(["symbol", "timeframe"])
    return gaps.with_columns(_nth=nth).sort("_nth", "symbol", "timeframe", "from").drop("_nth")


def _examples(flags: pl.DataFrame) -> list[dict[str, Any]]:
    """Up to ``MAX_EXAMPLES`` offending rows, taking a few of each broken rule in turn."""
    per_rule = {
        r: flags.filter(pl.col(f"_{r}")).head(MAX_EXAMPLES).to_dicts()
        for r in SKIP_RULES if flags[f"_{r}"].any()
    }
    out: list[dict[str, Any]] = []
    i = 0
    while len(out) < MAX_EXAMPLES and any(i < len(rows) for rows in per_rule.values()):
        for rule, rows in per_rule.items():
            if i < len(rows) and len(out) < MAX_EXAMPLES:
                row = rows[i]
                out.append({"rule": rule, **{k: _jsonable(row[k]) for k in ("row", *BAR_COLUMNS)}})
        i += 1
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
