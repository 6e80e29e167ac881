"""Every user error is answered before any flow starts: exit 2, one line per problem naming
the field, the value (shortened) and the fix, the position of a bad element in a list, no
traceback, and nothing written to the lake. The CLI runs in this process with Prefect pointed
at a port where nothing listens, so a command that reached a flow could not succeed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backlake.data.ingest import ingest_bars
from backlake.data.synthetic import synthetic_bars
from backlake.lake import Lake
from backlake.lake.schemas import TABLES
from backlake.settings import Settings
from flows.cli import main as cli

GOOD = {"strategy": "sma_crossover", "params": {"fast": 5, "slow": 20}, "universe": ["SYN0"]}


@pytest.fixture(scope="module")
def lake_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad-input") / "lake"
    lake = Lake(Settings(lake_uri=str(root)))
    ingest_bars(lake, synthetic_bars(("SYN0", "SYN1"), periods=300, seed=1))
    ingest_bars(lake, synthetic_bars(("HOURLY",), periods=300, timeframe="1h", seed=2))
    lake.ensure_all()
    return root


@pytest.fixture
def env(lake_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Lake:
    monkeypatch.setenv("BACKLAKE_LAKE_URI", str(lake_dir))
    for k in ("BACKLAKE_S3_ENDPOINT_URL", "BACKLAKE_S3_ALLOW_HTTP"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # nothing there: no flow can run
    return Lake(Settings(lake_uri=str(lake_dir)))


def write(tmp: Path, name: str, content: object) -> str:
    p = tmp / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    elif isinstance(content, str):
        p.write_text(content)
    else:
        p.write_text(json.dumps(content))
    return str(p)


CSV = "ts,open,high,low,close,volume\n2020-01-02,10,11,9,10.5,100\n2020-01-03,10.5,11,10,10.8,120\n"


def cfg(**kw: object) -> dict:
    return {**GOOD, **kw}


# (case id, command (files as {name: content} substituted for "@name"), text the error must hold)
CASES: list[tuple[str, list[object], str]] = [
    # -- config values and types
    ("bool-as-number", ["backtest", {"c": cfg(initial_cash=True)}], "initial_cash: must be a number, not true"),
    ("string-as-int", ["backtest", {"c": cfg(params={"fast": "10", "slow": 20})}], "fast: must be a number"),
    ("fraction-int", ["backtest", {"c": cfg(params={"fast": 5.5, "slow": 20})}], "must be a whole number"),
    ("infinity", ["backtest", {"c": '{"strategy": "sma_crossover", "universe": ["SYN0"], "initial_cash": Infinity}'}],
     "Infinity is not a number JSON allows"),
    ("nan", ["backtest", {"c": '{"strategy": "sma_crossover", "universe": ["SYN0"], "costs": {"slippage_bps": NaN}}'}],
     "NaN is not a number JSON allows"),
    ("typo-key", ["backtest", {"c": cfg(comission=1)}], "did you mean"),
    ("typo-param", ["backtest", {"c": cfg(params={"fats": 5})}], "did you mean 'fast'"),
    ("unknown-strategy", ["backtest", {"c": cfg(strategy="sma_crosover")}], "sma_crossover"),
    ("bad-direction", ["backtest", {"c": cfg(direction="sideways")}], "direction"),
    ("bad-timeframe", ["backtest", {"c": cfg(timeframe="1x")}], "timeframe"),
    ("cash-too-large", ["backtest", {"c": cfg(initial_cash=1e308)}], "initial_cash: Input should be less than"),
    ("negative-cash", ["backtest", {"c": cfg(initial_cash=-5)}], "initial_cash"),
    ("start-after-end", ["backtest", {"c": cfg(start="2020-01-01", end="2019-01-01")}], "start"),
    ("fraction-too-big", ["backtest", {"c": cfg(sizing={"fraction": 50})}], "fraction"),
    ("fast-not-below-slow", ["backtest", {"c": cfg(params={"fast": 30, "slow": 20})}], "fast"),
    ("huge-value", ["backtest", {"c": cfg(initial_cash="x" * 1_000_000)}], "(1000002 characters)"),
    ("list-position", ["backtest", {"c": [GOOD, GOOD, cfg(initial_cash=True)]}], "configs[2]: initial_cash"),
    ("list-many", ["backtest", {"c": [cfg(initial_cash=True), GOOD, cfg(direction="x")]}], "configs[0]"),
    ("list-non-object", ["backtest", {"c": [GOOD, 5]}], "configs[1]: must be a config object"),
    ("empty-list", ["backtest", {"c": []}], "non-empty list"),
    ("not-object", ["backtest", {"c": 42}], "must hold one config object"),
    ("binary-file", ["backtest", {"c": b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe"}], "not a UTF-8 text file"),
    ("invalid-json", ["backtest", {"c": '{"strategy": '}], "is not valid JSON"),
    ("missing-file", ["backtest", "/nonexistent/config.json"], "does not exist"),
    ("directory", ["backtest", "@dir"], "is a directory"),
    # -- the data the lake holds
    ("symbol-not-in-lake", ["backtest", {"c": cfg(universe=["NOPE"])}],
     "universe symbol 'NOPE' is not in the lake: ingest it"),
    ("symbol-typo", ["backtest", {"c": cfg(universe=["SYM0"])}], "did you mean 'SYN"),
    ("hourly-on-daily", ["backtest", {"c": cfg(timeframe="1h")}], "timeframe='1h' but SYN0 has 1d bars"),
    ("daily-on-hourly", ["backtest", {"c": cfg(universe=["HOURLY"])}], "timeframe='1d' but HOURLY has 1h bars"),
    ("dates-outside", ["backtest", {"c": cfg(start="1990-01-01", end="1991-01-01")}], "move the dates inside"),
    ("one-bar", ["backtest", {"c": cfg(start="2015-01-02", end="2015-01-02")}], "fewer than 2"),
    ("unknown-benchmark", ["backtest", {"c": cfg(benchmark="SPX")}], "benchmark 'SPX' is not in the lake"),
    ("intraday-strategy", ["backtest", {"c": {"strategy": "opening_range_breakout", "universe": ["SYN0"]}}],
     "needs intraday bars"),
    ("list-data-problems", ["backtest", {"c": [GOOD, cfg(universe=["NOPE"]), cfg(timeframe="1h")]}],
     "configs[1]: universe symbol 'NOPE'"),
    # -- research commands
    ("sweep-no-valid-combination", ["sweep", {"c": GOOD}, "--grid", {"g": {"fast": [50], "slow": [10]}}], "fast"),
    ("sweep-grid-not-object", ["sweep", {"c": GOOD}, "--grid", {"g": [1, 2]}], "must map parameter"),
    ("sweep-grid-scalar", ["sweep", {"c": GOOD}, "--grid", {"g": {"fast": 5}}],
     "grid['fast']=5 is not a list of values: write e.g. {\"fast\": [5]}"),
    ("sweep-grid-repeated", ["sweep", {"c": GOOD}, "--grid", {"g": {"fast": [5, 5], "slow": [30]}}],
     "grid['fast'] lists 5 more than once"),
    ("wf-grid-scalar", ["walk-forward", {"c": GOOD}, "--grid", {"g": {"fast": 5}}, "--train", "100", "--test", "50"],
     "grid['fast']=5 is not a list of values"),
    ("sweep-dask-address", ["sweep", {"c": GOOD}, "--grid", {"g": {"fast": [5]}}, "--runner", "dask", "--address",
                            "tcp://127.0.0.1:9"], "no Dask scheduler answers there"),
    ("sweep-dask-address-form", ["sweep", {"c": GOOD}, "--grid", {"g": {"fast": [5]}}, "--runner", "dask",
                                 "--address", "nonsense"], "is not a Dask scheduler address"),
    ("sweep-objective", ["sweep", {"c": GOOD}, "--grid", {"g": {"fast": [5]}}, "--objective", "sharp"],
     "did you mean 'sharpe'"),
    ("sweep-chunk", ["sweep", {"c": GOOD}, "--grid", {"g": {"fast": [5]}}, "--chunk-size", "0"], "chunk_size"),
    ("sweep-missing-symbol", ["sweep", {"c": cfg(universe=["NOPE"])}, "--grid", {"g": {"fast": [5]}}],
     "'NOPE' is not in the lake"),
    ("optimize-sampler", ["optimize", {"c": GOOD}, "--space", {"s": {"fast": {"low": 3, "high": 9}}},
                          "--sampler", "tpx"], "sampler"),
    ("optimize-trials", ["optimize", {"c": GOOD}, "--space", {"s": {"fast": {"low": 3, "high": 9}}},
                         "--trials", "0"], "n_trials"),
    ("optimize-trials-huge", ["optimize", {"c": GOOD}, "--space", {"s": {"fast": {"low": 3, "high": 9}}},
                              "--trials", "10000000000000000000"], "is more than 100,000"),
    ("optimize-seed", ["optimize", {"c": GOOD}, "--space", {"s": {"fast": {"low": 3, "high": 9}}},
                       "--seed", "-1"], "seed=-1 must be a whole number from 0"),
    ("mc-paths-huge", ["monte-carlo", {"c": GOOD}, "--paths", "100000000000"], "n_paths=100000000000 is more than"),
    ("optimize-parallel", ["optimize", {"c": GOOD}, "--space", {"s": {"fast": {"low": 3, "high": 9}}},
                           "--parallel", "0"], "parallel"),
    ("optimize-space-param", ["optimize", {"c": GOOD}, "--space", {"s": {"fastt": {"low": 3, "high": 9}}}],
     "fast"),
    ("wf-window-too-long", ["walk-forward", {"c": GOOD}, "--grid", {"g": {"fast": [5]}}, "--train", "5000",
                            "--test", "100"], "train"),
    ("wf-bad-span", ["walk-forward", {"c": GOOD}, "--grid", {"g": {"fast": [5]}}, "--train", "4x",
                     "--test", "1y"], "4x"),
    ("wf-span-huge", ["walk-forward", {"c": GOOD}, "--grid", {"g": {"fast": [5]}}, "--train",
                      "99999999999999999999y", "--test", "1y"], "is longer than 200 years"),
    ("mc-block-size", ["monte-carlo", {"c": GOOD}, "--method", "block_bootstrap", "--block-size", "0"],
     "block_size=0"),
    ("mc-confidence", ["monte-carlo", {"c": GOOD}, "--confidence", "1.5"], "confidence"),
    ("mc-method", ["monte-carlo", {"c": GOOD}, "--method", "trade_bootstrp"], "did you mean 'trade_bootstrap'"),
    ("mc-seeds", ["monte-carlo", {"c": GOOD}, "--seeds", "1", "1"], "each once"),
    ("mc-missing-symbol", ["monte-carlo", {"c": cfg(universe=["NOPE"])}], "'NOPE' is not in the lake"),
    # -- time travel in sql: a table or version that is not there
    ("sql-at-table", ["sql", "SELECT 1", "--at", "barz=1"], "--at barz=1: unknown table 'barz'; did you mean 'bars'"),
    ("sql-at-version", ["sql", "SELECT 1", "--at", "bars=999"], "--at bars=999: bars has no version 999 (latest"),
    # -- maintenance: a retention that would delete what it should keep
    ("maintain-negative-failed-days", ["maintain", "--failed-days", "-1"], "--failed-days=-1.0 is not a valid"),
    ("maintain-negative-retention", ["maintain", "--retention-hours", "-1"], "use a number >= 0 and <= 876,000"),
    ("maintain-nan-retention", ["maintain", "--retention-hours", "nan", "--dry-run"], "--retention-hours=nan"),
    ("maintain-huge-retention", ["maintain", "--retention-hours", "1e30", "--dry-run"], "--retention-hours=1e+30"),
    ("maintain-zero-stale", ["maintain", "--stale-hours", "0"], "--stale-hours=0.0 is not a valid value"),
    # -- ingest: what can be checked before a bar is read
    ("ingest-blank-symbol", ["ingest", "--source", "file", "--path", {"bars.csv": CSV}, "--symbol", ""],
     "symbol='' is not a symbol"),
    ("ingest-path-symbol", ["ingest", "--source", "file", "--path", {"bars.csv": CSV}, "--symbol", "../../etc"],
     "symbol='../../etc' is not a symbol"),
    ("ingest-no-path", ["ingest", "--source", "file", "--symbol", "X"], "needs a path: --path FILE"),
    ("ingest-missing-file", ["ingest", "--source", "file", "--path", "/nonexistent/bars.csv", "--symbol", "X"],
     "does not exist"),
    ("ingest-directory", ["ingest", "--source", "file", "--path", "@dir", "--symbol", "X"], "is not a file"),
    ("ingest-extension", ["ingest", "--source", "file", "--path", {"bars.xlsx": CSV}, "--symbol", "X"],
     "unsupported extension"),
    ("ingest-map-no-equals", ["ingest", "--source", "file", "--path", {"bars.csv": CSV}, "--symbol", "X",
                              "--map", "close"], "--map 'close': write OURS=THEIRS"),
    ("ingest-map-key", ["ingest", "--source", "file", "--path", {"bars.csv": CSV}, "--symbol", "X",
                        "--map", "closee=Close"], "did you mean 'close'"),
    ("ingest-timeframe", ["ingest", "--source", "file", "--path", {"bars.csv": CSV}, "--symbol", "X",
                          "--timeframe", "2d"], "unknown timeframe '2d'"),
    ("ingest-sample-symbol", ["ingest", "--source", "samples", "--symbols", "NOPE"], "unknown sample symbol 'NOPE'"),
    ("ingest-periods", ["ingest", "--source", "synthetic", "--periods", "0"], "periods=0 is not a number of bars"),
]


@pytest.mark.parametrize(("case", "command", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_answered_before_any_flow(case: str, command: list[object], expected: str, env: Lake,
                                            tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    versions = {t: env.version(t) for t in TABLES if env.exists(t)}
    (tmp_path / "dir").mkdir()
    argv: list[str] = []
    for part in command:
        if isinstance(part, dict):
            ((name, content),) = part.items()
            argv.append(write(tmp_path, name if "." in name else f"{name}.json", content))
        elif part == "@dir":
            argv.append(str(tmp_path / "dir"))
        else:
            argv.append(str(part))
    code = cli(argv)
    out, err = capsys.readouterr()
    assert code == 2, f"{case}: exit {code}\nstdout: {out}\nstderr: {err}"
    assert expected in err, f"{case}: {err!r}"
    assert "Traceback" not in err + out
    assert err.startswith("error: ") and len(err) < 4000
    lines = err.strip().splitlines()
    assert all(len(line) < 600 for line in lines), lines
    after = {t: env.version(t) for t in TABLES if env.exists(t)}
    assert after == versions, f"{case}: the lake changed"


@pytest.mark.parametrize("argv", [["sql", "SELECT count(*) FROM runs"], ["lake", "status"]])
def test_read_only_commands_refuse_a_lake_path_that_does_not_exist(
        argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "typo" / "lake"
    monkeypatch.setenv("BACKLAKE_LAKE_URI", str(missing))
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert f"the lake directory {missing} does not exist" in err and "Traceback" not in err
    assert not missing.exists() and not missing.parent.exists()  # nothing created


@pytest.mark.parametrize(("uri", "expected"), [("s3:/bucket", "has no bucket"), ("ftp://host/x", "scheme 'ftp'"),
                                               ("s3://", "has no bucket")])
def test_malformed_lake_uris_are_one_line(uri: str, expected: str, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BACKLAKE_LAKE_URI", uri)
    assert cli(["lake", "status"]) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1 and "pydantic" not in err
