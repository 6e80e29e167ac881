"""Data providers: the shipped samples, synthetic bars and bars files, all through validate_bars."""

from __future__ import annotations

import datetime as dt
import gzip

import numpy as np
import polars as pl
import pytest

from backlake.config import TIMEFRAMES, UNIVERSES
from backlake.data.file import read_bars_file
from backlake.data.samples import SAMPLE_SYMBOLS, load_samples
from backlake.data.synthetic import synthetic_bars
from backlake.data.validate import BARS_SCHEMA, RULES, validate_bars
from backlake.errors import ConfigError

UTC = dt.UTC
TICKERS = UNIVERSES["sp500_stocks"]
EXPECTED_ROWS = {"SP500": 5031, "NASDAQ": 5031, "GOOG": 2148, "BTCUSD": 156, "EURUSD": 5000,
                 **{t: 8313 for t in TICKERS}}
EXPECTED_TIMEFRAMES = {"SP500": "1d", "NASDAQ": "1d", "GOOG": "1d", "BTCUSD": "1mo", "EURUSD": "1h",
                       **{t: "1d" for t in TICKERS}}
# What validate_bars finds in the real data: no bad row; gaps are real market closures
# (11-14 Sep 2001, 2 Jan 2007, 29-30 Oct 2012; EURUSD: 25 Dec 2017, 1 Jan 2018).
# equities: every day without a bar is an NYSE closure (2001-09-11..14, 2004-06-11, 2007-01-02,
# 2012-10-29/30...), so no gaps; EURUSD: its two Christmas/New Year weekends run a day long
EXPECTED_GAPS = {"SP500": 0, "NASDAQ": 0, "GOOG": 0, "BTCUSD": 0, "EURUSD": 2, **{t: 0 for t in TICKERS}}


@pytest.fixture(scope="module")
def samples() -> pl.DataFrame:
    return load_samples()


@pytest.fixture(scope="module")
def validated(samples: pl.DataFrame):
    return validate_bars(samples)


# -- samples ---------------------------------------------------------------------------------
def test_sample_symbols_and_timeframes() -> None:
    assert SAMPLE_SYMBOLS == EXPECTED_TIMEFRAMES
    assert len(SAMPLE_SYMBOLS) == 25


def test_every_sample_symbol_loads_with_its_row_count_and_timeframe(samples: pl.DataFrame) -> None:
    assert samples.schema == pl.Schema(BARS_SCHEMA)
    got = samples.group_by("symbol").agg(pl.len(), pl.col("timeframe").unique())
    rows = {s: n for s, n, _ in got.iter_rows()}
    timeframes = {s: tfs for s, _, tfs in got.iter_rows()}
    assert rows == EXPECTED_ROWS
    assert timeframes == {s: [tf] for s, tf in EXPECTED_TIMEFRAMES.items()}


def test_real_sample_data_passes_validation(samples: pl.DataFrame, validated) -> None:
    valid, report = validated
    assert report.rows_in == samples.height == sum(EXPECTED_ROWS.values())
    assert report.rows_skipped == 0 and valid.height == samples.height
    assert report.counts == {**{r: 0 for r in RULES}, "gap": sum(EXPECTED_GAPS.values())}
    assert {s: c["gaps"] for s, c in report.per_symbol.items()} == EXPECTED_GAPS


def test_sample_values_and_sources(samples: pl.DataFrame) -> None:
    def first(symbol: str) -> dict:
        return samples.filter(pl.col("symbol") == symbol).row(0, named=True)

    sp = first("SP500")  # arch file: 1/4/1999,1229.22998,1248.810059,1219.099976,1228.099976,...
    assert sp["ts"] == dt.datetime(1999, 1, 4, tzinfo=UTC) and sp["close"] == 1228.099976
    assert sp["volume"] == 877_000_000 and sp["source"] == "arch:sp500"
    assert first("NASDAQ")["source"] == "arch:nasdaq"
    goog = first("GOOG")
    assert (goog["ts"], goog["open"], goog["source"]) == (
        dt.datetime(2004, 8, 19, tzinfo=UTC), 100.0, "backtesting:GOOG"
    )
    assert first("EURUSD")["ts"] == dt.datetime(2017, 4, 19, 9, tzinfo=UTC)
    btc = samples.filter(pl.col("symbol") == "BTCUSD")
    assert btc["ts"].dt.month_end().equals(btc["ts"])  # monthly bars dated at month end
    assert btc["ts"].min().year == 2012 and btc["ts"].max() == dt.datetime(2024, 12, 31, tzinfo=UTC)


