"""backlake.metrics: edge cases first, then hand-computed values, then a cross-check of the
returns-based metrics against empyrical-reloaded on 1000 seeded random returns."""

from __future__ import annotations

import math
import statistics
from datetime import UTC, date, datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from backlake.errors import DataValidationError
from backlake.metrics import (
    HEADLINE_METRICS,
    METRIC_UNITS,
    compute_metrics,
    monthly_returns,
    segment_metrics,
)

REL = 1e-9  # where our definition and the reference's are the same formula

TRADE_METRICS = (
    "win_rate", "profit_factor", "avg_trade_return", "avg_trade_pnl", "avg_winner", "avg_loser",
    "best_trade", "worst_trade", "avg_bars_held", "max_consecutive_wins", "max_consecutive_losses",
    "avg_mae", "avg_mfe",
)
RETURNS_METRICS = (
    "annual_return", "annual_volatility", "sharpe", "sortino", "omega", "tail_ratio",
)
BENCHMARK_METRICS = (
    "benchmark_return", "benchmark_sharpe", "excess_return", "alpha", "beta", "r_squared",
    "information_ratio", "tracking_error",
)


def days(n: int, start: str = "2024-01-01") -> np.ndarray:
    """``n`` consecutive calendar days as datetime64[us]."""
    return (np.datetime64(start, "D") + np.arange(n)).astype("datetime64[us]")


def trades_frame(rows: list[dict] | None = None) -> pl.DataFrame:
    """A trades table with the engine's schema (TRADE_COLUMNS); rows give the fields that matter."""
    schema = {
        "trade_id": pl.Int64, "symbol": pl.String, "direction": pl.String, "qty": pl.Float64,
        "entry_ts": pl.Datetime("us", "UTC"), "entry_price": pl.Float64,
        "exit_ts": pl.Datetime("us", "UTC"), "exit_price": pl.Float64, "pnl": pl.Float64,
        "return_pct": pl.Float64, "fees": pl.Float64, "bars_held": pl.Int64, "mae": pl.Float64,
        "mfe": pl.Float64, "exit_reason": pl.String,
    }
    full = []
    for i, r in enumerate(rows or [], start=1):
        base = {
            "trade_id": i, "symbol": "X", "direction": "long", "qty": 1.0,
            "entry_ts": datetime(2024, 1, 1, tzinfo=UTC), "entry_price": 100.0,
            "exit_ts": datetime(2024, 1, 2, tzinfo=UTC), "exit_price": 100.0, "pnl": 0.0,
            "return_pct": 0.0, "fees": 0.0, "bars_held": 1, "mae": 0.0, "mfe": 0.0,
            "exit_reason": "signal",
        }
        full.append(base | r)
    return pl.DataFrame(full, schema=schema, orient="row") if full else pl.DataFrame(schema=schema)


def assert_clean(m: dict[str, float | None]) -> None:
    """Every metric is present, in METRIC_UNITS order, and is None or a finite float."""
    assert list(m) == list(METRIC_UNITS)
    for k, v in m.items():
        assert v is None or (isinstance(v, float) and math.isfinite(v)), (k, v)


# ---------------------------------------------------------------------------------------------
# the public surface


def test_headline_metrics_and_units_cover_every_metric():
    assert HEADLINE_METRICS == ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "n_trades")
    assert set(HEADLINE_METRICS) <= set(METRIC_UNITS)
    for name, unit in METRIC_UNITS.items():
        assert name == name.lower() and " " not in name
        assert unit and "\n" not in unit
    m = compute_metrics(np.array([100.0, 101.0]), days(2), trades_frame(), 252.0, 100.0)
    assert list(m) == list(METRIC_UNITS)


# ---------------------------------------------------------------------------------------------
# edge cases: empty, one bar, flat, missing values, bad arguments


@pytest.mark.parametrize("trades", [pl.DataFrame(), trades_frame()], ids=["no-columns", "engine-schema"])
def test_empty_equity_and_empty_trades(trades):
    m = compute_metrics(np.array([]), days(0), trades, 252.0, 100.0)
    assert_clean(m)
    assert m["n_trades"] == 0.0 and m["n_closed_trades"] == 0.0
    assert all(v is None for k, v in m.items() if k not in ("n_trades", "n_closed_trades"))


