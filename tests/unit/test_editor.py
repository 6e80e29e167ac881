"""The config editor: form <-> JSON round trip for every registered strategy (library mapping and
the page's controls), validation per field (closest-key suggestions), warnings, lake checks
against a real local lake, Edit-a-copy folding, the viewer gate and a submission."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from backlake import auth
from backlake.config import BacktestConfig
from backlake.config_check import check_config, config_from_values, fold, form_fields, form_values
from backlake.data.ingest import ingest_bars
from backlake.lake import Lake
from backlake.runs.checks import coverage
from backlake.settings import Settings
from backlake.strategies import get_strategy, list_strategies
from dashboards.editor import ConfigEditor, json_error, run_config_copy
from dashboards.identity import Identity
from dashboards.jobs import JobQueue
from tests.e2e.test_dashboard import goog_bars

# mode "none": the role is the one given here (no users file is read when the page acts)
ALICE = Identity(auth.User("alice", "researcher"), "none")
VERA = Identity(auth.User("vera", "viewer"), "none")


def busy_config(strategy: str) -> dict[str, Any]:
    """A config of ``strategy`` with a non-default value in every section and every parameter."""
    params: dict[str, Any] = {}
    for name, info in get_strategy(strategy).params_model.model_fields.items():
        if isinstance(info.default, bool) or not isinstance(info.default, int | float):
            continue  # names, choices, objects and unset options: set per strategy below
        params[name] = info.default + 1 if isinstance(info.default, int) else round(info.default + 0.01, 6)
    if strategy == "alpha":  # every kind of parameter: a name, an object, a choice, a flag, options
        params.update({"alpha": "low_volatility", "alpha_params": {"window": 42}, "method": "top_n",
                       "quantile": 0.25, "long_short": True, "net": 0.1, "max_weight": 0.4,
                       "rebalance": "weekly"})
    return {
        "strategy": strategy, "params": params, "universe": ["GOOG", "AAPL"], "start": "2006-01-03",
        "end": "2012-12-31", "timeframe": "1h" if get_strategy(strategy).intraday_only else "1d",
        "initial_cash": 25000.5, "direction": "long_short", "benchmark": "SP500", "seed": 7,
        "sizing": {"method": "volatility_target", "target_volatility": 0.2, "vol_lookback": 30, "whole_units": False},
        "costs": {"commission_bps": 7.5, "slippage_bps": 3, "impact": {"k": 0.2}, "participation_cap": 0.1,
                  "market": "us", "us": {"finra_taf_max": 9.0}, "india": {"gst_rate": 0.2}},
        "execution": {"fill": "close", "stop_loss": 0.05, "take_profit": 0.3, "max_hold_bars": 40},
    }


def editor(config: dict[str, Any] | None = None, identity: Identity = ALICE, jobs: JobQueue | None = None,
           lake: Lake | None = None) -> ConfigEditor:
    return ConfigEditor(identity, jobs, lake, config)


# -- form <-> JSON -------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", list_strategies())
def test_library_round_trip_keeps_every_value(strategy: str) -> None:
    raw = busy_config(strategy)
    BacktestConfig.model_validate(raw)  # the example is a valid config
    folded = fold(raw)
    values, issues = form_values(folded)
    assert issues == []
    assert config_from_values(values) == folded
    assert BacktestConfig.model_validate(config_from_values(values)) == BacktestConfig.model_validate(raw)
    # every parameter of the strategy has a control, generated from its params model
    assert {f.name for f in form_fields(strategy) if f.section == "params"} == set(
        get_strategy(strategy).params_model.model_fields)


def test_fold_drops_defaults_only() -> None:
    cfg = {"strategy": "sma_crossover", "params": {"fast": 10, "slow": 50}, "universe": ["GOOG"],
           "timeframe": "1d", "initial_cash": 10000, "costs": {"commission_bps": 0, "us": {"sec_fee_rate": 1e-5}},
           "execution": {"fill": "next_open"}, "start": None}
    assert fold(cfg) == {"strategy": "sma_crossover", "params": {"slow": 50}, "universe": ["GOOG"],
                         "costs": {"us": {"sec_fee_rate": 1e-5}}}
    # an optional section switched on with its defaults stays on
    assert fold({"strategy": "sma_crossover", "universe": "indices", "costs": {"impact": {}}})["costs"] == {
        "impact": {}}


@pytest.mark.parametrize("strategy", list_strategies())
def test_page_form_json_form_round_trip(strategy: str) -> None:
    raw = busy_config(strategy)
    ed = editor(raw)
    before = ed.values()
    assert ed.config() == fold(raw)
    ed.to_json()
    assert ed.mode == "json"
    assert json.loads(ed.json_text.value) == fold(raw)
    assert ed.to_form() is True
    assert ed.values() == before
    assert ed.config() == fold(raw)


def test_page_json_edit_reaches_the_form() -> None:
    ed = editor()
    ed.to_json()
    ed.json_text.value_input = json.dumps({
        "strategy": "rsi_vol_filter", "universe": "sp500_stocks", "params": {"lookback": 100},
        "costs": {"impact": {"k": 0.3}}, "start": "2010-01-04"})
    assert ed.to_form()
    assert ed._widgets["params.lookback"].value == 100
    assert ed._widgets["costs.impact"].value is True and ed._widgets["costs.impact.k"].value == 0.3
    assert ed._widgets["start"].value == dt.date(2010, 1, 4)
    assert ed.universe_kind.value == "sp500_stocks"
    # and the form's edits reach the JSON
    ed._widgets["params.window"].value = 21
    ed.to_json()
    assert json.loads(ed.json_text.value)["params"] == {"window": 21, "lookback": 100}


def test_invalid_json_blocks_the_switch_with_line_and_column() -> None:
    ed = editor()
    ed.to_json()
    ed.json_text.value_input = '{\n  "strategy": "sma_crossover",\n  "universe": ["GOOG"] "end": 1\n}'
    assert ed.to_form() is False
    assert ed.mode == "json" and ed.json_view.visible and not ed.form_view.visible
    assert "line 3, column 24" in ed.json_issue.object and "Expecting" in ed.json_issue.object
    assert ed.submit_button.disabled
    err = json.JSONDecodeError("Expecting value", "{\n  x", 4)
    assert "<pre>  x\n  ^</pre>" in json_error("{\n  x", err)


def test_json_the_form_cannot_show_blocks_the_switch_and_names_the_closest_key() -> None:
    ed = editor()
    ed.to_json()
    ed.json_text.value_input = json.dumps({"strategy": "sma_crossover", "universe": ["GOOG"],
                                           "costs": {"comision_bps": 5}})
    assert ed.to_form() is False
    assert "did you mean &#x27;commission_bps&#x27;" in ed.json_issue.object
    ed.json_text.value_input = json.dumps({"strategy": "sma_crossover", "universe": ["GOOG"], "params": {"fast": "5"}})
    assert ed.to_form() is False and "params.fast" in ed.json_issue.object


# -- validation ----------------------------------------------------------------------------------
def test_errors_per_field_with_closest_key() -> None:
    report = check_config({
        "strategy": "sma_crossover", "universe": "sp500", "params": {"fast": 50, "slw": 3},
        "direction": "sideways", "costs": {"comision_bps": 5, "slippage_bps": -1, "impact": {"k": -1}},
        "timeframe": "1dd", "initial_cash": "10000",
    })
    assert not report.ok and report.config is None
    by_field = {i.field: i.message for i in report.errors}
    assert "did you mean 'commission_bps'" in by_field["costs.comision_bps"]
    assert "did you mean 'slow'" in by_field["params.slw"]
    assert "must be smaller than slow=30" in by_field["params.fast"]
    assert "did you mean 'sp500_stocks'" in by_field["universe"] or "unknown universe" in by_field["universe"]
    assert "long_only" in by_field["direction"] and "'sideways'" in by_field["direction"]
    assert "greater than or equal to 0" in by_field["costs.slippage_bps"]
    assert "costs.impact.k" in by_field
    assert "did you mean '1d'" in by_field["timeframe"]
    assert "not the string" in by_field["initial_cash"]
    assert check_config({"strategy": "smacrossover", "universe": ["GOOG"]}).errors[0].field == "strategy"
    assert check_config({"strategy": "sma_crossover", "universe": ["GOOG"], "start": "2020-02-01",
                         "end": "2020-01-01"}).errors_at("end")
    assert check_config([1, 2]).errors[0].field == ""


def test_warnings_do_not_block() -> None:
    report = check_config({"strategy": "sma_crossover", "universe": ["GOOG"], "start": "2010-01-04",
                           "end": "2010-06-30"})
    assert report.ok and report.config is not None
    assert {w.field for w in report.warnings} == {"costs", "start"}
    assert "no costs set" in report.warnings_at("costs")[0].message
    assert "under one year" in report.warnings_at("start")[0].message
    full = check_config({"strategy": "sma_crossover", "universe": ["GOOG"], "costs": {"commission_bps": 5}})
    assert full.ok and full.warnings == ()


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lake = Lake(Settings(lake_uri=str(tmp_path_factory.mktemp("editor") / "lake")))
    ingest_bars(lake, goog_bars())
    return lake


def test_lake_checks_and_data_warnings(lake: Lake) -> None:
    costs = {"commission_bps": 5}
    missing = check_config({"strategy": "sma_crossover", "universe": ["GOOGL"], "costs": costs}, lake=lake)
    assert not missing.ok and missing.errors[0].field == "universe"
    assert "did you mean 'GOOG'" in missing.errors[0].message
    # the lake is asked even while another section has an error, not while a field it reads has one
    both = check_config({"strategy": "sma_crossover", "universe": ["GOOGL"], "params": {"fast": 0}}, lake=lake)
    assert {i.field for i in both.errors} == {"params.fast", "universe"}
    bad_dates = check_config({"strategy": "sma_crossover", "universe": ["GOOGL"], "start": "2020-13-01"}, lake=lake)
    assert {i.field for i in bad_dates.errors} == {"start"}
    hourly = check_config({"strategy": "sma_crossover", "universe": ["GOOG"], "timeframe": "1h", "costs": costs},
                          lake=lake)
    assert hourly.errors[0].field == "timeframe" and "GOOG has 1d bars" in hourly.errors[0].message
    outside = check_config({"strategy": "sma_crossover", "universe": ["GOOG"], "start": "1990-01-01",
                            "end": "1995-01-01", "costs": costs}, lake=lake)
    assert outside.errors[0].field == "start"
    # GOOG's history starts in August 2004; its days without bars on 2007-01-02 (a national day
    # of mourning) and 2012-10-29/30 (Hurricane Sandy) are NYSE closures, not gaps
    early = check_config({"strategy": "sma_crossover", "universe": ["GOOG"], "start": "2000-01-03",
                          "end": "2012-12-31", "costs": costs}, lake=lake)
    assert early.ok
    texts = [w.message for w in early.warnings_at("universe")]
    assert any("GOOG starts 2004-08-19" in t for t in texts), texts
    assert not any("without bars" in t for t in texts), texts
    # a session without a bar is a gap: drop one Tuesday from a copy of GOOG
    holed = Lake(Settings(lake_uri=str(lake.settings.root) + "-holed"))
    ingest_bars(holed, goog_bars().filter(pl.col("ts").dt.date() != dt.date(2010, 3, 9)))
    gap = check_config({"strategy": "sma_crossover", "universe": ["GOOG"], "start": "2010-01-04",
                        "end": "2011-12-30", "costs": costs}, lake=holed)
    texts = [w.message for w in gap.warnings_at("universe")]
    assert any("1 stretch(es) without bars" in t and "2010-03-08 to 2010-03-10" in t for t in texts), texts
    clean = check_config({"strategy": "sma_crossover", "universe": ["GOOG"], "start": "2007-01-03",
                          "end": "2011-12-30", "costs": costs}, lake=lake)
    assert clean.ok and clean.warnings == ()
    # a short period counted on the data: the config sets only start, near the data's end
    short = check_config({"strategy": "sma_crossover", "universe": ["GOOG"], "start": "2012-09-01", "costs": costs},
                         cov=coverage(lake, ["GOOG"]))
    assert short.ok and short.warnings_at("start")


def test_page_shows_issues_next_to_fields(lake: Lake) -> None:
    ed = editor(lake=lake, jobs=JobQueue(lambda job, s, c: ("completed", "x", "")))
    assert ed.report is not None and ed.report.ok and not ed.submit_button.disabled
    ed._widgets["params.fast"].value = 0
    assert "greater than or equal to 1" in ed._issue_panes["params.fast"].object
    assert ed.submit_button.disabled and "1 error" in ed.summary.object
    ed._widgets["params.fast"].value = 12
    assert ed._issue_panes["params.fast"].object == "" and not ed.submit_button.disabled
    ed.symbols.value = "GOOG, GOOGL"
    assert "did you mean &#x27;GOOG&#x27;" in ed._issue_panes["universe"].object
    ed.symbols.value = "GOOG"
    ed._widgets["costs.commission_bps"].value = 0.0
    ed._widgets["costs.slippage_bps"].value = 0.0
    assert "no costs set" in ed._issue_panes["costs"].object and not ed.submit_button.disabled
    ed._widgets["strategy"].value = "macd_crossover"  # the parameter controls follow the strategy
    assert {p for p in ed._widgets if p.startswith("params.")} == {"params.fast", "params.slow", "params.signal"}
    assert ed.config()["strategy"] == "macd_crossover" and "params" not in ed.config()


def test_edit_a_copy_folds_defaults() -> None:
    stored = BacktestConfig.model_validate({"strategy": "sma_crossover", "params": {"fast": 15, "slow": 60},
                                            "universe": ["GOOG"], "costs": {"commission_bps": 10}})
    copy = run_config_copy(stored.model_dump_json())
    assert copy == {"strategy": "sma_crossover", "params": {"fast": 15, "slow": 60}, "universe": ["GOOG"],
                    "costs": {"commission_bps": 10}}
    assert run_config_copy("not json") is None
    ed = editor(copy)
    assert ed._widgets["params.fast"].value == 15 and ed.config() == copy


# -- roles and submitting ------------------------------------------------------------------------
def test_viewer_sees_the_form_disabled_with_the_reason() -> None:
    ed = editor(identity=VERA, jobs=JobQueue(lambda job, s, c: ("completed", "x", "")))
    try:
        assert ed.submit_button.disabled and ed.denied.visible
        assert "needs the researcher or admin role" in ed.denied.object
        assert all(w.disabled for w in ed._widgets.values()) and ed.json_text.disabled
        assert ed.submit() is None  # and asking anyway is refused by the gate
    finally:
        ed.jobs.shutdown()


def test_submit_follows_the_job_and_links_the_run(tmp_path: Path) -> None:
    queue = JobQueue(lambda job, settings, cancelled: ("completed", "run123", ""),
                     Settings(lake_uri=str(tmp_path / "lake")))
    try:
        ed = editor(jobs=queue)
        ed._widgets["params.fast"].value = 0
        assert ed.submit() is None and "fix the errors" in ed.feedback.object
        ed._widgets["params.fast"].value = 5
        job = ed.submit()
        assert job is not None and job.owner == "alice" and job.config.params["fast"] == 5
        deadline = time.monotonic() + 10
        while queue.get(job.id).active:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        ed.poll()
        assert "completed" in ed.job_pane.object and "./app?run=run123" in ed.job_pane.object
    finally:
        queue.shutdown()


def test_the_runs_page_form_starts_from_the_editors_costs() -> None:
    """Both submit forms start from one config: the same strategy run from either costs the same."""
    from backlake.config import BacktestConfig
    from dashboards.editor import DEFAULT_CONFIG
    from dashboards.runs import EXAMPLE_CONFIG

    example, default = BacktestConfig.model_validate(EXAMPLE_CONFIG), BacktestConfig.model_validate(DEFAULT_CONFIG)
    assert example.costs == default.costs and example.costs.slippage_bps > 0
    assert example.model_dump() == default.model_dump()  # timeframe and cash as the defaults too
