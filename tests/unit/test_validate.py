"""validate_bars: every rule counts and skips its bad rows; gaps are counted, never skipped."""

from __future__ import annotations

import datetime as dt
import json
import math

import polars as pl
import pytest

from backlake.data.validate import BAR_COLUMNS, BARS_SCHEMA, RULES, validate_bars
from backlake.errors import DataValidationError

UTC = dt.UTC


def bar(symbol: str, ts: dt.datetime, o=100.0, h=101.0, lo=99.0, c=100.5, v=1000.0, tf="1d") -> dict:
    return {"symbol": symbol, "ts": ts, "timeframe": tf, "open": o, "high": h, "low": lo,
            "close": c, "volume": v, "source": "test"}


def frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=BARS_SCHEMA)


def days(start: dt.date, n: int, symbol: str = "AAA", weekdays_only: bool = True, tf: str = "1d") -> list[dict]:
    """``n`` daily bars from ``start`` (business days by default)."""
    out, d = [], start
    while len(out) < n:
        if not weekdays_only or d.weekday() < 5:
            out.append(bar(symbol, dt.datetime(d.year, d.month, d.day, tzinfo=UTC), tf=tf))
        d += dt.timedelta(days=1)
    return out


def hours(start: dt.datetime, end: dt.datetime, symbol: str, step_h: float = 1.0) -> list[dict]:
    out, t = [], start
    while t < end:
        out.append(bar(symbol, t, tf="1h"))
        t += dt.timedelta(hours=step_h)
    return out


# -- per-row rules -------------------------------------------------------------------------
GOOD = days(dt.date(2024, 1, 1), 10)  # Mon 2024-01-01 .. Fri 2024-01-12
LATER = [dt.datetime(2024, 1, 15 + i, tzinfo=UTC) for i in range(6)]  # after the good rows
BAD_BY_RULE = {
    "missing_value": bar("AAA", LATER[0], c=float("nan")),
    "non_positive_price": bar("AAA", LATER[1], o=0.0, lo=0.0),
    "ohlc_inconsistent": bar("AAA", LATER[2], h=100.2),  # high below close 100.5
    "negative_volume": bar("AAA", LATER[3], v=-5.0),
    "duplicate": {**GOOD[3], "close": 100.9},  # repeats the key of a good row
}


@pytest.mark.parametrize("rule", list(BAD_BY_RULE))
def test_one_bad_row_per_rule_is_counted_and_skipped(rule: str) -> None:
    valid, report = validate_bars(frame([*GOOD, BAD_BY_RULE[rule]]))
    assert report.rows_in == 11 and report.rows_valid == 10 and report.rows_skipped == 1
    assert report.counts == {r: int(r == rule) for r in RULES}
    assert valid.equals(frame(GOOD))  # the good rows survive untouched
    assert [e["rule"] for e in report.examples] == [rule]
    assert report.examples[0]["row"] == 10


def test_all_rules_together_and_a_row_breaking_two_rules_is_skipped_once() -> None:
    two_rules = bar("AAA", LATER[4], o=-1.0, lo=-2.0, v=-1.0)  # non_positive_price, negative_volume
    missing_ts = bar("AAA", None)  # type: ignore[arg-type]
    rows = GOOD + list(BAD_BY_RULE.values()) + [two_rules, missing_ts]
    valid, report = validate_bars(frame(rows))
    assert report.counts == {
        "missing_value": 2, "non_positive_price": 2, "ohlc_inconsistent": 1,
        "negative_volume": 2, "duplicate": 1, "gap": 0,
    }
    assert report.rows_skipped == 7 and report.rows_valid == 10
    assert report.per_symbol == {"AAA": {"rows_in": 17, "rows_valid": 10, "rows_skipped": 7, "gaps": 0}}
    assert {e["rule"] for e in report.examples} == set(BAD_BY_RULE)
    assert valid.equals(frame(GOOD))


@pytest.mark.parametrize(
    "field, value",
    [("open", None), ("high", float("inf")), ("low", float("nan")), ("volume", None), ("symbol", None),
     ("symbol", ""), ("symbol", "  ")],  # a blank symbol would be stored as a null one
)
def test_missing_values_of_any_required_field(field: str, value: object) -> None:
    row = {**bar("AAA", LATER[0]), field: value}
    _, report = validate_bars(frame([*GOOD, row]))
    assert report.counts["missing_value"] == 1
    assert sum(report.counts[r] for r in RULES) == 1  # a missing value breaks no other rule