def test_empty_trades_leave_trade_metrics_none():
    m = compute_metrics(np.array([100.0, 101.0, 99.0]), days(3), trades_frame(), 252.0, 100.0)
    assert_clean(m)
    assert m["n_trades"] == 0.0 and m["n_closed_trades"] == 0.0
    assert all(m[k] is None for k in TRADE_METRICS)
    assert m["exposure_time"] is None and all(m[k] is None for k in BENCHMARK_METRICS)


def test_one_bar():
    m = compute_metrics(
        np.array([105.0]), days(1), trades_frame(), 252.0, 100.0,
        benchmark_equity=np.array([100.0]), exposure=np.array([1.0]),
    )
    assert_clean(m)
    assert m["total_return"] == pytest.approx(0.05)
    assert m["cagr"] is None  # zero calendar time
    assert m["max_drawdown"] == 0.0 and m["ulcer_index"] == 0.0
    assert m["max_drawdown_duration_bars"] == 0.0 and m["max_drawdown_duration_days"] == 0.0
    assert all(m[k] is None for k in RETURNS_METRICS)
    assert m["calmar"] is None
    assert m["benchmark_return"] == 0.0 and m["excess_return"] == pytest.approx(0.05)
    assert all(m[k] is None for k in ("benchmark_sharpe", "alpha", "beta", "r_squared", "information_ratio",
                                      "tracking_error"))
    assert m["exposure_time"] == 1.0


def test_two_bars_give_one_return_no_std():
    m = compute_metrics(np.array([100.0, 90.0]), days(2), trades_frame(), 252.0, 100.0)
    assert_clean(m)
    assert m["annual_return"] == pytest.approx(-0.1 * 252)
    assert m["sortino"] == pytest.approx(-math.sqrt(252))  # mean / |mean|, annualised
    assert m["annual_volatility"] is None and m["sharpe"] is None  # ddof=1 needs 2 returns
    assert m["omega"] == 0.0


def test_flat_equity():
    flat = np.full(10, 100.0)
    m = compute_metrics(flat, days(10), trades_frame(), 252.0, 100.0, benchmark_equity=flat, exposure=np.zeros(10))
    assert_clean(m)
    assert m["total_return"] == 0.0 and m["cagr"] == 0.0
    assert m["annual_return"] == 0.0 and m["annual_volatility"] == 0.0
    assert m["max_drawdown"] == 0.0 and m["ulcer_index"] == 0.0 and m["max_drawdown_duration_bars"] == 0.0
    for k in ("sharpe", "sortino", "calmar", "omega", "tail_ratio", "benchmark_sharpe", "beta", "alpha",
              "r_squared", "information_ratio"):
        assert m[k] is None, k
    assert m["tracking_error"] == 0.0 and m["excess_return"] == 0.0
    assert m["exposure_time"] == 0.0


def test_constant_growth_has_zero_variance_not_a_huge_sharpe():
    eq = 100.0 * 1.001 ** np.arange(500)  # rounding leaves ~1e-18 of spread in the returns
    m = compute_metrics(eq, days(500), trades_frame(), 252.0, 100.0)
    assert_clean(m)
    assert m["annual_volatility"] == 0.0 and m["sharpe"] is None
    assert m["sortino"] is None and m["omega"] is None  # no losing bar
    assert m["annual_return"] == pytest.approx(0.001 * 252)


@pytest.mark.parametrize(
    "equity, bad_at",
    [
        (np.full(5, np.nan), 0),
        (np.array([100.0, 101.0, np.nan, 102.0]), 2),
        (np.array([100.0, np.inf, 102.0]), 1),
    ],
    ids=["all-nan", "one-nan", "inf"],
)
def test_non_finite_equity_is_rejected_with_a_clear_error(equity, bad_at):
    with pytest.raises(DataValidationError, match=rf"equity has .* NaN/inf .* first at bar {bad_at}") as e:
        compute_metrics(equity, days(equity.size), trades_frame(), 252.0, 100.0)
    assert isinstance(e.value, ValueError)
    with pytest.raises(DataValidationError, match="equity"):
        monthly_returns(equity, days(equity.size))


def test_non_finite_benchmark_or_exposure_is_rejected():
    eq = np.array([100.0, 101.0, 102.0])
    with pytest.raises(DataValidationError, match=r"benchmark_equity .* first at bar 1"):
        compute_metrics(eq, days(3), trades_frame(), 252.0, 100.0, benchmark_equity=np.array([1.0, np.nan, 1.0]))
    with pytest.raises(DataValidationError, match=r"exposure .* first at bar 0"):
        compute_metrics(eq, days(3), trades_frame(), 252.0, 100.0, exposure=np.array([np.nan, 0.0, 1.0]))


