"""The first engine cut: fill timing, hand-computed P&L, end-of-data marking, parity on GOOG."""

from __future__ import annotations

import datetime as dt
import gzip
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import backlake as bl
from backlake.errors import ConfigError

SAMPLES = Path(bl.__file__).parent / "data" / "samples"


def make_bars(close: list[float], symbol: str = "TEST", open_: list[float] | None = None) -> pl.DataFrame:
    n = len(close)
    open_ = open_ or close
    ts = [dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=i) for i in range(n)]
    return pl.DataFrame({
        "symbol": [symbol] * n, "ts": ts, "open": open_,
        "high": [max(o, c) + 0.5 for o, c in zip(open_, close)],
        "low": [min(o, c) - 0.5 for o, c in zip(open_, close)],
        "close": close, "volume": [1000.0] * n,
    }).with_columns(pl.col("ts").dt.cast_time_unit("us"))


def config(**kw) -> bl.BacktestConfig:
    base = {"strategy": "sma_crossover", "params": {"fast": 2, "slow": 3}, "universe": ["TEST"],
            "timeframe": "1d", "initial_cash": 1000}
    base.update(kw)
    return bl.BacktestConfig.model_validate(base)


# prices chosen so fast(2) crosses above slow(3) at bar 4's close and back below at bar 8's
CLOSE = [10.0, 10.0, 10.0, 9.0, 12.0, 13.0, 14.0, 13.0, 9.0, 8.0, 8.0]
OPEN = [10.0, 10.0, 10.0, 9.5, 11.0, 12.5, 13.5, 13.8, 12.0, 8.5, 8.2]


def test_signal_on_close_fills_next_open_with_hand_computed_pnl():
    res = bl.run_backtest(config(costs={"commission_bps": 10}), make_bars(CLOSE, open_=OPEN))
    t = res.trades.row(0, named=True)
    # entry: cross at bar 4 close -> fill at bar 5 open = 12.5
    assert t["entry_ts"].day == 6 and t["entry_price"] == pytest.approx(12.5)
    qty = math.floor(1000 / (12.5 * 1.001))
    assert t["qty"] == qty == 79
    # exit: cross down at bar 8 close (fast 11.0 < slow 12.0) -> fill at bar 9 open = 8.5
    assert t["exit_price"] == pytest.approx(8.5) and t["exit_reason"] == "signal"
    fees = 12.5 * qty * 0.001 + 8.5 * qty * 0.001
    assert t["fees"] == pytest.approx(fees)
    assert t["pnl"] == pytest.approx((8.5 - 12.5) * qty - fees)
    assert t["bars_held"] == 4
    assert res.equity["equity"][-1] == pytest.approx(1000 + t["pnl"])


def test_close_fill_fills_at_the_signal_bar_close():
    res = bl.run_backtest(config(execution={"fill": "close"}), make_bars(CLOSE, open_=OPEN))
    t = res.trades.row(0, named=True)
    assert t["entry_price"] == pytest.approx(12.0) and t["entry_ts"].day == 5
    assert t["exit_price"] == pytest.approx(9.0)


def test_position_open_at_end_is_marked_to_last_close():
    close = [10.0, 10.0, 10.0, 9.0, 12.0, 13.0, 14.0, 15.0]
    res = bl.run_backtest(config(), make_bars(close))
    assert res.trades.height == 1
    t = res.trades.row(0, named=True)
    assert t["exit_reason"] == "end_of_data" and t["exit_price"] == 15.0
    assert res.equity["equity"][-1] == pytest.approx(1000 - t["qty"] * 13.0 + t["qty"] * 15.0)
    assert res.metrics["n_trades"] == 1 and res.metrics["n_closed_trades"] == 0


def test_no_look_ahead_changing_later_bars_changes_nothing_before():
    rng = np.random.default_rng(7)
    close = list(100 * np.exp(np.cumsum(rng.normal(0, 0.02, 300))))
    bars = make_bars(close)
    cut = 180
    other = close[:cut + 1] + list(np.array(close[cut + 1:]) * rng.uniform(0.5, 1.5, len(close) - cut - 1))
    a = bl.run_backtest(config(params={"fast": 5, "slow": 20}), bars)
    b = bl.run_backtest(config(params={"fast": 5, "slow": 20}), make_bars(other))
    np.testing.assert_array_equal(a.equity["equity"][: cut + 1], b.equity["equity"][: cut + 1])
    entries_a = a.trades.filter(pl.col("entry_ts") <= bars["ts"][cut])["entry_price"]
    entries_b = b.trades.filter(pl.col("entry_ts") <= bars["ts"][cut])["entry_price"]
    assert entries_a.to_list() == entries_b.to_list()


def test_metrics_have_expected_names():
    res = bl.run_backtest(config(), make_bars(CLOSE, open_=OPEN))
    for name in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "n_trades", "win_rate"):
        assert name in res.metrics
    assert res.metrics["max_drawdown"] <= 0


def test_missing_symbol_and_dates_outside_data_are_config_errors():
    bars = make_bars(CLOSE)
    with pytest.raises(ConfigError, match=r"'GOOG'.*available: TEST"):
        bl.run_backtest(config(universe=["GOOG"]), bars)
    with pytest.raises(ConfigError, match="data covers 2020-01-01 to 2020-01-11"):
        bl.run_backtest(config(start="2021-01-01"), bars)


def load_goog() -> pl.DataFrame:
    with gzip.open(SAMPLES / "GOOG.csv.gz") as f:
        df = pl.read_csv(f.read())
    return df.rename({df.columns[0]: "ts", "Open": "open", "High": "high", "Low": "low",
                      "Close": "close", "Volume": "volume"}).with_columns(
        pl.col("ts").str.to_datetime("%Y-%m-%d", time_unit="us").dt.replace_time_zone("UTC"),
        pl.lit("GOOG").alias("symbol"), pl.col("volume").cast(pl.Float64),
    )


def test_goog_reference_config_golden():
    """The reference config on the real GOOG data: 32 closed trades, one open, 54,101.37."""
    cfg = bl.BacktestConfig.model_validate({
        "strategy": "sma_crossover", "params": {"fast": 10, "slow": 30}, "universe": ["GOOG"],
        "start": "2004-08-19", "end": "2013-03-01", "timeframe": "1d", "initial_cash": 10000,
        "direction": "long_only",
        "sizing": {"method": "fixed_fraction", "fraction": 1.0, "whole_units": True},
        "costs": {"commission_bps": 10}, "execution": {"fill": "next_open"},
    })
    res = bl.run_backtest(cfg, load_goog())
    assert (res.trades["exit_reason"] == "signal").sum() == 32
    assert (res.trades["exit_reason"] == "end_of_data").sum() == 1
    assert res.equity["equity"][-1] == pytest.approx(54101.37, abs=0.01)
