"""Compare on a real lake with real backtests (SP500 / NASDAQ daily samples, with costs):

- the engine records each bar's costs with the equity and a per-run cost summary (the
  ``runs`` row's cost columns) that equals the trades' own cost breakdown;
- gross = net + costs per bar; a zero-cost run has zero costs and gross == net;
- an equity table made before the cost columns existed is evolved, and its runs (null costs)
  switch a gross comparison to net with a warning; so does a walk-forward's stitched run;
- ``backlake compare`` in every format, and its user errors (exit 2, one line).
"""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from backlake.analytics.compare import compare_runs, level, load_runs
from backlake.config import BacktestConfig
from backlake.data.ingest import ingest_bars
from backlake.data.samples import load_samples
from backlake.lake import Lake, connect
from backlake.lake.schemas import SCHEMAS
from backlake.research import walk_forward as wf
from backlake.runs import jobs
from backlake.runs.backtest import commit_outcomes, execute_run, plan_runs
from backlake.runs.commit import commit
from backlake.runs.events import Attempt, claim
from backlake.settings import Settings
from flows.cli import main as cli

COSTS = {"commission_bps": 5, "commission_fixed": 1.0, "slippage_bps": 4, "market": "us",
         "impact": {"k": 0.1, "sigma_lookback": 20, "adv_lookback": 20}}


def cfg(symbol: str, fast: int, slow: int, start: str, costs: dict | None = None) -> BacktestConfig:
    return BacktestConfig.model_validate({
        "strategy": "sma_crossover", "params": {"fast": fast, "slow": slow}, "universe": [symbol],
        "start": start, "end": "2018-12-31", "initial_cash": 100_000, "costs": COSTS if costs is None else costs,
    })


def backtests(lake: Lake, configs: list[BacktestConfig]) -> list[str]:
    planned = plan_runs(lake, configs)
    outcomes = [execute_run(lake, p) for p in planned]
    assert not [o.error for o in outcomes if o.error]
    commit_outcomes(lake, outcomes)
    return [p.run_id for p in planned]


@pytest.fixture(scope="module")
def lake_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, list[str]]:
    settings = Settings(lake_uri=str(tmp_path_factory.mktemp("compare") / "lake"))
    lake = Lake(settings)
    ingest_bars(lake, load_samples(["SP500", "NASDAQ"]))
    ids = backtests(lake, [cfg("SP500", 10, 50, "2008-01-01"), cfg("SP500", 20, 100, "2010-01-01"),
                           cfg("NASDAQ", 10, 50, "2009-01-01"), cfg("SP500", 10, 50, "2008-01-01", costs={})])
    return settings, ids