def test_close_only_tickers(samples: pl.DataFrame) -> None:
    t = samples.filter(pl.col("symbol").is_in(TICKERS))
    assert (t["open"] == t["close"]).all() and (t["high"] == t["close"]).all() and (t["low"] == t["close"]).all()
    assert (t["volume"] == 0.0).all()
    assert t["source"].unique().to_list() == ["skfolio:sp500_dataset(close-only)"]
    aapl = t.filter(pl.col("symbol") == "AAPL").row(0, named=True)
    assert aapl["ts"] == dt.datetime(1990, 1, 2, tzinfo=UTC) and aapl["close"] == 0.264


def test_load_samples_subset_in_requested_order() -> None:
    df = load_samples(["MSFT", "GOOG", "MSFT"])
    assert df["symbol"].unique(maintain_order=True).to_list() == ["MSFT", "GOOG"]
    assert df.height == 8313 + 2148


def test_unknown_sample_symbol_names_the_closest() -> None:
    with pytest.raises(ConfigError, match="unknown sample symbol 'GOOGL'; did you mean 'GOOG'"):
        load_samples(["GOOGL"])
    with pytest.raises(ConfigError, match="did you mean 'NASDAQ'"):
        load_samples(["SP500", "NASDQ"])


# -- synthetic -------------------------------------------------------------------------------
def test_synthetic_is_deterministic() -> None:
    a = synthetic_bars(("A", "B"), periods=300, seed=42)
    assert a.equals(synthetic_bars(("A", "B"), periods=300, seed=42))
    assert not a.equals(synthetic_bars(("A", "B"), periods=300, seed=43))
    assert a.schema == pl.Schema(BARS_SCHEMA) and a.height == 600
    assert a["source"].unique().to_list() == ["synthetic:seed=42"]


CASES = [(tf, cal) for tf in TIMEFRAMES for cal in ("equity", "fx", "crypto")]


@pytest.mark.parametrize("timeframe, calendar", CASES)
def test_synthetic_ohlc_is_valid_and_passes_validation(timeframe: str, calendar: str) -> None:
    df = synthetic_bars(periods=200, timeframe=timeframe, calendar=calendar, seed=1, vol=0.8)
    assert (df["timeframe"] == timeframe).all() and df.height == 600
    ok = df.select(
        (pl.col("high") >= pl.max_horizontal("open", "close")).all().alias("high"),
        (pl.col("low") <= pl.min_horizontal("open", "close")).all().alias("low"),
        ((pl.col("low") > 0) & (pl.col("volume") > 0)).all().alias("positive"),
    )
    assert ok.row(0, named=True) == {"high": True, "low": True, "positive": True}
    valid, report = validate_bars(df, calendars=dict.fromkeys(("SYN0", "SYN1", "SYN2"), calendar))
    assert report.rows_skipped == 0 and report.gaps == 0 and valid.height == 600


def test_synthetic_timestamps_follow_the_calendar() -> None:
    eq = synthetic_bars(("A",), periods=500)["ts"]
    assert eq.dt.weekday().max() <= 5 and eq.min() == dt.datetime(2015, 1, 1, tzinfo=UTC)
    crypto = synthetic_bars(("A",), periods=500, calendar="crypto")["ts"]
    assert crypto.dt.weekday().max() == 7 and crypto.diff().drop_nulls().unique().to_list() == [dt.timedelta(days=1)]
    intraday = synthetic_bars(("A",), periods=500, timeframe="30m")["ts"]
    minutes = intraday.dt.hour().cast(pl.Int32) * 60 + intraday.dt.minute()
    assert minutes.min() == 14 * 60 + 30 and minutes.max() == 20 * 60 + 30
    assert intraday.dt.weekday().max() <= 5
    fx = synthetic_bars(("A",), periods=500, timeframe="1h", calendar="fx")["ts"]
    assert 6 not in fx.dt.weekday().to_list()  # no Saturday
    sunday = fx.filter(fx.dt.weekday() == 7)
    assert sunday.len() > 0 and sunday.dt.hour().min() == 21
    monthly = synthetic_bars(("A",), periods=13, timeframe="1mo", start="2020-01-15")["ts"]
    assert monthly[0] == dt.datetime(2020, 2, 1, tzinfo=UTC) and (monthly.dt.day() == 1).all()


