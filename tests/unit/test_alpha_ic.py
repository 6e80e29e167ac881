"""IC analytics (backlake.alpha.ic) against numbers worked out by hand in each test."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import polars as pl
import pytest
from scipy import stats

from backlake.alpha import ic
from backlake.alpha.panel import Panel
from backlake.errors import ConfigError

NAN = np.nan


def _panel(close: np.ndarray) -> Panel:
    n, m = close.shape
    dates = np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-01-01") + n)
    return Panel.from_arrays(dates, [f"S{j}" for j in range(m)], close)


# -- forward returns ------------------------------------------------------------------------------
def test_forward_returns_by_hand() -> None:
    close = np.array([[10.0, 20.0], [11.0, NAN], [12.1, 22.0], [NAN, 24.2]])
    f = ic.forward_returns(close, [2, 1])
    assert list(f) == [1, 2]
    np.testing.assert_allclose(f[1], [[0.1, NAN], [0.1, NAN], [NAN, 0.1], [NAN, NAN]], rtol=1e-12)
    np.testing.assert_allclose(f[2], [[0.21, 0.1], [NAN, NAN], [NAN, NAN], [NAN, NAN]], rtol=1e-12)
    # a horizon past the data: all NaN, no error
    assert np.isnan(ic.forward_returns(close, [4])[4]).all()


# -- daily IC ---------------------------------------------------------------------------------------
def test_ic_and_rank_ic_by_hand() -> None:
    scores = np.array([
        [1.0, 2.0, 3.0, 4.0],        # Pearson 0.13 / sqrt(5 * 0.005); Spearman 1 - 6*2/(4*15) = 0.8
        [1.0, 1.0, 2.0, 3.0],        # tie: average ranks 1.5, 1.5, 3, 4
        [1.0, 2.0, NAN, 3.0],        # third name not scored: 3 names remain
        [1.0, 2.0, 3.0, NAN],        # only 2 names with both: NaN (< min_names 3)
        [5.0, 5.0, 5.0, 5.0],        # constant scores: NaN
    ])
    fwd = np.array([
        [0.01, 0.03, 0.02, 0.10],
        [0.01, 0.02, 0.03, 0.04],
        [0.03, 0.01, 0.50, 0.02],
        [0.01, NAN, 0.02, 0.05],
        [0.01, 0.02, 0.03, 0.04],
    ])
    pear, rank = ic.daily_ic(scores, fwd)
    # date 0: x - mean = -1.5, -.5, .5, 1.5; y - mean = -.03, -.01, -.02, .06
    assert pear[0] == pytest.approx(0.13 / math.sqrt(5 * 0.005), abs=1e-12)
    assert rank[0] == pytest.approx(0.8, abs=1e-12)
    # date 1: x - mean(1.75) = -.75, -.75, .25, 1.25; y - mean(.025) = -.015, -.005, .005, .015
    # sxy = .01125 + .00375 + .00125 + .01875 = .035, sxx = 2.75, syy = .0005
    assert pear[1] == pytest.approx(0.035 / math.sqrt(2.75 * 0.0005), abs=1e-12)
    # ranks 1.5,1.5,3,4 vs 1,2,3,4: sxy = 4.5, sxx = 4.5, syy = 5 -> 4.5 / sqrt(22.5) = sqrt(0.9)
    assert rank[1] == pytest.approx(math.sqrt(0.9), abs=1e-12)
    # date 2: names 0, 1, 3: scores 1, 2, 3 vs returns .03, .01, .02 -> ranks 3, 1, 2: Spearman -0.5
    # Pearson: dx = -1, 0, 1; dy = .01, -.01, 0 -> sxy = -.01, sxx = 2, syy = .0002 -> -0.5
    assert rank[2] == pytest.approx(-0.5, abs=1e-12)
    assert pear[2] == pytest.approx(-0.01 / math.sqrt(2 * 0.0002), abs=1e-12)
    assert np.isnan(pear[3]) and np.isnan(rank[3])
    assert np.isnan(pear[4]) and np.isnan(rank[4])
    # min_names=2 lets date 3 through: scores 1, 3 vs .01, .02 -> +1
    p2, r2 = ic.daily_ic(scores, fwd, min_names=2)
    assert p2[3] == pytest.approx(1.0) and r2[3] == pytest.approx(1.0)


def test_rank_ic_matches_scipy_with_ties_and_gaps() -> None:
    rng = np.random.default_rng(3)
    s = rng.integers(0, 6, size=(40, 25)).astype(float)  # many ties
    f = rng.normal(size=(40, 25))
    s[rng.random(s.shape) < 0.2] = NAN
    f[rng.random(f.shape) < 0.1] = NAN
    pear, rank = ic.daily_ic(s, f)
    for t in range(40):
        ok = np.isfinite(s[t]) & np.isfinite(f[t])
        assert rank[t] == pytest.approx(stats.spearmanr(s[t, ok], f[t, ok])[0], abs=1e-12)
        assert pear[t] == pytest.approx(stats.pearsonr(s[t, ok], f[t, ok])[0], abs=1e-12)
    np.testing.assert_allclose(ic.average_ranks(s)[np.isfinite(s)],
                               np.concatenate([stats.rankdata(r[np.isfinite(r)]) for r in s]))


# -- summaries --------------------------------------------------------------------------------------
def test_summary_hit_rate_t_stat_icir_by_hand() -> None:
    x = np.array([0.1, -0.05, NAN, 0.2, 0.15])
    out = ic.summarize(x, x, 1)
    # mean 0.1; deviations 0, -.15, .1, .05 -> sum of squares .035, std sqrt(.035 / 3)
    std = math.sqrt(0.035 / 3)
    assert out["mean_ic"] == pytest.approx(0.1)
    assert out["ic_std"] == pytest.approx(std)
    assert out["t_stat"] == pytest.approx(0.1 / (std / 2))  # 1.8516
    assert out["hit_rate"] == pytest.approx(0.75)
    assert out["icir"] == pytest.approx(0.1 / std * math.sqrt(252))
    assert out["n_dates"] == 4
    # horizon 2: Newey-West lag 1, Bartlett weight 1/2; lag-1 cross products: 0*-.15 + -.15*.1 + .1*.05 = -.01
    # long-run variance (.035 + 2 * .5 * -.01) / 3 = .025 / 3; t = .1 / sqrt(.025 / 3 / 4) = .1 * sqrt(480)
    out2 = ic.summarize(x, x, 2)
    assert out2["t_stat"] == pytest.approx(0.1 * math.sqrt(480))
    assert out2["icir"] == pytest.approx(0.1 / std * math.sqrt(126))
    # IC = 0 is not a hit
    assert ic.summarize(np.array([0.0, 0.1, -0.1, 0.2]), np.zeros(4), 1)["hit_rate"] == pytest.approx(0.5)
    # fewer than two dates: no std / t-stat
    one = ic.summarize(np.array([0.3, NAN]), np.array([NAN, NAN]), 1)
    assert one["mean_ic"] == pytest.approx(0.3) and one["ic_std"] is None and one["t_stat"] is None
    assert one["mean_rank_ic"] is None and one["rank_t_stat"] is None and one["n_dates"] == 1


def test_newey_west_t_matches_statsmodels_hac() -> None:
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(5)
    x = np.convolve(rng.normal(0.02, 0.1, 600), np.ones(5) / 5, mode="valid")  # MA(4): overlapping-like
    for lags in (0, 4, 9):
        fit = sm.OLS(x, np.ones_like(x)).fit(cov_type="HAC", cov_kwds={"maxlags": lags, "use_correction": True})
        assert ic.newey_west_t(x, lags) == pytest.approx(float(fit.tvalues[0]), rel=1e-10)
    assert ic.newey_west_t(x, 0) == pytest.approx(float(stats.ttest_1samp(x, 0).statistic), rel=1e-12)


def test_weight_turnover_and_coverage_by_hand() -> None:
    w = np.array([
        [0.5, -0.5, 0.0, 0.0],
        [NAN, NAN, NAN, NAN],          # no rebalance
        [0.25, -0.5, 0.25, NAN],       # NaN inside a rebalance = not held
        [0.0, 0.0, 0.5, -0.5],
    ])
    # |diff| sums: .25 + .25 = .5 -> .25; .25 + .5 + .25 + .5 = 1.5 -> .75; mean .5
    assert ic.weight_turnover(w) == pytest.approx(0.5)
    assert ic.weight_turnover(w[:2]) is None and ic.weight_turnover(None) is None
    close = np.array([[1.0, 1.0, NAN, 1.0], [1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    scores = np.array([[NAN, NAN, NAN, NAN], [1.0, 2.0, NAN, NAN], [1.0, 2.0, 3.0, NAN]])
    # date 0 has no score (skipped); 2 of 4 listed, 3 of 4 listed -> 0.625
    assert ic.coverage(scores, close) == pytest.approx(0.625)


# -- quantiles ------------------------------------------------------------------------------------
def test_quantile_labels_match_pandas_qcut_with_ties() -> None:
    rng = np.random.default_rng(11)
    checked = 0
    for q in (2, 3, 5, 10):
        s = rng.integers(0, 8, size=(60, 23)).astype(float)
        s[:30] = rng.normal(size=(30, 23))
        s[rng.random(s.shape) < 0.15] = NAN
        lab = ic.quantile_labels(s, q)
        for t in range(60):
            ok = np.isfinite(s[t])
            try:
                want = pd.qcut(pd.Series(s[t, ok]), q, labels=False).to_numpy() + 1
            except ValueError:  # pandas refuses duplicate edges: ours keeps ties together in one bin
                tied = s[t, ok]
                for v in np.unique(tied):
                    assert len(set(lab[t, ok][tied == v])) == 1
                continue
            np.testing.assert_array_equal(lab[t, ok], want)
            assert (lab[t, ~ok] == 0).all()
            checked += 1
    assert checked > 100


def test_quantile_returns_spread_and_ic_through_evaluate_by_hand() -> None:
    # three dates, four names; h = 1 forward returns:
    #   t0: .01 .03 .02 .10 (101/100, 103/100, 102/100, 110/100)
    #   t1: .02 -.01 0 .01
    c0 = np.array([100.0, 100.0, 100.0, 100.0])
    c1 = np.array([101.0, 103.0, 102.0, 110.0])
    c2 = c1 * np.array([1.02, 0.99, 1.0, 1.01])
    panel = _panel(np.vstack([c0, c1, c2]))
    scores = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 2.0, 3.0], [4.0, 3.0, 2.0, 1.0]])
    w = np.array([[-0.5, 0.0, 0.0, 0.5], [-0.25, -0.25, 0.0, 0.5], [NAN] * 4])
    ev = ic.evaluate(panel, scores, horizons=[1], n_quantiles=2, weights=w)
    # 2 quantiles of 4 names: bottom two / top two; at t1 the tied 1, 1 share quantile 1
    #   t0: q1 = (.01 + .03) / 2 = .02, q2 = (.02 + .10) / 2 = .06;  t1: q1 = (.02 - .01) / 2, q2 = (0 + .01) / 2
    q = ev.quantiles.sort("quantile")
    assert q["horizon"].to_list() == [1, 1] and q["count"].to_list() == [4, 4]
    assert q["mean_return"].to_list() == pytest.approx([(0.02 + 0.005) / 2, (0.06 + 0.005) / 2])
    s = ev.summary[1]
    assert s["spread"] == pytest.approx(0.0325 - 0.0125)
    ic0 = 0.13 / math.sqrt(5 * 0.005)
    # t1 Pearson: x = 1,1,2,3 (mean 1.75), y = .02,-.01,0,.01 (mean .005): sxy = .005, sxx = 2.75, syy = .0005
    ic1 = 0.005 / math.sqrt(2.75 * 0.0005)
    # t1 Spearman: ranks 1.5,1.5,3,4 vs 4,1,2,3: sxy = .5, sxx = 4.5, syy = 5
    ric1 = 0.5 / math.sqrt(22.5)
    assert s["mean_ic"] == pytest.approx((ic0 + ic1) / 2)
    assert s["mean_rank_ic"] == pytest.approx((0.8 + ric1) / 2)
    assert s["hit_rate"] == pytest.approx(1.0) and s["n_dates"] == 2
    assert s["coverage"] == pytest.approx(1.0)
    assert s["turnover"] == pytest.approx(0.25)  # |.25| + |.25| = .5 -> / 2
    assert s["t_stat"] == pytest.approx(((ic0 + ic1) / 2) / (abs(ic0 - ic1) / math.sqrt(2) / math.sqrt(2)))
    f = ev.ic_frame
    assert f.columns == ["date", "horizon", "ic", "rank_ic"] and f.schema["date"] == pl.Date
    assert f["date"].to_list() == [np.datetime64("2024-01-01").item(), np.datetime64("2024-01-02").item()]
    assert f["rank_ic"].to_list() == pytest.approx([0.8, ric1])
    assert ev.decay.to_dicts() == [{"horizon": 1, "mean_ic": s["mean_ic"], "mean_rank_ic": s["mean_rank_ic"]}]
    assert ev.half_life is None  # one horizon
    assert s["turnover"] is not None and ic.evaluate(panel, scores, [1], 2).summary[1]["turnover"] is None


def test_quantile_turnover_by_hand() -> None:
    s = np.array([[1.0, 2.0, 3.0, 4.0], [4.0, 2.0, 3.0, 1.0], [4.0, 3.0, 2.0, 1.0]])
    t = ic.quantile_turnover(s, 2)
    # top half: {2, 3} -> {0, 2}: 1 of 2 new; -> {0, 1}: 1 of 2 new. Bottom: {0, 1} -> {1, 3} -> {2, 3}
    assert np.isnan(t[0]).all()
    np.testing.assert_allclose(t[1:], [[0.5, 0.5], [0.5, 0.5]])
    np.testing.assert_allclose(ic.quantile_turnover(s, 2, period=2)[2], [1.0, 1.0])


# -- decay -----------------------------------------------------------------------------------------
def test_decay_half_life_by_hand() -> None:
    # IC halves from h = 1 to h = 5: lambda = ln 2 / 4 -> half-life 4 days
    assert ic.decay_half_life([1, 5], [0.08, 0.04]) == pytest.approx(4.0)
    # exact exponential 0.1 exp(-0.1 (h - 1)): half-life ln 2 / 0.1; negative ICs decay in magnitude
    hs = [1, 5, 10, 21]
    assert ic.decay_half_life(hs, [0.1 * math.exp(-0.1 * (h - 1)) for h in hs]) == pytest.approx(math.log(2) / 0.1)
    assert ic.decay_half_life(hs, [-0.1 * math.exp(-0.1 * (h - 1)) for h in hs]) == pytest.approx(math.log(2) / 0.1)
    # least squares on log |IC|: points (1, ln .08), (3, ln .02), (5, ln .02) -> slope (ln .02 - ln .08) / 4 * ...
    # x mean 3, y = ln .08, ln .02, ln .02: slope = sum dx dy / sum dx^2 = (-2 ln .08 + 2 ln .02) / 8 = -ln 4 / 4
    assert ic.decay_half_life([1, 3, 5], [0.08, 0.02, 0.02]) == pytest.approx(math.log(2) / (math.log(4) / 4))
    assert ic.decay_half_life([1, 5], [0.04, 0.08]) is None          # grows: no decay
    assert ic.decay_half_life([1, 5], [0.04, 0.04]) is None          # flat: lambda = 0
    assert ic.decay_half_life([1, 5, 10], [0.05, -0.01, 0.0]) is None  # sign flip / zero
    assert ic.decay_half_life([1, 5], [0.05, None]) is None          # one usable horizon
    assert ic.decay_half_life([1, 5, 10], [0.08, float("nan"), 0.04]) == pytest.approx(9.0)


def test_evaluate_decay_frame_and_half_life_on_a_decaying_signal() -> None:
    # a signal that knows the next day's return only: the Rank IC of h-day returns falls with h
    rng = np.random.default_rng(2)
    n, m = 400, 40
    r = rng.normal(0, 0.01, (n, m))
    close = 100 * np.cumprod(1 + np.vstack([np.zeros(m), r]), axis=0)
    scores = np.full((n + 1, m), NAN)
    scores[:-1] = r + rng.normal(0, 0.01, (n, m))
    ev = ic.evaluate(_panel(close), scores, horizons=(1, 5, 10, 21))
    ric = ev.decay["mean_rank_ic"].to_list()
    assert ev.decay["horizon"].to_list() == [1, 5, 10, 21]
    assert ric[0] > ric[1] > ric[2] > ric[3] > 0
    assert ev.half_life is not None and 0 < ev.half_life < 21
    assert ev.half_life == pytest.approx(ic.decay_half_life([1, 5, 10, 21], ric))
    assert set(ev.summary) == {1, 5, 10, 21}
    assert set(ev.summary[5]) == {"mean_ic", "ic_std", "icir", "t_stat", "hit_rate", "mean_rank_ic", "rank_ic_std",
                                  "rank_icir", "rank_t_stat", "coverage", "turnover", "spread", "n_dates"}
    # the last h dates have no h-day forward return, so no IC row
    assert ev.ic_frame.filter(pl.col("horizon") == 21).height == n + 1 - 21
    assert ev.quantiles.height == 4 * 5


# -- several alphas --------------------------------------------------------------------------------
def test_signal_correlation_by_hand() -> None:
    a = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, NAN, NAN]])
    b = np.array([[4.0, 3.0, 2.0, 1.0], [1.0, 3.0, 2.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    out = ic.signal_correlation({"a": a, "b": b})
    got = {(r["alpha_a"], r["alpha_b"]): r["corr"] for r in out.to_dicts()}
    # date 0: -1; date 1: ranks 1,2,3,4 vs 1,3,2,4 -> 0.8; date 2: 2 common names < 3 -> skipped
    assert got[("a", "b")] == pytest.approx((-1 + 0.8) / 2)
    assert got[("b", "a")] == pytest.approx((-1 + 0.8) / 2)
    assert got[("a", "a")] == pytest.approx(1.0) and got[("b", "b")] == pytest.approx(1.0)
    assert out["alpha_a"].to_list() == ["a", "a", "b", "b"]
    with pytest.raises(ConfigError, match="shapes differ"):
        ic.signal_correlation({"a": a, "b": b[:2]})


def test_adjust_pvalues_benjamini_hochberg_textbook() -> None:
    # Benjamini & Hochberg (1995), section 4: 15 p-values; at q = 0.05 the first four are rejected
    p = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.3240, 0.4262, 0.5719, 0.6528,
         0.7590, 1.0]
    n_obs = 250
    names = [f"a{i:02d}" for i in range(15)]
    t = {nm: float(stats.t.isf(pv / 2, n_obs - 1)) for nm, pv in zip(names, p, strict=True)}
    out = ic.adjust_pvalues(t, dict.fromkeys(names, n_obs))
    assert out["alpha"].to_list() == names
    np.testing.assert_allclose(out["p_value"].to_numpy(), p, rtol=1e-8)
    # p_(i) * 15 / i, then the running minimum from the largest down:
    # .0015 .003 .0095 .035625 .0603 (.0695 -> .063857) .063857 .0645 .0765 .486 .581182 .714875 .753231 .813214 1
    bh = [0.0015, 0.003, 0.0095, 0.035625, 0.0603, 0.0298 * 15 / 7, 0.0298 * 15 / 7, 0.0645, 0.0765, 0.486,
          0.4262 * 15 / 11, 0.5719 * 15 / 12, 0.6528 * 15 / 13, 0.7590 * 15 / 14, 1.0]
    np.testing.assert_allclose(out["p_bh"].to_numpy(), bh, rtol=1e-7)
    assert (out["p_bh"].to_numpy() <= 0.05).sum() == 4
    bonf = [min(1.0, pv * 15) for pv in p]
    np.testing.assert_allclose(out["p_bonferroni"].to_numpy(), bonf, rtol=1e-7)


def test_adjust_pvalues_two_sided_and_missing() -> None:
    # t = 2.086 with 20 degrees of freedom is the two-sided 5 % critical value (t table)
    out = ic.adjust_pvalues({"x": 2.086, "y": -2.086, "z": None}, {"x": 21, "y": 21, "z": 21})
    rows = {r["alpha"]: r for r in out.to_dicts()}
    assert rows["x"]["p_value"] == pytest.approx(0.05, abs=2e-4)
    assert rows["y"]["p_value"] == pytest.approx(rows["x"]["p_value"])
    assert rows["x"]["p_bonferroni"] == pytest.approx(2 * rows["x"]["p_value"])  # k = 2 (z has no t-stat)
    assert rows["x"]["p_bh"] == pytest.approx(rows["x"]["p_value"])  # equal p's: 2 p / 2
    assert rows["z"]["p_value"] is None and rows["z"]["p_bh"] is None and rows["z"]["t_stat"] is None
    with pytest.raises(ConfigError, match="n_obs lacks"):
        ic.adjust_pvalues({"x": 1.0}, {})


# -- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "match"), [
    ({"horizons": [0]}, r"horizons: 0 is not a positive whole number"),
    ({"horizons": [5, -1]}, r"horizons: -1 is not a positive"),
    ({"horizons": [1.5]}, r"horizons: 1.5 is not a positive"),
    ({"horizons": ["5"]}, r"horizons: '5' is not a positive"),
    ({"horizons": [True]}, r"horizons: True is not a positive"),
    ({"horizons": []}, r"horizons=\[\] is empty"),
    ({"horizons": [30]}, r"horizons: 30 needs more than 30 dates but the data has 30"),
    ({"n_quantiles": 1}, r"n_quantiles=1 must be a whole number >= 2"),
    ({"n_quantiles": 2.5}, r"n_quantiles=2.5 must be"),
    ({"n_quantiles": 7}, r"n_quantiles=7 needs at least 7 symbols but the universe has 6; lower n_quantiles"),
    ({"min_names": 1}, r"min_names=1 must be"),
    ({"weights": np.zeros((3, 6))}, r"weights has shape \(3, 6\) but the panel is \(30, 6\)"),
])
def test_bad_input_one_clear_line(kwargs: dict[str, object], match: str) -> None:
    panel = _panel(np.full((30, 6), 100.0))
    scores = np.random.default_rng(0).normal(size=(30, 6))
    with pytest.raises(ConfigError, match=match) as err:
        ic.evaluate(panel, scores, **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)


def test_bad_scores_refused() -> None:
    panel = _panel(np.full((30, 6), 100.0))
    with pytest.raises(ConfigError, match=r"scores has shape \(30, 5\)"):
        ic.evaluate(panel, np.zeros((30, 5)))
    with pytest.raises(ConfigError, match="scores: no date has a score"):
        ic.evaluate(panel, np.full((30, 6), NAN))
    assert isinstance(ConfigError("x"), ValueError)
