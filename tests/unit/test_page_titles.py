"""How the pages title a run: an alpha backtest by its alpha (``alpha momentum_12_1``), like the
compare legends and the detail charts, not by the registry name every alpha run shares."""

from __future__ import annotations

import json

from dashboards.report import report_title
from dashboards.runs import RunDetail

ALPHA = {"run_id": "89ada29e18235140", "kind": "alpha", "strategy": "alpha", "timeframe": "1d", "status": "completed",
         "symbols": ",".join(f"S{i:02d}" for i in range(20)),
         "params": json.dumps({"alpha": "momentum_12_1", "alpha_params": {"lookback": 252, "skip": 21},
                               "method": "zscore"})}
SMA = {"run_id": "41b3328c1843142d", "kind": "backtest", "strategy": "sma_crossover", "timeframe": "1d",
       "status": "completed", "symbols": "GOOG", "params": json.dumps({"fast": 10, "slow": 30})}


def test_run_detail_title_names_the_alpha() -> None:
    assert RunDetail.title(ALPHA) == "Alpha · alpha momentum_12_1 on 20 symbols (1d)"
    assert RunDetail.title(SMA) == "Backtest · sma_crossover on GOOG (1d)"
    # params unreadable or without an alpha: the registry name
    assert RunDetail.title({**ALPHA, "params": "not json"}) == "Alpha · alpha on 20 symbols (1d)"


def test_report_title_names_the_alpha() -> None:
    assert report_title(ALPHA) == "alpha momentum_12_1 on S00, S01, S02 and 17 more — alpha"
    assert report_title({**SMA, "kind": "walk_forward"}) == "sma_crossover on GOOG — walk forward"


def test_params_read_as_the_json_config_without_unset_ones() -> None:
    from dashboards.runs import format_params

    assert format_params(ALPHA["params"]) == (
        'alpha=momentum_12_1, alpha_params={"lookback": 252, "skip": 21}, method=zscore')
    stored = json.dumps({"method": "top_n", "n": None, "long_short": True, "max_weight": None, "gross": 1.0})
    assert format_params(stored) == "method=top_n, long_short=true, gross=1.0"
    assert format_params(SMA["params"]) == "fast=10, slow=30"
    assert format_params("") == "" and format_params("not json") == "not json" and format_params("[1, 2]") == "[1, 2]"