def test_synthetic_correlation_and_drift_shape() -> None:
    df = synthetic_bars(("A", "B"), periods=3000, correlation=0.7, seed=5)
    wide = df.pivot(on="symbol", index="ts", values="close").sort("ts")
    rets = np.diff(np.log(wide.select("A", "B").to_numpy()), axis=0)
    assert np.corrcoef(rets.T)[0, 1] == pytest.approx(0.7, abs=0.06)
    assert rets.std(axis=0) * np.sqrt(252) == pytest.approx([0.2, 0.2], abs=0.02)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"periods": 0}, "periods"), ({"timeframe": "2h"}, "timeframe"), ({"vol": -0.1}, "vol"),
     ({"correlation": 1.0}, "correlation"), ({"correlation": -1.0}, "correlation"),
     ({"calendar": "lse"}, "calendar"), ({"start_price": 0.0}, "start_price"), ({"seed": -1}, "seed"),
     ({"start": "2015-13-01"}, "start"), ({"symbols": ()}, "symbols"), ({"correlation": -0.6}, "correlation")],
)
def test_synthetic_bad_arguments_name_the_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        synthetic_bars(**{"periods": 10, **kwargs})


# -- files -----------------------------------------------------------------------------------
@pytest.fixture
def theirs() -> pl.DataFrame:
    """A vendor-style table: their own column names, a symbol column, adjusted closes."""
    return pl.DataFrame({
        "Day": ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-02", "2024-01-03"],
        "Code": ["AAA", "AAA", "AAA", "BBB", "BBB"],
        "Open": [10.0, 10.5, 10.2, 50.0, 51.0], "High": [11.0, 10.9, 10.8, 52.0, 51.5],
        "Low": [9.5, 10.1, 9.9, 49.0, 50.2], "Close": [10.4, 10.3, 10.6, 51.0, 50.9],
        "Adj Close": [10.3, 10.2, 10.5, 50.5, 50.6], "Vol": [100, 200, 300, 400, 500],
    })


MAPPING = {"ts": "Day", "symbol": "Code", "close": "Adj Close", "volume": "Vol"}


def check_round_trip(bars: pl.DataFrame, source: str) -> None:
    assert bars.schema == pl.Schema(BARS_SCHEMA)
    assert bars["symbol"].to_list() == ["AAA", "AAA", "AAA", "BBB", "BBB"]
    assert bars["close"].to_list() == [10.3, 10.2, 10.5, 50.5, 50.6]  # the mapped column
    assert bars["volume"].to_list() == [100.0, 200.0, 300.0, 400.0, 500.0]
    assert bars["ts"][0] == dt.datetime(2024, 1, 2, tzinfo=UTC)  # a date: midnight UTC
    assert (bars["source"] == source).all()
    valid, report = validate_bars(bars)
    assert report.rows_skipped == 0 and valid.height == 5


def test_csv_round_trip_with_column_mapping(tmp_path, theirs: pl.DataFrame) -> None:
    path = tmp_path / "vendor.csv"
    theirs.write_csv(path)
    check_round_trip(read_bars_file(path, columns=MAPPING), "file:vendor.csv")


def test_gzip_csv_round_trip(tmp_path, theirs: pl.DataFrame) -> None:
    path = tmp_path / "vendor.csv.gz"
    path.write_bytes(gzip.compress(theirs.write_csv().encode()))
    check_round_trip(read_bars_file(path, columns=MAPPING, source="vendor"), "vendor")


def test_parquet_round_trip_with_column_mapping(tmp_path, theirs: pl.DataFrame) -> None:
    path = tmp_path / "vendor.parquet"
    theirs.with_columns(pl.col("Day").str.to_date()).write_parquet(path)
    check_round_trip(read_bars_file(path, columns=MAPPING), "file:vendor.parquet")


