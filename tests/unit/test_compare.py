"""The compare formulas on hand-computed inputs: tracking error (pairwise alignment, the
fallbacks), overlap normalisation, the direction map and best / worst colouring, net / gross
basis and its fallback, the baseline fallback, correlation, and the input errors."""

from __future__ import annotations

import datetime as dt
import math

import polars as pl
import pytest

from backlake.analytics.compare import (
    RunSeries,
    best_worst,
    check_run_ids,
    compare,
    correlation,
    direction,
    level,
    overlay,
    returns,
    tracking_error,
)
from backlake.errors import ConfigError

D = [dt.datetime(2024, 1, d, tzinfo=dt.UTC) for d in range(1, 11)]


def rets(days: list[int], values: list[float]) -> pl.DataFrame:
    return pl.DataFrame({"ts": [D[d] for d in days], "ret": values})


def run(run_id: str, days: list[int], equity: list[float], costs: list[float] | None = None,
        **kw: object) -> RunSeries:
    eq = pl.DataFrame({"ts": [D[d] for d in days], "equity": equity,
                       "costs": costs if costs is not None else [None] * len(days)},
                      schema={"ts": pl.Datetime("us", "UTC"), "equity": pl.Float64, "costs": pl.Float64})
    return RunSeries(run_id=run_id, equity=eq, **kw)  # type: ignore[arg-type]


# -- tracking error -------------------------------------------------------------------------------
def test_tracking_error_uses_the_pair_common_dates_only():
    a = rets([1, 2, 3], [0.01, 0.02, -0.01])
    b = rets([2, 3, 4], [0.01, 0.01, 0.05])
    # common dates 2, 3: diffs 0.01, -0.02; mean -0.005; sample var = 2 * 0.015**2 / 1 = 0.00045
    assert tracking_error(a, b, 252) == pytest.approx(math.sqrt(0.00045) * math.sqrt(252), rel=1e-12)
    assert tracking_error(a, b, 252) == pytest.approx(0.336749, abs=1e-6)
    assert tracking_error(a, b, 12) == pytest.approx(math.sqrt(0.00045) * math.sqrt(12), rel=1e-12)


def test_tracking_error_fallbacks():
    a = rets([1, 2, 3], [0.01, 0.02, -0.01])
    assert tracking_error(a, rets([3, 4], [0.0, 0.1]), 252) is None  # one common date
    assert tracking_error(a, rets([5, 6], [0.0, 0.1]), 252) is None  # none
    assert tracking_error(a, a, 252) == 0.0  # identical
    assert tracking_error(a, a.with_columns(pl.col("ret") + 0.0), 252) == 0.0


def test_tracking_error_of_constant_offset_is_zero_and_order_free():
    a = rets([1, 2, 3, 4], [0.01, 0.03, -0.02, 0.00])
    b = rets([1, 2, 3, 4], [0.00, 0.02, -0.03, -0.01])
    assert tracking_error(a, b, 252) == pytest.approx(0.0, abs=1e-12)
    c = rets([4, 2, 1, 3], [0.5, 0.1, 0.2, 0.0])  # unsorted input joins on ts, not position
    # diffs vs a on dates 1..4: 0.01-0.2, 0.03-0.1, -0.02-0.0, 0.0-0.5
    d = [0.01 - 0.2, 0.03 - 0.1, -0.02 - 0.0, 0.0 - 0.5]
    m = sum(d) / 4
    sd = math.sqrt(sum((x - m) ** 2 for x in d) / 3)
    assert tracking_error(a, c, 252) == pytest.approx(sd * math.sqrt(252), rel=1e-12)


# -- overlay and returns ----------------------------------------------------------------------------
def test_overlay_normalises_to_one_at_the_start_of_the_overlap():
    a = pl.DataFrame({"ts": D[1:5], "value": [100.0, 110.0, 121.0, 133.1]})
    b = pl.DataFrame({"ts": D[2:6], "value": [50.0, 55.0, 60.0, 66.0]})
    out = overlay({"a": a, "b": b})
    assert out["ts"].to_list() == D[2:5]
    assert out["a"].to_list() == pytest.approx([1.0, 1.1, 1.21])
    assert out["b"].to_list() == pytest.approx([1.0, 1.1, 1.2])


