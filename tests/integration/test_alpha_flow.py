"""The ``alpha`` flow through real Prefect runs (the session's harness) and ``backlake alpha``
end to end: signals, weights, IC, the runs row and metrics in the lake; exit codes and
one-line errors."""

from __future__ import annotations

import json
import re

import polars as pl
import pytest

from backlake import progress
from backlake.data.ingest import ingest_bars
from backlake.data.synthetic import synthetic_bars
from backlake.errors import ConfigError
from backlake.lake import Lake
from backlake.settings import Settings

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

SYMBOLS = [f"S{i}" for i in range(6)]
UNIVERSE = ",".join(SYMBOLS)
ALPHAS = [{"name": "momentum_12_1", "params": {"lookback": 126, "skip": 5}}, "low_volatility"]


@pytest.fixture
def lake(local_settings: Settings) -> Lake:
    lk = Lake(local_settings)
    ingest_bars(lk, synthetic_bars(SYMBOLS, start="2010-01-04", periods=900, seed=5, vol=0.3))
    return lk


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``backlake ARGS`` in this process: (exit code, stdout, stderr)."""
    from flows.cli import main

    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_alpha_flow_writes_runs_signals_weights_ic(prefect_harness, lake: Lake):
    from flows.alpha import alpha_flow

    seen: list[progress.Progress] = []
    with progress.listening(seen.append):
        out = alpha_flow(ALPHAS, universe=SYMBOLS, horizons=[1, 5], weights={"rebalance": "weekly"})
    ids = [r["run_id"] for r in out["runs"]]
    assert [r["status"] for r in out["runs"]] == ["completed", "completed"]
    assert [r["alpha"] for r in out["runs"]] == ["momentum_12_1 lookback=126 skip=5", "low_volatility"]
    # per run: the scores task, one task per horizon, the backtest (4 tasks), reported 0..4
    for rid in ids:
        mine = [(e.done, e.total, e.unit) for e in seen if e.job == f"alpha {rid[:12]}"]
        assert mine == [(k, 4, "tasks") for k in range(5)]
    runs = lake.read("runs").sort("run_id")
    assert sorted(ids) == runs["run_id"].to_list() and set(runs["kind"]) == {"alpha"}
    assert runs["status"].to_list() == ["completed", "completed"] and runs["sharpe"].is_not_null().all()
    assert json.loads(runs["config"][0])["together"]  # evaluated together: the group is in the request
    sig = lake.read("signals")
    assert set(sig["alpha"]) == {"momentum_12_1", "low_volatility"} and sig["features"].str.starts_with("{").all()
    assert [r["rows_added"] > 0 for r in out["refreshed"]] == [True, True]
    ic = lake.read("ic")
    assert set(ic["run_id"]) == set(ids) and set(ic["horizon"]) == {1, 5}
    weights = lake.read("weights")
    assert set(weights["run_id"]) == set(ids) and set(weights["symbol"]) == set(SYMBOLS)
    m = lake.read("metrics", where={"segment": "ic:h5"})
    assert m.filter(pl.col("name") == "p_bh").height == 2
    assert lake.read("equity", where={"run_id": ids[0]}).height > 800
    events = lake.read("run_events", where={"run_id": ids[0]}).sort("ts")["status"].to_list()
    assert events[-1] == "completed"
    # again: the same runs, nothing new but the signals refresh (which adds nothing)
    tables = ("runs", "metrics", "ic", "weights", "equity", "signals")
    before = {t: lake.version(t) for t in tables}
    seen.clear()
    with progress.listening(seen.append):
        again = alpha_flow(ALPHAS, universe=SYMBOLS, horizons=[5, 1], weights={"rebalance": "weekly"})
    assert [r["status"] for r in again["runs"]] == ["existing", "existing"] and seen == []
    assert [r["rows_added"] for r in again["refreshed"]] == [0, 0]
    assert {t: lake.version(t) for t in tables} == before


def test_alpha_flow_refuses_bad_input_before_any_task(prefect_harness, lake: Lake):
    from flows.alpha import alpha_flow

    with pytest.raises(ConfigError, match="did you mean 'momentum_12_1'"):
        alpha_flow(["momentum_12"], universe=SYMBOLS)
    with pytest.raises(ConfigError, match="horizon 0 is not a whole number"):
        alpha_flow(["low_volatility"], universe=SYMBOLS, horizons=[0])
    assert not lake.exists("signals") or lake.read("signals").is_empty()
    assert not lake.exists("run_events") or lake.read("run_events").is_empty()


def test_cli_alpha_commands(prefect_harness, lake: Lake, capsys):
    code, out, err = run_cli(capsys, "alpha", "list")
    assert code == 0 and "momentum_12_1" in out and "volume_momentum" in out and "needs_volume" in out
    code, out, _ = run_cli(capsys, "alpha", "list", "--format", "json")
    assert code == 0 and {r["alpha"] for r in json.loads(out)} >= {"rsi_cs", "high_52w"}

    code, out, err = run_cli(capsys, "alpha", "refresh", "low_volatility", "--universe", UNIVERSE,
                             "--params", "window=21")
    assert code == 0 and "low_volatility" in out and "(1 row)" in out
    code, out, _ = run_cli(capsys, "alpha", "refresh", "low_volatility", "--universe", UNIVERSE,
                           "--params", "window=21", "--format", "json")
    assert code == 0 and json.loads(out)[0]["rows_added"] == 0  # idempotent
    last = lake.read("signals", columns=["date"])["date"].max()
    code, out, _ = run_cli(capsys, "alpha", "refresh", "low_volatility", "--universe", UNIVERSE,
                           "--params", "window=21")
    assert code == 0 and f"nothing new: the stored low_volatility signals of these symbols reach {last}" in out

    code, out, err = run_cli(capsys, "alpha", "evaluate", "low_volatility", "--universe", UNIVERSE,
                             "--horizons", "1,5", "--quantiles", "3", "--progress", "always")
    assert code == 0, err
    assert "mean_ic" in out and "(2 rows)" in out and "1 alpha run(s), 1 new" in out
    bar = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", err)
    assert re.search(r"alpha \w{12} ━+ 4/4 tasks", bar)
    rid = re.search(r"FROM ic WHERE run_id = '(\w+)'", out).group(1)

    code, out, err = run_cli(capsys, "alpha", "backtest", "low_volatility", "--universe", UNIVERSE,
                             "--horizons", "1,5", "--quantiles", "3", "--format", "csv")
    assert code == 0 and out.splitlines()[0].startswith("alpha,run_id,total_return")
    assert rid in out  # the same options: the same run as evaluate's

    code, out, err = run_cli(capsys, "alpha", "backtest", "reversal_5d", "--universe", UNIVERSE,
                             "--weights", "top_n", "--n", "2", "--long-short", "--rebalance", "monthly",
                             "--horizons", "5", "--quantiles", "3", "--commission-bps", "5")
    assert code == 0, err
    assert "sharpe" in out and "1 alpha run(s), 1 new" in out
    bt = lake.read("runs").filter(pl.col("run_id") != rid)
    assert bt.height == 1 and json.loads(bt["params"][0])["method"] == "top_n"
    assert json.loads(bt["config"][0])["direction"] == "long_short"

    code, out, err = run_cli(capsys, "alpha", "attribution", rid, "--window", "24")
    assert code == 0, err
    assert "beta_MktRF" in out and "attribution:ff3 of" in out and ": stored;" in out
    code, out, _ = run_cli(capsys, "alpha", "attribution", rid, "--window", "24")
    assert code == 0 and "unchanged" in out

    for args, fragment in [
        (["alpha", "evaluate", "momentm_12_1", "--universe", UNIVERSE], "did you mean 'momentum_12_1'?"),
        (["alpha", "evaluate", "low_volatility", "--universe", UNIVERSE, "--horizons", "0,5"],
         "horizon 0 is not a whole number"),
        (["alpha", "evaluate", "low_volatility", "--universe", UNIVERSE, "--horizons", "1,x"],
         "--horizons '1,x': give whole numbers"),
        (["alpha", "evaluate", "low_volatility", "--universe", "S0,S1,S2"], "fewer than n_quantiles=5"),
        (["alpha", "backtest", "low_volatility", "--universe", UNIVERSE, "--weights", "top_n", "--n", "7"],
         "weights.n=7 needs 7 symbols"),
        (["alpha", "evaluate", "low_volatility", "--universe", UNIVERSE, "--start", "2030-01-01"],
         "move the dates inside that range"),
        (["alpha", "refresh", "low_volatility", "--params", "windw=3", "--universe", UNIVERSE],
         "did you mean 'window'?"),
        (["alpha", "attribution", "nope"], "run 'nope' is not in the lake"),
        (["alpha", "attribution", rid, "--model", "ff9"], "unknown factor model 'ff9'"),
    ]:
        code, out, err = run_cli(capsys, *args)
        assert code == 2, (args, out, err)
        assert fragment in err and err.startswith("error: ") and err.count("\n") == 1, (args, err)
    assert lake.read("runs").height == 2  # the refused commands wrote no run


def test_alpha_flow_runs_are_named_by_their_alphas():
    from flows._common import run_name, run_queries

    name = run_name("alpha", {"alphas": ALPHAS, "universe": SYMBOLS})
    assert name == "alpha momentum_12_1, low_volatility on S0, S1 +4"
    assert run_name("alpha", {"universe": "sp500_stocks"}) == "alpha defaults on sp500_stocks"
    assert any("FROM ic WHERE run_id = 'abc'" in q for q in run_queries("alpha", ["abc"]))


def test_cli_alpha_factors_ingests_shipped_and_user_five_factor_files(lake: Lake, capsys, tmp_path):
    """``backlake alpha factors``: the shipped set once (a re-run writes nothing), a user's 5-factor
    file in French's layout (percent) as model ff5, and an attribution on it; bad input one line."""
    import numpy as np

    from backlake.runs.alpha import alpha_config, plan_alphas, run_alphas

    code, out, err = run_cli(capsys, "alpha", "factors")
    assert code == 0, err
    assert "4095 row(s) written" in out and "1949-01-31" in out and "2017-03-31" in out
    code, out, _ = run_cli(capsys, "alpha", "factors", "--format", "json")
    assert code == 0 and {(r["model"], r["factor"]) for r in json.loads(out)} == {
        ("ff3", "MktRF"), ("ff3", "SMB"), ("ff3", "HML"), ("ff3", "RF"), ("mom", "Mom")}
    version = lake.version("factors")
    run_cli(capsys, "alpha", "factors")
    assert lake.version("factors") == version  # idempotent: no new version

    rng = np.random.default_rng(11)
    months = [f"{y}{m:02d}" for y in range(2009, 2015) for m in range(1, 13)]
    lines = ["This file was created by a user from the monthly 5-factor returns.", "",
             ",Mkt-RF,SMB,HML,RMW,CMA,RF"]
    for ym in months:
        f = rng.normal(0.5, 3.0, 5).round(2)
        lines.append(f"{ym},{f[0]},{f[1]},{f[2]},{f[3]},{f[4]},0.01")
    path = tmp_path / "F-F_Research_Data_5_Factors_2x3.csv"
    path.write_text("\n".join(lines) + "\n")
    code, out, err = run_cli(capsys, "alpha", "factors", "--path", str(path), "--units", "percent")
    assert code == 0, err
    assert f"{6 * len(months)} row(s) written" in out
    ff5 = lake.read("factors").filter(pl.col("model") == "ff5")
    assert sorted(ff5["factor"].unique().to_list()) == ["CMA", "HML", "MktRF", "RF", "RMW", "SMB"]
    assert ff5.filter(pl.col("factor") == "RF")["value"].to_list() == [0.0001] * len(months)  # percent -> decimal

    jobs = plan_alphas(lake, [alpha_config("low_volatility", {"window": 21}, universe=SYMBOLS)],
                       horizons=[1, 5], n_quantiles=3)
    (rid,) = run_alphas(lake, jobs)
    code, out, err = run_cli(capsys, "alpha", "attribution", rid, "--model", "ff5", "--window", "24")
    assert code == 0, err
    assert "beta_RMW" in out and "beta_CMA" in out and "attribution:ff5 of" in out

    for args, fragment in [
        (["alpha", "factors", "--path", str(path)], "needs --units percent"),
        (["alpha", "factors", "--units", "percent"], "--units applies to a file"),
        (["alpha", "factors", "--path", str(tmp_path / "missing.csv"), "--units", "percent"], "missing.csv"),
    ]:
        code, out, err = run_cli(capsys, *args)
        assert code == 2 and fragment in err and err.startswith("error: ") and err.count("\n") == 1, (args, err)