def test_mismatched_or_unsorted_inputs_are_rejected():
    eq = np.array([100.0, 101.0, 102.0])
    with pytest.raises(DataValidationError, match="ts has shape"):
        compute_metrics(eq, days(2), trades_frame(), 252.0, 100.0)
    with pytest.raises(DataValidationError, match="benchmark_equity has 2 values but equity has 3"):
        compute_metrics(eq, days(3), trades_frame(), 252.0, 100.0, benchmark_equity=np.ones(2))
    with pytest.raises(DataValidationError, match="not sorted"):
        compute_metrics(eq, days(3)[::-1], trades_frame(), 252.0, 100.0)
    with pytest.raises(DataValidationError, match="NaT"):
        compute_metrics(eq, np.array(["2024-01-01", "NaT", "2024-01-03"], dtype="datetime64[us]"), trades_frame(),
                        252.0, 100.0)


@pytest.mark.parametrize("ppy, cash", [(0.0, 100.0), (float("nan"), 100.0), (252.0, 0.0), (252.0, -5.0)])
def test_bad_annualisation_or_cash_is_rejected(ppy, cash):
    with pytest.raises(ValueError, match="must be a finite number > 0"):
        compute_metrics(np.array([100.0, 101.0]), days(2), trades_frame(), ppy, cash)


def test_equity_wiped_out_keeps_levels_and_drops_returns_metrics():
    m = compute_metrics(np.array([100.0, 50.0, 0.0, 0.0]), days(4), trades_frame(), 252.0, 100.0)
    assert_clean(m)
    assert m["total_return"] == -1.0 and m["cagr"] == -1.0 and m["max_drawdown"] == -1.0
    assert all(m[k] is None for k in RETURNS_METRICS)  # a return from 0 is undefined
    neg = compute_metrics(np.array([100.0, -20.0, -10.0]), days(3), trades_frame(), 252.0, 100.0)
    assert_clean(neg)
    assert neg["total_return"] == pytest.approx(-1.1) and neg["max_drawdown"] == pytest.approx(-1.2)
    assert neg["cagr"] is None and neg["sharpe"] is None  # no real root of a negative growth


def test_overflowing_cagr_is_none_not_inf():
    ts = np.array(["2024-01-01T00:00:00", "2024-01-01T00:00:01"], dtype="datetime64[us]")
    m = compute_metrics(np.array([100.0, 200.0]), ts, trades_frame(), 252.0, 100.0)
    assert_clean(m)
    assert m["total_return"] == 1.0 and m["cagr"] is None and m["calmar"] is None


def test_trades_edge_cases():
    eq, ts = np.array([100.0, 101.0]), days(2)
    only_open = trades_frame([{"pnl": 50.0, "return_pct": 0.5, "exit_reason": "end_of_data"}])
    m = compute_metrics(eq, ts, only_open, 252.0, 100.0)
    assert_clean(m)
    assert m["n_trades"] == 1.0 and m["n_closed_trades"] == 0.0
    assert all(m[k] is None for k in TRADE_METRICS)

    with pytest.raises(DataValidationError, match=r"missing column\(s\) \['mae', 'mfe'\]"):
        compute_metrics(eq, ts, trades_frame([{}]).drop("mae", "mfe"), 252.0, 100.0)
    with pytest.raises(DataValidationError, match=r"trades.pnl has a null/NaN/inf value"):
        compute_metrics(eq, ts, trades_frame([{"pnl": float("nan")}]), 252.0, 100.0)


# ---------------------------------------------------------------------------------------------
# hand-computed values