def test_overlay_without_common_dates_is_empty():
    a = pl.DataFrame({"ts": D[1:3], "value": [1.0, 2.0]})
    b = pl.DataFrame({"ts": D[4:6], "value": [1.0, 2.0]})
    assert overlay({"a": a, "b": b}).is_empty()


def test_returns_start_at_the_second_bar_and_gross_adds_back_costs():
    r = run("r1", [1, 2, 3], [1000.0, 990.0, 1009.8], costs=[0.0, 5.0, 2.0])
    net = returns(r, "net")
    assert net["ts"].to_list() == D[2:4]
    assert net["ret"].to_list() == pytest.approx([-0.01, 0.02])
    # gross equity = equity + cumulative costs: 1000, 995, 1016.8
    assert level(r, "gross")["value"].to_list() == pytest.approx([1000.0, 995.0, 1016.8])
    assert returns(r, "gross")["ret"].to_list() == pytest.approx([-0.005, 1016.8 / 995.0 - 1])
    with pytest.raises(ConfigError, match="has no cost data"):
        level(run("old", [1, 2], [1.0, 2.0]), "gross")


# -- direction map and colouring --------------------------------------------------------------------
@pytest.mark.parametrize(("name", "how"), [
    ("total_return", "higher"), ("cagr", "higher"), ("sharpe", "higher"), ("sortino", "higher"),
    ("win_rate", "higher"), ("max_drawdown", "higher"), ("annual_volatility", "lower"), ("turnover", "lower"),
    ("total_costs", "lower"), ("cost_commission", "lower"), ("cost_slippage", "lower"), ("n_trades", "neutral"),
    ("beta", "neutral"), ("some_new_metric", "neutral"),
])
def test_direction_map(name: str, how: str):
    assert direction(name) == how


def test_best_worst_colouring():
    vals = {"a": 0.5, "b": 1.5, "c": None, "d": 1.5, "e": -0.2}
    assert best_worst(vals, "higher") == (["b", "d"], ["e"])
    assert best_worst(vals, "lower") == (["e"], ["b", "d"])
    assert best_worst(vals, "neutral") == ([], [])
    assert best_worst({"a": 1.0, "b": 1.0}, "higher") == ([], [])  # all equal: nothing to colour
    assert best_worst({"a": 1.0, "b": None}, "higher") == ([], [])  # one value: nothing to compare
    assert best_worst({"a": float("nan"), "b": 2.0, "c": 3.0}, "lower") == (["b"], ["c"])
    # drawdowns are <= 0: the one closest to 0 is best
    assert best_worst({"a": -0.30, "b": -0.05}, direction("max_drawdown")) == (["b"], ["a"])


# -- compare ------------------------------------------------------------------------------------------
def test_compare_gross_basis_with_costs_everywhere():
    a = run("a", [1, 2, 3, 4], [100.0, 101.0, 102.0, 103.0], costs=[0.0, 1.0, 0.0, 1.0],
            metrics={"sharpe": 1.0, "total_costs": 2.0})
    b = run("b", [2, 3, 4, 5], [200.0, 202.0, 204.0, 206.0], costs=[0.0, 0.0, 0.0, 0.0],
            metrics={"sharpe": 2.0, "total_costs": 0.0})
    cmp = compare([a, b], basis="gross")
    assert cmp.basis == "gross" and not cmp.warnings
    # gross a: 100, 102, 103, 105 -> on the overlap (days 2..4) 102, 103, 105 over 102
    assert cmp.curves["a"].to_list() == pytest.approx([1.0, 103 / 102, 105 / 102])
    assert cmp.curves["b"].to_list() == pytest.approx([1.0, 1.01, 1.02])
    assert (cmp.overlap_start, cmp.overlap_end, cmp.overlap_count) == (D[2], D[4], 3)
    assert "overlap 2024-01-03 to 2024-01-05, 3 dates" in cmp.subtitle and cmp.subtitle.startswith("gross")
    rows = {m.name: m for m in cmp.metrics}
    assert rows["sharpe"].best == ["b"] and rows["sharpe"].worst == ["a"]
    assert rows["total_costs"].best == ["b"] and rows["total_costs"].worst == ["a"]
    assert cmp.tracking_error["a"] == 0.0
    # returns a (gross): d3 103/102-1, d4 105/103-1; b: d3 0.01, d4 204/202-1
    d = [103 / 102 - 1 - 0.01, 105 / 103 - 1 - (204 / 202 - 1)]
    m = sum(d) / 2
    assert cmp.tracking_error["b"] == pytest.approx(math.sqrt(sum((x - m) ** 2 for x in d)) * math.sqrt(252))


