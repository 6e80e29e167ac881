"""Monte Carlo: seeded paths, each method's defining property (shuffles keep the total return,
a single full-length block is a rotation, bootstrapped trades compound, random entries stay
inside the entry bar), ordered confidence intervals, ruin probabilities, and errors."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

import backlake as bl
from backlake.data.synthetic import synthetic_bars
from backlake.errors import ConfigError
from backlake.research.monte_carlo import (
    METHODS,
    _block_indices,
    _entry_inputs,
    _random_prices,
    monte_carlo,
    simulate_paths,
    summarize,
)

BARS = synthetic_bars(("S0",), periods=400, seed=11)
CFG = bl.BacktestConfig.model_validate({
    "strategy": "sma_crossover", "params": {"fast": 5, "slow": 20}, "universe": ["S0"],
    "initial_cash": 20_000, "costs": {"commission_bps": 5},
})
BASE = bl.run_backtest(CFG, BARS)
RET = BASE.equity["ret"].to_numpy()[1:]


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_paths_other_seed_other_paths(method):
    a = simulate_paths(BASE, BARS, method=method, n_paths=300, seed=4)
    assert a.columns == ["path", "total_return", "max_drawdown", "sharpe"]
    assert a["path"].to_list() == list(range(300))
    assert a.equals(simulate_paths(BASE, BARS, method=method, n_paths=300, seed=4))
    assert not a.equals(simulate_paths(BASE, BARS, method=method, n_paths=300, seed=5))
    assert (a["max_drawdown"] <= 0).all()


def test_return_shuffle_keeps_the_total_return_and_moves_the_drawdown():
    df = simulate_paths(BASE, None, method="return_shuffle", n_paths=200, seed=0)
    np.testing.assert_allclose(df["total_return"].to_numpy(), BASE.metrics["total_return"], rtol=1e-9)
    np.testing.assert_allclose(df["sharpe"].to_numpy(), BASE.metrics["sharpe"], rtol=1e-9)  # same returns
    assert df["max_drawdown"].n_unique() > 100


def test_a_block_as_long_as_the_data_is_a_rotation():
    n = RET.size
    idx = _block_indices(n, n, 50, np.random.default_rng(0))
    for row in idx:
        assert np.array_equal(row, (row[0] + np.arange(n)) % n)
    df = simulate_paths(BASE, None, method="block_bootstrap", n_paths=50, seed=0, block_size=n)
    np.testing.assert_allclose(df["total_return"].to_numpy(), BASE.metrics["total_return"], rtol=1e-9)


def test_blocks_are_contiguous_and_circular():
    idx = _block_indices(10, 4, 20, np.random.default_rng(1))
    assert idx.shape == (20, 10)
    for row in idx:
        for start in (0, 4, 8):
            block = row[start : start + 4]
            assert np.array_equal(block, (block[0] + np.arange(block.size)) % 10)


def test_trade_bootstrap_compounds_resampled_closed_trades():
    closed = BASE.trades.filter(pl.col("exit_reason") != "end_of_data")["return_pct"].to_numpy()
    df = simulate_paths(BASE, None, method="trade_bootstrap", n_paths=40, seed=9)
    draws = closed[np.random.default_rng(9).integers(0, closed.size, (40, closed.size))]
    np.testing.assert_allclose(df["total_return"].to_numpy(), np.prod(1 + draws, axis=1) - 1, rtol=1e-12)
    years = (BASE.equity["ts"][-1] - BASE.equity["ts"][0]).total_seconds() / (365.25 * 86400)
    want = draws.mean(axis=1) / draws.std(axis=1, ddof=1) * math.sqrt(closed.size / years)
    np.testing.assert_allclose(df["sharpe"].to_numpy(), want, rtol=1e-9)


def test_random_entries_stay_inside_the_entry_bar():
    low, high, entry, signed_qty, _idx = _entry_inputs(BASE, BARS)
    assert low.size == BASE.trades.height
    assert ((low <= entry) & (entry <= high)).all()  # the engine's own fills are inside too
    prices = _random_prices(low, high, 500, np.random.default_rng(2))
    assert ((prices >= low) & (prices <= high)).all()
    # every path lies between all entries at the low and all entries at the high
    best = BASE.equity["equity"][-1] - float(np.sum(signed_qty * (low - entry)))
    worst = BASE.equity["equity"][-1] - float(np.sum(signed_qty * (high - entry)))
    total = simulate_paths(BASE, BARS, method="random_entry", n_paths=200, seed=2)["total_return"].to_numpy()
    cash = CFG.initial_cash
    assert ((total >= worst / cash - 1 - 1e-12) & (total <= best / cash - 1 + 1e-12)).all()
    assert np.unique(total).size == 200


def test_summary_intervals_are_ordered_and_ruin_is_a_share():
    df = simulate_paths(BASE, None, method="block_bootstrap", n_paths=400, seed=1, block_size=10)
    s = summarize(df, confidence=0.9, ruin_drawdown=0.1)
    assert s.n_paths == 400 and s.confidence == 0.9
    for name, (lo, mid, hi) in s.ci.items():
        assert lo <= mid <= hi, name
    assert s.ci["total_return"][1] == pytest.approx(float(np.median(df["total_return"].to_numpy())))
    assert s.prob_ruin == pytest.approx(float(np.mean(df["max_drawdown"].to_numpy() <= -0.1)))
    assert 0.0 < s.prob_ruin < 1.0
    wide, narrow = summarize(df, confidence=0.99).ci["sharpe"], summarize(df, confidence=0.5).ci["sharpe"]
    assert wide[0] <= narrow[0] <= narrow[2] <= wide[2]
    assert summarize(df, ruin_drawdown=1.0).prob_ruin == 0.0
    assert summarize(df, ruin_drawdown=1e-9).prob_ruin == 1.0


def test_monte_carlo_runs_the_base_once_and_concatenates_seeds():
    mc = monte_carlo(CFG, BARS, method="return_shuffle", n_paths=50, seeds=(3, 7))
    assert mc.paths.columns == ["seed", "path", "total_return", "max_drawdown", "sharpe"]
    assert mc.paths.height == 100 and mc.summary.n_paths == 100
    assert mc.paths.filter(pl.col("seed") == 7).drop("seed").equals(
        simulate_paths(mc.base, BARS, method="return_shuffle", n_paths=50, seed=7))
    assert mc.base.metrics == BASE.metrics


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"method": "block_bootstrp"}, "did you mean 'block_bootstrap'"),
    ({"n_paths": 0}, "n_paths=0"),
    ({"block_size": 0}, "block_size=0"),
    ({"block_size": 10_000}, "block_size=10000 is longer than the 399"),
    ({"seed": -1}, "seed=-1"),
    ({"method": "random_entry", "bars": None}, "needs the bars"),
    ({"method": "random_entry", "bars": BARS.filter(pl.col("ts") < BARS["ts"][100])}, "bars has no S0 bar"),
])
def test_simulate_errors(kwargs, match):
    args = {"bars": BARS, "method": "block_bootstrap", "n_paths": 10, "seed": 0, **kwargs}
    with pytest.raises(ConfigError, match=match):
        simulate_paths(BASE, args.pop("bars"), **args)


def test_methods_that_need_trades_say_so():
    flat = bl.run_backtest(CFG.model_copy(update={"params": {"fast": 5, "slow": 399}}), BARS)
    assert flat.trades.is_empty()
    for method in ("trade_bootstrap", "random_entry"):
        with pytest.raises(ConfigError, match=r"no (closed )?trade"):
            simulate_paths(flat, BARS, method=method, n_paths=5, seed=0)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"confidence": 0.0}, "confidence=0.0"),
    ({"confidence": 1.0}, "confidence=1.0"),
    ({"ruin_drawdown": 0.0}, "ruin_drawdown=0.0"),
    ({"ruin_drawdown": 1.5}, "ruin_drawdown=1.5"),
])
def test_summary_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        summarize(simulate_paths(BASE, None, method="return_shuffle", n_paths=5, seed=0), **kwargs)
    with pytest.raises(ConfigError, match=match):
        monte_carlo(CFG, BARS, method="return_shuffle", n_paths=5, **kwargs)


def test_monte_carlo_rejects_bad_seeds_before_running():
    for seeds in ((), (1, 1), (0, -2)):
        with pytest.raises(ConfigError, match="seed"):
            monte_carlo(CFG, BARS, method="return_shuffle", n_paths=5, seeds=seeds)
    with pytest.raises(ConfigError, match="paths needs rows"):
        summarize(pl.DataFrame({"path": [0]}))
