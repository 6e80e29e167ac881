"""PBO (CSCV) and the deflated Sharpe ratio: hand-computed values, a naive CSCV cross-check,
the two textbook regimes (a dominant trial vs pure noise), and invalid inputs."""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist

import numpy as np
import pytest

from backlake.errors import ConfigError
from backlake.research.overfitting import (
    EULER_GAMMA,
    deflated_sharpe_from_returns,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    per_period_sharpe,
    probability_of_backtest_overfitting,
)

Z = NormalDist()


def naive_pbo(r: np.ndarray, n_blocks: int) -> np.ndarray:
    """CSCV written out plainly: the logits, one per split, in itertools order."""
    size = r.shape[0] // n_blocks
    blocks = np.split(r[r.shape[0] - size * n_blocks :], n_blocks)
    logits = []
    for combo in itertools.combinations(range(n_blocks), n_blocks // 2):
        is_ = np.vstack([blocks[i] for i in combo])
        oos = np.vstack([blocks[i] for i in range(n_blocks) if i not in combo])
        sr_is = is_.mean(0) / is_.std(0, ddof=1)
        sr_oos = oos.mean(0) / oos.std(0, ddof=1)
        best = int(np.argmax(sr_is))
        rank = 1 + int((sr_oos < sr_oos[best]).sum())
        w = rank / (r.shape[1] + 1)
        logits.append(math.log(w / (1 - w)))
    return np.array(logits)


# -- deflated Sharpe -------------------------------------------------------------------------


def test_dsr_reproduces_the_papers_example():
    # Bailey & Lopez de Prado (2014): annual SR 2.5, 5 years of 250 daily returns, 100 trials,
    # annual variance of the trials' Sharpes 0.5, skew -3, kurtosis 10 -> DSR 0.9004
    dsr = deflated_sharpe_ratio(2.5 / math.sqrt(250), 1250, 100, 0.5 / 250, -3.0, 10.0)
    assert dsr == pytest.approx(0.9004, abs=1e-4)


def test_dsr_by_hand_for_normal_returns():
    sr, t, n, v = 0.1, 101, 10, 0.01
    sr0 = 0.1 * ((1 - EULER_GAMMA) * Z.inv_cdf(0.9) + EULER_GAMMA * Z.inv_cdf(1 - 1 / (10 * math.e)))
    assert expected_max_sharpe(n, v) == pytest.approx(sr0, rel=1e-12)
    # normal returns: skew 0, kurtosis 3 -> denominator sqrt(1 + SR^2 / 2)
    want = Z.cdf((sr - sr0) * 10 / math.sqrt(1 + sr**2 / 2))
    assert deflated_sharpe_ratio(sr, t, n, v, 0.0, 3.0) == pytest.approx(want, rel=1e-12)
    # one trial: nothing was selected, SR0 = 0 (the probabilistic Sharpe ratio against 0)
    assert deflated_sharpe_ratio(sr, t, 1, v, 0.0, 3.0) == pytest.approx(Z.cdf(1 / math.sqrt(1.005)), rel=1e-12)


def test_more_trials_raise_the_bar():
    assert expected_max_sharpe(10, 0.01) < expected_max_sharpe(100, 0.01) < expected_max_sharpe(1000, 0.01)
    assert deflated_sharpe_ratio(0.1, 500, 1000, 0.01, 0.0, 3.0) < deflated_sharpe_ratio(0.1, 500, 10, 0.01, 0.0, 3.0)


def test_dsr_from_returns_uses_the_returns_moments():
    rng = np.random.default_rng(1)
    r = rng.standard_t(5, 400) * 0.01 + 0.001
    sharpes = np.array([0.05, -0.02, 0.01, per_period_sharpe(r)])
    d = r - r.mean()
    skew = np.mean(d**3) / np.mean(d**2) ** 1.5
    kurt = np.mean(d**4) / np.mean(d**2) ** 2
    want = deflated_sharpe_ratio(r.mean() / r.std(ddof=1), 400, 4, float(np.var(sharpes, ddof=1)), skew, kurt)
    assert deflated_sharpe_from_returns(r, sharpes) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"n_obs": 1}, "n_obs"),
    ({"n_trials": 0}, "n_trials"),
    ({"sharpe_variance": -0.1}, "sharpe_variance"),
    ({"kurtosis": 0.5}, "kurtosis"),
    ({"sharpe": float("nan")}, "sharpe"),
    ({"sharpe": 2.0, "skew": 5.0}, "skew*sharpe"),  # an annualised Sharpe makes the variance negative
])
def test_dsr_rejects_bad_inputs(kwargs, field):
    args = {"sharpe": 0.1, "n_obs": 250, "n_trials": 10, "sharpe_variance": 0.01, "skew": 0.0, "kurtosis": 3.0}
    with pytest.raises(ConfigError, match=field.replace("*", r"\*")):
        deflated_sharpe_ratio(**{**args, **kwargs})


