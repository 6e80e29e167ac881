"""optimize: seeded and reproducible, the best trial is the IS maximum, IS/OOS scores equal a
single backtest's segments, overfit scores follow their definition, the grid sampler covers
its grid, invalid params are pruned and counted, and bad inputs fail before any trial."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest

import backlake as bl
import backlake.research.optimize as opt_mod
from backlake.data.synthetic import synthetic_bars
from backlake.errors import ConfigError
from backlake.research.optimize import (
    OVERFIT_FLAG,
    evaluate_trial,
    optimize,
    plan_study,
    run_study,
    split_timestamp,
)

BARS = synthetic_bars(("S0",), periods=500, seed=3)
CFG = bl.BacktestConfig.model_validate({
    "strategy": "sma_crossover", "universe": ["S0"], "initial_cash": 100_000, "costs": {"commission_bps": 5},
})
SPACE = {"fast": {"low": 3, "high": 30}, "slow": {"low": 20, "high": 120, "step": 10}}


@pytest.fixture(scope="module")
def study():
    return optimize(CFG, SPACE, BARS, n_trials=12, seed=1)


def test_same_seed_same_study_other_seed_other_study(study):
    again = optimize(CFG, SPACE, BARS, n_trials=12, seed=1)
    assert again.trials_frame().equals(study.trials_frame())
    assert again.pbo == study.pbo and again.deflated_sharpe == study.deflated_sharpe
    other = optimize(CFG, SPACE, BARS, n_trials=12, seed=2)
    assert not other.trials_frame()["params"].equals(study.trials_frame()["params"])


def test_best_is_the_highest_in_sample_score(study):
    assert study.n_trials == 12 and study.sampler == "tpe" and study.objective == "sharpe"
    assert study.n_trials == len(study.trials) + study.n_pruned + study.n_failed
    assert study.best.is_score == max(t.is_score for t in study.trials)
    assert study.best_params == study.best.params
    assert set(study.best_params) == {"fast", "slow"}
    assert all(isinstance(v, int) for t in study.trials for v in t.params.values())  # int ranges
    assert all(3 <= t.params["fast"] <= 30 and t.params["slow"] in range(20, 121, 10) for t in study.trials)


def test_scores_are_the_segments_of_a_single_backtest(study):
    split = split_timestamp(CFG, BARS)
    assert study.split == split == BARS["ts"][int(500 * 0.7)]
    t = study.trials[0]
    res = bl.run_backtest(CFG.model_copy(update={"params": {**CFG.params, **t.params}}), BARS, oos_start=split)
    assert t.is_score == pytest.approx(res.segments["is"]["sharpe"], rel=1e-12)
    assert t.oos_score == pytest.approx(res.segments["oos"]["sharpe"], rel=1e-12)
    assert t.is_returns.size == int(500 * 0.7) - 1  # IS bars' returns, the first bar has none


def test_overfit_score_and_flag_follow_the_definition(study):
    for t in study.trials:
        want = (t.is_score - t.oos_score) / abs(t.is_score)
        assert t.overfit_score == pytest.approx(want)
        assert t.flagged == (want > OVERFIT_FLAG)
    assert 0.0 <= study.pbo <= 1.0
    assert study.pbo_detail.n_combinations == 12_870
    assert 0.0 <= study.deflated_sharpe <= 1.0


def test_trials_frame_maps_onto_the_trials_table(study):
    df = study.trials_frame()
    assert df.columns == ["trial", "params", "objective", "is_score", "oos_score", "overfit_score", "flagged"]
    assert df.schema["trial"] == pl.Int64 and df.schema["flagged"] == pl.Boolean
    assert df["objective"].equals(df["is_score"], check_names=False)
    assert [json.loads(p) for p in df["params"]] == [t.params for t in study.trials]


def test_grid_sampler_covers_the_grid_and_prunes_invalid_combinations():
    space = {"fast": [5, 10, 20], "slow": {"choices": [10, 30]}}
    res = optimize(CFG, space, BARS, sampler="grid", n_trials=100, seed=0)
    assert res.n_trials == 6  # the grid's size, never more
    assert res.n_pruned == 2  # fast=10/slow=10 and fast=20/slow=10 fail fast < slow
    assert {(t.params["fast"], t.params["slow"]) for t in res.trials} == {(5, 10), (5, 30), (10, 30), (20, 30)}


def test_float_ranges_and_other_objectives():
    res = optimize(CFG.model_copy(update={"strategy": "bollinger_bands", "params": {"window": 20, "num_std": 2.0}}),
                   {"window": [10, 20], "num_std": {"low": 1.0, "high": 3.0}}, BARS,
                   objective="total_return", n_trials=8, sampler="random", seed=0)
    assert all(isinstance(t.params["num_std"], float) and 1.0 <= t.params["num_std"] <= 3.0 for t in res.trials)
    assert res.best.is_score == max(t.is_score for t in res.trials)


def test_a_trial_without_an_in_sample_score_counts_as_failed():
    # slow=400 never crosses in the 350 in-sample bars: flat equity, no Sharpe
    res = optimize(CFG, {"fast": [5], "slow": [30, 400]}, BARS, sampler="grid")
    assert (res.n_trials, res.n_failed, len(res.trials)) == (2, 1, 1)
    assert res.pbo is None  # needs 2 complete trials
    assert res.best.params == {"fast": 5, "slow": 30}


def test_evaluate_trial_is_the_fan_out_unit():
    split = split_timestamp(CFG, BARS, oos_start=dt.date(2016, 1, 4))
    assert split == dt.datetime(2016, 1, 4, tzinfo=dt.UTC)
    rec = evaluate_trial(CFG, {"fast": 30, "slow": 20}, BARS, split=split, number=7)
    assert (rec.state, rec.number) == ("pruned", 7) and "smaller than slow" in rec.reason
    rec = evaluate_trial(CFG, {"fast": 10, "slow": 40}, BARS, split=split, objective="calmar")
    res = bl.run_backtest(CFG.model_copy(update={"params": {"fast": 10, "slow": 40}}), BARS, oos_start=split)
    assert rec.state == "complete" and rec.is_score == pytest.approx(res.segments["is"]["calmar"])


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"objective": "sharp"}, "did you mean 'sharpe'"),
    ({"n_trials": 0}, "n_trials=0"),
    ({"sampler": "tpee"}, "did you mean 'tpe'"),
    ({"space": {"fsat": [5, 10]}}, "did you mean 'fast'"),
    ({"space": {}}, "space is empty"),
    ({"space": {"fast": {"low": 10, "high": 5}}}, "swap them"),
    ({"space": {"fast": {"low": 5, "hgh": 10}}}, "did you mean 'high'"),
    ({"space": {"fast": {"low": 5, "high": 12, "step": 5}}}, "multiple of step"),
    ({"space": {"fast": {"low": 0.0, "high": 1.0, "log": True}}}, "log scale needs low > 0"),
    ({"space": {"fast": []}}, "at least one value"),
    ({"sampler": "grid"}, "sampler='grid' needs a list"),
    ({"sampler": "grid", "space": {"fast": [50], "slow": [10, 20]}}, "no valid combination"),
    ({"oos_fraction": 1.5}, "oos_fraction=1.5"),
    ({"oos_fraction": 0.3, "oos_start": dt.date(2016, 1, 1)}, "not both"),
    ({"oos_start": dt.date(2030, 1, 1)}, "0 out-of-sample"),
    ({"pbo_blocks": 7}, "pbo_blocks=7"),
    ({"pbo_blocks": 200}, "pbo_blocks=200"),
    ({"seed": "x"}, "seed="),
    ({"batch_size": 0}, "batch_size=0"),
])
def test_bad_inputs_fail_before_any_trial(monkeypatch, kwargs, match):
    def no_work(*a, **k):
        raise AssertionError("a trial ran before the inputs were checked")

    monkeypatch.setattr(opt_mod, "run_backtest", no_work)
    args = {"space": SPACE, **kwargs}
    space = args.pop("space")
    with pytest.raises(ConfigError, match=match):
        optimize(CFG, space, BARS, n_trials=args.pop("n_trials", 5), **args)


# -- batches: the unit the optimize flow fans out ----------------------------------------------
def batch_recorder(plan, seen: list):
    def evaluate(jobs):
        seen.append([n for n, _ in jobs])
        recs = [evaluate_trial(CFG, p, BARS, split=plan.split, objective=plan.objective, number=n) for n, p in jobs]
        return recs[::-1]  # an evaluator may hand records back in any order

    return evaluate


def test_batched_study_asks_whole_batches_and_is_reproducible():
    plan = plan_study(CFG, SPACE, BARS, n_trials=10, seed=4)
    seen: list = []
    ticks: list = []
    res = run_study(plan, batch_recorder(plan, seen), batch_size=4,
                    on_trial=lambda rec, done, total: ticks.append((rec.number, done, total)))
    assert seen == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert ticks == [(n, n + 1, 10) for n in range(10)]  # told in trial order
    assert res.n_trials == 10 and res.best.is_score == max(t.is_score for t in res.trials)
    # the same (seed, batch_size) is the same study, through optimize() too
    again = optimize(CFG, SPACE, BARS, n_trials=10, seed=4, batch_size=4)
    assert again.trials_frame().equals(res.trials_frame())
    # every record is the single evaluation of its params
    for t in res.trials:
        single = evaluate_trial(CFG, t.params, BARS, split=plan.split, number=t.number)
        assert (t.is_score, t.oos_score, t.flagged) == (single.is_score, single.oos_score, single.flagged)
        assert np.array_equal(t.is_returns, single.is_returns)


def test_a_batch_holds_distinct_proposals():
    # after the 10 random start-up trials TPE proposes from its model; the sampler runs with
    # the constant liar, which scores the trials still out as bad so a batch spreads out
    assert opt_mod._sampler("tpe", {}, 0)._constant_liar is True
    plan = plan_study(CFG, {"fast": {"low": 3, "high": 60}, "slow": {"low": 70, "high": 300}}, BARS,
                      n_trials=26, seed=0)
    asked: list = []

    def evaluate(jobs):
        asked.append([(p["fast"], p["slow"]) for _, p in jobs])
        return [evaluate_trial(CFG, p, BARS, split=plan.split, number=n) for n, p in jobs]

    run_study(plan, evaluate, batch_size=8)
    assert [len(b) for b in asked] == [8, 8, 8, 2]
    assert len(set(asked[1][2:])) == 6 and len(set(asked[2])) == 8  # trials 10-15 and 16-23


@pytest.mark.parametrize(("sampler", "space"), [
    ("random", SPACE),
    ("grid", {"fast": [5, 10, 20, 30], "slow": [40, 60, 80]}),
])
def test_random_and_grid_studies_do_not_depend_on_the_batch_size(sampler, space):
    one = optimize(CFG, space, BARS, sampler=sampler, n_trials=12, seed=7)
    five = optimize(CFG, space, BARS, sampler=sampler, n_trials=12, seed=7, batch_size=5)
    assert five.trials_frame().equals(one.trials_frame())


def test_batched_grid_covers_the_grid_once():
    space = {"fast": [5, 10, 20, 30], "slow": [40, 60, 80]}
    plan = plan_study(CFG, space, BARS, sampler="grid", seed=2)
    seen: list = []
    res = run_study(plan, batch_recorder(plan, seen), batch_size=5)
    assert [len(b) for b in seen] == [5, 5, 2] and res.n_trials == 12
    assert sorted((t.params["fast"], t.params["slow"]) for t in res.trials) == sorted(
        (f, s) for f in space["fast"] for s in space["slow"])


def test_an_evaluator_that_loses_a_trial_is_an_error():
    plan = plan_study(CFG, SPACE, BARS, n_trials=3)
    with pytest.raises(RuntimeError, match=r"no record for trial\(s\) \[1\]"):
        run_study(plan, lambda jobs: [evaluate_trial(CFG, p, BARS, split=plan.split, number=n)
                                      for n, p in jobs if n != 1], batch_size=3)