def test_gross_falls_back_to_net_when_a_run_lacks_costs():
    a = run("a", [1, 2, 3], [100.0, 101.0, 102.0], costs=[0.0, 1.0, 0.0])
    old = run("old", [1, 2, 3], [100.0, 100.0, 103.0])
    cmp = compare([a, old], basis="gross")
    assert cmp.basis == "net" and cmp.requested_basis == "gross"
    assert any("old" in w and "net" in w for w in cmp.warnings)
    assert cmp.curves["a"].to_list() == pytest.approx([1.0, 1.01, 1.02])  # net, not 101+1
    assert compare([a, old], basis="net").warnings == []


def test_no_overlap_warns_and_keeps_metrics():
    a = run("a", [1, 2, 3], [1.0, 1.1, 1.0], metrics={"sharpe": 1.0})
    b = run("b", [5, 6], [1.0, 1.2], metrics={"sharpe": 0.5})
    cmp = compare([a, b])
    assert cmp.curves.is_empty() and cmp.overlap_count == 0
    assert any("share no dates" in w for w in cmp.warnings)
    assert "no overlapping dates" in cmp.subtitle
    assert cmp.tracking_error == {"a": 0.0, "b": None}  # b shares no date with the baseline
    assert [m.name for m in cmp.metrics] == ["sharpe"]


def test_baseline_falls_back_to_the_next_run_with_returns():
    empty = run("sweep1", [], [], kind="sweep", metrics={"sharpe": 3.0})
    a = run("a", [1, 2, 3], [1.0, 1.1, 1.0])
    b = run("b", [1, 2, 3], [1.0, 1.2, 1.2])
    cmp = compare([empty, a, b])
    assert cmp.baseline == "a"
    assert any("baseline sweep1 has no returns" in w for w in cmp.warnings)
    assert cmp.tracking_error["sweep1"] is None and cmp.tracking_error["a"] == 0.0
    assert list(cmp.curves.columns) == ["ts", "a", "b"]
    assert compare([a, b], baseline="b").baseline == "b"


def test_correlation_matrix():
    up = rets([1, 2, 3, 4], [0.01, 0.02, -0.01, 0.03])
    double = rets([1, 2, 3, 4], [0.02, 0.04, -0.02, 0.06])
    neg = rets([1, 2, 3, 4], [-0.01, -0.02, 0.01, -0.03])
    flat = rets([1, 2, 3, 4], [0.0, 0.0, 0.0, 0.0])
    c = correlation({"up": up, "double": double, "neg": neg, "flat": flat})
    m = {row["run_id"]: row for row in c.iter_rows(named=True)}
    assert m["up"]["double"] == pytest.approx(1.0) and m["up"]["neg"] == pytest.approx(-1.0)
    assert m["up"]["up"] == 1.0 and m["flat"]["flat"] is None and m["up"]["flat"] is None


@pytest.mark.parametrize(("ids", "message"), [
    (["a"], "compare needs 2 to 10 runs, got 1 (a); add runs"),
    ([], "got 0 (none)"),
    ([f"r{i}" for i in range(11)], "got 11 (r0, r1"),
    (["a", "b", "a"], "run 'a' is given twice: list each run once"),
])
def test_run_id_errors(ids: list[str], message: str):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_run_ids(ids)


def test_bad_basis_and_baseline():
    a, b = run("a", [1, 2], [1.0, 1.1]), run("b", [1, 2], [1.0, 1.2])
    with pytest.raises(ConfigError, match="basis='gros' is not a basis: use 'net'"):
        compare([a, b], basis="gros")
    with pytest.raises(ConfigError, match="baseline 'c' is not one of the compared runs \\(a, b\\)"):
        compare([a, b], baseline="c")