def test_hand_computed_equity_metrics():
    # peaks 100,120,120,120,126,126 -> drawdowns 0, 0, -.25, -.10, 0, -1/14
    eq = np.array([100.0, 120.0, 90.0, 108.0, 126.0, 117.0])
    ts = np.array(
        ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-15"],
        dtype="datetime64[us]",
    )
    ppy = 252.0
    m = compute_metrics(eq, ts, trades_frame(), ppy, 100.0)
    assert_clean(m)
    r = [0.2, -0.25, 0.2, 1 / 6, -1 / 14]

    assert m["total_return"] == pytest.approx(0.17, rel=REL)
    cagr = 1.17 ** (365.25 / 14) - 1
    assert m["cagr"] == pytest.approx(cagr, rel=REL)
    assert m["max_drawdown"] == pytest.approx(-0.25, rel=REL)
    # underwater runs: bar 1 -> recovered on bar 4 (3 bars, 3 days); bar 4 -> end (1 bar, 10 days)
    assert m["max_drawdown_duration_bars"] == 3.0
    assert m["max_drawdown_duration_days"] == 10.0  # each maximum is taken on its own
    assert m["ulcer_index"] == pytest.approx(math.sqrt((0.25**2 + 0.1**2 + (1 / 14) ** 2) / 6), rel=REL)
    assert m["omega"] == pytest.approx((0.2 + 0.2 + 1 / 6) / (0.25 + 1 / 14), rel=REL)
    assert m["calmar"] == pytest.approx(cagr / 0.25, rel=REL)

    mean, sd = statistics.mean(r), statistics.stdev(r)
    assert m["annual_return"] == pytest.approx(mean * ppy, rel=REL)
    assert m["annual_volatility"] == pytest.approx(sd * math.sqrt(ppy), rel=REL)
    assert m["sharpe"] == pytest.approx(mean / sd * math.sqrt(ppy), rel=REL)
    downside = math.sqrt((0.25**2 + (1 / 14) ** 2) / 5)  # over all 5 bars, not just the losers
    assert m["sortino"] == pytest.approx(mean / downside * math.sqrt(ppy), rel=REL)
    s = sorted(r)  # linear interpolation: position 4 x 0.95 = 3.8 and 4 x 0.05 = 0.2
    p95, p5 = s[3] + 0.8 * (s[4] - s[3]), s[0] + 0.2 * (s[1] - s[0])
    assert m["tail_ratio"] == pytest.approx(abs(p95) / abs(p5), rel=REL)


def test_drawdown_never_recovered_runs_to_the_last_bar():
    m = compute_metrics(np.array([100.0, 90.0, 95.0, 80.0, 99.0]), days(5), trades_frame(), 252.0, 100.0)
    assert m["max_drawdown"] == pytest.approx(-0.2)
    assert m["max_drawdown_duration_bars"] == 4.0 and m["max_drawdown_duration_days"] == 4.0


def test_exposure_time_counts_bars_with_nonzero_exposure():
    m = compute_metrics(np.full(5, 100.0), days(5), trades_frame(), 252.0, 100.0,
                        exposure=np.array([0.0, 0.5, 1.0, 0.0, 0.25]))
    assert m["exposure_time"] == pytest.approx(0.6)


def test_hand_computed_benchmark_metrics():
    b = np.array([0.01, -0.02, 0.03, 0.0, -0.01])
    r = 2.0 * b + 0.001  # beta 2, alpha 0.001 per bar, perfectly correlated
    eq = 100.0 * np.cumprod(np.concatenate(([1.0], 1.0 + r)))
    bench = 100.0 * np.cumprod(np.concatenate(([1.0], 1.0 + b)))
    ppy = 252.0
    m = compute_metrics(eq, days(6), trades_frame(), ppy, 100.0, benchmark_equity=bench)
    assert_clean(m)
    assert m["beta"] == pytest.approx(2.0, rel=REL)
    assert m["alpha"] == pytest.approx(0.001 * ppy, rel=1e-6)  # alpha is a small difference: looser
    assert m["r_squared"] == pytest.approx(1.0, rel=REL)
    assert m["benchmark_return"] == pytest.approx(np.prod(1 + b) - 1, rel=REL)
    assert m["excess_return"] == pytest.approx(np.prod(1 + r) - np.prod(1 + b), rel=REL)
    active = (b + 0.001).tolist()
    assert m["tracking_error"] == pytest.approx(statistics.stdev(active) * math.sqrt(ppy), rel=REL)
    assert m["information_ratio"] == pytest.approx(
        statistics.mean(active) / statistics.stdev(active) * math.sqrt(ppy), rel=1e-6
    )
    assert m["benchmark_sharpe"] == pytest.approx(statistics.mean(b) / statistics.stdev(b) * math.sqrt(ppy), rel=REL)