@pytest.fixture
def env(lake_runs: tuple[Settings, list[str]], monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, list[str]]:
    settings, ids = lake_runs
    monkeypatch.setenv("BACKLAKE_LAKE_URI", settings.lake_uri)
    for k in ("BACKLAKE_S3_ENDPOINT_URL", "BACKLAKE_S3_ALLOW_HTTP"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # compare must not need Prefect
    return settings, ids


def test_costs_per_bar_and_cost_summary_equal_the_trades(lake_runs):
    settings, ids = lake_runs
    lake = Lake(settings)
    for run in ids[:3]:
        eq = lake.read("equity", where={"run_id": run}).sort("ts")
        trades = lake.read("trades", where={"run_id": run})
        assert eq["costs"].null_count() == 0 and eq["costs"].sum() > 0
        split = eq["cost_commission"] + eq["cost_fees"] + eq["cost_slippage"] + eq["cost_impact"]
        np.testing.assert_allclose(eq["costs"].to_numpy(), split.to_numpy(), rtol=0, atol=1e-9)
        (summary,) = lake.read("runs", where={"run_id": run}).to_dicts()
        want = {
            "cost_commission": trades["commission"].sum(),
            "cost_fees": (trades["fees"] - trades["commission"]).sum(),
            "cost_slippage": trades["slippage_cost"].sum(),
            "cost_impact": trades["impact_cost"].sum(),
        }
        want["total_costs"] = sum(want.values())
        for name, value in want.items():
            assert summary[name] == pytest.approx(value, rel=1e-9, abs=1e-9), name
        assert want["cost_fees"] > 0 and want["cost_impact"] > 0  # US fees and impact were charged
        assert summary["total_costs"] == pytest.approx(eq["costs"].sum(), rel=1e-12)
        # the costs land on the bars of the fills: the entry bars of the trades carry costs
        entry_bars = set(trades["entry_ts"].to_list())
        charged = set(eq.filter(pl.col("costs") > 0)["ts"].to_list())
        assert entry_bars <= charged


def test_gross_is_net_plus_costs_per_bar(lake_runs):
    settings, ids = lake_runs
    with connect(settings) as con:
        runs = load_runs(con, ids)
    for r in runs:
        net, gross = level(r, "net"), level(r, "gross")
        costs = r.equity.sort("ts")["costs"].cum_sum()
        np.testing.assert_allclose((gross["value"] - net["value"]).to_numpy(), costs.to_numpy(), rtol=0, atol=1e-6)
    free = runs[3]  # the zero-cost run: nothing charged, gross == net
    assert free.equity["costs"].sum() == 0.0
    assert level(free, "gross")["value"].to_list() == level(free, "net")["value"].to_list()


def test_compare_against_sql(lake_runs):
    settings, ids = lake_runs
    a, b, c = ids[:3]
    with connect(settings) as con:
        cmp = compare_runs(con, [a, b, c], baseline=b, basis="net")
        eq = con.execute(f"SELECT run_id, ts, equity FROM equity WHERE run_id IN ('{a}', '{b}', '{c}') "
                         "ORDER BY ts").pl()
    assert cmp.basis == "net" and cmp.baseline == b and cmp.warnings == []

    def rets(run: str) -> pl.DataFrame:
        e = eq.filter(pl.col("run_id") == run)
        return e.select("ts", r=pl.col("equity") / pl.col("equity").shift(1) - 1).slice(1)

    both = rets(c).join(rets(b), on="ts", suffix="_b")
    want = float(np.std((both["r"] - both["r_b"]).to_numpy(), ddof=1) * math.sqrt(252))
    assert cmp.tracking_error[c] == pytest.approx(want, rel=1e-12)
    assert cmp.tracking_error[b] == 0.0
    common = rets(a).join(rets(c), on="ts", suffix="_c")
    assert cmp.correlation is not None
    got = cmp.correlation.filter(pl.col("run_id") == a)[c].item()
    assert got == pytest.approx(float(np.corrcoef(common["r"], common["r_c"])[0, 1]), rel=1e-9)
    # overlay: the inner join of all three, normalised at its first date
    days = set(eq.filter(pl.col("run_id") == a)["ts"]) & set(eq.filter(pl.col("run_id") == b)["ts"]) \
        & set(eq.filter(pl.col("run_id") == c)["ts"])
    assert cmp.overlap_count == len(days) and cmp.overlap_start == min(days) and cmp.overlap_end == max(days)
    start = eq.filter((pl.col("run_id") == a) & (pl.col("ts") == min(days)))["equity"].item()
    end = eq.filter((pl.col("run_id") == a) & (pl.col("ts") == max(days)))["equity"].item()
    assert cmp.curves[a][0] == 1.0 and cmp.curves[a][-1] == pytest.approx(end / start, rel=1e-12)
    stored = con_metric(settings, a, "sharpe")
    assert next(m for m in cmp.metrics if m.name == "sharpe").values[a] == stored


def con_metric(settings: Settings, run: str, name: str) -> float:
    with connect(settings) as con:
        return con.execute("SELECT value FROM metrics WHERE run_id = ? AND segment = 'full' AND name = ?",
                           [run, name]).fetchone()[0]


def test_old_equity_table_evolves_and_old_runs_compare_net(tmp_path):
    settings = Settings(lake_uri=str(tmp_path / "lake"))
    lake = Lake(settings)
    ingest_bars(lake, load_samples(["SP500"]))
    # an equity table as an older release made it (no cost columns), holding one old run
    old_schema = pa.schema([f for f in SCHEMAS["equity"] if f.name not in
                            ("costs", "cost_commission", "cost_fees", "cost_slippage", "cost_impact")])
    ts = [dt.datetime(2015, 1, d, tzinfo=dt.UTC) for d in range(5, 10)]
    old = pa.table({"run_id": ["legacy"] * 5, "ts": ts, "equity": [100.0, 101.0, 100.5, 102.0, 103.0],
                    "cash": [100.0] * 5, "gross_exposure": [0.0] * 5, "net_exposure": [0.0] * 5,
                    "drawdown": [0.0] * 5, "ret": [0.0] * 5, "benchmark_equity": [100.0] * 5}, schema=old_schema)
    write_deltalake(lake.uri("equity"), old, mode="overwrite")
    lake.append("runs", pl.DataFrame({"run_id": ["legacy"], "kind": ["backtest"], "status": ["completed"],
                                      "strategy": ["sma_crossover"], "symbols": ["SP500"], "timeframe": ["1d"],
                                      "sharpe": [0.5]}))
    (new,) = backtests(lake, [cfg("SP500", 10, 50, "2014-06-01")])  # writes through Lake.ensure: evolves
    names = {f.name for f in lake.ensure("equity").schema().fields}
    assert {"costs", "cost_commission", "cost_fees", "cost_slippage", "cost_impact"} <= names
    with connect(settings) as con:
        cmp = compare_runs(con, ["legacy", new], basis="gross")
    assert cmp.basis == "net" and cmp.requested_basis == "gross"
    assert any("legacy" in w and "net" in w for w in cmp.warnings), cmp.warnings
    assert cmp.overlap_count == 5 and cmp.tracking_error["legacy"] == 0.0
    assert next(m for m in cmp.metrics if m.name == "sharpe").values["legacy"] == 0.5  # from the runs row


def test_walk_forward_stitched_run_compares_with_a_backtest(tmp_path):
    settings = Settings(lake_uri=str(tmp_path / "lake"))
    lake = Lake(settings)
    ingest_bars(lake, load_samples(["SP500"]))
    base = cfg("SP500", 10, 50, "2012-01-01")
    job = jobs.plan_walk_forward(lake, base, {"fast": [5, 10], "slow": [50]}, train=500, test=250)
    results = [wf.evaluate_window(base, {"fast": [5, 10], "slow": [50]}, job.bars, w) for w in job.plan]
    attempt = Attempt.new()
    started = claim(lake, [job.run_id], attempt)
    record, _ = jobs.walk_forward_record(job, results, dt.datetime.now(dt.UTC), started.claimed[job.run_id])
    commit(lake, [record], attempt)
    (bt,) = backtests(lake, [base])
    with connect(settings) as con:
        cmp = compare_runs(con, [job.run_id, bt], basis="gross")
    wf_run = cmp.runs[0]
    assert wf_run.kind == "walk_forward" and wf_run.metrics_segment == "oos" and not wf_run.has_costs
    assert cmp.basis == "net" and any(job.run_id in w for w in cmp.warnings)
    assert cmp.overlap_count > 100 and cmp.tracking_error[bt] is not None
    stitched = lake.read("equity", where={"run_id": job.run_id})
    assert cmp.overlap_start == stitched["ts"].min()


# -- the CLI ------------------------------------------------------------------------------------
def test_cli_formats(env, capsys):
    settings, ids = env
    a, b, c = ids[:3]
    assert cli(["compare", a, b, c, "--baseline", b, "--basis", "gross", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    with connect(settings) as con:
        lib = compare_runs(con, [a, b, c], baseline=b, basis="gross")
    assert out["basis"] == "gross" and out["baseline"] == b and out["warnings"] == []
    assert out["tracking_error"] == {k: v for k, v in lib.tracking_error.items()}
    assert out["overlap"]["count"] == lib.overlap_count
    sharpe = next(m for m in out["metrics"] if m["name"] == "sharpe")
    assert sharpe["values"][a] == con_metric(settings, a, "sharpe")
    assert sharpe["direction"] == "higher" and len(sharpe["best"]) == 1

    assert cli(["compare", a, b, "--format", "csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == "section,name,run_id,value"
    assert f"metric,sharpe,{a},{con_metric(settings, a, 'sharpe')!r}" in rows
    assert f"tracking_error,{a},{a},0.0" in rows
    assert any(r.startswith(f"correlation,{a},{b},") for r in rows)

    assert cli(["compare", a, b]) == 0
    text = capsys.readouterr().out
    assert "basis: net" in text and f"baseline: {a}" in text and "tracking error vs" in text
    assert "metrics (+ best, - worst)" in text and "correlation of returns" in text
    # each metric in its unit: fractions as %, ratios to 3 decimals, trades whole
    total_return = con_metric(settings, a, "total_return")
    assert f"{total_return:.2%}" in text and f"{con_metric(settings, a, 'sharpe'):.3f}" in text
    assert "0.00%" in text  # the tracking error of the baseline against itself


@pytest.mark.parametrize(("args", "message"), [
    (["ONLYONE"], "runs: compare needs 2 to 10 runs, got 1 (ONLYONE); add runs to compare"),
    ([f"r{i}" for i in range(11)], "got 11"),
    (["{a}", "{a}"], "run '{a}' is given twice: list each run once"),
    (["{a}", "{a_typo}"], "run '{a_typo}' is not in the lake (did you mean '{a}'?)"),
    (["{a}", "{b}", "--baseline", "{c}"], "baseline '{c}' is not one of the compared runs"),
])
def test_cli_user_errors_exit_2(env, capsys, args, message):
    _, ids = env
    a, b, c = ids[:3]
    subst = {"a": a, "b": b, "c": c, "a_typo": a[:-2] + ("00" if not a.endswith("00") else "11")}
    code = cli(["compare", *[x.format(**subst) for x in args]])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message.format(**subst) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_bad_basis_and_missing_lake(env, capsys, monkeypatch, tmp_path):
    _, ids = env
    with pytest.raises(SystemExit) as exc:
        cli(["compare", ids[0], ids[1], "--basis", "gros"])
    assert exc.value.code == 2
    assert "invalid choice: 'gros'" in capsys.readouterr().err
    monkeypatch.setenv("BACKLAKE_LAKE_URI", str(tmp_path / "nowhere"))
    assert cli(["compare", ids[0], ids[1]]) == 2
    assert "does not exist" in capsys.readouterr().err
