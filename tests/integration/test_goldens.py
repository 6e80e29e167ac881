"""Golden runs in the lake (``goldens``), ``backlake goldens`` and the regression flow reading
them, recording ``regression_reports`` and a Markdown artifact; real lakes and Prefect runs."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid

import polars as pl
import pytest

from backlake.config import BacktestConfig
from backlake.data.ingest import ingest_bars
from backlake.data.synthetic import synthetic_bars
from backlake.errors import ConfigError
from backlake.lake import Lake
from backlake.runs.backtest import commit_outcomes, execute_run, plan_runs
from backlake.runs.goldens import add_golden, goldens_from_lake, list_goldens, remove_golden
from backlake.runs.regression import Golden, RegressionError
from backlake.settings import Settings

CFG = {"strategy": "sma_crossover", "universe": ["SYN0"], "costs": {"commission_bps": 5}}
CFG2 = {**CFG, "params": {"fast": 5, "slow": 20}}
CFG3 = {**CFG, "universe": ["SYN1"]}


def _lake(settings: Settings) -> Lake:
    lk = Lake(settings)
    ingest_bars(lk, synthetic_bars(("SYN0", "SYN1"), periods=500, seed=2))
    return lk


@pytest.fixture
def lake(local_settings: Settings) -> Lake:
    return _lake(local_settings)


@pytest.fixture
def any_lake(lake_settings: Settings) -> Lake:
    """The lake on a local directory, then on the moto S3 server."""
    return _lake(lake_settings)


def backtests(lake: Lake, *configs: dict) -> list[str]:
    """Completed backtests of ``configs`` (the library's run protocol, no Prefect): run ids."""
    planned = plan_runs(lake, [BacktestConfig.model_validate(c) for c in configs])
    commit_outcomes(lake, [execute_run(lake, p) for p in planned], created_by="tester")
    return [p.run_id for p in planned]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``backlake ARGS`` in this process: (exit code, stdout, stderr)."""
    from flows.cli import main

    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def tamper(lake: Lake, run_id: str, metric: str, delta: float) -> None:
    """Change a stored full-segment metric behind the lake's back (what a regression must catch)."""
    from deltalake import DeltaTable

    DeltaTable(lake.uri("metrics")).update(
        predicate=f"run_id = '{run_id}' AND name = '{metric}' AND segment = 'full'",
        updates={"value": f"value + {delta}"},
    )


def artifact(key: str = "regression-report", flow_run_id: str | None = None):
    """The newest Markdown artifact with ``key`` (of ``flow_run_id``, if given), read back from
    the Prefect server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    filt = ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
    if flow_run_id:
        filt.flow_run_id = ArtifactFilterFlowRunId(any_=[uuid.UUID(flow_run_id)])
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=filt, sort=ArtifactSort.CREATED_DESC, limit=1)
    assert found, f"no artifact {key!r}"
    assert found[0].type == "markdown"
    return found[0]


def flow_run_name(flow_run_id: str) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(uuid.UUID(flow_run_id)).name


# -- the library ---------------------------------------------------------------------------------
def test_add_list_update_remove(any_lake: Lake):
    lake = any_lake
    assert list_goldens(lake).is_empty() and not lake.exists("goldens")  # listing creates nothing
    a, b = backtests(lake, CFG, CFG2)
    before = dt.datetime.now(dt.UTC)
    assert add_golden(lake, a, {"sharpe": 1e-6}, note="reference", user="alice") == "added"
    rows = list_goldens(lake)
    assert rows.columns == ["run_id", "tolerances", "default_tolerance", "added_by", "added_at", "note"]
    row = rows.row(0, named=True)
    assert (row["run_id"], json.loads(row["tolerances"]), row["default_tolerance"], row["added_by"], row["note"]) == (
        a, {"sharpe": 1e-6}, 1e-9, "alice", "reference")
    assert before <= row["added_at"] <= dt.datetime.now(dt.UTC) and str(row["added_at"].tzinfo) == "UTC"
    # the same golden again: nothing written; other tolerances or note: the row is updated
    version = lake.version("goldens")
    assert add_golden(lake, a, {"sharpe": 1e-6}, note="reference", user="bob") == "unchanged"
    assert lake.version("goldens") == version
    assert add_golden(lake, a, {"sharpe": 1e-3, "total_return": 0}, note="looser", user="bob",
                      default_tolerance=1e-7) == "updated"
    assert add_golden(lake, a, note="ignored", if_absent=True) == "unchanged"  # the demo's way
    rows = list_goldens(lake)
    assert rows.height == 1
    row = rows.row(0, named=True)
    assert (json.loads(row["tolerances"]), row["default_tolerance"], row["added_by"], row["note"]) == (
        {"sharpe": 1e-3, "total_return": 0.0}, 1e-7, "bob", "looser")
    assert add_golden(lake, b) == "added"  # user: the settings user
    assert list_goldens(lake)["added_by"].to_list() == ["bob", lake.settings.user]
    assert goldens_from_lake(lake) == [Golden(a, {"sharpe": 1e-3, "total_return": 0.0}, 1e-7), Golden(b, {}, 1e-9)]
    remove_golden(lake, a)
    assert list_goldens(lake)["run_id"].to_list() == [b]
    with pytest.raises(ConfigError, match=f"run '{a}' is not a golden; `backlake goldens list`"):
        remove_golden(lake, a)
    assert lake.read("runs", where={"run_id": a}).height == 1  # the run itself stays


@pytest.mark.prefect
def test_add_refuses_what_cannot_be_a_golden(prefect_harness, lake: Lake):
    from flows.sweep import sweep_flow

    (run,) = backtests(lake, CFG)
    sweep = sweep_flow(CFG, {"fast": [3, 5], "slow": [20]})["run_id"]
    (failed,) = plan_runs(lake, [BacktestConfig.model_validate({**CFG, "universe": ["NOPE"]})])
    commit_outcomes(lake, [execute_run(lake, failed)])
    for call, msg in [
        (lambda: add_golden(lake, "feedbeef00000000"), "run 'feedbeef00000000' is not in the lake; pick one from "
                                                       "`backlake sql"),
        (lambda: add_golden(lake, run[:8]), f"did you mean '{run}'"),
        (lambda: add_golden(lake, sweep), f"run {sweep} is a sweep run: goldens are single backtests"),
        (lambda: add_golden(lake, failed.run_id), f"run {failed.run_id} is failed, not completed"),
        (lambda: add_golden(lake, run, {"sharp": 1e-9}), "unknown metric 'sharp'; did you mean 'sharpe'"),
        (lambda: add_golden(lake, run, {"sharpe": -1}), "tolerances.sharpe must be a non-negative number"),
        (lambda: add_golden(lake, run, {"sharpe": float("nan")}), "non-negative number"),
        (lambda: add_golden(lake, run, default_tolerance=-1), "default_tolerance must be a non-negative"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            call()
    assert list_goldens(lake).is_empty()


def test_concurrent_adds_and_removes_keep_one_row_per_golden(any_lake: Lake):
    lake = any_lake
    ids = backtests(lake, CFG, CFG2, CFG3)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            own = Lake(lake.settings)  # one handle per writer, as separate processes would have
            add_golden(own, ids[i % 3], {"sharpe": 1e-6 * (i + 1)}, note=f"writer {i}")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = list_goldens(lake)
    assert sorted(rows["run_id"].to_list()) == sorted(ids)  # each once, whoever won last
    removed: list[str] = []

    def rm() -> None:
        try:
            remove_golden(Lake(lake.settings), ids[0])
            removed.append("ok")
        except ConfigError:
            removed.append("absent")

    threads = [threading.Thread(target=rm) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(removed) == ["absent", "absent", "ok"]
    assert sorted(list_goldens(lake)["run_id"].to_list()) == sorted(ids[1:])


# -- the CLI -------------------------------------------------------------------------------------
def test_cli_goldens_add_list_remove(lake: Lake, capsys, monkeypatch):
    monkeypatch.setenv("BACKLAKE_USER", "carol")
    a, b = backtests(lake, CFG, CFG2)
    code, out, _ = run_cli(capsys, "goldens", "list")
    assert code == 0 and "no goldens yet: add one with `backlake goldens add RUN`" in out
    code, out, _ = run_cli(capsys, "goldens", "add", a, "--tol", "sharpe=1e-6", "--tol", "total_return=0",
                           "--note", "GOOG-like reference")
    assert code == 0 and out.strip() == (f"added golden {a} (tolerances: sharpe 1e-06, total_return 0; "
                                         "other metrics 1e-09)")
    code, out, _ = run_cli(capsys, "goldens", "add", a, "--tol", "sharpe=1e-6", "--tol", "total_return=0",
                           "--note", "GOOG-like reference")
    assert code == 0 and out.startswith(f"unchanged: golden {a}")
    code, out, _ = run_cli(capsys, "goldens", "add", b, "--default-tol", "1e-7")
    assert code == 0 and out.startswith(f"added golden {b} (tolerances: other metrics 1e-07)")
    code, out, _ = run_cli(capsys, "goldens", "list", "--format", "json")
    listed = json.loads(out)
    assert [g["run_id"] for g in listed] == [a, b]
    assert listed[0]["tolerances"] == {"sharpe": 1e-6, "total_return": 0.0} and listed[0]["default_tolerance"] == 1e-9
    assert {g["added_by"] for g in listed} == {"carol"} and listed[0]["note"] == "GOOG-like reference"
    assert dt.datetime.fromisoformat(listed[0]["added_at"]).tzinfo is not None
    code, out, _ = run_cli(capsys, "goldens", "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["run_id", "tolerances", "default_tolerance", "added_by", "added_at",
                                              "note"]
    assert a in lines[2] and "sharpe=1e-06, total_return=0" in lines[2] and "1e-09" in lines[2]
    assert b in lines[3] and "1e-07" in lines[3]
    code, out, _ = run_cli(capsys, "goldens", "list", "--format", "csv")
    assert code == 0 and out.splitlines()[0] == "run_id,tolerances,default_tolerance,added_by,added_at,note"
    assert len(out.splitlines()) == 3
    code, out, _ = run_cli(capsys, "goldens", "add", a, "--note", "re-added")  # replaces the tolerances
    assert code == 0 and out.startswith(f"updated golden {a}")
    assert json.loads(list_goldens(lake).filter(pl.col("run_id") == a)["tolerances"][0]) == {}
    code, out, _ = run_cli(capsys, "goldens", "remove", a)
    assert code == 0 and out.strip() == f"removed golden {a} (the run stays in the lake)"
    assert list_goldens(lake)["run_id"].to_list() == [b]


@pytest.mark.prefect
def test_cli_goldens_bad_input_exits_2_with_one_line(prefect_harness, lake: Lake, capsys, tmp_path, monkeypatch):
    from flows.sweep import sweep_flow

    (run,) = backtests(lake, CFG)
    sweep = sweep_flow(CFG, {"fast": [3, 5], "slow": [20]})["run_id"]
    cases = [
        (["goldens", "add", "feedbeef00000000"], "run 'feedbeef00000000' is not in the lake"),
        (["goldens", "add", sweep], f"run {sweep} is a sweep run: goldens are single backtests"),
        (["goldens", "add", run, "--tol", "sharp=1e-9"], "unknown metric 'sharp'; did you mean 'sharpe'?"),
        (["goldens", "add", run, "--tol", "sharpe=-0.1"], "the tolerance must be a non-negative number, got -0.1"),
        (["goldens", "add", run, "--tol", "sharpe"], "--tol 'sharpe': write METRIC=TOLERANCE, e.g. --tol sharpe=1e-6"),
        (["goldens", "add", run, "--tol", "sharpe=abc"], "'abc' is not a number"),
        (["goldens", "add", run, "--tol", "sharpe=1", "--tol", "sharpe=2"], "--tol sharpe is given twice"),
        (["goldens", "add", run, "--default-tol", "-1"], "--default-tol: the tolerance must be a non-negative"),
        (["goldens", "remove", run], f"run '{run}' is not a golden"),
    ]
    for args, msg in cases:
        code, out, err = run_cli(capsys, *args)
        assert code == 2, (args, out, err)
        assert msg in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (args, err)
    assert list_goldens(lake).is_empty()
    monkeypatch.setenv("BACKLAKE_LAKE_URI", str(tmp_path / "no-such-lake"))
    code, _, err = run_cli(capsys, "goldens", "list")
    assert code == 2 and "does not exist" in err and not (tmp_path / "no-such-lake").exists()


# -- the regression flow -------------------------------------------------------------------------
@pytest.mark.prefect
def test_regression_without_goldens_passes_and_says_so(prefect_harness, lake: Lake, capsys):
    from flows.regression import regression_flow

    backtests(lake, CFG)
    assert regression_flow() == []
    assert "No goldens yet" in artifact().data
    assert not lake.exists("regression_reports") or lake.read("regression_reports").is_empty()
    code, out, _ = run_cli(capsys, "regress")
    assert code == 0 and "no goldens yet: add one with `backlake goldens add RUN`" in out


@pytest.mark.prefect
def test_regression_from_the_lake_records_reports_and_catches_drift(prefect_harness, lake: Lake, capsys):
    from flows.regression import regression_flow

    a, b, c = backtests(lake, CFG, CFG2, CFG3)
    for run in (a, b, c):
        add_golden(lake, run, {"sharpe": 1e-12})
    rows = regression_flow()
    assert rows and all(r["ok"] for r in rows) and {r["run_id"] for r in rows} == {a, b, c}
    report_id = rows[0]["report_id"]
    assert flow_run_name(report_id) == "regression 3 goldens"  # the report id is the flow run's id
    stored = lake.read("regression_reports", where={"report_id": report_id})
    assert stored.height == len(rows) and stored["ok"].all()
    assert stored["source"].unique().to_list() == ["lake: goldens"] and stored["error"].null_count() == stored.height
    assert stored.filter(pl.col("metric") == "sharpe")["tolerance"].to_list() == [1e-12] * 3
    assert stored.filter(pl.col("metric") == "cagr")["tolerance"].to_list() == [1e-9] * 3
    md = artifact(flow_run_id=report_id).data
    assert "**PASS**: 3 golden run(s)" in md and all(f"| `{r}` |" in md for r in (a, b, c))
    assert f"report_id = '{report_id}'" in md and "| sharpe |" in md

    # drift: a stored metric moves; the report is recorded, then the flow fails naming it
    tamper(lake, a, "sharpe", 0.5)
    before = lake.read("regression_reports")["report_id"].n_unique()
    with pytest.raises(RegressionError, match=f"{a}  sharpe: stored") as e:
        regression_flow()
    assert "regression_reports WHERE report_id" in str(e.value)
    reports = lake.read("regression_reports")
    assert reports["report_id"].n_unique() == before + 1
    latest = reports.sort("ts").tail(len(rows))
    bad = latest.filter(~pl.col("ok"))
    assert bad.select("run_id", "metric").rows() == [(a, "sharpe")]
    drift = bad.row(0, named=True)
    assert drift["abs_diff"] == pytest.approx(0.5) and drift["stored"] == pytest.approx(drift["replayed"] + 0.5)
    md = artifact().data
    assert "**FAIL**: 1 of 3 golden run(s)" in md and f"| `{a}` | sharpe |" in md
    code, _, err = run_cli(capsys, "regress")
    assert code == 1 and f"{a}  sharpe: stored" in err and "Traceback" not in err

    # a tolerance wide enough for the drift (re-adding the golden updates it): passes again
    code, _, _ = run_cli(capsys, "goldens", "add", a, "--tol", "sharpe=0.6")
    assert code == 0
    code, out, _ = run_cli(capsys, "regress")
    assert code == 0 and "3 golden run(s)" in out and "all within tolerance" in out and "regression_reports" in out


@pytest.mark.prefect
def test_regression_records_goldens_it_cannot_replay(prefect_harness, lake: Lake, capsys):
    from deltalake import DeltaTable

    from flows.regression import regression_flow

    a, b = backtests(lake, CFG, CFG2)
    add_golden(lake, a)
    add_golden(lake, b)
    # the run's recorded fingerprint no longer matches its pinned bars: recorded, then the flow fails
    DeltaTable(lake.uri("runs")).update(predicate=f"run_id = '{b}'", updates={"data_fingerprint": "'0000'"})
    with pytest.raises(RegressionError, match=f"1 golden run\\(s\\) could not be replayed:\n  {b}: replaying {b}: "
                                              "the bars at version"):
        regression_flow()
    report = lake.read("regression_reports")
    failed = report.filter(pl.col("error").is_not_null())
    assert failed.select("run_id", "metric", "ok").rows() == [(b, None, False)]
    assert report.filter(pl.col("run_id") == a)["ok"].all() and report.filter(pl.col("run_id") == a).height > 30
    assert f"| `{b}` | 0 | 0 | 0 | replay failed |" in artifact().data
    # a golden whose run left the lake: an error naming it and the fix, before any replay
    DeltaTable(lake.uri("runs")).delete(f"run_id = '{b}'")
    with pytest.raises(ConfigError, match=f"golden run '{b}' is not in the lake.*backlake goldens remove {b}"):
        regression_flow()
    code, _, err = run_cli(capsys, "regress")
    assert code == 2 and f"`backlake goldens remove {b}`" in err and len(err.strip().splitlines()) == 1


@pytest.mark.prefect
def test_regression_still_takes_a_goldens_file_or_list(prefect_harness, lake: Lake, tmp_path, capsys):
    from flows.regression import regression_flow

    a, b = backtests(lake, CFG, CFG2)
    add_golden(lake, b)  # the lake's goldens are not used when a file or list is given
    path = tmp_path / "goldens.json"
    path.write_text(json.dumps([{"run_id": a, "tolerances": {"sharpe": 1e-12}}]))
    rows = regression_flow(str(path))
    assert {r["run_id"] for r in rows} == {a} and all(r["ok"] for r in rows)
    assert {r["source"] for r in rows} == {str(path)}
    assert flow_run_name(rows[0]["report_id"]) == "regression 1 golden"
    rows = regression_flow([{"run_id": a}, {"run_id": b}])
    assert {r["run_id"] for r in rows} == {a, b} and flow_run_name(rows[0]["report_id"]) == "regression 2 goldens"
    code, out, _ = run_cli(capsys, "regress", str(path))
    assert code == 0 and "1 golden run(s)" in out
    # bad input: one line, exit 2, before any flow run
    path.write_text(json.dumps([{"run_id": a, "tolerances": {"sharp": 1e-9}}]))
    code, _, err = run_cli(capsys, "regress", str(path))
    assert code == 2 and "did you mean 'sharpe'" in err
    path.write_text(json.dumps([{"run_id": "feedbeef00000000"}]))
    code, _, err = run_cli(capsys, "regress", str(path))
    assert code == 2 and "golden run 'feedbeef00000000' is not in the lake" in err
    with pytest.raises(ConfigError, match="golden run 'feedbeef00000000' is not in the lake"):
        regression_flow(str(path))


@pytest.mark.prefect
@pytest.mark.slow
def test_demo_adds_its_reference_backtest_as_a_golden_once(prefect_harness, local_settings: Settings, capsys):
    from flows.demo import GOLDEN_NOTE
    from flows.regression import regression_flow

    code, out, _ = run_cli(capsys, "demo", "--progress", "never")
    assert code == 0
    lake = Lake(local_settings)
    (golden,) = list_goldens(lake).iter_rows(named=True)
    first = lake.read("runs", where={"run_id": golden["run_id"]}).row(0, named=True)
    assert (first["kind"], first["symbols"], json.loads(first["params"])) == ("backtest", "GOOG",
                                                                              {"fast": 10, "slow": 30})
    assert golden["note"] == GOLDEN_NOTE and f"golden run: {golden['run_id']}" in out
    version = lake.version("goldens")
    assert run_cli(capsys, "demo", "--progress", "never")[0] == 0  # again: the same single golden, no commit
    assert list_goldens(lake).to_dicts() == [golden] and lake.version("goldens") == version
    rows = regression_flow()
    assert {r["run_id"] for r in rows} == {golden["run_id"]} and all(r["ok"] for r in rows)