def test_hand_computed_trade_statistics():
    t0 = datetime(2024, 1, 1, tzinfo=UTC)

    def trade(exit_day: int, pnl: float, ret: float, **kw) -> dict:
        return {"exit_ts": t0 + timedelta(days=exit_day), "pnl": pnl, "return_pct": ret, **kw}

    # listed out of exit order on purpose; in exit order the pnl signs are + + - - - 0 +
    rows = [
        trade(5, -30.0, -0.03, bars_held=3, mae=-0.05, mfe=0.01),
        trade(1, 100.0, 0.10, bars_held=2, mae=-0.01, mfe=0.12),
        trade(7, 40.0, 0.04, bars_held=4, mae=None, mfe=0.06),  # mae missing: left out of avg_mae
        trade(3, -10.0, -0.01, bars_held=1, mae=-0.02, mfe=0.00),
        trade(2, 50.0, 0.05, bars_held=5, mae=-0.02, mfe=0.07),
        trade(4, -20.0, -0.02, bars_held=2, mae=-0.03, mfe=0.01),
        trade(6, 0.0, 0.0, bars_held=1, mae=-0.01, mfe=0.01),
        trade(9, 999.0, 0.99, bars_held=9, mae=-0.5, mfe=1.0, exit_reason="end_of_data"),  # open at end
    ]
    m = compute_metrics(np.array([100.0, 101.0]), days(2), trades_frame(rows), 252.0, 100.0)
    assert_clean(m)
    assert m["n_trades"] == 8.0 and m["n_closed_trades"] == 7.0
    assert m["win_rate"] == pytest.approx(3 / 7)
    assert m["profit_factor"] == pytest.approx(190.0 / 60.0)
    assert m["avg_trade_pnl"] == pytest.approx(130.0 / 7)
    assert m["avg_trade_return"] == pytest.approx(0.13 / 7)
    assert m["avg_winner"] == pytest.approx(0.19 / 3)
    assert m["avg_loser"] == pytest.approx(-0.06 / 3)
    assert m["best_trade"] == pytest.approx(0.10) and m["worst_trade"] == pytest.approx(-0.03)
    assert m["avg_bars_held"] == pytest.approx(18 / 7)
    assert m["max_consecutive_wins"] == 2.0 and m["max_consecutive_losses"] == 3.0
    assert m["avg_mae"] == pytest.approx(-0.14 / 6)
    assert m["avg_mfe"] == pytest.approx(0.28 / 7)


def test_profit_factor_edge_cases():
    eq, ts = np.array([100.0, 101.0]), days(2)
    winners = trades_frame([{"pnl": 5.0, "return_pct": 0.05}, {"pnl": 1.0, "return_pct": 0.01}])
    m = compute_metrics(eq, ts, winners, 252.0, 100.0)
    assert m["profit_factor"] is None and m["win_rate"] == 1.0 and m["avg_loser"] is None
    assert m["max_consecutive_losses"] == 0.0 and m["max_consecutive_wins"] == 2.0
    losers = trades_frame([{"pnl": -5.0, "return_pct": -0.05}])
    m = compute_metrics(eq, ts, losers, 252.0, 100.0)
    assert m["profit_factor"] == 0.0 and m["win_rate"] == 0.0 and m["avg_winner"] is None


# ---------------------------------------------------------------------------------------------
# monthly returns


def test_monthly_returns_over_three_months():
    ts = np.array(
        ["2023-12-30", "2023-12-31", "2024-01-01", "2024-01-31T15:00", "2024-02-01", "2024-02-29"],
        dtype="datetime64[us]",
    )
    eq = np.array([100.0, 110.0, 99.0, 121.0, 121.0, 108.9])
    mr = monthly_returns(eq, ts)
    assert mr.schema == pl.Schema({"year": pl.Int32, "month": pl.Int32, "ret": pl.Float64})
    assert mr["year"].to_list() == [2023, 2024, 2024] and mr["month"].to_list() == [12, 1, 2]
    # Dec from the first bar; Jan and Feb from the previous month's last bar
    assert mr["ret"].to_list() == pytest.approx([0.10, 0.10, -0.10])
    assert float(np.prod(1 + mr["ret"].to_numpy())) == pytest.approx(eq[-1] / eq[0])


def test_monthly_returns_empty_and_one_bar():
    empty = monthly_returns(np.array([]), days(0))
    assert empty.height == 0 and empty.columns == ["year", "month", "ret"]
    one = monthly_returns(np.array([100.0]), days(1))
    assert one.rows() == [(2024, 1, 0.0)]


# ---------------------------------------------------------------------------------------------
# segments


