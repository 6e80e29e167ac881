"""Flow run names, tags and the markdown report of a flow run's lake runs (flows._common):
pure functions of the flow's parameters / the runs' rows."""

from __future__ import annotations

import json
import re

import pytest

from flows._common import (
    MAX_NAME,
    artifact_key,
    flow_run_namer,
    flow_run_tags,
    label_flow_run,
    run_name,
    run_queries,
    runs_markdown,
    shorten,
)

SMA = {"strategy": "sma_crossover", "universe": ["SPY"], "params": {"fast": 10, "slow": 30}}
SYMBOLS = ["SPY", "QQQ", *(f"S{i:02d}" for i in range(18))]


def test_shorten_keeps_short_lists_and_counts_the_rest():
    assert shorten(["SPY"]) == "SPY"
    assert shorten(["SPY", "QQQ", "IWM"]) == "SPY, QQQ, IWM"
    assert shorten(SYMBOLS) == "SPY, QQQ +18"
    assert shorten(["A", "B", "C", "D"]) == "A, B +2"


def test_backtest_names():
    assert run_name("backtest", {"configs": SMA}) == "backtest sma_crossover SPY fast=10 slow=30"
    assert run_name("backtest", {"configs": [SMA]}) == "backtest sma_crossover SPY fast=10 slow=30"
    # the strategy's defaults fill what the config leaves out; floats print plainly
    assert run_name("backtest", {"configs": {**SMA, "params": {}}}) == "backtest sma_crossover SPY fast=10 slow=30"
    rsi = {"strategy": "rsi_mean_reversion", "universe": "sp500_stocks", "params": {"window": 7}}
    assert run_name("backtest", {"configs": rsi}) == (
        "backtest rsi_mean_reversion sp500_stocks window=7 oversold=30 exit_level=50 max_hold_bars=10")
    assert run_name("backtest", {"configs": {**SMA, "universe": SYMBOLS}}) == (
        "backtest sma_crossover SPY, QQQ +18 fast=10 slow=30")
    batch = [SMA, {**SMA, "universe": ["QQQ"]}, {**rsi, "universe": ["IWM", "DIA"]}, {**SMA, "universe": ["SPY"]}]
    assert run_name("backtest", {"configs": batch}) == (
        "backtest 4 configs: sma_crossover, rsi_mean_reversion on SPY, QQQ +2")
    # parameters the strategy rejects are still shown as given (the flow body reports them)
    assert run_name("backtest", {"configs": {**SMA, "params": {"fast": 50, "slow": 10}}}) == (
        "backtest sma_crossover SPY fast=50 slow=10")


def test_research_ingest_and_maintenance_names():
    sweep = {"config": SMA, "grid": {"fast": [5, 10, 15, 20], "slow": [30, 50, 100, 150, 200, 250]},
             "objective": "sharpe"}
    assert run_name("sweep", sweep) == "sweep sma_crossover SPY 24 combos"
    assert run_name("sweep", {**sweep, "objective": "calmar"}) == "sweep sma_crossover SPY 24 combos by calmar"
    assert run_name("sweep", {**sweep, "grid": {"fast": [5], "slow": [20]}}) == "sweep sma_crossover SPY 1 combo"
    assert run_name("optimize", {"config": {**SMA, "universe": SYMBOLS}, "space": {}, "objective": "sharpe",
                                 "n_trials": 50}) == "optimize sma_crossover SPY, QQQ +18 50 trials sharpe"
    assert run_name("walk_forward", {"config": SMA, "grid": {}, "train": "4y", "test": "1y", "step": None,
                                     "mode": "rolling"}) == "walk-forward sma_crossover SPY rolling train=4y test=1y"
    assert run_name("walk_forward", {"config": SMA, "grid": {}, "train": 500, "test": 100, "step": 50,
                                     "mode": "anchored"}) == (
        "walk-forward sma_crossover SPY anchored train=500 test=100 step=50")
    mc = {"config": SMA, "method": "trade_bootstrap", "n_paths": 1000, "seeds": None}
    assert run_name("monte_carlo", mc) == "monte-carlo sma_crossover SPY trade_bootstrap 4000 paths"
    assert run_name("monte_carlo", {**mc, "n_paths": 50, "seeds": [7]}) == (
        "monte-carlo sma_crossover SPY trade_bootstrap 50 paths")
    assert run_name("ingest", {"source": "samples", "symbols": None}) == "ingest samples"
    assert run_name("ingest", {"source": "samples", "symbols": ["GOOG"], "revise": True}) == (
        "ingest samples GOOG (revise)")
    assert run_name("ingest", {"source": "file", "path": "/data/es.csv", "symbol": "ES"}) == "ingest file ES"
    assert run_name("ingest", {"source": "file", "path": "/data/es.csv", "symbol": None}) == "ingest file es.csv"
    assert run_name("ingest", {"source": "file", "path": None, "symbol": None}) == "ingest file"
    assert run_name("maintenance", {"dry_run": False}) == "maintenance"
    assert run_name("maintenance", {"dry_run": True}) == "maintenance (dry run)"
    assert run_name("regression", {"goldens": "golden/goldens.json"}) == "regression goldens.json"
    assert run_name("regression", {"goldens": [{"run_id": "a"}, {"run_id": "b"}]}) == "regression 2 golden runs"
    assert run_name("demo", {}) == "demo"


