"""Alpha runs under the run protocol (``backlake.runs.alpha``), on a real local lake: idempotent,
pinned to the bars they read, point-in-time fills, replayable at their pinned versions,
attribution stored once, bad input refused before any work with one line."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest

from backlake.data.ingest import ingest_bars
from backlake.data.samples import load_samples
from backlake.data.synthetic import synthetic_bars
from backlake.engine import run_backtest
from backlake.errors import ConfigError
from backlake.lake import Lake
from backlake.runs import alpha as ra
from backlake.runs.goldens import add_golden, goldens_from_lake
from backlake.runs.jobs import Job
from backlake.runs.regression import regress
from backlake.settings import Settings

SYMBOLS = tuple(f"S{i}" for i in range(8))
#: 4 years of daily bars from 2010: inside the shipped Fama-French factors (to 2017-03)
BARS = dict(start="2010-01-04", periods=1000, seed=11, correlation=0.2, vol=0.3)


@pytest.fixture
def lake(local_settings: Settings) -> Lake:
    lk = Lake(local_settings)
    ingest_bars(lk, synthetic_bars(SYMBOLS, **BARS))
    return lk


def cfg(name: str = "momentum_12_1", params: dict | None = None, **weights):
    default = {"lookback": 126, "skip": 5} if name == "momentum_12_1" else {}
    return ra.alpha_config(name, default if params is None else params, universe=list(SYMBOLS),
                           weights=weights or {"rebalance": "weekly"}, costs={"commission_bps": 5})


def run(lake: Lake, *configs, **kw) -> list[str]:
    jobs = ra.plan_alphas(lake, list(configs), **kw)
    ra.run_alphas(lake, jobs, created_by="tester")
    return [j.run_id for j in jobs]


def versions(lake: Lake) -> dict[str, int]:
    return {t: lake.version(t) for t in ("runs", "run_events", "equity", "trades", "metrics", "ic", "weights")}


def test_alpha_run_stores_everything_once(lake: Lake):
    (rid,) = run(lake, cfg(), horizons=[1, 5, 21], n_quantiles=4)
    runs = lake.read("runs")
    assert runs.height == 1 and runs["kind"][0] == "alpha" and runs["strategy"][0] == "alpha"
    stored = json.loads(runs["config"][0])
    assert stored["horizons"] == [1, 5, 21] and stored["n_quantiles"] == 4 and "together" not in stored
    ic = lake.read("ic", where={"run_id": rid})
    assert sorted(ic["horizon"].unique().to_list()) == [1, 5, 21] and ic["date"].dtype == pl.Date
    assert ic.filter(pl.col("horizon") == 1).height > 700  # one row per date with an IC
    w = lake.read("weights", where={"run_id": rid})
    per_date = w.group_by("date").agg(pl.len().alias("n"), pl.col("weight").abs().sum().alias("gross"),
                                      pl.col("weight").sum().alias("net"))
    assert (per_date["n"] == len(SYMBOLS)).all()  # every symbol at every rebalance date
    held = per_date.filter(pl.col("gross") > 0)
    assert np.allclose(held["gross"], 1.0) and np.allclose(held["net"], 0.0, atol=1e-12)  # zscore: unit gross
    assert w["date"].n_unique() < 230  # weekly: ~200 rebalances in 1000 days
    m = lake.read("metrics", where={"run_id": rid})
    segments = set(m["segment"].to_list())
    assert {"full", "ic:h1", "ic:h5", "ic:h21", "quantiles:h1", "quantiles:h21", "decay"} <= segments
    q = m.filter(pl.col("segment") == "quantiles:h5")
    assert sorted(q["name"].to_list()) == ["q1", "q2", "q3", "q4"]
    ic5 = dict(m.filter(pl.col("segment") == "ic:h5").select("name", "value").iter_rows())
    assert ic5["mean_ic"] == pytest.approx(ic.filter(pl.col("horizon") == 5)["ic"].mean(), abs=1e-12)
    assert ic5["p_value"] is not None and "p_bonferroni" not in ic5  # one alpha: nothing to adjust
    assert 0 < ic5["turnover"] < 2 and ic5["coverage"] > 0.5
    decay = dict(m.filter(pl.col("segment") == "decay").select("name", "value").iter_rows())
    assert set(decay) == {"half_life", *(f"mean{k}_ic_h{h}" for k in ("", "_rank") for h in (1, 5, 21))}
    # the backtest is the engine's, on the same config: equity, trades, the full segment
    res = run_backtest(cfg(), lake.read("bars"))
    full = dict(m.filter(pl.col("segment") == "full").select("name", "value").iter_rows())
    assert full["sharpe"] == pytest.approx(res.metrics["sharpe"], abs=1e-12)
    assert lake.read("trades", where={"run_id": rid}).height == res.trades.height > 0
    # the same request again: the same run, nothing written
    before = versions(lake)
    assert run(lake, cfg(), horizons=[21, 5, 1], n_quantiles=4) == [rid]
    assert versions(lake) == before and lake.read("runs").height == 1


def test_several_alphas_get_adjusted_pvalues(lake: Lake):
    a, b = cfg(), cfg("low_volatility", {"window": 42})
    ids = run(lake, a, b, horizons=[1, 5])
    alone = run(lake, a, horizons=[1, 5])
    assert alone[0] not in ids  # evaluated alone it is another run (its p-values are its own)
    m = lake.read("metrics", where={"segment": "ic:h5"})
    vals = {r: dict(m.filter(pl.col("run_id") == r).select("name", "value").iter_rows()) for r in ids + alone}
    for r in ids:
        v = vals[r]
        assert v["p_bonferroni"] == pytest.approx(min(1.0, 2 * v["p_value"]), abs=1e-12)
        assert v["p_value"] <= v["p_bh"] <= v["p_bonferroni"]
    assert "p_bonferroni" not in vals[alone[0]] and vals[alone[0]]["p_value"] == vals[ids[0]]["p_value"]
    summary = ra.stored_summary(lake, ids)
    assert summary["run_id"].to_list() == [ids[0], ids[0], ids[1], ids[1]] and summary["horizon"].to_list() == [
        1, 5, 1, 5]


def test_pinned_run_id_survives_other_symbols(lake: Lake):
    (rid,) = run(lake, cfg())
    ingest_bars(lake, synthetic_bars(("OTHER",), **BARS))  # a new bars version, not a row the run reads
    (job,) = ra.plan_alphas(lake, [cfg()])
    assert job.run_id == rid and job.done
    # a revised bar the run reads is another run
    bar = lake.read("bars", where={"symbol": "S3"}).sort("ts").slice(500, 1)
    ingest_bars(lake, bar.with_columns(pl.col("close") * 1.01, pl.col("high") * 1.01), revise=True)
    (job2,) = ra.plan_alphas(lake, [cfg()])
    assert job2.run_id != rid and not job2.done


def test_alpha_backtest_fills_are_point_in_time(lake: Lake):
    """Changing every bar after date t changes no score, weight, fill or equity value up to t."""
    bars = lake.read("bars")
    t = bars["ts"].unique().sort()[600]
    rng = np.random.default_rng(3)
    later = pl.col("ts") > t
    noise = pl.Series(rng.uniform(0.7, 1.3, bars.height))
    changed = bars.with_columns([pl.when(later).then(pl.col(c) * noise).otherwise(pl.col(c)).alias(c)
                                 for c in ("open", "high", "low", "close")])
    for c in (cfg(), cfg("reversal_5d", {}, method="top_n", n=2, long_short=True, rebalance="daily")):
        a, b = run_backtest(c, bars), run_backtest(c, changed)
        ea = a.equity.filter(pl.col("ts") <= t)
        eb = b.equity.filter(pl.col("ts") <= t)
        assert ea.height == 601 and ea.equals(eb)  # cash, exposure, costs: every fill up to t
        assert not a.equity.equals(b.equity)  # the change after t does matter
        cols = ["symbol", "direction", "qty", "entry_ts", "entry_price", "exit_ts", "exit_price", "pnl", "fees"]
        ta = a.trades.filter(pl.col("exit_ts") <= t).select(cols)  # trades closed by t: every fill identical
        tb = b.trades.filter(pl.col("exit_ts") <= t).select(cols)
        assert ta.height > 0 and ta.equals(tb)
        jobs = [Job(**{**j.__dict__, "bars": frame}) for j, frame in
                zip(ra.plan_alphas(lake, [c]) * 2, (bars, changed), strict=True)]
        ia, ib = (ra.alpha_inputs(j) for j in jobs)
        np.testing.assert_array_equal(ia.scores[:601], ib.scores[:601])
        np.testing.assert_array_equal(ia.weights[:601], ib.weights[:601])


def test_replay_at_pinned_versions_reproduces_metrics(lake: Lake):
    (rid,) = run(lake, cfg(method="top_n", n=3, rebalance="monthly"))
    ingest_bars(lake, synthetic_bars(("LATER",), **BARS))  # the lake moves on
    assert add_golden(lake, rid, note="alpha reference") == "added"  # an alpha run can be a golden
    report = regress(lake, goldens_from_lake(lake))
    assert report.height > 10 and report["ok"].all() and set(report["run_id"]) == {rid}
    assert report.filter(pl.col("metric") == "sharpe")["abs_diff"][0] == 0.0


def test_attribution_is_stored_once_and_replaced_on_change(lake: Lake):
    (rid,) = run(lake, cfg())
    first = ra.attribute_run(lake, rid, "ff3", window=24)
    assert first.written and first.metrics["n_obs"] >= 40 and first.metrics["window"] == 24
    assert lake.read("factors").height > 3000  # the shipped factors, ingested on first use
    seg = lake.read("metrics", where={"run_id": rid, "segment": "attribution:ff3"})
    assert set(seg["name"]) >= {"alpha", "alpha_t", "beta_MktRF", "beta_SMB", "beta_HML", "r2", "up_alpha",
                                "down_beta_MktRF"}
    exp = lake.read("factor_exposures", where={"run_id": rid})
    assert exp.height == first.exposures.height > 0 and set(exp["factor"]) == {"MktRF", "SMB", "HML"}
    before = {t: lake.version(t) for t in ("metrics", "factor_exposures", "factors")}
    again = ra.attribute_run(lake, rid, "ff3", window=24)
    assert not again.written and {t: lake.version(t) for t in before} == before
    wider = ra.attribute_run(lake, rid, "ff3", window=36)  # another window: the rows are replaced
    assert wider.written
    exp = lake.read("factor_exposures", where={"run_id": rid, "model": "ff3"})
    assert exp.height == wider.exposures.height < first.exposures.height
    assert exp.select("date", "factor").is_unique().all()
    seg = lake.read("metrics", where={"run_id": rid, "segment": "attribution:ff3"})
    assert seg["name"].is_unique().all() and dict(seg.select("name", "value").iter_rows())["window"] == 36
    carhart = ra.attribute_run(lake, rid, "carhart4")
    assert "beta_Mom" in carhart.metrics
    with pytest.raises(ConfigError, match="unknown factor model 'ff4'"):
        ra.attribute_run(lake, rid, "ff4")
    with pytest.raises(ConfigError, match="is not in the lake"):
        ra.attribute_run(lake, "nope", "ff3")


def test_attribution_window_longer_than_the_months_is_refused_and_writes_nothing(lake: Lake):
    (rid,) = run(lake, cfg())
    first = ra.attribute_run(lake, rid, "ff3", window=24)
    before = {t: lake.version(t) for t in ("metrics", "factor_exposures")}
    n = int(first.metrics["n_obs"] or 0)
    with pytest.raises(ConfigError) as exc:
        ra.attribute_run(lake, rid, "ff3", window=n + 1)
    assert f"window={n + 1}: run {rid} has {n} month(s) in common" in one_line(exc)
    assert {t: lake.version(t) for t in before} == before  # the 24-month exposures are kept
    assert lake.read("factor_exposures", where={"run_id": rid}).height == first.exposures.height


def test_attribution_of_an_intraday_run_uses_one_return_per_day(local_settings: Settings):
    lake = Lake(local_settings)
    syms = ["H0", "H1", "H2", "H3", "H4"]  # 7 hourly bars a session day, 2010-01 .. 2011-06
    ingest_bars(lake, synthetic_bars(syms, start="2010-01-04", periods=2600, timeframe="1h", seed=3, vol=0.3))
    hourly = ra.alpha_config("reversal_5d", universe=syms, timeframe="1h")
    with pytest.raises(ConfigError) as exc:  # an alpha run is daily: refused in one line, not a traceback
        ra.plan_alphas(lake, [hourly])
    assert "timeframe='1h': an alpha scores each symbol once per date" in one_line(exc)
    from backlake.config import BacktestConfig
    from backlake.runs.backtest import run_submitted

    sma = BacktestConfig.model_validate({"strategy": "sma_crossover", "universe": ["H0"], "timeframe": "1h",
                                         "params": {"fast": 5, "slow": 20}})
    status, rid, msg = run_submitted(lake, sma, created_by="tester")
    assert status == "completed" and rid, msg
    eq = lake.read("equity", where={"run_id": rid})
    assert eq.height > eq["ts"].dt.date().n_unique() > 300  # several equity points a day
    res = ra.attribute_run(lake, rid, "ff3", window=12)
    assert res.written and res.metrics["n_obs"] is not None and res.metrics["n_obs"] >= 12
    daily = eq.sort("ts").group_by(pl.col("ts").dt.date().alias("date"), maintain_order=True).agg(
        pl.col("equity").last())
    from backlake.alpha.attribution import monthly_returns

    months = monthly_returns(daily.select("date", (pl.col("equity") / pl.col("equity").shift(1) - 1)
                                          .alias("ret")).drop_nulls())
    assert res.metrics["n_obs"] == months.filter(pl.col("date") <= dt.date(2017, 3, 31)).height


def test_plain_backtest_config_of_the_alpha_strategy_is_checked_before_it_runs(local_settings: Settings):
    """`backlake backtest` / the editor / the backtest flow (check_configs): an alpha config whose
    short side the engine would drop, or on intraday bars, is refused in one line."""
    from backlake.config import BacktestConfig
    from backlake.runs.checks import check_configs

    lake = Lake(local_settings)
    ingest_bars(lake, synthetic_bars(list(SYMBOLS[:4]), start="2010-01-04", periods=300, seed=2))
    ingest_bars(lake, synthetic_bars(["H0", "H1", "H2"], start="2010-01-04", periods=300, timeframe="1h", seed=3))
    base = {"strategy": "alpha", "universe": list(SYMBOLS[:4]), "params": {"alpha": "reversal_5d"}}
    with pytest.raises(ConfigError) as exc:  # zscore weights, default direction long_only
        check_configs(lake, [BacktestConfig.model_validate(base)])
    assert "direction='long_only': zscore weights have a short side" in one_line(exc)
    with pytest.raises(ConfigError) as exc:
        check_configs(lake, [BacktestConfig.model_validate(
            {**base, "direction": "long_short", "universe": ["H0", "H1", "H2"], "timeframe": "1h"})])
    assert "timeframe='1h': an alpha scores each symbol once per date" in one_line(exc)
    check_configs(lake, [BacktestConfig.model_validate({**base, "direction": "long_short"})])  # fine
    check_configs(lake, [BacktestConfig.model_validate(
        {**base, "params": {"alpha": "reversal_5d", "method": "top_n", "n": 2}})])  # long-only weights: fine


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    return text


@pytest.mark.parametrize(("make", "kw", "fragment"), [
    (lambda: cfg("momentum_12"), {}, "unknown alpha 'momentum_12'; did you mean 'momentum_12_1'?"),
    (lambda: cfg(params={"lookbak": 100}), {}, "unknown parameter 'lookbak'; did you mean 'lookback'?"),
    (lambda: cfg(), {"horizons": [0, 5]}, "horizon 0 is not a whole number of trading days > 0"),
    (lambda: cfg(), {"horizons": [5, -1]}, "horizon -1 is not a whole number"),
    (lambda: cfg(), {"n_quantiles": 10}, "has 8 symbol(s), fewer than n_quantiles=10"),
    (lambda: cfg(method="top_n", n=9), {}, "weights.n=9 needs 9 symbols, the universe has 8"),
    (lambda: ra.alpha_config("momentum_12_1", universe=list(SYMBOLS), start="2020-01-01"), {},
     "move the dates inside that range"),
    (lambda: ra.alpha_config("momentum_12_1", universe=list(SYMBOLS), start="2010-01-04", end="2010-06-30"), {},
     "needs 252 day(s) of history before its first score"),
    (lambda: ra.alpha_config("momentum_12_1", universe=[*SYMBOLS[:4], "NOPE"]), {}, "'NOPE' is not in the lake"),
    # two names: quantiles=2 fits, but a date's IC needs 3 names (the run would hold no IC at all)
    (lambda: ra.alpha_config("reversal_5d", universe=list(SYMBOLS[:2])), {"n_quantiles": 2},
     "universe S0,S1 has 2 symbol(s): the IC is a cross-sectional correlation over at least 3 names"),
])
def test_bad_input_refused_before_any_work(lake: Lake, make, kw, fragment):
    events = lake.version("run_events") if lake.exists("run_events") else None
    with pytest.raises(ConfigError) as exc:
        ra.plan_alphas(lake, [make()], **kw)
    assert fragment in one_line(exc)
    assert (lake.version("run_events") if lake.exists("run_events") else None) == events
    assert not lake.exists("runs") or lake.read("runs").is_empty()


def test_volume_alpha_on_close_only_data_is_refused(local_settings: Settings):
    lake = Lake(local_settings)
    ingest_bars(lake, load_samples(["AAPL", "KO", "PG", "XOM", "JNJ"]).filter(pl.col("ts").dt.year() < 1994))
    bad = ra.alpha_config("volume_momentum", universe=["AAPL", "KO", "PG", "XOM", "JNJ"])
    with pytest.raises(ConfigError) as exc:
        ra.plan_alphas(lake, [bad])
    assert "alpha volume_momentum needs volume" in one_line(exc) and "close-only" in str(exc.value)
    with pytest.raises(ConfigError) as exc:  # long-short weights with a long-only direction lose a side
        ra.plan_alphas(lake, [bad.model_copy(update={"direction": "long_only",
                                                     "params": {**bad.params, "alpha": "low_volatility",
                                                                "alpha_params": {}}})])
    assert "set direction to 'long_short'" in one_line(exc)
