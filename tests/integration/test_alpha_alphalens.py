"""backlake.alpha.ic cross-checked against alphalens-reloaded (test-only dependency) on the same
factor and prices: a synthetic 30-asset x 300-day panel with names entering, leaving and a gap,
and the shipped 20-stock S&P 500 panel with a 12-1 momentum factor computed here with pandas.

Convention differences, and how the inputs are aligned so the comparison is exact:

- alphalens forward-fills prices before ``pct_change(h).shift(-h)``: a name without a bar at
  ``t + h`` gets its last close (a flat return); ours is NaN there. Both count ``h`` in price
  rows (trading days); alphalens only *labels* the columns in calendar days ('1D', '7D', '14D').
- alphalens drops a (date, asset) when any period's forward return is NaN (so the last
  ``max(h)`` dates go for every horizon) and bins quantiles on what is left; ours bins every
  scored name per date and uses each horizon's own forward returns.
- pandas.qcut refuses duplicate edges (heavily tied scores) and alphalens then drops the date
  (``max_loss``); ours keeps ties in one bin. The factors here are continuous (no ties).
- ``mean_return_by_quantile`` demeans by default; ours is the raw mean (``demeaned=False``).
- alphalens by default blanks forward returns more than 20 standard deviations from the
  asset's full-sample mean (``filter_zscore=20``, a look-ahead filter); ours keeps every
  return. On the S&P 500 panel that filter drops PG's -30 % day of 2000-03-07, so the
  comparison passes ``filter_zscore=None``.

Alignment: the factor handed to both sides is NaN wherever any horizon's forward return (ours:
no forward fill) is missing, so both see the same (date, asset) set, and alphalens' forward fill
never changes a value that is used. ``max_loss=1.0`` keeps alphalens from refusing the drops.
Tolerances: IC, Rank IC, quantile mean returns, turnover 1e-10 absolute (the same arithmetic in
a different order); quantile labels exactly equal.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest
from scipy import stats

from backlake.alpha import ic
from backlake.alpha.panel import Panel, panel_from_bars

al_utils = pytest.importorskip("alphalens.utils")
al_perf = pytest.importorskip("alphalens.performance")

HORIZONS = (1, 5, 10)
Q = 5
TOL = 1e-10


def _synthetic_panel() -> Panel:
    from backlake.data.synthetic import synthetic_bars

    bars = synthetic_bars(tuple(f"S{i:02d}" for i in range(30)), periods=300, seed=42, vol=0.3)
    panel = panel_from_bars(bars)
    close = panel.close.copy()
    close[:40, 3] = np.nan      # enters late
    close[250:, 7] = np.nan     # leaves early
    close[100:104, 11] = np.nan  # a four-day gap
    return Panel.from_arrays(panel.dates, panel.symbols, close)


def _sp500_panel() -> Panel:
    from backlake.config import UNIVERSES
    from backlake.data.samples import load_samples

    return panel_from_bars(load_samples(list(UNIVERSES["sp500_stocks"])))


def _momentum(wide: pd.DataFrame, long: int, skip: int) -> pd.DataFrame:
    """Return from t - long to t - skip (12-1 momentum: 252, 21), NaN where either close is missing."""
    return wide.shift(skip) / wide.shift(long) - 1.0


def _aligned(panel: Panel, factor: np.ndarray) -> np.ndarray:
    fwd = ic.forward_returns(panel.close, HORIZONS)
    ok = np.isfinite(factor) & np.all([np.isfinite(f) for f in fwd.values()], axis=0)
    return np.where(ok, factor, np.nan)


def _alphalens(panel: Panel, scores: np.ndarray) -> tuple[pd.DataFrame, list[str]]:
    idx = pd.DatetimeIndex(panel.dates.astype("datetime64[ns]"), name="date")
    prices = pd.DataFrame(panel.close, index=idx, columns=panel.symbols)
    factor = pd.DataFrame(scores, index=idx, columns=panel.symbols).stack()
    factor.index = factor.index.set_names(["date", "asset"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fd = al_utils.get_clean_factor_and_forward_returns(
            factor.dropna(), prices, periods=HORIZONS, quantiles=Q, max_loss=1.0, filter_zscore=None)
    cols = list(al_utils.get_forward_returns_columns(fd.columns))
    assert len(cols) == len(HORIZONS)
    assert len(fd) == int(np.isfinite(scores).sum())  # nothing dropped: the same (date, asset) set
    return fd, cols


def _pearson_by_date(fd: pd.DataFrame, col: str) -> pd.Series:
    """Pearson IC per date on alphalens' clean factor data (alphalens computes Spearman only)."""
    g = fd.groupby(level="date")
    dx = fd["factor"] - g["factor"].transform("mean")
    dy = fd[col] - g[col].transform("mean")
    parts = pd.DataFrame({"xy": dx * dy, "xx": dx * dx, "yy": dy * dy}).groupby(level="date").sum()
    return (parts["xy"] / np.sqrt(parts["xx"] * parts["yy"])).dropna()


