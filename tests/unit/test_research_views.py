"""The research views' computations on hand-computed inputs: sweep heatmap (fixed and
aggregated), best-so-far, parameter importance (eta^2, Spearman), Monte Carlo paths identical to
the flow's, fan percentiles, ruin at a chosen drawdown, parameter stability."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

import backlake as bl
from backlake.analytics.research_views import (
    best_so_far,
    fan_percentiles,
    heatmap_grid,
    mc_equity_paths,
    param_importance,
    param_stability,
    prob_ruin,
)
from backlake.data.synthetic import synthetic_bars
from backlake.errors import ConfigError
from backlake.research.monte_carlo import simulate_paths

ROWS = [
    {"a": 1, "b": 10, "c": "x", "m": 1.0},
    {"a": 1, "b": 10, "c": "y", "m": 3.0},
    {"a": 2, "b": 10, "c": "x", "m": 5.0},
    {"a": 2, "b": 10, "c": "y", "m": None},
    {"a": 1, "b": 20, "c": "x", "m": -1.0},
    {"a": 10, "b": 20, "c": "y", "m": 7.0},
]


def test_heatmap_aggregates_the_other_parameters():
    xs, ys, z = heatmap_grid(ROWS, "a", "b", "m", agg="mean")
    assert xs == [1, 2, 10] and ys == [10, 20]  # numeric sort, not string sort
    assert z == [[2.0, 5.0, None], [-1.0, None, 7.0]]
    assert heatmap_grid(ROWS, "a", "b", "m", agg="max")[2][0] == [3.0, 5.0, None]
    assert heatmap_grid(ROWS, "a", "b", "m", agg="min")[2][0] == [1.0, 5.0, None]


def test_heatmap_fixes_the_other_parameters():
    xs, ys, z = heatmap_grid(ROWS, "a", "b", "m", fixed={"c": "y"})
    assert xs == [1, 2, 10] and ys == [10, 20]
    assert z == [[3.0, None, None], [None, None, 7.0]]


def test_heatmap_errors_name_the_field():
    with pytest.raises(ConfigError, match="agg='median'"):
        heatmap_grid(ROWS, "a", "b", "m", agg="median")
    with pytest.raises(ConfigError, match="same parameter"):
        heatmap_grid(ROWS, "a", "a", "m")
    with pytest.raises(ConfigError, match="'zz'"):
        heatmap_grid(ROWS, "a", "zz", "m")


def test_best_so_far():
    assert best_so_far([None, 1.0, 0.5, 2.0, None, 1.5]) == [None, 1.0, 1.0, 2.0, 2.0, 2.0]
    assert best_so_far([3.0, 4.0, 1.0], maximize=False) == [3.0, 3.0, 1.0]


def test_importance_eta2_by_hand():
    # objective depends on a only: a=1 -> 0, a=2 -> 2; b is noise-free balanced
    params = [{"a": 1, "b": 1}, {"a": 1, "b": 2}, {"a": 2, "b": 1}, {"a": 2, "b": 2}]
    imp = param_importance(params, [0.0, 0.0, 2.0, 2.0])
    assert [i.name for i in imp] == ["a", "b"]
    assert imp[0].eta2 == pytest.approx(1.0) and imp[0].spearman == pytest.approx(1.0) and imp[0].n_levels == 2
    assert imp[1].eta2 == pytest.approx(0.0) and imp[1].spearman == pytest.approx(0.0)
    # objective 0, 1, 2, 5 with a = 1, 1, 2, 2: mean 2; groups means 0.5 and 3.5
    # between = 2 * 1.5^2 * 2 = 9, total = 4 + 1 + 0 + 9 = 14 -> 9/14
    imp2 = param_importance([{"a": 1}, {"a": 1}, {"a": 2}, {"a": 2}], [0.0, 1.0, 2.0, 5.0])
    assert imp2[0].eta2 == pytest.approx(9 / 14)


def test_importance_bins_continuous_and_skips_null_objectives():
    params = [{"x": float(i)} for i in range(10)] + [{"x": 99.0}]
    obj: list[float | None] = [float(i) for i in range(10)] + [None]
    imp = param_importance(params, obj, bins=2)[0]
    # bins {0..4} mean 2 and {5..9} mean 7 around 4.5: between = 10 * 2.5^2 = 62.5, total = 82.5
    assert imp.n_levels == 2 and imp.eta2 == pytest.approx(62.5 / 82.5)
    assert imp.spearman == pytest.approx(1.0)
    cat = param_importance([{"s": "u"}, {"s": "v"}], [1.0, 1.0])[0]
    assert cat.eta2 == 0.0 and cat.spearman is None
    with pytest.raises(ConfigError, match="bins=1"):
        param_importance(params, obj, bins=1)
    with pytest.raises(ConfigError, match="one per trial"):
        param_importance(params, obj[:3])


BARS = synthetic_bars(("S0",), periods=300, seed=5)
CFG = bl.BacktestConfig.model_validate({"strategy": "sma_crossover", "params": {"fast": 5, "slow": 20},
                                        "universe": ["S0"], "initial_cash": 10_000})
BASE = bl.run_backtest(CFG, BARS)


@pytest.mark.parametrize("method", ["block_bootstrap", "return_shuffle", "trade_bootstrap"])
def test_regenerated_paths_are_the_flows_paths(method):
    closed = BASE.trades.filter(pl.col("exit_reason") != "end_of_data")["return_pct"].to_numpy()
    paths = mc_equity_paths(method=method, n_paths=300, seed=3, block_size=10, equity=BASE.equity["equity"].to_numpy(),
                            trade_returns=closed, initial_cash=CFG.initial_cash)
    ref = simulate_paths(BASE, BARS, method=method, n_paths=300, seed=3, block_size=10)
    assert paths.shape[0] == 300
    np.testing.assert_allclose(paths[:, -1] / CFG.initial_cash - 1, ref["total_return"].to_numpy(), rtol=1e-12)
    mdd = (paths / np.maximum.accumulate(paths, axis=1) - 1).min(axis=1)
    np.testing.assert_allclose(mdd, ref["max_drawdown"].to_numpy(), rtol=1e-12)


def test_paths_errors():
    with pytest.raises(ConfigError, match="random_entry"):
        mc_equity_paths(method="random_entry", n_paths=1, seed=0, equity=[1.0, 2.0, 3.0])
    with pytest.raises(ConfigError, match="block_size=9"):
        mc_equity_paths(method="block_bootstrap", n_paths=1, seed=0, block_size=9, equity=[1.0, 2.0, 3.0])


def test_fan_percentiles_by_hand():
    paths = np.array([[1.0, 1.0], [1.0, 2.0], [1.0, 3.0], [1.0, 4.0], [1.0, 5.0]])
    f = fan_percentiles(paths, (0, 25, 50, 100))
    np.testing.assert_allclose(f, [[1, 1], [1, 2], [1, 3], [1, 5]])
    with pytest.raises(ConfigError, match="shape"):
        fan_percentiles(np.array([1.0, 2.0]))


def test_prob_ruin_at_a_chosen_drawdown():
    dd = [-0.1, -0.3, -0.5, -0.6, None]
    assert prob_ruin(dd, 0.5) == pytest.approx(2 / 5)
    assert prob_ruin(dd, 0.3) == pytest.approx(3 / 5)
    assert prob_ruin(dd, 1.0) == 0.0
    with pytest.raises(ConfigError, match="ruin_drawdown=0"):
        prob_ruin(dd, 0)


def test_param_stability():
    s = param_stability([{"f": 5, "s": 50}, {"f": 5, "s": 100}, {"f": 10, "s": 100}, {"f": 5, "s": 100}])
    assert s["f"] == {"distinct": 2, "changes": 2, "mode": 5, "mode_share": 0.75}
    assert s["s"] == {"distinct": 2, "changes": 1, "mode": 100, "mode_share": 0.75}