def _segment_inputs():
    eq = np.array([100.0, 110.0, 99.0, 108.0, 120.0, 114.0, 126.0, 130.0])
    ts = days(8)  # 2024-01-01 .. 2024-01-08
    utc = UTC
    rows = [
        {"entry_ts": datetime(2024, 1, 1, tzinfo=utc), "pnl": 10.0, "return_pct": 0.1},
        {"entry_ts": datetime(2024, 1, 3, tzinfo=utc), "pnl": -5.0, "return_pct": -0.05},  # exits in OOS, counts in IS
        {"entry_ts": datetime(2024, 1, 5, tzinfo=utc), "pnl": 7.0, "return_pct": 0.07},
        {"entry_ts": datetime(2024, 1, 7, tzinfo=utc), "pnl": 3.0, "return_pct": 0.03, "exit_reason": "end_of_data"},
    ]
    return eq, ts, trades_frame(rows)


@pytest.mark.parametrize(
    "split",
    [date(2024, 1, 5), datetime(2024, 1, 5), datetime(2024, 1, 5, 1, tzinfo=timezone(timedelta(hours=1)))],
    ids=["date", "naive-datetime", "aware-datetime"],
)
def test_segment_metrics_split(split):
    eq, ts, trades = _segment_inputs()
    bench = np.linspace(100.0, 107.0, 8)
    expo = np.array([0, 1, 1, 0, 1, 1, 0, 0], dtype=float)
    seg = segment_metrics(eq, ts, trades, 252.0, 100.0, split=split, benchmark_equity=bench, exposure=expo)
    assert set(seg) == {"full", "is", "oos"}
    for part in seg.values():
        assert_clean(part)
    assert seg["full"] == compute_metrics(eq, ts, trades, 252.0, 100.0, benchmark_equity=bench, exposure=expo)

    # IS = bars 0..3 (ts < Jan 5), from initial_cash; OOS = bars 4..7, rebased to bar 4's equity
    assert seg["is"] == compute_metrics(eq[:4], ts[:4], trades[:2], 252.0, 100.0,
                                        benchmark_equity=bench[:4], exposure=expo[:4])
    assert seg["oos"] == compute_metrics(eq[4:], ts[4:], trades[2:], 252.0, 120.0,
                                         benchmark_equity=bench[4:], exposure=expo[4:])
    assert seg["is"]["total_return"] == pytest.approx(0.08)
    assert seg["oos"]["total_return"] == pytest.approx(130.0 / 120.0 - 1)
    assert seg["oos"]["max_drawdown"] == pytest.approx(-0.05)
    assert seg["is"]["n_trades"] == 2.0 and seg["oos"]["n_trades"] == 2.0 and seg["oos"]["n_closed_trades"] == 1.0
    assert seg["oos"]["benchmark_return"] == pytest.approx(107.0 / 104.0 - 1)
    assert seg["is"]["exposure_time"] == 0.5 and seg["oos"]["exposure_time"] == 0.5


def test_segment_split_outside_the_data():
    eq, ts, trades = _segment_inputs()
    before = segment_metrics(eq, ts, trades, 252.0, 100.0, split=date(2023, 1, 1))
    assert before["is"]["total_return"] is None and before["is"]["n_trades"] == 0.0
    assert before["oos"]["n_trades"] == 4.0 and before["oos"]["sharpe"] == before["full"]["sharpe"]
    after = segment_metrics(eq, ts, trades, 252.0, 100.0, split=date(2025, 1, 1))
    assert after["is"] == after["full"]
    assert after["oos"]["total_return"] is None and after["oos"]["n_trades"] == 0.0
    assert_clean(after["oos"])


def test_segment_metrics_empty_trades():
    eq, ts, _ = _segment_inputs()
    seg = segment_metrics(eq, ts, pl.DataFrame(), 252.0, 100.0, split=date(2024, 1, 5))
    assert seg["is"]["n_trades"] == 0.0 and seg["oos"]["win_rate"] is None
    with pytest.raises(DataValidationError, match="datetime 'entry_ts' column"):
        segment_metrics(eq, ts, trades_frame([{}]).drop("entry_ts"), 252.0, 100.0, split=date(2024, 1, 5))


# ---------------------------------------------------------------------------------------------
# cross-check against empyrical-reloaded (same returns, same annualisation)


