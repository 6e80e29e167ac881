"""Weight methods: hand-checked small cases, exposure / cap / rebalance invariants, validation."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from backlake.alpha import WeightOptions, check_weight_options, compute_weights, weights_frame
from backlake.alpha.weights import _fill_side, average_ranks, rebalance_mask
from backlake.errors import ConfigError

NAN = np.nan
D1 = np.array(["2024-01-02"], dtype="datetime64[D]")


def row(scores: list[float], **opts: object) -> np.ndarray:
    return compute_weights(np.array([scores], dtype=float), D1, WeightOptions(**opts))[0]  # type: ignore[arg-type]


def test_zscore_default_demeaned_unit_gross():
    w = row([1.0, 2.0, 3.0, NAN])
    assert w == pytest.approx([-0.5, 0.0, 0.5, 0.0])
    w = row([1.0, 2.0, 3.0, 4.0])
    assert w == pytest.approx([-0.375, -0.125, 0.125, 0.375])
    assert np.abs(w).sum() == pytest.approx(1.0) and w.sum() == pytest.approx(0.0)
    assert row([1.0, 2.0, 3.0, 4.0], gross=2.0) == pytest.approx([-0.75, -0.25, 0.25, 0.75])


def test_rank_average_ties_long_short():
    assert average_ranks(np.array([3.0, 1.0, 2.0, 2.0])) == pytest.approx([4.0, 1.0, 2.5, 2.5])
    w = row([3.0, 1.0, 2.0, NAN, 2.0], method="rank")
    assert w == pytest.approx([0.5, -0.5, 0.0, 0.0, 0.0])
    w = row([10.0, 40.0, 20.0, 30.0], method="rank")  # ranks 1 4 2 3 -> -1.5 1.5 -0.5 0.5, gross 4
    assert w == pytest.approx([-0.375, 0.375, -0.125, 0.125])


def test_top_and_bottom_n_equal_weight():
    s = [5.0, 1.0, 4.0, 3.0, NAN]
    assert row(s, method="top_n", n=2) == pytest.approx([0.5, 0.0, 0.5, 0.0, 0.0])
    assert row(s, method="top_n", n=2, long_short=True) == pytest.approx([0.25, -0.25, 0.25, -0.25, 0.0])
    assert row(s, method="bottom_n", quantile=0.5) == pytest.approx([0.0, 0.5, 0.0, 0.5, 0.0])
    assert row(s, method="bottom_n", n=1, long_short=True) == pytest.approx([-0.5, 0.5, 0.0, 0.0, 0.0])
    # quantile rounds down (0.3 of 4 names = 1), at least one name
    assert row(s, method="top_n", quantile=0.3) == pytest.approx([1.0, 0.0, 0.0, 0.0, 0.0])
    assert row(s, method="top_n", quantile=0.1) == pytest.approx([1.0, 0.0, 0.0, 0.0, 0.0])


def test_net_target_splits_the_sides():
    w = row([1.0, 2.0, 3.0, 4.0], net=0.2)
    assert w == pytest.approx([-0.3, -0.1, 0.15, 0.45])
    assert w.sum() == pytest.approx(0.2) and np.abs(w).sum() == pytest.approx(1.0)
    w = row([5.0, 1.0, 4.0, 3.0], method="top_n", n=1, long_short=True, gross=1.0, net=0.5)
    assert w == pytest.approx([0.75, -0.25, 0.0, 0.0])


def test_max_weight_iterative_renormalisation():
    # long side 0.5 over [0.125, 0.375] capped at 0.3: 0.3 and 0.2; shorts likewise
    w = row([1.0, 2.0, 3.0, 4.0], max_weight=0.3)
    assert w == pytest.approx([-0.3, -0.2, 0.2, 0.3])
    # needs two passes: [.1 .3 .6] -> cap .6 -> [.15 .45 .4] -> cap .45 -> [.2 .4 .4]
    assert _fill_side(np.array([1.0, 3.0, 6.0]), 1.0, 0.4) == pytest.approx([0.2, 0.4, 0.4])
    # unreachable under the cap: every name at the cap, the exposure falls short (documented)
    assert row([5.0, 1.0, 4.0, 3.0], method="top_n", n=2, max_weight=0.3) == pytest.approx([0.3, 0, 0.3, 0])


def test_too_few_names_or_no_spread_gives_no_position():
    assert (row([1.0, NAN, NAN]) == 0).all()
    assert (row([2.0, 2.0, 2.0]) == 0).all()
    assert (row([2.0, 2.0, 2.0], method="rank") == 0).all()
    assert (row([1.0, 2.0, 3.0, 4.0, 5.0], method="top_n", n=3, long_short=True) == 0).all()
    assert (row([1.0, 2.0, NAN], method="top_n", n=3) == 0).all()
    assert (row([NAN, NAN], method="top_n", quantile=0.5) == 0).all()
    # a net target needing a short side that top_n long-short has: fine; zscore with both sides: fine


def test_rebalance_dates_weekly_monthly_across_year_end():
    dates = np.array(["2024-01-29", "2024-01-30", "2024-01-31", "2024-02-01", "2024-02-02", "2024-02-05",
                      "2024-02-06", "2024-12-30", "2025-01-02", "2025-01-06"], dtype="datetime64[D]")
    assert rebalance_mask(dates, "daily").all()
    weekly = dates[rebalance_mask(dates, "weekly")].astype(str).tolist()
    assert weekly == ["2024-01-29", "2024-02-05", "2024-12-30", "2025-01-06"]  # 12-30 and 01-02: one ISO week
    monthly = dates[rebalance_mask(dates, "monthly")].astype(str).tolist()
    assert monthly == ["2024-01-29", "2024-02-01", "2024-12-30", "2025-01-02"]
    scores = np.tile([1.0, 2.0, 3.0], (len(dates), 1))
    w = compute_weights(scores, dates, WeightOptions(rebalance="weekly"))
    held = ~np.isnan(w).all(axis=1)
    assert held.tolist() == rebalance_mask(dates, "weekly").tolist()
    assert np.isnan(w[~held]).all()


@pytest.mark.parametrize("seed", range(6))
def test_invariants_on_random_scores(seed):
    rng = np.random.default_rng(seed)
    n, m = 40, 25
    scores = rng.normal(size=(n, m))
    scores[rng.random((n, m)) < 0.2] = NAN
    dates = np.datetime64("2024-01-01") + np.arange(n).astype("timedelta64[D]")
    cases = [
        (WeightOptions(gross=1.5), 1.5, 0.0),
        (WeightOptions(method="rank", net=0.1, max_weight=0.08), 1.0, 0.1),
        (WeightOptions(method="top_n", n=5), 1.0, 1.0),
        (WeightOptions(method="top_n", quantile=0.2, long_short=True, gross=2.0, max_weight=0.5), 2.0, 0.0),
        (WeightOptions(method="bottom_n", n=4, long_short=True, net=-0.2, max_weight=0.2), 1.0, -0.2),
    ]
    for opts, gross, net in cases:
        w = compute_weights(scores, dates, opts)
        assert not np.isnan(w).any()  # daily
        assert (w[np.isnan(scores)] == 0).all()
        assert np.abs(w).sum(axis=1) == pytest.approx(np.full(n, gross))
        assert w.sum(axis=1) == pytest.approx(np.full(n, net), abs=1e-12)
        if opts.max_weight:
            assert np.abs(w).max() <= opts.max_weight + 1e-12
        if opts.method == "top_n" and opts.n:
            assert ((w > 0).sum(axis=1) == opts.n).all()


def test_weights_frame_rebalance_rows_only():
    dates = np.array(["2024-01-30", "2024-01-31", "2024-02-01"], dtype="datetime64[D]")
    w = compute_weights(np.array([[1.0, 2.0, NAN]] * 3), dates, WeightOptions(method="top_n", n=1,
                                                                              rebalance="monthly"))
    f = weights_frame("run1", w, dates, ["A", "B", "C"])
    assert f.schema == pl.Schema({"run_id": pl.String, "date": pl.Date, "symbol": pl.String, "weight": pl.Float64})
    assert f.select(pl.col("date").cast(pl.String), "symbol", "weight").rows() == [
        ("2024-01-30", "A", 0.0), ("2024-01-30", "B", 1.0), ("2024-01-30", "C", 0.0),
        ("2024-02-01", "A", 0.0), ("2024-02-01", "B", 1.0), ("2024-02-01", "C", 0.0)]
    assert weights_frame("r", np.full((2, 2), NAN), dates[:2], ["A", "B"]).height == 0


@pytest.mark.parametrize(("opts", "needle"), [
    ({"method": "top_n"}, "method='top_n' needs exactly one of n (a count) or quantile"),
    ({"method": "top_n", "n": 3, "quantile": 0.2}, "needs exactly one of n"),
    ({"method": "zscore", "n": 5}, "n=5 applies to top_n / bottom_n only"),
    ({"method": "rank", "long_short": True}, "method='rank' is always long-short"),
    ({"metod": "rank"}, "unknown key 'metod'; did you mean 'method'?"),
    ({"method": "equal_weight"}, "weights.method: Input should be 'zscore', 'rank', 'top_n' or 'bottom_n'"),
    ({"net": 1.5}, "net=1.5 must lie within +-gross=1.0"),
    ({"method": "top_n", "n": 3, "net": 0.0}, "net=0.0 cannot differ from gross=1.0 for a long-only top_n"),
    ({"method": "top_n", "quantile": 0.6, "long_short": True}, "quantile=0.6 with long_short=True"),
    ({"gross": 0}, "weights.gross: Input should be greater than 0 (got 0)"),
    ({"max_weight": 2.0}, "max_weight=2.0 exceeds gross=1.0"),
    ({"rebalance": "yearly"}, "weights.rebalance: Input should be 'daily', 'weekly' or 'monthly'"),
    ({"n": "5", "method": "top_n"}, "n: must be a number, not the string '5'"),
])
def test_bad_options_one_clear_line(opts, needle):
    with pytest.raises(ConfigError) as e:
        WeightOptions(**opts)
    assert needle in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError):
        WeightOptions.model_validate(opts)


def test_check_weight_options_against_the_universe():
    check_weight_options(WeightOptions(method="top_n", n=10, long_short=True), 20)
    with pytest.raises(ConfigError, match=r"weights.n=30 needs 30 symbols, the universe has 20: lower n to at most 20"):
        check_weight_options(WeightOptions(method="top_n", n=30), 20)
    with pytest.raises(ConfigError, match=r"weights.n=11 per side needs 22 symbols.*at most 10"):
        check_weight_options(WeightOptions(method="bottom_n", n=11, long_short=True), 20)
    with pytest.raises(ConfigError, match=r"weights.quantile=0.01 selects no name of 20 symbols: raise it to "
                                          r"at least 0.05"):
        check_weight_options(WeightOptions(method="top_n", quantile=0.01), 20)
    with pytest.raises(ConfigError, match="needs at least 2 symbols"):
        check_weight_options(WeightOptions(), 1)
    with pytest.raises(ConfigError, match=r"weights.max_weight=0.05 cannot reach an exposure of 1 per side with "
                                          r"at most 10 names: raise max_weight to at least 0.1"):
        check_weight_options(WeightOptions(method="top_n", n=10, max_weight=0.05), 20)
    check_weight_options(WeightOptions(max_weight=0.05), 20)  # zscore: 0.5 per side over up to 19 names
