"""backlake.analytics.tearsheet on hand-computed curves and trades: edge cases first."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from backlake.analytics.tearsheet import (
    asset_correlation,
    asset_rollup,
    drawdown_periods,
    oos_split,
    yearly_returns,
)
from backlake.errors import DataValidationError
from backlake.metrics import compute_metrics, monthly_returns


def days(n: int, start: str = "2020-01-01") -> np.ndarray:
    return np.datetime64(start, "us") + np.arange(n) * np.timedelta64(1, "D")


def D(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s)


# -- drawdown periods ---------------------------------------------------------------------------
def test_drawdowns_of_empty_flat_and_rising_curves_are_empty() -> None:
    assert drawdown_periods(np.array([]), days(0)).height == 0
    assert drawdown_periods(np.array([100.0, 100.0, 100.0]), days(3)).height == 0
    assert drawdown_periods(np.array([100.0, 101.0, 105.0]), days(3)).height == 0
    assert drawdown_periods(np.array([0.0, 1.0, 0.5]), days(3)).height == 0  # no positive start


def test_drawdowns_reject_nan_and_bad_top() -> None:
    with pytest.raises(DataValidationError, match="equity has 1 NaN"):
        drawdown_periods(np.array([100.0, np.nan]), days(2))
    with pytest.raises(ValueError, match="top=0"):
        drawdown_periods(np.array([100.0, 90.0]), days(2), top=0)


def test_drawdown_periods_by_hand() -> None:
    # bars 0..8: peak 110 at bar 1, trough 99 at bar 2 (-10 %), back to 110 at bar 3 (recovered);
    # new peak 121 at bar 4, 108.9 at bar 5 (-10 %), 96.8 at bar 6 (-20 %, trough), 110 at bar 7,
    # 115 at bar 8 (not recovered by the end)
    eq = np.array([100.0, 110.0, 99.0, 110.0, 121.0, 108.9, 96.8, 110.0, 115.0])
    ts = days(9)
    dd = drawdown_periods(eq, ts)
    assert dd.columns == ["peak_ts", "trough_ts", "recovery_ts", "depth", "length_bars", "length_days", "recovered"]
    assert dd.height == 2
    worst, second = dd.row(0, named=True), dd.row(1, named=True)
    assert worst["peak_ts"] == D("2020-01-05") and worst["trough_ts"] == D("2020-01-07")
    assert worst["recovery_ts"] is None and worst["recovered"] is False
    assert worst["depth"] == pytest.approx(96.8 / 121 - 1)  # -0.2
    assert worst["length_bars"] == 4 and worst["length_days"] == 4.0  # bar 4 -> last bar 8
    assert second["peak_ts"] == D("2020-01-02") and second["trough_ts"] == D("2020-01-03")
    assert second["recovery_ts"] == D("2020-01-04") and second["recovered"] is True
    assert second["depth"] == pytest.approx(-0.1)
    assert second["length_bars"] == 2
    # the same underwater runs as the metrics
    m = compute_metrics(eq, ts, pl.DataFrame(), periods_per_year=252, initial_cash=100.0)
    assert dd["depth"].min() == pytest.approx(m["max_drawdown"])
    assert dd["length_bars"].max() == m["max_drawdown_duration_bars"]


def test_drawdowns_keep_the_top_n_deepest() -> None:
    # five dips of -1 % .. -5 %, then a -3 % one: top 3 are -5, -4, then the first -3 (time order on ties)
    eq = np.array([100, 99, 100, 98, 100, 97, 100, 96, 100, 95, 100, 97, 100], dtype=float)
    dd = drawdown_periods(eq, days(eq.size), top=3)
    assert dd["depth"].to_list() == pytest.approx([-0.05, -0.04, -0.03])
    assert dd["trough_ts"][2] == D("2020-01-06")
    assert drawdown_periods(eq, days(eq.size), top=10).height == 6


# -- monthly / yearly returns -------------------------------------------------------------------
def test_yearly_returns_by_hand_and_consistent_with_months() -> None:
    ts = np.array(["2020-01-01", "2020-06-30", "2020-12-31", "2021-06-30", "2022-03-01"], dtype="datetime64[us]")
    eq = np.array([100.0, 120.0, 110.0, 99.0, 118.8])
    yr = yearly_returns(eq, ts)
    assert yr["year"].to_list() == [2020, 2021, 2022]
    assert yr["ret"].to_list() == pytest.approx([0.10, -0.10, 0.20])
    months = monthly_returns(eq, ts)
    by_year = months.group_by("year").agg(((pl.col("ret") + 1).product() - 1).alias("r")).sort("year")
    assert by_year["r"].to_list() == pytest.approx(yr["ret"].to_list())


def test_yearly_returns_edge_cases() -> None:
    assert yearly_returns(np.array([]), days(0)).height == 0
    one = yearly_returns(np.array([100.0]), days(1))
    assert one.rows() == [(2020, 0.0)]
    zero_base = yearly_returns(np.array([0.0, 0.0, 5.0]), np.array(["2020-01-01", "2020-12-31", "2021-01-04"],
                                                                  dtype="datetime64[us]"))
    assert zero_base["ret"].to_list() == [None, None]


# -- per-asset rollup ---------------------------------------------------------------------------
def _trades(rows: list[tuple[str, str, str, float, float, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"symbol": s, "entry_ts": D(a), "exit_ts": D(b), "pnl": p, "fees": f, "exit_reason": r}
         for s, a, b, p, f, r in rows],
        schema={"symbol": pl.String, "entry_ts": pl.Datetime("us"), "exit_ts": pl.Datetime("us"),
                "pnl": pl.Float64, "fees": pl.Float64, "exit_reason": pl.String},
    )


def test_asset_rollup_by_hand() -> None:
    ts = days(10)  # Jan 1 .. Jan 10
    trades = _trades([
        ("AAA", "2020-01-02", "2020-01-04", 300.0, 1.0, "signal"),       # held Jan 2, 3
        ("AAA", "2020-01-06", "2020-01-07", -100.0, 1.0, "stop_loss"),   # held Jan 6
        ("BBB", "2020-01-01", "2020-01-06", -50.0, 2.0, "signal"),       # held Jan 1..5
        ("BBB", "2020-01-08", "2020-01-10", 40.0, 2.0, "end_of_data"),   # still open: Jan 8, 9, 10
    ])
    r = asset_rollup(trades, ts, initial_cash=1000.0, symbols=["AAA", "BBB", "CCC"])
    assert r["symbol"].to_list() == ["AAA", "CCC", "BBB"]  # by pnl, largest first
    a, c, b = (r.row(i, named=True) for i in range(3))
    assert a == {"symbol": "AAA", "n_trades": 2, "n_closed_trades": 2, "pnl": 200.0, "contribution": 0.2,
                 "pnl_share": pytest.approx(200 / 210), "win_rate": 0.5, "exposure": 0.3, "fees": 2.0}
    assert b["n_trades"] == 2 and b["n_closed_trades"] == 1 and b["pnl"] == -10.0
    assert b["contribution"] == pytest.approx(-0.01) and b["pnl_share"] == pytest.approx(-10 / 210)
    assert b["win_rate"] == 0.0  # the open trade is not counted
    assert b["exposure"] == pytest.approx(0.8)  # 5 + 3 of 10 bars
    assert c["n_trades"] == 0 and c["pnl"] == 0.0 and c["win_rate"] is None and c["exposure"] == 0.0
    assert r["contribution"].sum() == pytest.approx(0.19)  # = total pnl / initial cash


def test_asset_rollup_errors_and_empty() -> None:
    with pytest.raises(ValueError, match="initial_cash=0"):
        asset_rollup(_trades([]), days(3), initial_cash=0)
    with pytest.raises(DataValidationError, match="exit_reason"):
        asset_rollup(pl.DataFrame({"symbol": ["A"]}), days(3), initial_cash=1.0)
    empty = asset_rollup(_trades([]), days(3), initial_cash=100.0, symbols=["A"])
    assert empty.rows(named=True)[0]["pnl_share"] is None


# -- correlation --------------------------------------------------------------------------------
def test_asset_correlation_by_hand() -> None:
    ts = list(days(5).astype("datetime64[us]").tolist())
    closes = pl.DataFrame({
        "symbol": ["A"] * 5 + ["B"] * 5 + ["C"] * 5 + ["K"] * 5,
        "ts": ts * 4,
        "close": [100.0, 110, 99, 108.9, 119.79,    # returns +10 %, -10 %, +10 %, +10 %
                  50, 55, 49.5, 54.45, 59.895,     # the same returns: corr 1
                  10, 9, 9.9, 8.91, 8.019,         # the opposite signs: corr -1
                  7, 7, 7, 7, 7],                  # constant: no correlation
    })
    c = asset_correlation(closes)
    assert c.columns == ["symbol", "A", "B", "C", "K"]
    m = {row["symbol"]: row for row in c.rows(named=True)}
    assert m["A"]["A"] == pytest.approx(1.0) and m["A"]["B"] == pytest.approx(1.0)
    assert m["A"]["C"] == pytest.approx(-1.0) and m["C"]["B"] == pytest.approx(-1.0)
    assert m["K"]["A"] is None and m["K"]["K"] is None
    short = asset_correlation(closes.filter(pl.col("ts") <= ts[2]))  # 2 returns < min_common 3
    assert short["A"].to_list() == [None] * 4


# -- IS / OOS split -----------------------------------------------------------------------------
def test_oos_split() -> None:
    ts = days(10)
    assert oos_split(ts, {"oos_fraction": 0.3}) == D("2020-01-08")  # the last 3 of 10 bars
    assert oos_split(ts, '{"oos_fraction": 0.5}') == D("2020-01-06")
    assert oos_split(ts, {}) == D("2020-01-08")  # the default 0.3
    assert oos_split(ts, {"oos_start": "2020-01-04"}) == D("2020-01-04")
    assert oos_split(ts, {"oos_start": "2030-01-01"}) is None
    assert oos_split(days(3), {}) is None
    assert oos_split(ts, "not json") == D("2020-01-08")