def _day(ts: pd.Timestamp) -> np.datetime64:
    return np.datetime64(ts.date(), "D")


def _check(panel: Panel, factor: np.ndarray) -> dict[str, float]:
    scores = _aligned(panel, factor)
    fd, cols = _alphalens(panel, scores)
    ev = ic.evaluate(panel, scores, HORIZONS, Q)
    row_of = {d: i for i, d in enumerate(panel.dates)}
    col_of = {s: j for j, s in enumerate(panel.symbols)}
    out: dict[str, float] = {}

    # quantile labels, (date, asset) by (date, asset)
    labels = ic.quantile_labels(scores, Q)
    r = np.array([row_of[_day(d)] for d in fd.index.get_level_values("date")])
    c = np.array([col_of[a] for a in fd.index.get_level_values("asset")])
    np.testing.assert_array_equal(labels[r, c], fd["factor_quantile"].to_numpy().astype(int))
    assert int((labels > 0).sum()) == len(fd)

    # Rank IC (alphalens' IC is Spearman) and Pearson IC per date
    al_ic = al_perf.factor_information_coefficient(fd)
    for h, col in zip(HORIZONS, cols, strict=True):
        ours = ev.ic_frame.filter(pl.col("horizon") == h)
        ours_rank = dict(zip(ours["date"].to_numpy().astype("datetime64[D]"), ours["rank_ic"].to_numpy(), strict=True))
        ours_ic = dict(zip(ours["date"].to_numpy().astype("datetime64[D]"), ours["ic"].to_numpy(), strict=True))
        theirs = al_ic[col].dropna()
        assert len(theirs) > 0
        got = np.array([ours_rank[_day(d)] for d in theirs.index])
        diff = float(np.max(np.abs(got - theirs.to_numpy())))
        assert diff < TOL, f"h={h}: Rank IC differs by {diff}"
        out[f"rank_ic_h{h}"] = diff
        pear = _pearson_by_date(fd, col)
        got = np.array([ours_ic[_day(d)] for d in pear.index])
        diff = float(np.max(np.abs(got - pear.to_numpy())))
        assert diff < TOL, f"h={h}: IC differs by {diff}"
        out[f"ic_h{h}"] = diff
        # the summary against the series alphalens' IC table is built from
        s = ev.summary[h]
        assert s["mean_rank_ic"] == pytest.approx(float(theirs.mean()), abs=TOL)
        assert s["rank_ic_std"] == pytest.approx(float(theirs.std()), abs=TOL)
        if h == 1:  # no overlap: the Newey-West t-stat is the plain one-sample t (alphalens' 't-stat(IC)')
            assert s["rank_t_stat"] == pytest.approx(float(stats.ttest_1samp(theirs, 0).statistic), rel=1e-9)

    # quantile mean forward returns (not demeaned), and the top-minus-bottom spread
    mr, _ = al_perf.mean_return_by_quantile(fd, demeaned=False)
    for h, col in zip(HORIZONS, cols, strict=True):
        ours_q = ev.quantiles.filter(pl.col("horizon") == h).sort("quantile")
        diff = float(np.max(np.abs(ours_q["mean_return"].to_numpy() - mr[col].to_numpy())))
        assert diff < TOL, f"h={h}: quantile mean returns differ by {diff}"
        out[f"quantile_h{h}"] = diff
        assert ev.summary[h]["spread"] == pytest.approx(float(mr[col].iloc[-1] - mr[col].iloc[0]), abs=TOL)
        counts = fd.groupby("factor_quantile")[col].count().to_numpy()
        np.testing.assert_array_equal(ours_q["count"].to_numpy(), counts)

    # quantile turnover (share of names new to the quantile since the previous date)
    ours_t = ic.quantile_turnover(scores, Q, period=1)
    worst = 0.0
    for k in range(1, Q + 1):
        theirs = al_perf.quantile_turnover(fd["factor_quantile"], k, period=1).dropna()
        got = np.array([ours_t[row_of[_day(d)], k - 1] for d in theirs.index])
        worst = max(worst, float(np.max(np.abs(got - theirs.to_numpy()))))
    assert worst < TOL, f"quantile turnover differs by {worst}"
    out["quantile_turnover"] = worst

    # turnover of weights: alphalens' factor weights (demeaned, unit gross) as our weights matrix
    w = al_perf.factor_weights(fd, demeaned=True)
    wide = w.unstack("asset").reindex(columns=panel.symbols)
    weights = np.full(panel.close.shape, np.nan)
    weights[[row_of[_day(d)] for d in wide.index]] = wide.to_numpy()
    expected = float((wide.fillna(0.0).diff().abs().sum(axis=1) / 2).iloc[1:].mean())
    got_turn = ic.evaluate(panel, scores, HORIZONS, Q, weights=weights).summary[1]["turnover"]
    assert got_turn == pytest.approx(expected, abs=TOL)
    out["weight_turnover"] = abs(float(got_turn or 0.0) - expected)
    return out


