"""No look-ahead, proven on the whole engine for every strategy: random bars, a random cut N;
changing every bar after N leaves every fill and every equity value up to N unchanged."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import backlake as bl

STRATEGY_CASES = {
    "sma_crossover": ({"fast": 3, "slow": 8}, "1d", 1),
    "rsi_mean_reversion": ({"window": 5, "oversold": 40, "exit_level": 55, "max_hold_bars": 4}, "1d", 1),
    "macd_crossover": ({"fast": 3, "slow": 8, "signal": 3}, "1d", 1),
    "bollinger_bands": ({"window": 8, "num_std": 1.0}, "1d", 1),
    "momentum_breakout": ({"window": 5, "exit_window": 3}, "1d", 1),
    "rsi_vol_filter": ({"window": 5, "oversold": 40, "exit_level": 55, "atr_window": 5, "lookback": 20,
                        "max_atr_percentile": 0.7}, "1d", 1),
    "dual_momentum": ({"lookback": 10, "rebalance_every": 5, "top_k": 1}, "1d", 3),
    "opening_range_breakout": ({"range_bars": 3, "hold_bars": 4}, "1h", 1),
}


def random_bars(seed: int, n: int, n_assets: int, timeframe: str) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    step = dt.timedelta(hours=1) if timeframe == "1h" else dt.timedelta(days=1)
    t0 = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    frames = []
    for a in range(n_assets):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
        open_ = close * np.exp(rng.normal(0, 0.01, n))
        high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.02, n))
        low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.02, n))
        frames.append(pl.DataFrame({
            "symbol": f"S{a}", "ts": [t0 + i * step for i in range(n)], "open": open_, "high": high,
            "low": low, "close": close, "volume": rng.uniform(1e5, 1e6, n),
        }))
    return pl.concat(frames).with_columns(pl.col("ts").dt.cast_time_unit("us"))


def perturb_after(bars: pl.DataFrame, cut_ts, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed + 1)
    f = rng.uniform(0.7, 1.4, bars.height)
    later = (bars["ts"] > cut_ts).to_numpy()
    scale = np.where(later, f, 1.0)
    return bars.with_columns(
        *(pl.Series(c, bars[c].to_numpy() * scale) for c in ("open", "high", "low", "close")),
        pl.Series("volume", bars["volume"].to_numpy() * np.where(later, rng.uniform(0.1, 3, bars.height), 1.0)),
    )


def config(name: str, params: dict, timeframe: str, n_assets: int, **extra) -> bl.BacktestConfig:
    return bl.BacktestConfig.model_validate({
        "strategy": name, "params": params, "universe": [f"S{a}" for a in range(n_assets)],
        "timeframe": timeframe, "initial_cash": 100_000, "costs": {"commission_bps": 5, "slippage_bps": 2},
        **extra,
    })


EXTRAS = [
    {},
    {"direction": "long_short", "execution": {"stop_loss": 0.03, "take_profit": 0.05}},
    {"direction": "short_only", "execution": {"fill": "close", "max_hold_bars": 5}},
    {"sizing": {"method": "volatility_target", "target_volatility": 0.2},
     "costs": {"impact": {"k": 0.2}, "participation_cap": 0.001, "market": "us"}},
]


@pytest.mark.parametrize("name", sorted(STRATEGY_CASES))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), cut_frac=st.floats(0.2, 0.9), extra=st.sampled_from(EXTRAS))
def test_changing_bars_after_n_changes_nothing_up_to_n(name, seed, cut_frac, extra):
    params, timeframe, n_assets = STRATEGY_CASES[name]
    n = 120
    bars = random_bars(seed, n, n_assets, timeframe)
    ts = bars.filter(pl.col("symbol") == "S0")["ts"]
    cut = int(cut_frac * n)
    cut_ts = ts[cut]
    other = perturb_after(bars, cut_ts, seed)
    cfg = config(name, params, timeframe, n_assets, **extra)
    a, b = bl.run_backtest(cfg, bars), bl.run_backtest(cfg, other)
    np.testing.assert_array_equal(a.equity["equity"][: cut + 1], b.equity["equity"][: cut + 1])
    np.testing.assert_array_equal(a.equity["cash"][: cut + 1], b.equity["cash"][: cut + 1])

    def fills_up_to_cut(res):
        t = res.trades
        entries = t.filter(pl.col("entry_ts") <= cut_ts).select("symbol", "direction", "entry_ts")
        closed = t.filter((pl.col("exit_ts") <= cut_ts) & (pl.col("exit_reason") != "end_of_data"))
        return entries.rows(), closed.drop("trade_id").rows()

    assert fills_up_to_cut(a) == fills_up_to_cut(b)


def test_rsi_mean_reversion_max_hold_exit_triggers():
    bars = random_bars(11, 300, 1, "1d")
    cfg = config("rsi_mean_reversion", {"window": 5, "oversold": 40, "exit_level": 90, "max_hold_bars": 4}, "1d", 1)
    res = bl.run_backtest(cfg, bars)
    held = res.trades.filter(pl.col("exit_reason") == "max_hold")
    assert held.height > 0 and set(held["bars_held"]) == {4}


def test_opening_range_breakout_holds_exactly_hold_bars():
    bars = random_bars(5, 24 * 30, 1, "1h")
    cfg = config("opening_range_breakout", {"range_bars": 3, "hold_bars": 5}, "1h", 1)
    res = bl.run_backtest(cfg, bars)
    closed = res.trades.filter(pl.col("exit_reason") != "end_of_data")
    assert closed.height > 5
    assert set(closed["bars_held"]) == {5} and set(closed["exit_reason"]) == {"max_hold"}


def test_intraday_only_strategy_rejects_daily_bars():
    with pytest.raises(bl.ConfigError, match="needs intraday bars"):
        bl.run_backtest(config("opening_range_breakout", {}, "1d", 1), random_bars(1, 50, 1, "1d"))


def test_dual_momentum_rebalances_only_every_n_bars():
    bars = random_bars(8, 200, 3, "1d")
    cfg = config("dual_momentum", {"lookback": 20, "rebalance_every": 10, "top_k": 1}, "1d", 3,
                 sizing={"whole_units": False})
    res = bl.run_backtest(cfg, bars)
    ts = bars.filter(pl.col("symbol") == "S0")["ts"].to_list()
    idx = {t: i for i, t in enumerate(ts)}
    fill_bars = {idx[t] for t in res.trades["entry_ts"]} | {
        idx[t] for t in res.trades.filter(pl.col("exit_reason") == "rebalance")["exit_ts"]}
    assert fill_bars and all((i - 1) % 10 == 0 for i in fill_bars)  # decided at k*10, filled next open