@pytest.mark.parametrize(
    "o, h, lo, c",
    [(100, 99, 98, 98.5), (100, 101, 100.5, 100.8), (100, 99, 101, 100), (100, 101, 99, 101.5)],
)
def test_ohlc_inconsistent_cases(o: float, h: float, lo: float, c: float) -> None:
    _, report = validate_bars(frame([*GOOD, bar("AAA", LATER[0], o=o, h=h, lo=lo, c=c)]))
    assert report.counts["ohlc_inconsistent"] == 1


def test_duplicates_keep_the_first_occurrence() -> None:
    ts = dt.datetime(2024, 1, 2, tzinfo=UTC)
    rows = [bar("AAA", ts, c=100.1), bar("AAA", ts, c=100.2), bar("AAA", ts, c=100.3),
            bar("BBB", ts, c=100.4), bar("AAA", ts, c=100.6, h=102, tf="1w")]
    valid, report = validate_bars(frame(rows))
    assert report.counts["duplicate"] == 2
    assert valid.filter(pl.col("symbol") == "AAA", pl.col("timeframe") == "1d")["close"].to_list() == [100.1]
    assert valid.height == 3  # other symbol and other timeframe are not duplicates


def test_output_is_sorted_normalised_and_drops_extra_columns() -> None:
    rows = days(dt.date(2024, 1, 1), 5, "BBB") + days(dt.date(2024, 1, 1), 5, "AAA")
    df = frame(rows[::-1]).with_columns(pl.lit(1).alias("extra"))
    valid, _ = validate_bars(df)
    assert valid.columns == list(BAR_COLUMNS) and valid.schema == pl.Schema(BARS_SCHEMA)
    assert valid["symbol"].to_list() == ["AAA"] * 5 + ["BBB"] * 5
    assert valid["ts"].head(5).is_sorted() and valid["ts"].tail(5).is_sorted()


def test_integer_prices_and_other_time_zones_are_normalised() -> None:
    df = frame(GOOD).with_columns(
        pl.col("volume").cast(pl.Int64), pl.col("ts").dt.convert_time_zone("America/New_York")
    )
    valid, report = validate_bars(df)
    assert report.rows_skipped == 0
    assert valid.equals(frame(GOOD))


# -- gaps ----------------------------------------------------------------------------------
def test_weekend_and_holiday_on_daily_equities_are_not_gaps() -> None:
    rows = days(dt.date(2024, 1, 1), 20)  # four weekends
    rows = [r for r in rows if r["ts"].date() != dt.date(2024, 1, 15)]  # a Monday holiday
    _, report = validate_bars(frame(rows))
    assert report.gaps == 0 and report.counts["gap"] == 0


def test_daily_equity_gaps_follow_the_nyse_sessions() -> None:
    """Market closures are not gaps (2 January 2007, Hurricane Sandy's 29-30 October 2012,
    Good Friday); a missing session is, even a single weekday the calendar-day rule missed."""
    def at(*dates: dt.date, symbol: str = "AAA") -> list[dict]:
        return [bar(symbol, dt.datetime(d.year, d.month, d.day, tzinfo=UTC)) for d in dates]

    closures = (at(dt.date(2006, 12, 29), dt.date(2007, 1, 3), symbol="A")  # New Year + a national day of mourning
                + at(dt.date(2012, 10, 26), dt.date(2012, 10, 31), symbol="B")  # Sandy: Mon 29 and Tue 30 closed
                + at(dt.date(2024, 3, 28), dt.date(2024, 4, 1), symbol="C"))  # Good Friday
    _, report = validate_bars(frame(closures))
    assert report.gaps == 0
    one_day = at(dt.date(2024, 3, 4), dt.date(2024, 3, 6))  # Tuesday 5 March missing
    _, report = validate_bars(frame(one_day))
    assert report.gaps == 1 and report.gap_examples[0]["from"] == "2024-03-04T00:00:00+00:00"
    # before the sessions known (1990): the calendar-day rule
    _, report = validate_bars(frame(at(dt.date(1985, 3, 4), dt.date(1985, 3, 6), dt.date(1985, 3, 12))))
    assert report.gaps == 1
    # fx daily bars have no exchange: a missing weekday within 4 days is not counted
    _, report = validate_bars(frame([{**r, "symbol": "EURUSD"} for r in one_day]))
    assert report.gaps == 0


