"""Walk-forward: window arithmetic (bars and calendar spans, rolling and anchored, step),
test windows that never overlap, the sweep's best chosen per window, a stitched curve that
chains the test returns from initial_cash, determinism, and clear errors."""

from __future__ import annotations

import datetime as dt
import itertools
import json

import numpy as np
import polars as pl
import pytest

import backlake as bl
from backlake.data.synthetic import synthetic_bars
from backlake.errors import ConfigError
from backlake.research.walk_forward import evaluate_window, make_windows, stitch, walk_forward

UTC = dt.UTC
BARS = synthetic_bars(("S0",), periods=500, seed=5)
CFG = bl.BacktestConfig.model_validate({
    "strategy": "sma_crossover", "universe": ["S0"], "initial_cash": 50_000, "costs": {"commission_bps": 5},
})
GRID = {"fast": [5, 10, 20], "slow": [30, 60]}


def days(n: int, start=dt.datetime(2020, 1, 1, tzinfo=UTC), every=dt.timedelta(days=1)) -> list[dt.datetime]:
    return [start + i * every for i in range(n)]


def weekdays(n: int, start=dt.datetime(2020, 1, 1, tzinfo=UTC)) -> list[dt.datetime]:
    out, d = [], start
    while len(out) < n:
        if d.weekday() < 5:
            out.append(d)
        d += dt.timedelta(days=1)
    return out


@pytest.fixture(scope="module")
def wf():
    return walk_forward(CFG, GRID, BARS, train=200, test=100)


# -- window arithmetic -----------------------------------------------------------------------


def test_rolling_bar_windows():
    ts = days(100)
    ws = make_windows(ts, train=30, test=10)
    assert len(ws) == 7  # test stops at 40, 50, ..., 100
    for k, w in enumerate(ws):
        assert w.index == k
        assert w.train_idx == (10 * k, 10 * k + 30) and w.test_idx == (10 * k + 30, 10 * k + 40)
        assert (w.train_start, w.train_end) == (ts[10 * k], ts[10 * k + 29])
        assert (w.test_start, w.test_end) == (ts[10 * k + 30], ts[10 * k + 39])
    for a, b in itertools.pairwise(ws):
        assert a.test_idx[1] == b.test_idx[0]  # step = test: contiguous, no overlap


def test_anchored_windows_keep_the_first_bar_and_step_leaves_gaps():
    ts = days(100)
    ws = make_windows(ts, train=30, test=10, step=20, mode="anchored")
    assert [w.train_idx for w in ws] == [(0, 30), (0, 50), (0, 70), (0, 90)]
    assert [w.test_idx for w in ws] == [(30, 40), (50, 60), (70, 80), (90, 100)]
    assert all(w.train_start == ts[0] for w in ws)


def test_calendar_windows_follow_the_calendar():
    ts = days(400)  # daily, every day from 2020-01-01
    ws = make_windows(ts, train="3m", test="1M")
    d = lambda m, day: dt.datetime(2020, m, day, tzinfo=UTC)  # noqa: E731
    first = (ws[0].train_start, ws[0].train_end, ws[0].test_start, ws[0].test_end)
    assert first == (d(1, 1), d(3, 31), d(4, 1), d(4, 30))
    assert (ws[1].train_start, ws[1].test_start, ws[1].test_end) == (d(2, 1), d(5, 1), d(5, 31))
    assert ws[-1].test_end == dt.datetime(2021, 1, 31, tzinfo=UTC)  # data ends 2021-02-03: Feb is incomplete
    assert len(ws) == 10
    anchored = make_windows(days(450), train="1y", test="2w", step="4w", mode="anchored")
    assert anchored[0].test_idx == (366, 380)  # 2020 is a leap year
    assert anchored[1].train_idx == (0, 366 + 28)


def test_month_ends_clamp_and_weekend_month_ends_count():
    ts = days(200, start=dt.datetime(2021, 1, 31, tzinfo=UTC))
    ws = make_windows(ts, train="1m", test="1m")
    assert ws[0].test_start == dt.datetime(2021, 2, 28, tzinfo=UTC)  # Jan 31 + 1 month
    assert ws[1].test_start == dt.datetime(2021, 3, 31, tzinfo=UTC)  # measured from the anchor, no drift
    wd = weekdays(262)  # the weekdays of 2020; 2020-12-31 is a Thursday
    assert make_windows(wd, train="6m", test="6m")[-1].test_end == dt.datetime(2020, 12, 31, tzinfo=UTC)
    wd = [t for t in weekdays(300) if t < dt.datetime(2021, 1, 30, tzinfo=UTC)]  # ends Fri 29 Jan 2021
    assert make_windows(wd, train="1m", test="1m")[-1].test_end == dt.datetime(2021, 1, 29, tzinfo=UTC)