@pytest.mark.parametrize("kind, params", [
    ("backtest", {"configs": None}),
    ("backtest", {"configs": "config.json"}),
    ("backtest", {"configs": {"strategy": "sma_crossover"}}),  # no universe
    ("backtest", {"configs": [SMA, 3]}),
    ("backtest", {"configs": []}),
    ("backtest", {}),
    ("backtest", None),
    ("sweep", {"config": SMA, "grid": {"fast": 5}}),  # not a list
    ("sweep", {"config": SMA, "grid": None}),
    ("regression", {"goldens": None}),
    ("optimize", {"config": []}),
    ("walk_forward", {"config": SMA}),
    ("monte_carlo", {"config": SMA, "method": "x", "n_paths": "many", "seeds": None}),
    ("ingest", {"source": "samples", "symbols": 7}),
])
def test_odd_parameters_give_the_plain_flow_name(kind, params):
    assert run_name(kind, params) == kind


def test_long_names_are_cut_and_the_namer_outside_a_flow_run_is_the_flow_name():
    long = run_name("backtest", {"configs": {**SMA, "strategy": "x" * 300}})
    assert len(long) == MAX_NAME and long.endswith("…")
    namer = flow_run_namer("walk_forward")
    assert callable(namer) and namer() == "walk_forward"  # no flow run: no parameters


def test_tags_name_kind_known_strategies_and_user():
    assert flow_run_tags("backtest", "sma_crossover", "ann") == ["kind:backtest", "strategy:sma_crossover", "user:ann"]
    many = ["sma_crossover", "rsi_mean_reversion", "sma_crossover", "nope", None, 3]
    assert flow_run_tags("backtest", many, "ann") == [
        "kind:backtest", "strategy:sma_crossover", "strategy:rsi_mean_reversion", "user:ann"]
    assert flow_run_tags("maintenance", None, None) == ["kind:maintenance"]
    assert label_flow_run("backtest", "sma_crossover") == []  # outside a flow run: nothing to tag


ROW = {"run_id": "3c8299fc8674a77f", "kind": "backtest", "status": "completed", "error": None,
       "strategy": "sma_crossover", "symbols": "SPY", "params": json.dumps({"fast": 10, "slow": 30}),
       "total_return": 0.123456, "cagr": None, "sharpe": 1.23456, "sortino": None, "max_drawdown": -0.085,
       "n_trades": 14}


def test_markdown_of_one_run_lists_its_figures_and_query():
    sql = run_queries("backtest", [ROW["run_id"]])
    assert sql == ["SELECT * FROM metrics WHERE run_id = '3c8299fc8674a77f'"]
    md = runs_markdown("backtest sma_crossover SPY fast=10 slow=30", [ROW],
                       details={"best by": "sharpe", "probability of ruin": 0.0123, "PBO": 0.25, "none": None},
                       queries=sql)
    assert md.startswith("# backtest sma_crossover SPY fast=10 slow=30\n")
    assert "Lake run `3c8299fc8674a77f` (backtest)" in md
    for line in ("| status | completed |", "| params | fast=10 slow=30 |", "| total return | 12.35% |",
                 "| Sharpe | 1.23 |", "| max drawdown | -8.50% |", "| trades | 14 |", "| best by | sharpe |",
                 "| probability of ruin | 1.23% |", "| PBO | 0.25 |"):
        assert line + "\n" in md
    assert "CAGR" not in md and "Sortino" not in md and "none" not in md  # figures the run lacks are left out
    assert "```\nbacklake sql \"SELECT * FROM metrics WHERE run_id = '3c8299fc8674a77f'\"\n```" in md


def test_markdown_of_a_batch_is_a_table_of_runs():
    failed = {**ROW, "run_id": "0c81304c52e2a2cf", "symbols": ",".join(SYMBOLS), "status": "failed",
              "error": "ValueError: a | b\ntraceback...", "total_return": None, "sharpe": None,
              "max_drawdown": None, "n_trades": None}
    rows = [ROW, failed]
    md = runs_markdown("backtest 2 configs: sma_crossover on SPY, QQQ +18", rows,
                       queries=run_queries("backtest", [r["run_id"] for r in rows]))
    lines = md.splitlines()
    head = lines.index(
        "| run id | status | strategy | symbols | params | total return | Sharpe | max drawdown | trades | error |")
    assert lines[head + 1] == "|---|---|---|---|---|---|---|---|---|---|"
    assert lines[head + 2] == (
        "| `3c8299fc8674a77f` | completed | sma_crossover | SPY | fast=10 slow=30 | 12.35% | 1.23 | -8.50% | 14 | – |")
    assert lines[head + 3] == (  # the error's first line, its pipe escaped
        "| `0c81304c52e2a2cf` | failed | sma_crossover | SPY, QQQ +18 | fast=10 slow=30 | – | – | – | – "
        "| ValueError: a \\| b |")
    assert "2 lake runs, 1 failed" in md
    assert "backlake sql \"SELECT * FROM runs WHERE run_id IN ('3c8299fc8674a77f', '0c81304c52e2a2cf')\"" in md
    many = runs_markdown("t", [{**ROW, "run_id": f"r{i}"} for i in range(7)], max_rows=5)
    assert many.count("| `r") == 5 and "and 2 more" in many


def test_artifact_keys_are_lowercase_letters_digits_and_dashes():
    assert artifact_key("backtest", ["3c8299fc8674a77f"]) == "backtest-3c8299fc8674a77f"
    assert artifact_key("walk_forward", ["ABC_1"]) == "walk-forward-abc-1"
    batch = artifact_key("backtest", ["b", "a", "c"])
    assert batch == artifact_key("backtest", ["c", "a", "b"]) and batch.startswith("backtest-3-runs-")
    for key in (batch, artifact_key("monte_carlo", ["x"])):
        assert re.fullmatch(r"[a-z0-9-]+", key)