def test_missing_sessions_counts_between_two_dates() -> None:
    from backlake.calendars import missing_sessions

    got = missing_sessions("equity", ["2024-03-01", "2024-03-28", "2006-12-29", "1980-01-02"],
                           ["2024-03-08", "2024-04-01", "2007-01-03", "1980-01-09"])
    assert got.tolist() == [4, 0, 0, -1]
    assert missing_sessions("crypto", ["2024-03-01"], ["2024-03-08"]).tolist() == [-1]


def test_a_missing_week_on_daily_equities_is_one_gap_and_nothing_is_skipped() -> None:
    rows = days(dt.date(2024, 1, 1), 5) + days(dt.date(2024, 1, 15), 5)  # 8-12 Jan missing
    valid, report = validate_bars(frame(rows))
    assert report.gaps == 1 and report.counts["gap"] == 1
    assert report.rows_skipped == 0 and valid.height == 10
    assert report.gap_examples == [{
        "symbol": "AAA", "timeframe": "1d",
        "from": "2024-01-05T00:00:00+00:00", "to": "2024-01-15T00:00:00+00:00",
    }]
    assert report.per_symbol["AAA"]["gaps"] == 1


def test_daily_crypto_misses_weekends() -> None:
    every_day = days(dt.date(2024, 1, 1), 14, "BTCUSD", weekdays_only=False)
    _, report = validate_bars(frame(every_day))
    assert report.gaps == 0
    _, report = validate_bars(frame(days(dt.date(2024, 1, 1), 10, "BTCUSD")))  # no weekends
    assert report.gaps == 1  # 5-8 Jan; 12 Jan is the last bar
    _, report = validate_bars(frame(days(dt.date(2024, 1, 1), 10, "XYZ")), calendars={"XYZ": "crypto"})
    assert report.gaps == 1  # the calendars override


def test_fx_weekend_is_not_a_gap_on_1h_but_a_missing_weekday_hour_is() -> None:
    fri = dt.datetime(2024, 1, 5, 12, tzinfo=UTC)
    rows = hours(fri, dt.datetime(2024, 1, 5, 21, tzinfo=UTC), "EURUSD") + hours(
        dt.datetime(2024, 1, 7, 21, tzinfo=UTC), dt.datetime(2024, 1, 8, 12, tzinfo=UTC), "EURUSD"
    )
    _, report = validate_bars(frame(rows))
    assert report.gaps == 0
    hole = [r for r in rows if r["ts"] != dt.datetime(2024, 1, 8, 3, tzinfo=UTC)]
    _, report = validate_bars(frame(hole))
    assert report.gaps == 1
    assert report.gap_examples[0]["from"] == "2024-01-08T02:00:00+00:00"
    # the same weekend on an equity-calendar symbol's hourly bars is fine too (overnight break)
    _, report = validate_bars(frame([{**r, "symbol": "EQ"} for r in rows]))
    assert report.gaps == 0
    # ...but on crypto (24/7) the weekend is missing data
    _, report = validate_bars(frame([{**r, "symbol": "BTCUSD"} for r in rows]))
    assert report.gaps == 1


def test_fx_missing_monday_is_a_gap() -> None:
    rows = hours(dt.datetime(2024, 1, 5, 12, tzinfo=UTC), dt.datetime(2024, 1, 5, 21, tzinfo=UTC), "EURUSD")
    rows += hours(dt.datetime(2024, 1, 8, 21, tzinfo=UTC), dt.datetime(2024, 1, 9, 3, tzinfo=UTC), "EURUSD")
    _, report = validate_bars(frame(rows))
    assert report.gaps == 1