def test_windows_accept_polars_and_numpy_timestamps():
    want = make_windows(list(BARS["ts"]), train=100, test=50)
    assert make_windows(BARS["ts"], train=100, test=50) == want
    assert make_windows(BARS["ts"].dt.replace_time_zone(None).to_numpy(), train=100, test=50) == want


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"train": 90, "test": 20}, r"train=90 \+ test=20 bars is longer than the data \(100 bars"),
    ({"train": "1y", "test": "1m"}, "longer than the data"),
    ({"train": 0, "test": 10}, "train=0"),
    ({"train": 1, "test": 10}, "train=1 must be a bar count >= 2"),
    ({"train": 30, "test": -5}, "test=-5"),
    ({"train": 30, "test": 10, "step": 5}, "step=5 is shorter than test=10"),
    ({"train": "3q", "test": "1m"}, "not a calendar span"),
    ({"train": "0m", "test": "1m"}, "not a calendar span"),
    ({"train": 30, "test": "1m"}, "all bar counts"),
    ({"train": "1m", "test": "1m", "step": "1w"}, "would overlap"),
    ({"train": 30, "test": 10, "mode": "expanding"}, "mode='expanding'"),
])
def test_bad_windows_are_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_windows(days(100), **kwargs)


def test_unsorted_timestamps_are_an_error():
    with pytest.raises(ConfigError, match="sorted"):
        make_windows(days(50)[::-1], train=10, test=5)


# -- evaluation and stitching ----------------------------------------------------------------


def test_evaluate_window_picks_the_sweeps_best(wf):
    w = wf.windows[1].window
    train_bars = BARS.filter(pl.col("ts").is_between(w.train_start, w.train_end))
    table = bl.sweep(CFG, GRID, train_bars).with_row_index()
    best = table.sort(["sharpe", "index"], descending=[True, False], nulls_last=True).row(0, named=True)
    res = wf.windows[1]
    assert res.best_params == {"fast": best["fast"], "slow": best["slow"]}
    assert res.n_combinations == 6
    assert res.is_sharpe == pytest.approx(best["sharpe"], rel=1e-9)  # same bars, same equity before the split
    assert res.is_score == res.is_sharpe
    run = bl.run_backtest(CFG.model_copy(update={"params": res.best_params}),
                          BARS.filter(pl.col("ts").is_between(w.train_start, w.test_end)), oos_start=w.test_start)
    assert res.oos_sharpe == pytest.approx(run.segments["oos"]["sharpe"], rel=1e-12)
    assert res.degradation == pytest.approx((res.is_sharpe - res.oos_sharpe) / abs(res.is_sharpe))
    assert res.oos_ret.size == w.test_idx[1] - w.test_idx[0]


def test_other_objectives_score_both_segments():
    w = make_windows(BARS["ts"], train=200, test=100)[0]
    res = evaluate_window(CFG, GRID, BARS, w, objective="total_return")
    table = bl.sweep(CFG, GRID, BARS.filter(pl.col("ts").is_between(w.train_start, w.train_end)))
    assert res.is_score == pytest.approx(table["total_return"].max(), rel=1e-9)


def test_stitched_equity_chains_the_test_returns(wf):
    eq = wf.equity
    assert eq.columns == ["ts", "equity", "ret", "window"]
    assert eq["equity"][0] == CFG.initial_cash and eq["ret"][0] == 0.0
    e, r = eq["equity"].to_numpy(), eq["ret"].to_numpy()
    np.testing.assert_allclose(e[1:], e[:-1] * (1 + r[1:]), rtol=1e-12)
    assert eq.height == sum(w.window.test_idx[1] - w.window.test_idx[0] for w in wf.windows) == 300
    assert eq["ts"].is_sorted() and eq["ts"].n_unique() == eq.height
    assert eq["window"].to_list() == [0] * 100 + [1] * 100 + [2] * 100
    np.testing.assert_array_equal(r[100:200], wf.windows[1].oos_ret)  # later windows keep their boundary return
    assert wf.oos_metrics["total_return"] == pytest.approx(e[-1] / CFG.initial_cash - 1)
    # the stitched curve does not depend on the order the windows arrive in
    assert stitch(wf.windows[::-1], CFG.initial_cash).equals(eq)


def test_walk_forward_is_deterministic(wf):
    again = walk_forward(CFG, GRID, BARS, train=200, test=100)
    assert again.equity.equals(wf.equity)
    assert again.windows_frame("p").equals(wf.windows_frame("p"))


def test_windows_frame_matches_the_windows_table(wf):
    df = wf.windows_frame("run-1")
    assert df.columns == ["parent_id", "window", "train_start", "train_end", "test_start", "test_end",
                          "best_params", "is_sharpe", "oos_sharpe", "degradation"]
    assert df.schema["train_start"] == pl.Datetime("us", "UTC")
    assert df["parent_id"].unique().to_list() == ["run-1"]
    assert [json.loads(p) for p in df["best_params"]] == [w.best_params for w in wf.windows]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"objective": "sharp"}, "did you mean 'sharpe'"),
    ({"grid": {"fsat": [5]}}, "did you mean 'fast'"),
    ({"grid": {"fast": [50], "slow": [10]}}, "no valid combination"),
    ({"train": 450, "test": 100}, "longer than the data"),
])
def test_walk_forward_errors_come_first(kwargs, match):
    args = {"grid": GRID, "train": 200, "test": 100, **kwargs}
    with pytest.raises(ConfigError, match=match):
        walk_forward(CFG, args.pop("grid"), BARS, **args)


def test_stitch_rejects_nothing_and_bad_cash(wf):
    with pytest.raises(ConfigError, match="at least one"):
        stitch([], 1000.0)
    with pytest.raises(ConfigError, match="initial_cash"):
        stitch(wf.windows, 0)
