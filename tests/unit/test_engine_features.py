"""Engine features with hand-computed expectations: directions, stops, holding limits, sizing,
costs and fee schedules, partial fills, multi-asset shared cash, benchmarks."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
from pydantic import Field

import backlake as bl
from backlake.errors import ConfigError, DataValidationError
from backlake.strategies.base import Signals, StrategyParams, register

T0 = dt.datetime(2021, 1, 4, tzinfo=dt.UTC)


def bars_from(symbol: str, open_, high=None, low=None, close=None, volume=None) -> pl.DataFrame:
    n = len(open_)
    close = close or open_
    high = high or [max(o, c) for o, c in zip(open_, close)]
    low = low or [min(o, c) for o, c in zip(open_, close)]
    return pl.DataFrame({
        "symbol": [symbol] * n,
        "ts": [T0 + dt.timedelta(days=i) for i in range(n)],
        "open": [float(x) for x in open_], "high": [float(x) for x in high],
        "low": [float(x) for x in low], "close": [float(x) for x in close],
        "volume": [float(v) for v in (volume or [1e6] * n)],
    }).with_columns(pl.col("ts").dt.cast_time_unit("us"))


# A scripted test strategy: events at given bar indices (entries/exits per asset).
class ScriptParams(StrategyParams):
    entries: list[int] = Field(default_factory=list)
    exits: list[int] = Field(default_factory=list)
    weights: list[list[float] | None] | None = None


@register("_script", ScriptParams)
def _script(data, p: ScriptParams) -> Signals:
    n, m = data["close"].shape
    if p.weights is not None:
        w = np.full((n, m), np.nan)
        for i, row in enumerate(p.weights):
            if row is not None:
                w[i] = row
        return Signals(weights=w)
    e = np.zeros((n, m), dtype=bool)
    x = np.zeros((n, m), dtype=bool)
    e[p.entries, :] = True
    x[p.exits, :] = True
    return Signals(entries=e, exits=x)


def run(bars, **cfg):
    base = {"strategy": "_script", "universe": sorted(bars["symbol"].unique().to_list()), "initial_cash": 1000}
    base.update(cfg)
    return bl.run_backtest(bl.BacktestConfig.model_validate(base), bars)


PRICES = [10, 10, 11, 12, 13, 12, 11, 10, 9, 10]


def test_long_only_next_open():
    res = run(bars_from("A", PRICES), params={"entries": [1], "exits": [4]})
    t = res.trades.row(0, named=True)
    assert (t["entry_price"], t["exit_price"], t["qty"]) == (11.0, 12.0, 90.0)
    assert t["pnl"] == pytest.approx(90.0) and t["direction"] == "long"


def test_short_only_opens_on_exit_events_and_covers_on_entries():
    res = run(bars_from("A", PRICES), direction="short_only", params={"entries": [7], "exits": [3]})
    t = res.trades.row(0, named=True)
    assert t["direction"] == "short" and t["entry_price"] == 13.0 and t["exit_price"] == 9.0
    qty = math.floor(1000 / 13)
    assert t["qty"] == qty and t["pnl"] == pytest.approx(4.0 * qty)
    assert res.equity["equity"][-1] == pytest.approx(1000 + 4.0 * qty)


def test_long_short_reverses_on_opposite_signal():
    res = run(bars_from("A", PRICES), direction="long_short", params={"entries": [1, 7], "exits": [4]})
    d = res.trades.select("direction", "entry_price", "exit_price", "exit_reason").rows()
    assert d[0] == ("long", 11.0, 12.0, "signal")
    assert d[1] == ("short", 12.0, 9.0, "signal")  # reversed at bar 5's open, covered at bar 8's
    assert d[2][0] == "long" and d[2][3] == "end_of_data"


def test_stop_loss_fills_at_stop_or_at_gap_open():
    # long entered at bar 2 open = 10; stop 10% -> 9. Bar 3 trades down to 8.5 -> fill at 9
    o = [10, 10, 10, 9.5, 9, 9]
    res = run(bars_from("A", o, low=[10, 10, 9.8, 8.5, 9, 9]), params={"entries": [1]},
              execution={"stop_loss": 0.1})
    t = res.trades.row(0, named=True)
    assert t["exit_reason"] == "stop_loss" and t["exit_price"] == pytest.approx(9.0)
    # a gap through the stop fills at the (worse) open
    o = [10, 10, 10, 8.0, 8, 8]
    res = run(bars_from("A", o, low=[10, 10, 9.8, 7.5, 8, 8]), params={"entries": [1]},
              execution={"stop_loss": 0.1})
    t = res.trades.row(0, named=True)
    assert t["exit_reason"] == "stop_loss" and t["exit_price"] == pytest.approx(8.0)


def test_take_profit_and_stop_same_bar_takes_the_stop():
    o = [10, 10, 10, 10, 10]
    res = run(bars_from("A", o, high=[10, 10, 10, 12, 10], low=[10, 10, 10, 8, 10]),
              params={"entries": [1]}, execution={"stop_loss": 0.1, "take_profit": 0.1})
    assert res.trades["exit_reason"][0] == "stop_loss"
    res = run(bars_from("A", o, high=[10, 10, 10, 12, 10]), params={"entries": [1]},
              execution={"take_profit": 0.1})
    t = res.trades.row(0, named=True)
    assert t["exit_reason"] == "take_profit" and t["exit_price"] == pytest.approx(11.0)


def test_max_hold_bars_closes_after_exactly_n_bars():
    res = run(bars_from("A", PRICES), params={"entries": [1]}, execution={"max_hold_bars": 3})
    t = res.trades.row(0, named=True)
    assert t["exit_reason"] == "max_hold" and t["bars_held"] == 3
    assert t["entry_price"] == 11.0 and t["exit_price"] == 12.0  # bar 2 open -> bar 5 open
    res = run(bars_from("A", PRICES), params={"entries": [1]}, execution={"max_hold_bars": 3, "fill": "close"})
    t = res.trades.row(0, named=True)
    assert t["bars_held"] == 3 and t["entry_price"] == 10.0 and t["exit_price"] == 13.0


def test_commission_fixed_and_slippage():
    res = run(bars_from("A", PRICES), params={"entries": [1], "exits": [4]},
              costs={"commission_bps": 10, "commission_fixed": 1.0, "slippage_bps": 50})
    t = res.trades.row(0, named=True)
    buy = 11.0 * 1.005
    qty = math.floor((1000 - 1.0) / (buy * 1.001))
    sell = 12.0 * 0.995
    fees = buy * qty * 0.001 + 1 + sell * qty * 0.001 + 1
    assert t["qty"] == qty and t["entry_price"] == pytest.approx(buy) and t["exit_price"] == pytest.approx(sell)
    assert t["fees"] == pytest.approx(fees) and t["commission"] == pytest.approx(fees)
    assert t["slippage_cost"] == pytest.approx((11 * 0.005 + 12 * 0.005) * qty)
    assert t["pnl"] == pytest.approx((sell - buy) * qty - fees)


def test_us_fee_schedule_on_sells_only():
    res = run(bars_from("A", PRICES), params={"entries": [1], "exits": [4]}, initial_cash=100_000,
              costs={"market": "us"})
    t = res.trades.row(0, named=True)
    qty = t["qty"]
    assert t["sec_fee"] == pytest.approx(12.0 * qty * 27.80e-6)
    assert t["finra_taf"] == pytest.approx(min(qty * 0.000166, 8.30))
    assert t["fees"] == pytest.approx(t["sec_fee"] + t["finra_taf"])


def test_india_fee_schedule_lists_each_charge():
    res = run(bars_from("A", PRICES), params={"entries": [1], "exits": [4]}, initial_cash=100_000,
              costs={"market": "india", "commission_bps": 3})
    t = res.trades.row(0, named=True)
    q = t["qty"]
    buy, sell = 11.0 * q, 12.0 * q
    assert t["stt"] == pytest.approx(0.001 * (buy + sell))
    assert t["stamp_duty"] == pytest.approx(0.00015 * buy)
    exch = 0.0000297 * (buy + sell)
    sebi = 0.000001 * (buy + sell)
    brokerage = 0.0003 * (buy + sell)
    assert t["exchange_fee"] == pytest.approx(exch) and t["sebi_fee"] == pytest.approx(sebi)
    assert t["gst"] == pytest.approx(0.18 * (brokerage + exch + sebi))
    parts = ["commission", "stt", "exchange_fee", "gst", "stamp_duty", "sebi_fee"]
    assert t["fees"] == pytest.approx(sum(t[p] for p in parts))


def test_participation_cap_fills_partially_and_carries_over():
    vol = [1000, 1000, 40, 30, 1000, 1000, 1000, 1000, 1000, 1000]
    res = run(bars_from("A", PRICES, volume=vol), params={"entries": [1], "exits": [6]},
              costs={"participation_cap": 1.0})
    t = res.trades.row(0, named=True)
    # wants floor(1000/11) = 90 units: 40 at bar 2 (11), 30 at bar 3 (12), then cash-limited at bar 4 (13)
    cash_left = 1000 - 40 * 11 - 30 * 12
    rest = math.floor(cash_left / 13)
    assert t["qty"] == 40 + 30 + rest
    assert t["entry_price"] == pytest.approx((40 * 11 + 30 * 12 + rest * 13) / t["qty"])


def test_market_impact_square_root():
    n = 40
    close = [100 * (1.01 if i % 2 else 0.99) ** (i % 3) for i in range(n)]
    bars = bars_from("A", close, volume=[10_000] * n)
    res = run(bars, params={"entries": [30], "exits": [35]}, initial_cash=100_000,
              costs={"impact": {"k": 0.5, "sigma_lookback": 20, "adv_lookback": 20}})
    t = res.trades.row(0, named=True)
    c = np.array(close)
    r = c[11:31] / c[10:30] - 1
    sigma = r.std(ddof=1)
    ref = close[31]
    # qty is sized without impact, then impact moves the price against the buyer
    assert t["impact_cost"] > 0
    q = t["qty"]
    expected_buy = ref + ref * 0.5 * sigma * math.sqrt(q / 10_000)
    assert t["entry_price"] == pytest.approx(expected_buy, rel=1e-9)


def test_fixed_quantity_equal_weight_and_vol_target_sizing():
    a = bars_from("A", PRICES)
    res = run(a, params={"entries": [1]}, sizing={"method": "fixed_quantity", "quantity": 7})
    assert res.trades["qty"][0] == 7
    two = pl.concat([a, bars_from("B", [20 + p for p in PRICES])])
    res = run(two, params={"entries": [1]}, sizing={"method": "equal_weight", "fraction": 1.0})
    q = dict(zip(res.trades["symbol"], res.trades["qty"]))
    assert q == {"A": math.floor(500 / 11), "B": math.floor(500 / 31)}
    rng = np.random.default_rng(3)
    walk = list(100 * np.exp(np.cumsum(rng.normal(0, 0.01, 60))))
    res = run(bars_from("A", walk), params={"entries": [40]}, initial_cash=1_000_000,
              sizing={"method": "volatility_target", "target_volatility": 0.05, "vol_lookback": 20,
                      "whole_units": False})
    w = np.array(walk)
    r = w[21:41] / w[20:40] - 1
    ann = r.std(ddof=1) * math.sqrt(252)
    budget = 1_000_000 * min(1.0, 0.05 / ann)
    assert res.trades["qty"][0] == pytest.approx(budget / walk[41], rel=1e-9)


def test_multi_asset_shared_cash_and_rollup():
    a = bars_from("A", PRICES)
    b = bars_from("B", [p * 2 for p in PRICES])
    res = run(pl.concat([a, b]), params={"entries": [1], "exits": [4]}, sizing={"fraction": 0.5})
    assert res.trades.height == 2
    # A is sized first from all equity (500), B from what is left (equity still 1000, cash 516)
    q = dict(zip(res.trades["symbol"], res.trades["qty"]))
    assert q == {"A": 45, "B": 22}  # A: floor(500/11); B: floor(0.5 * (505 + 45*11) / 22), cash 505 suffices
    eq = res.equity["equity"].to_numpy()
    assert eq[-1] == pytest.approx(1000 + res.trades["pnl"].sum())
    assert res.assets["symbol"].to_list() == ["A", "B"]
    assert res.assets["pnl"].sum() == pytest.approx(res.trades["pnl"].sum())
    corr = res.correlation
    assert corr.columns == ["symbol", "A", "B"] and corr["A"][0] == pytest.approx(1.0)


def test_target_weights_rebalance():
    a = bars_from("A", PRICES)
    b = bars_from("B", [20.0] * len(PRICES))
    w = [None, [0.5, 0.5], None, None, None, [0.0, 1.0], None, None, None, None]
    res = run(pl.concat([a, b]), params={"weights": w}, sizing={"whole_units": False})
    sym = res.trades.select("symbol", "qty", "entry_price", "exit_price", "exit_reason").rows()
    assert sym[0][0] == "A" and sym[0][1] == pytest.approx(500 / 11) and sym[0][4] == "rebalance"
    assert sym[0][3] == 11.0  # sold at bar 6's open
    b_trade = next(s for s in sym if s[0] == "B")
    assert b_trade[4] == "end_of_data"


def test_benchmark_options():
    a = bars_from("A", PRICES)
    b = bars_from("B", [p * 3 for p in PRICES[::-1]])
    res = run(pl.concat([a, b]), universe=["A"], params={"entries": [1]}, benchmark="B")
    assert res.equity["benchmark_equity"][-1] == pytest.approx(1000 * PRICES[0] / PRICES[-1])
    res = run(pl.concat([a, b]), params={"entries": [1]}, benchmark="equal_weight")
    assert res.equity["benchmark_equity"][-1] == pytest.approx(1000 * 0.5 * (1 + PRICES[0] / PRICES[-1]))
    assert "benchmark_sharpe" in res.metrics and "beta" in res.metrics


def test_oos_split_gives_segments():
    rng = np.random.default_rng(5)
    walk = list(100 * np.exp(np.cumsum(rng.normal(0, 0.01, 200))))
    cfg = bl.BacktestConfig.model_validate({"strategy": "sma_crossover", "universe": ["A"],
                                            "params": {"fast": 5, "slow": 20}})
    res = bl.run_backtest(cfg, bars_from("A", walk), oos_start=(T0 + dt.timedelta(days=120)).date())
    assert set(res.segments) == {"full", "is", "oos"}
    assert res.monthly_returns.columns == ["year", "month", "ret"]


def test_bad_inputs_are_config_errors_before_simulation():
    bars = bars_from("A", PRICES)
    with pytest.raises(ConfigError, match="timeframe='1h' but A has 1d bars"):
        bl.run_backtest(bl.BacktestConfig.model_validate(
            {"strategy": "_script", "universe": ["A"], "timeframe": "1h"}),
            bars.with_columns(pl.lit("1d").alias("timeframe")))
    with pytest.raises(ConfigError, match="need volume"):
        run(bars.with_columns(pl.lit(0.0).alias("volume")), costs={"participation_cap": 0.1})
    with pytest.raises(ConfigError, match="at least 2"):
        run(bars_from("A", [10.0]))
    with pytest.raises(DataValidationError, match="missing or non-positive"):
        run(bars.with_columns(pl.when(pl.col("ts") == T0).then(float("nan")).otherwise(pl.col("close")).alias("close")))
    with pytest.raises(ConfigError, match="quantity"):
        bl.BacktestConfig.model_validate(
            {"strategy": "_script", "universe": ["A"], "sizing": {"method": "fixed_quantity"}}
        )


def test_empty_and_all_nan_data():
    with pytest.raises(ConfigError, match="no 1d bars"):
        run(bars_from("A", PRICES).clear(), universe=["A"])
    nan = bars_from("A", PRICES).with_columns(
        *(pl.lit(float("nan")).alias(c) for c in ("open", "high", "low", "close"))
    )
    with pytest.raises(DataValidationError):
        run(nan)


def test_gappy_multi_asset_data_carries_the_last_close():
    """A bar one symbol lacks is flat at its last close with no volume; nothing fills on it."""
    a = bars_from("A", PRICES)
    b = bars_from("B", [20 + p for p in PRICES]).filter(pl.col("ts") != T0 + dt.timedelta(days=2))
    res = run(pl.concat([a, b]), params={"entries": [1], "exits": [4]}, sizing={"method": "equal_weight"})
    assert res.equity.height == len(PRICES)
    t = dict(zip(res.trades["symbol"], res.trades["entry_price"]))
    assert t["A"] == 11.0
    assert t["B"] == 32.0  # B has no bar 2: the order waits for its next real bar's open (bar 3)
    # a symbol whose data starts later moves the start of the whole backtest
    late = bars_from("C", PRICES).filter(pl.col("ts") >= T0 + dt.timedelta(days=3))
    res = run(pl.concat([a, late]), params={"entries": [4]})
    assert res.equity["ts"][0] == T0 + dt.timedelta(days=3)