def test_equity_intraday_overnight_is_not_a_gap_but_a_missing_bar_in_session_is() -> None:
    def session(d: int) -> list[dict]:
        return hours(dt.datetime(2024, 1, d, 14, 30, tzinfo=UTC), dt.datetime(2024, 1, d, 21, tzinfo=UTC), "EQ")

    rows = session(4) + session(5) + session(8)  # Thu, Fri, Mon
    _, report = validate_bars(frame(rows))
    assert report.gaps == 0
    hole = [r for r in rows if r["ts"] != dt.datetime(2024, 1, 5, 16, 30, tzinfo=UTC)]
    _, report = validate_bars(frame(hole))
    assert report.gaps == 1
    _, report = validate_bars(frame(session(4) + session(15)))  # a whole week missing
    assert report.gaps == 1


@pytest.mark.parametrize(
    "tf, step_days, bad_step, gaps",
    [("1w", 7, 14, 1), ("1w", 7, 7, 0), ("1mo", 31, 35, 0), ("1mo", 31, 62, 1)],
)
def test_weekly_and_monthly_gaps(tf: str, step_days: int, bad_step: int, gaps: int) -> None:
    t0 = dt.datetime(2020, 1, 6, tzinfo=UTC)
    ts = [t0 + dt.timedelta(days=step_days * i) for i in range(4)]
    ts.append(ts[-1] + dt.timedelta(days=bad_step))
    _, report = validate_bars(frame([bar("AAA", t, tf=tf) for t in ts]))
    assert report.gaps == gaps


def test_gaps_are_per_symbol_and_timeframe() -> None:
    rows = days(dt.date(2024, 1, 1), 5, "AAA") + days(dt.date(2024, 1, 8), 5, "BBB")
    rows += days(dt.date(2024, 1, 8), 5, "AAA", tf="1w")  # other timeframe: its own series
    _, report = validate_bars(frame(rows))
    assert report.gaps == 0


# -- errors and the report -----------------------------------------------------------------
def test_missing_columns_raise() -> None:
    df = frame(GOOD).drop("volume", "source")
    with pytest.raises(DataValidationError, match=r"missing column\(s\) \['volume', 'source'\]"):
        validate_bars(df)


def test_zero_valid_rows_raise_with_counts_per_rule() -> None:
    rows = [bar("AAA", LATER[0], o=-1.0), bar("AAA", LATER[1], c=float("nan"))]
    with pytest.raises(DataValidationError, match="non_positive_price=1") as info:
        validate_bars(frame(rows))
    assert "missing_value=1" in str(info.value) and "no valid bar among 2" in str(info.value)
    with pytest.raises(DataValidationError, match="no valid bar among 0"):
        validate_bars(frame([]))


def test_unusable_types_and_timeframes_raise() -> None:
    with pytest.raises(DataValidationError, match="naive"):
        validate_bars(frame(GOOD).with_columns(pl.col("ts").dt.replace_time_zone(None)))
    with pytest.raises(DataValidationError, match="'close' has type String"):
        validate_bars(frame(GOOD).with_columns(pl.col("close").cast(pl.String)))
    with pytest.raises(DataValidationError, match=r"unknown value\(s\) \['1day'\]"):
        validate_bars(frame(GOOD).with_columns(timeframe=pl.lit("1day")))


def test_report_to_dict_is_json_serialisable_and_summary_names_rules() -> None:
    rows = GOOD + list(BAD_BY_RULE.values())
    _, report = validate_bars(frame(rows))
    text = json.dumps(report.to_dict(), allow_nan=False)  # strict JSON: no NaN literals
    back = json.loads(text)
    assert back["counts"]["missing_value"] == 1 and back["rows_skipped"] == 5
    assert set(back["counts"]) == set(RULES)
    nan_example = next(e for e in back["examples"] if e["rule"] == "missing_value")
    assert nan_example["close"] == "nan" and nan_example["ts"].startswith("2024-01-15")
    summary = report.summary()
    for rule in RULES:
        assert rule in summary
    assert "AAA" in summary and "5 skipped" in summary


def test_examples_are_capped() -> None:
    bad = [bar("AAA", dt.datetime(2024, 3, 1, tzinfo=UTC) + dt.timedelta(days=i), o=-1.0) for i in range(50)]
    _, report = validate_bars(frame(GOOD + bad))
    assert report.counts["non_positive_price"] == 50 and len(report.examples) == 10
    assert not math.isnan(report.examples[0]["open"])