def test_default_names_naive_times_and_missing_volume(tmp_path) -> None:
    path = tmp_path / "hourly.csv"
    path.write_text("DateTime,OPEN,high,Low,close\n2024-07-01 09:30:00,1,2,0.5,1.5\n2024-07-01 10:30:00,1.5,2,1,1.8\n")
    bars = read_bars_file(path, symbol="QQQ", timeframe="1h", timezone="America/New_York")
    assert bars["ts"].to_list() == [
        dt.datetime(2024, 7, 1, 13, 30, tzinfo=UTC), dt.datetime(2024, 7, 1, 14, 30, tzinfo=UTC)
    ]
    assert bars["volume"].to_list() == [0.0, 0.0] and bars["timeframe"].to_list() == ["1h", "1h"]
    assert bars["open"].to_list() == [1.0, 1.5]


def test_missing_column_error_lists_the_file_columns_and_the_fix(tmp_path, theirs: pl.DataFrame) -> None:
    path = tmp_path / "vendor.csv"
    theirs.drop("Close").write_csv(path)
    with pytest.raises(ConfigError, match=r"no column for \['close'\]") as info:
        read_bars_file(path, columns={"ts": "Day", "symbol": "Code"})
    assert "Adj Close" in str(info.value) and "columns={'close':" in str(info.value)
    with pytest.raises(ConfigError, match=r"columns\['close'\]='Close ' is not a column"):
        read_bars_file(path, columns={"ts": "Day", "symbol": "Code", "close": "Close "})
    with pytest.raises(ConfigError, match="did you mean 'close'"):
        read_bars_file(path, columns={"ts": "Day", "symbol": "Code", "closing": "Adj Close"})


def test_no_symbol_column_needs_symbol(tmp_path) -> None:
    path = tmp_path / "one.csv"
    path.write_text("Date,Open,High,Low,Close,Volume\n2024-01-02,1,2,0.5,1.5,10\n")
    with pytest.raises(ConfigError, match=r"no column for \['symbol'\].*symbol="):
        read_bars_file(path)
    assert read_bars_file(path, symbol="ONE")["symbol"].to_list() == ["ONE"]


def test_bad_arguments(tmp_path) -> None:
    path = tmp_path / "one.csv"
    path.write_text("Date,Open,High,Low,Close\n2024-01-02,1,2,0.5,1.5\n")
    with pytest.raises(ConfigError, match="timeframe '1day'"):
        read_bars_file(path, symbol="X", timeframe="1day")
    with pytest.raises(ConfigError, match="timezone='Mars/Olympus'"):
        read_bars_file(path, symbol="X", timezone="Mars/Olympus")
    with pytest.raises(ConfigError, match="not a file"):
        read_bars_file(tmp_path / "nope.csv", symbol="X")
    with pytest.raises(ConfigError, match="ts_format='%d/%m/%Y'"):
        read_bars_file(path, symbol="X", ts_format="%d/%m/%Y")


def test_unparseable_timestamps_and_prices_are_kept_and_counted_as_missing(tmp_path) -> None:
    path = tmp_path / "messy.csv"
    path.write_text(
        "Date,Open,High,Low,Close,Volume\n"
        "01/02/2024,1,2,0.5,1.5,10\n"
        "not a date,1,2,0.5,1.5,10\n"
        "01/03/2024,1,2,0.5,n/a?,10\n"
        "01/04/2024,1,2,0.5,1.5,10\n"
    )
    bars = read_bars_file(path, symbol="X")  # the M/D/Y format is detected
    assert bars.height == 4 and bars["ts"].null_count() == 1
    assert bars["ts"][3] == dt.datetime(2024, 1, 4, tzinfo=UTC)
    valid, report = validate_bars(bars)
    assert report.counts["missing_value"] == 2 and report.rows_skipped == 2 and valid.height == 2


def test_dates_become_midnight_utc_whatever_the_timezone(tmp_path) -> None:
    path = tmp_path / "daily.csv"
    path.write_text("date,open,high,low,close,volume\n2024-01-02,1,2,0.5,1.5,10\n")
    bars = read_bars_file(path, symbol="X", timezone="Asia/Tokyo")
    assert bars["ts"].to_list() == [dt.datetime(2024, 1, 2, tzinfo=UTC)]
