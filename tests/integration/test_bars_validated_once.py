"""Bars are validated once: by ingest, at the lake boundary. The engine checks bars handed to it
directly (``check_bars``: repeated timestamps, missing / non-finite / non-positive prices) and
skips that check for bars the run protocol read from the lake (``validated=True``)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

import backlake.data.ingest as ingest_mod
import backlake.engine.core as core
from backlake.config import BacktestConfig
from backlake.data.ingest import ingest_bars
from backlake.data.synthetic import synthetic_bars
from backlake.data.validate import check_bars
from backlake.engine import run_backtest
from backlake.errors import DataValidationError
from backlake.lake import Lake
from backlake.research.optimize import optimize
from backlake.research.sweep import sweep
from backlake.runs import jobs
from backlake.runs.backtest import commit_outcomes, execute_run, plan_runs
from backlake.runs.sweep import plan_sweep, run_chunk
from backlake.settings import Settings

T0 = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def frame(symbols: list[str], closes: list[float]) -> pl.DataFrame:
    n = len(closes)
    return pl.DataFrame({
        "symbol": [s for s in symbols for _ in range(n)],
        "ts": [T0 + dt.timedelta(days=i) for _ in symbols for i in range(n)],
        **{c: [float(x) if x is not None else None for _ in symbols for x in closes]
           for c in ("open", "high", "low", "close")},
        "volume": 1000.0,
    }, schema_overrides={"ts": pl.Datetime("us", "UTC")})


# -- check_bars: the one engine-side check ---------------------------------------------------------
def test_check_bars_accepts_clean_and_empty_frames():
    check_bars(frame(["A", "B"], [1.0, 2.0, 3.0]))
    check_bars(frame(["A"], [1.0]).clear())


@pytest.mark.parametrize("bad, count", [(float("nan"), 1), (None, 1), (0.0, 1), (-2.0, 1), (float("inf"), 1)])
def test_check_bars_names_the_symbol_and_counts_bad_prices(bad, count):
    rows = pl.concat([frame(["A"], [1.0, 2.0, 3.0]), frame(["B"], [1.0, bad, 3.0])])
    with pytest.raises(DataValidationError, match=rf"^B has {count} bar\(s\) with missing or non-positive prices"):
        check_bars(rows)


def test_check_bars_names_the_first_symbol_with_a_repeated_timestamp():
    rows = frame(["A", "B"], [1.0, 2.0, 3.0])
    rows = pl.concat([rows, rows.filter(pl.col("symbol") == "B").head(1)])
    with pytest.raises(DataValidationError, match=r"^B has duplicate timestamps"):
        check_bars(rows)
    # the same timestamp under two symbols is not a repeat
    check_bars(frame(["A", "B"], [1.0, 2.0]))


@pytest.mark.parametrize("universe", [["A"], ["A", "B"]])
def test_direct_bars_are_checked_by_the_engine(universe):
    cfg = BacktestConfig.model_validate({"strategy": "sma_crossover", "params": {"fast": 2, "slow": 3},
                                         "universe": universe})
    good = frame(universe, [10.0 + i % 5 for i in range(30)])
    run_backtest(cfg, good)
    doubled = pl.concat([good, good.filter(pl.col("symbol") == universe[-1]).slice(4, 1)])
    with pytest.raises(DataValidationError, match=f"{universe[-1]} has duplicate timestamps"):
        run_backtest(cfg, doubled)
    broken = good.with_columns(pl.when((pl.col("symbol") == universe[0]) & (pl.col("ts") == T0 + dt.timedelta(days=7)))
                               .then(float("inf")).otherwise(pl.col("high")).alias("high"))
    with pytest.raises(DataValidationError, match=f"{universe[0]} has 1 bar"):
        run_backtest(cfg, broken)


# -- lake bars: validated by ingest, not again ------------------------------------------------------
@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls = {"ingest": 0, "engine": 0}
    real_validate, real_check = ingest_mod.validate_bars, core.check_bars

    def validate(*a, **k):
        calls["ingest"] += 1
        return real_validate(*a, **k)

    def check(rows):
        calls["engine"] += 1
        return real_check(rows)

    monkeypatch.setattr(ingest_mod, "validate_bars", validate)
    monkeypatch.setattr(core, "check_bars", check)
    return calls


def test_lake_bars_are_validated_once_at_ingest(local_settings: Settings, counted: dict[str, int]):
    lake = Lake(local_settings)
    ingest_bars(lake, synthetic_bars(("SYN0", "SYN1", "SYN2"), periods=300, seed=4))
    assert counted == {"ingest": 1, "engine": 0}

    single = BacktestConfig.model_validate({"strategy": "sma_crossover", "params": {"fast": 5, "slow": 20},
                                            "universe": ["SYN0"], "benchmark": "SYN2"})
    universe = BacktestConfig.model_validate({"strategy": "sma_crossover", "params": {"fast": 5, "slow": 20},
                                              "universe": ["SYN0", "SYN1"]})
    planned = plan_runs(lake, [single, universe])
    outcomes = [execute_run(lake, p) for p in planned]
    assert all(o.error is None for o in outcomes)
    commit_outcomes(lake, outcomes)
    plan = plan_sweep(lake, universe, {"fast": [5, 10], "slow": [20, 30]})
    assert run_chunk(lake, plan, 0).height > 0
    job = jobs.plan_optimize(lake, single, {"fast": [5, 10], "slow": [20, 30]}, sampler="grid", n_trials=4)
    assert job.plan.validated
    assert counted == {"ingest": 1, "engine": 0}  # nothing read from the lake was checked again

    # the same rows handed in directly are checked by the engine, and give the same results
    bars = lake.read("bars").drop("ingested_at")
    direct = run_backtest(single, bars)
    assert counted["engine"] == 2  # the universe's rows and the benchmark's
    assert direct.metrics == outcomes[0].result.metrics
    assert sweep(universe, {"fast": [5, 10], "slow": [20, 30]}, bars).equals(
        run_chunk(lake, plan, 0).drop("trial"))
    optimize(single, {"fast": [5, 10], "slow": [20, 30]}, bars, sampler="grid")
    assert counted["engine"] > 3
