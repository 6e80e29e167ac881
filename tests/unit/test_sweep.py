"""backlake.sweep: every combination's metrics equal a single run_backtest's; invalid
combinations are skipped and counted; bad grids are clear errors."""

from __future__ import annotations

import pytest

import backlake as bl
from backlake.data.synthetic import synthetic_bars
from backlake.research.sweep import SWEEP_METRICS

BARS = synthetic_bars(("S0", "S1", "S2"), periods=400, seed=4)


def cfg(strategy: str, universe=("S0",), **extra) -> bl.BacktestConfig:
    return bl.BacktestConfig.model_validate({
        "strategy": strategy, "universe": list(universe), "initial_cash": 100_000,
        "costs": {"commission_bps": 5, "slippage_bps": 1}, **extra,
    })


def assert_rows_match_single_runs(base: bl.BacktestConfig, df, keys, sample=6):
    for row in df.head(sample).iter_rows(named=True):
        params = {**base.params, **{k: row[k] for k in keys}}
        single = bl.run_backtest(base.model_copy(update={"params": params}), BARS)
        for name in SWEEP_METRICS:
            want = single.metrics[name]
            if want is None:
                assert row[name] is None, (params, name)
            else:
                assert row[name] == pytest.approx(want, rel=1e-9, abs=1e-12), (params, name)


def test_sma_sweep_matches_single_backtests_and_counts_skips():
    base = cfg("sma_crossover", direction="long_short", execution={"stop_loss": 0.05})
    grid = {"fast": [5, 10, 20, 40], "slow": [10, 20, 50]}
    df, report = bl.sweep(base, grid, BARS, return_report=True)
    valid = [(f, s) for f in grid["fast"] for s in grid["slow"] if f < s]
    assert df.height == len(valid) == report.n_valid
    assert report.n_combinations == 12 and report.n_skipped == 12 - len(valid)
    assert "smaller than slow" in report.skipped[0]["reason"]
    assert df.columns == ["fast", "slow", *SWEEP_METRICS]
    assert_rows_match_single_runs(base, df, ["fast", "slow"], sample=len(valid))


def test_generic_sweep_with_strategy_holding_limits_matches_single_backtests():
    base = cfg("rsi_mean_reversion")
    grid = {"window": [5, 14], "max_hold_bars": [3, 10], "oversold": [30, 40]}
    df = bl.sweep(base, grid, BARS, chunk_size=3)
    assert df.height == 8
    assert_rows_match_single_runs(base, df, list(grid), sample=8)


def test_weights_strategy_sweep_over_a_universe():
    base = cfg("dual_momentum", universe=("S0", "S1", "S2"), sizing={"whole_units": False})
    grid = {"lookback": [20, 60], "rebalance_every": [5, 21]}
    df = bl.sweep(base, grid, BARS)
    assert_rows_match_single_runs(base, df, list(grid), sample=4)


def test_chunk_size_does_not_change_results():
    base = cfg("macd_crossover")
    grid = {"fast": [5, 8, 12], "slow": [20, 26]}
    a = bl.sweep(base, grid, BARS, chunk_size=1)
    b = bl.sweep(base, grid, BARS, chunk_size=100)
    assert a.equals(b)


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({"fast": [50], "slow": [10, 20]}, "no valid combination"),
        ({"fats": [5]}, "did you mean 'fast'"),
        ({"fast": []}, "grid\\['fast'\\] is empty"),
        ({}, "grid is empty"),
    ],
)
def test_bad_grids_are_clear_errors(grid, message):
    with pytest.raises(bl.ConfigError, match=message):
        bl.sweep(cfg("sma_crossover"), grid, BARS)