def test_cli_evaluate_of_several_alphas_prints_their_signal_correlation(prefect_harness, lake: Lake, capsys):
    """Several alphas evaluated together: a second table, the mean cross-sectional rank
    correlation of their scores over their common dates, equal to ``ic.signal_correlation`` of
    the scores stored in ``signals`` (computed independently of the runs); one alpha: none."""
    from backlake.alpha import ic
    from backlake.alpha.panel import panel_from_bars
    from backlake.alpha.registry import alpha_id
    from backlake.alpha.signals import score_matrix
    from backlake.alpha.store import read_signals

    code, out, err = run_cli(capsys, "alpha", "evaluate", "reversal_5d", "low_volatility", "rsi_cs",
                             "--universe", UNIVERSE, "--horizons", "1,5", "--quantiles", "3")
    assert code == 0, err
    head, _, corr_table = out.partition("signal correlation (mean cross-sectional rank correlation")
    assert "p_bh" in head and corr_table, out
    lines = [ln.split() for ln in corr_table.splitlines()[1:] if ln and not ln.startswith(("-", "("))]
    assert lines[0] == ["alpha", "reversal_5d", "low_volatility", "rsi_cs"]
    printed = {(row[0], b): float(v) for row in lines[1:4] for b, v in zip(lines[0][1:], row[1:])}

    panel = panel_from_bars(lake.read("bars"))
    expected = ic.signal_correlation({a: score_matrix(read_signals(lake, alpha_id(a, {})), panel)
                                      for a in ("reversal_5d", "low_volatility", "rsi_cs")})
    assert expected.height == 9
    for a, b, c in expected.iter_rows():
        assert printed[(a, b)] == pytest.approx(c, abs=6e-3 if abs(c) >= 0.1 else 6e-4), (a, b, corr_table)
    assert printed[("reversal_5d", "rsi_cs")] > 0.3  # both short-term mean reversion: clearly related

    code, out, err = run_cli(capsys, "alpha", "evaluate", "reversal_5d", "--universe", UNIVERSE,
                             "--horizons", "1,5", "--quantiles", "3")
    assert code == 0 and "signal correlation" not in out


def test_cli_refresh_with_dates_outside_the_data_is_one_line(lake: Lake, capsys):
    code, _, err = run_cli(capsys, "alpha", "refresh", "low_volatility", "--universe", UNIVERSE,
                           "--end", "1990-01-01")
    assert code == 2 and err.count("\n") == 1 and "move the dates inside that range" in err, err
    assert not lake.exists("signals") or lake.read("signals").is_empty()