def test_synthetic_panel_agrees_with_alphalens() -> None:
    panel = _synthetic_panel()
    wide = pd.DataFrame(panel.close, columns=panel.symbols)
    factor = -_momentum(wide, 5, 0).to_numpy()  # 5-day reversal: continuous, needs no long warm-up
    _check(panel, factor)


def test_sp500_momentum_12_1_agrees_with_alphalens() -> None:
    panel = _sp500_panel()
    wide = pd.DataFrame(panel.close, columns=panel.symbols)
    factor = _momentum(wide, 252, 21).to_numpy()
    assert np.isfinite(factor).sum() > 100_000
    _check(panel, factor)


def test_unaligned_inputs_differ_only_where_documented() -> None:
    """Without the alignment, alphalens forward-fills a missing close: the name that left the
    synthetic panel at row 250 gets flat returns from alphalens and none from us, and across the
    four-day gap its '1-day' return at row 103 is really close[104] / close[99] - 1."""
    panel = _synthetic_panel()
    idx = pd.DatetimeIndex(panel.dates.astype("datetime64[ns]"), name="date")
    prices = pd.DataFrame(panel.close, index=idx, columns=panel.symbols)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = al_utils.compute_forward_returns(
            pd.DataFrame(np.ones(panel.close.shape), index=idx, columns=panel.symbols).stack(), prices, periods=(1,))
    ours = ic.forward_returns(panel.close, [1])[1]
    t = theirs.iloc[:, 0].unstack("asset").reindex(columns=panel.symbols).to_numpy()
    both = np.isfinite(ours) & np.isfinite(t)
    np.testing.assert_allclose(ours[both], t[both], rtol=0, atol=1e-12)
    only_theirs = np.isfinite(t) & ~np.isfinite(ours)
    assert set(zip(*np.nonzero(only_theirs), strict=True)) == (
        {(i, 7) for i in range(249, len(panel.dates) - 1)} | {(i, 11) for i in range(99, 104)})
    assert np.all(t[249:-1, 7] == 0.0) and np.all(t[99:103, 11] == 0.0)  # stale (forward-filled) price
    c = panel.close[:, 11]
    assert t[103, 11] == pytest.approx(c[104] / c[99] - 1, abs=1e-12)