# -- the page's pure helpers -------------------------------------------------------------------------
def test_page_helpers_url_formatting_and_colour_classes():
    from dashboards.compare import format_value, metrics_html, parse_query, query_string, te_html
    from dashboards.fmt import metric_text

    assert parse_query({"runs": [b"a, b,c"], "baseline": [b"b"], "basis": [b"gross"]}) == (["a", "b", "c"], "b",
                                                                                          "gross")
    assert parse_query({}) == ([], None, "net")
    assert query_string(["a", "b"], "a", "net") == "?runs=a,b&baseline=a&basis=net"
    assert format_value("sharpe", 1.23456) == "1.235"
    assert format_value("sortino", 1.595) == metric_text("sortino", 1.595)  # as the runs table shows it
    assert format_value("total_return", 0.1234) == "12.34%"
    assert format_value("n_trades", 1234.0) == "1,234" and format_value("total_costs", 1234.5) == "1,234.50"
    assert format_value("sharpe", None) == "–" and format_value("sharpe", float("nan")) == "–"

    a = run("a", [1, 2, 3], [1.0, 1.1, 1.0], metrics={"sharpe": 1.0, "total_costs": 5.0, "beta": 0.5})
    b = run("b", [1, 2, 3], [1.0, 1.2, 1.2], metrics={"sharpe": 2.0, "total_costs": 9.0, "beta": 0.7})
    page = metrics_html(compare([a, b]))
    assert "class='best' data-run='b' data-metric='sharpe' data-value='2.0'" in page
    assert "class='worst' data-run='a' data-metric='sharpe'" in page
    assert "class='best' data-run='a' data-metric='total_costs'" in page
    assert "class='' data-run='a' data-metric='beta'" in page  # neutral: not coloured
    assert "Metrics cover each run&#x27;s full period" in page
    te = te_html(compare([a, b]))
    assert ">baseline<" in te and "data-run='b'" in te


def test_labels_name_an_alpha_backtest_by_its_alpha_and_collapse_long_universes() -> None:
    from backlake.analytics.compare import RunSeries
    from backlake.strategies import display_name

    assert display_name("sma_crossover", '{"fast": 10}') == "sma_crossover"
    assert display_name("alpha", '{"alpha": "momentum_12_1", "method": "zscore"}') == "alpha momentum_12_1"
    assert display_name("alpha", {"alpha": "low_volatility"}) == "alpha low_volatility"
    assert display_name("alpha", "not json") == "alpha" and display_name(None) == ""
    eq = pl.DataFrame(schema={"ts": pl.Datetime("us", "UTC"), "equity": pl.Float64})
    assert RunSeries("0123456789abcdef", eq, strategy="sma_crossover", symbols="GOOG,AAPL").label == (
        "01234567 sma_crossover GOOG,AAPL")
    many = ",".join(f"S{i}" for i in range(20))
    assert RunSeries("0123456789abcdef", eq, strategy="alpha momentum_12_1", symbols=many).label == (
        "01234567 alpha momentum_12_1 20 symbols")


def test_a_walk_forward_says_what_its_trade_statistics_cover():
    a = run("a", [1, 2, 3], [100.0, 101.0, 102.0])
    wf = run("wf", [1, 2, 3], [100.0, 110.0, 124.0], kind="walk_forward",
             metrics={"n_trades": 15.0, "n_closed_trades": 7.0, "profit_factor": 0.055})
    notes = [w for w in compare([a, wf]).warnings if "walk_forward" in w]
    assert notes == ["run wf (walk_forward): its trade statistics cover the trades entered in its test windows "
                     "(7 of 15 closed); a position carried into a test window from its training period, or still "
                     "open at the window's end, counts in the returns only"]
    # other kinds, and a walk-forward without trade counts, say nothing of it
    assert not [w for w in compare([a, run("b", [1, 2, 3], [1.0, 2.0, 3.0])]).warnings if "trade statistics" in w]
    assert not [w for w in compare([a, run("wf", [1, 2, 3], [1.0, 2.0, 3.0], kind="walk_forward")]).warnings
                if "trade statistics" in w]