def test_dsr_from_returns_rejects_flat_or_short_returns():
    with pytest.raises(ConfigError, match="zero variance"):
        deflated_sharpe_from_returns(np.zeros(50), np.array([0.1, 0.2]))
    with pytest.raises(ConfigError, match="at least 2"):
        deflated_sharpe_from_returns(np.array([0.01]), np.array([0.1]))


# -- PBO -------------------------------------------------------------------------------------


def test_vectorised_cscv_equals_the_naive_loop():
    rng = np.random.default_rng(7)
    r = rng.normal(0.0002, 0.01, (123, 5))  # 123 = 6 * 20 + 3: the first 3 rows are dropped
    res = probability_of_backtest_overfitting(r, n_blocks=6)
    want = naive_pbo(r, 6)
    assert res.n_combinations == math.comb(6, 3) == want.size
    np.testing.assert_allclose(res.logits, want, rtol=1e-9)
    assert res.pbo == pytest.approx(float(np.mean(want <= 0)))
    # the remainder is dropped at the start: extra leading rows change nothing
    padded = np.vstack([rng.normal(size=(2, 5)), r[3:]])
    np.testing.assert_allclose(probability_of_backtest_overfitting(padded, n_blocks=6).logits, res.logits)


def test_a_truly_dominant_trial_is_not_overfit():
    rng = np.random.default_rng(0)
    r = rng.normal(0.0, 0.01, (800, 12))
    r[:, 4] += 0.004  # a strong, persistent edge
    res = probability_of_backtest_overfitting(r, n_blocks=8)
    assert res.pbo == 0.0
    assert (res.logits > 0).all()


def test_pure_noise_is_overfit_about_half_the_time():
    pbos = [probability_of_backtest_overfitting(np.random.default_rng(s).normal(0, 0.01, (400, 20)), n_blocks=8).pbo
            for s in range(12)]
    assert 0.35 <= float(np.mean(pbos)) <= 0.65
    assert all(0.0 <= p <= 1.0 for p in pbos)


def test_many_blocks_sample_a_capped_number_of_splits_deterministically():
    r = np.random.default_rng(3).normal(0, 0.01, (240, 6))
    a = probability_of_backtest_overfitting(r, n_blocks=20, max_combinations=300, seed=1)
    b = probability_of_backtest_overfitting(r, n_blocks=20, max_combinations=300, seed=1)
    assert a.n_combinations == 300
    np.testing.assert_array_equal(a.logits, b.logits)


@pytest.mark.parametrize(("returns", "n_blocks", "match"), [
    (np.zeros((100, 1)), 4, "at least 2"),
    (np.zeros(100), 4, "2-D"),
    (np.zeros((100, 3)), 5, "even"),
    (np.zeros((100, 3)), 0, "n_blocks=0"),
    (np.zeros((100, 3)), 2.0, "whole number"),
    (np.zeros((20, 3)), 16, "at least 32 bars"),
    (np.array([[0.0, np.nan]] * 40), 4, "NaN"),
])
def test_pbo_rejects_bad_inputs(returns, n_blocks, match):
    with pytest.raises(ConfigError, match=match):
        probability_of_backtest_overfitting(returns, n_blocks=n_blocks)


def test_logit_distribution_sums_to_one_and_its_non_positive_part_is_the_pbo():
    from backlake.research.overfitting import logit_distribution, probability_of_backtest_overfitting

    rng = np.random.default_rng(3)
    res = probability_of_backtest_overfitting(rng.normal(0, 0.01, (640, 12)), n_blocks=8)
    dist = logit_distribution(res)
    assert abs(sum(dist.values()) - 1.0) < 1e-12
    assert abs(sum(v for k, v in dist.items() if float(k) <= 0) - res.pbo) < 1e-12
    assert len(dist) <= 2 * 12  # ranks among 12 trials, half steps on ties
    # a hand case: logits -1, -1, 0.5, 2 -> shares .5, .25, .25
    from backlake.research.overfitting import PboResult

    hand = PboResult(pbo=0.5, logits=np.array([-1.0, 2.0, -1.0, 0.5]), n_combinations=4)
    assert logit_distribution(hand) == {"-1": 0.5, "0.5": 0.25, "2": 0.25}
