"""BacktestConfig: validation messages name the field, the value and the fix."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

import backlake as bl
from backlake.errors import ConfigError

BASE = {
    "strategy": "sma_crossover", "params": {"fast": 10, "slow": 30}, "universe": ["GOOG"],
    "start": "2004-08-19", "end": "2013-03-01", "timeframe": "1d", "initial_cash": 10000,
    "direction": "long_only",
    "sizing": {"method": "fixed_fraction", "fraction": 1.0, "whole_units": True},
    "costs": {"commission_bps": 10}, "execution": {"fill": "next_open"},
}


def cfg(**overrides):
    return bl.BacktestConfig.model_validate({**BASE, **overrides})


def test_reference_config_validates_with_its_meaning():
    c = cfg()
    assert c.params == {"fast": 10, "slow": 30}
    assert c.symbols == ["GOOG"]
    assert c.costs.commission_bps == 10
    assert c.execution.fill == "next_open"
    assert c.sizing.whole_units is True


def test_id_is_stable_and_depends_on_content():
    assert cfg().id == cfg().id
    assert cfg().id == bl.BacktestConfig.model_validate(json.loads(json.dumps(BASE))).id
    assert cfg().id != cfg(params={"fast": 11, "slow": 30}).id
    # defaults filled in: omitting params equals giving the defaults explicitly
    a = bl.BacktestConfig.model_validate({k: v for k, v in BASE.items() if k != "params"})
    assert a.params == {"fast": 10, "slow": 30}
    assert a.id == cfg().id


def test_config_is_frozen():
    c = cfg()
    with pytest.raises(ValidationError):
        c.initial_cash = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ({"costz": {"commission_bps": 1}}, ["unknown key 'costz'", "did you mean 'costs'"]),
        ({"costs": {"comission_bps": 5}}, ["costs", "unknown key 'comission_bps'", "did you mean 'commission_bps'"]),
        ({"strategy": "sma_crosover"}, ["unknown strategy 'sma_crosover'", "did you mean 'sma_crossover'"]),
        ({"params": {"fats": 5}}, ["params", "unknown parameter 'fats'", "did you mean 'fast'"]),
        ({"params": {"fast": 50, "slow": 20}}, ["fast=50 must be smaller than slow=20"]),
        ({"universe": []}, ["universe", "empty"]),
        ({"universe": "sp600"}, ["unknown universe 'sp600'"]),
        ({"initial_cash": -5}, ["initial_cash", "greater than 0", "-5"]),
        ({"start": "2020-13-01"}, ["start", "2020-13-01"]),
        ({"end": "not-a-date"}, ["end", "not-a-date"]),
        ({"start": "2013-01-01", "end": "2012-01-01"}, ["end=2012-01-01 is before start=2013-01-01"]),
        ({"timeframe": "1day"}, ["unknown timeframe '1day'", "did you mean '1d'"]),
        ({"execution": {"fill": "open"}}, ["execution.fill", "'open'"]),
    ],
)
def test_bad_input_gives_a_clear_message(bad, expected):
    with pytest.raises(ConfigError) as e:
        cfg(**bad)
    msg = str(e.value)
    for part in expected:
        assert part in msg, msg


def test_keyword_construction_raises_config_error_too():
    with pytest.raises(ConfigError, match="universe"):
        bl.BacktestConfig(strategy="sma_crossover", universe=[])


def test_named_universe_expands():
    c = cfg(universe="sp500_stocks")
    assert len(c.symbols) == 20 and "AAPL" in c.symbols


def test_list_strategies():
    assert "sma_crossover" in bl.list_strategies()