@pytest.fixture(scope="module")
def random_run():
    """1000 seeded daily returns (and a correlated benchmark), as equity curves over 1001
    consecutive calendar days. The returns handed to empyrical are recomputed from the equity
    exactly as compute_metrics does, so only the formulas are compared."""
    rng = np.random.default_rng(20240601)
    r = rng.normal(0.0006, 0.012, 1000)
    b = 0.7 * r + rng.normal(0.0002, 0.008, 1000)
    eq = 100_000.0 * np.cumprod(np.concatenate(([1.0], 1.0 + r)))
    bench = 100_000.0 * np.cumprod(np.concatenate(([1.0], 1.0 + b)))
    return eq, bench, days(1001, "2020-01-01"), eq[1:] / eq[:-1] - 1.0, bench[1:] / bench[:-1] - 1.0


@pytest.mark.parametrize("ppy", [252.0, 365.25])
def test_cross_check_with_empyrical(random_run, ppy):
    ep = pytest.importorskip("empyrical", reason="empyrical-reloaded is the reference for this cross-check")
    eq, bench, ts, r, b = random_run
    m = compute_metrics(eq, ts, trades_frame(), ppy, 100_000.0, benchmark_equity=bench)
    assert_clean(m)

    # identical definitions: ddof=1 std; Sortino's downside deviation is sqrt(mean(min(r,0)^2))
    # over ALL bars in both (empyrical.downside_risk clips at 0 and takes nanmean of every bar)
    assert m["sharpe"] == pytest.approx(ep.sharpe_ratio(r, annualization=ppy), rel=REL)
    assert m["sortino"] == pytest.approx(ep.sortino_ratio(r, annualization=ppy), rel=REL)
    assert m["annual_volatility"] == pytest.approx(ep.annual_volatility(r, annualization=ppy), rel=REL)
    # empyrical's drawdown prepends a start value equal to equity[0]: same peaks as ours
    assert m["max_drawdown"] == pytest.approx(ep.max_drawdown(r), rel=REL)
    # omega with a 0 threshold: empyrical converts required_return=0 to a per-bar 0
    assert m["omega"] == pytest.approx(ep.omega_ratio(r, annualization=ppy), rel=REL)
    assert m["tail_ratio"] == pytest.approx(ep.tail_ratio(r), rel=REL)
    assert m["total_return"] == pytest.approx(ep.cum_returns_final(r), rel=REL)
    assert m["benchmark_sharpe"] == pytest.approx(ep.sharpe_ratio(b, annualization=ppy), rel=REL)

    # beta: empyrical uses ddof=0 for both cov and var, we use ddof=1 for both: the ratio is equal
    alpha, beta = ep.alpha_beta(r, b, annualization=ppy)
    assert m["beta"] == pytest.approx(beta, rel=REL)
    # alpha: empyrical compounds the mean per-bar alpha, (1 + mean(r - beta b)) ** ppy - 1;
    # ours is arithmetic, mean(r - beta b) x ppy. Convert ours to theirs to compare.
    assert (1.0 + m["alpha"] / ppy) ** ppy - 1.0 == pytest.approx(alpha, rel=REL)
    # information ratio: empyrical.excess_sharpe is the same ratio, not annualised
    assert m["information_ratio"] == pytest.approx(ep.excess_sharpe(r, b) * math.sqrt(ppy), rel=REL)
    assert m["r_squared"] == pytest.approx(np.corrcoef(r, b)[0, 1] ** 2, rel=REL)

    # empyrical.annual_return is not our annual_return: it is geometric over len(r) / ppy years
    # (bar count), ours is arithmetic (mean x ppy). It matches our cagr only when the calendar
    # span equals len(r) / ppy years: here 1000 calendar days, i.e. when ppy = 365.25.
    assert m["annual_return"] == pytest.approx(float(np.mean(r)) * ppy, rel=REL)
    assert m["annual_return"] != pytest.approx(ep.annual_return(r, annualization=ppy), rel=1e-3)
    if ppy == 365.25:
        assert m["cagr"] == pytest.approx(ep.annual_return(r, annualization=ppy), rel=REL)
        assert m["calmar"] == pytest.approx(ep.calmar_ratio(r, annualization=ppy), rel=REL)
    else:
        years = 1000 / 365.25  # calendar time, whatever the bar count says
        assert m["cagr"] == pytest.approx((eq[-1] / eq[0]) ** (1 / years) - 1, rel=REL)
        assert m["calmar"] == pytest.approx(m["cagr"] / abs(ep.max_drawdown(r)), rel=REL)
