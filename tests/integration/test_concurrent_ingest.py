"""Concurrent ingests on a moto S3 lake over HTTP: writer processes released at the same
instant (a sync-file barrier, as in test_reliability.py) ingest overlapping bars into one
``bars`` table. Each (symbol, timeframe, ts) must land exactly once, and the counts the
writers report must add up to what the table holds (ingest is serialisable: the rows to add
are decided on the version the commit lands on). The same with ``revise=True``: each changed
bar is revised by exactly one writer."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from backlake.data.ingest import ingest_bars
from backlake.data.synthetic import synthetic_bars
from backlake.lake import Lake
from backlake.settings import Settings
from tests.conftest import REPO, wait_until

pytestmark = [pytest.mark.s3, pytest.mark.slow]

KEY = ["symbol", "timeframe", "ts"]
VALUES = ["open", "high", "low", "close", "volume"]
N_WRITERS = 4
#: the bars the writers slice their input from: 8,000 daily bars of SYN0 and SYN1
PERIODS = 8000
SEED, REVISED_SEED = 11, 12

WRITER = r"""
import json, sys, time
from pathlib import Path
import polars as pl
from backlake.data.ingest import ingest_bars
from backlake.data.synthetic import synthetic_bars
from backlake.lake import Lake

spec = json.loads(sys.argv[1])
sync = Path(sys.argv[2])
frames = {seed: synthetic_bars(("SYN0", "SYN1"), periods=spec["periods"], seed=seed).sort("symbol", "ts")
          for seed in {s["seed"] for s in spec["slices"]}}
bars = pl.concat([frames[s["seed"]].filter(pl.col("symbol") == s["symbol"]).slice(s["offset"], s["length"])
                  for s in spec["slices"]])
lake = Lake()
(sync / f"ready-{spec['writer']}").touch()
deadline = time.monotonic() + 120
while not (sync / "go").exists():  # all writers ingest together
    if time.monotonic() > deadline:
        raise SystemExit("no go signal")
    time.sleep(0.01)
started = time.time()
report = ingest_bars(lake, bars, revise=spec["revise"])
out = {k: v for k, v in report.to_dict().items() if k != "validation"}
print("REPORT " + json.dumps({**out, "rows_in": bars.height, "started": started, "finished": time.time()}), flush=True)
"""


# -- child processes (as in test_reliability.py, kept here so this file stands alone) ---------
def child_env() -> dict[str, str]:
    """This process's environment (BACKLAKE_* and AWS_* included) for a child process."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_API_KEY")}
    return {**env, "PYTHONUNBUFFERED": "1"}


@contextlib.contextmanager
def spawned(args: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """A child process in its own session (output to ``log``); always killed and reaped on exit."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)


# -- the bars ------------------------------------------------------------------------------
def sliced(seed: int, symbol: str, offset: int, length: int) -> dict:
    return {"seed": seed, "symbol": symbol, "offset": offset, "length": length}


def source_bars(seed: int) -> pl.DataFrame:
    return synthetic_bars(("SYN0", "SYN1"), periods=PERIODS, seed=seed).sort("symbol", "ts")


def take(frame: pl.DataFrame, s: dict) -> pl.DataFrame:
    return frame.filter(pl.col("symbol") == s["symbol"]).slice(s["offset"], s["length"])


def run_writers(tmp_path: Path, specs: list[dict], timeout: float = 240) -> list[dict]:
    """Start one process per spec, release them at once, return their reports."""
    sync = tmp_path / "sync"
    sync.mkdir()
    logs = [tmp_path / f"ingest-{i}.log" for i in range(len(specs))]
    with contextlib.ExitStack() as stack:
        procs = [stack.enter_context(spawned([sys.executable, "-c", WRITER, json.dumps(spec), str(sync)], log,
                                             child_env()))
                 for spec, log in zip(specs, logs)]
        wait_until(lambda: len(list(sync.glob("ready-*"))) == len(specs)
                   or any(p.poll() is not None for p in procs), 120, "writers ready")
        (sync / "go").touch()
        t0 = time.monotonic()
        for p, log in zip(procs, logs):
            try:
                rc = p.wait(timeout=max(1.0, t0 + timeout - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"writer {p.pid} did not finish in {timeout}s:\n{log.read_text()[-3000:]}")
            assert rc == 0, f"writer {p.pid} exited {rc}:\n{log.read_text()[-5000:]}"
        print(f"\n{len(specs)} concurrent ingests took {time.monotonic() - t0:.1f}s")
    reports = []
    for log in logs:
        (line,) = [x for x in log.read_text().splitlines() if x.startswith("REPORT ")]
        reports.append(json.loads(line.removeprefix("REPORT ")))
    # they really ran at the same time: every one started before any finished
    assert max(r["started"] for r in reports) < min(r["finished"] for r in reports), reports
    return reports


def assert_each_bar_once(bars: pl.DataFrame) -> None:
    dup = bars.group_by(KEY).len().filter(pl.col("len") > 1)
    assert dup.is_empty(), f"{dup.height} bar(s) stored more than once, e.g.:\n{dup.head()}"


@pytest.mark.timeout(300)
def test_concurrent_ingests_store_each_bar_once(s3_settings: Settings, tmp_path: Path):
    # every writer: all 5,000 SYN0 bars, and 3,500 SYN1 bars overlapping its neighbours'
    specs = [{"writer": i, "periods": PERIODS, "revise": False,
              "slices": [sliced(SEED, "SYN0", 0, 5000), sliced(SEED, "SYN1", 1500 * i, 3500)]}
             for i in range(N_WRITERS)]
    source = source_bars(SEED)
    union = pl.concat([take(source, s) for spec in specs for s in spec["slices"]]).unique(KEY)
    assert union.height == 5000 + 8000

    reports = run_writers(tmp_path, specs)
    lake = Lake(s3_settings)
    bars = lake.read("bars")
    assert_each_bar_once(bars)
    assert bars.height == union.height
    assert bars.select(*KEY, *VALUES).sort(KEY).equals(union.select(*KEY, *VALUES).sort(KEY))
    assert sum(r["rows_new"] for r in reports) == bars.height
    assert all(r["rows_new"] + r["rows_existing"] == r["rows_in"] == 8500 and r["rows_revised"] == 0
               for r in reports), reports
    # each writer that added bars made one commit of its own, holding exactly its new bars, and
    # reported that commit's version (other commits: CREATE TABLE; writers racing to create the
    # empty table can add a second one, see Lake.ensure)
    commits = {h["version"]: h for h in lake.table("bars").history()}
    wrote = {r["bars_version"]: r["rows_new"] for r in reports if r["rows_new"]}
    assert len(wrote) == sum(1 for r in reports if r["rows_new"])
    assert {v: (commits[v]["operation"], commits[v]["operationMetrics"]["num_added_rows"]) for v in wrote} == {
        v: ("WRITE", n) for v, n in wrote.items()}
    assert sorted(v for v, h in commits.items() if h["operation"] == "WRITE") == sorted(wrote)
    print("rows_new per writer:", [r["rows_new"] for r in reports], "bars versions:", sorted(wrote))


@pytest.mark.timeout(300)
def test_concurrent_revisions_revise_each_bar_once(s3_settings: Settings, tmp_path: Path):
    lake = Lake(s3_settings)
    source, revised = source_bars(SEED), source_bars(REVISED_SEED)
    base = pl.concat([take(source, sliced(SEED, "SYN0", 0, 5000)), take(source, sliced(SEED, "SYN1", 0, PERIODS))])
    assert ingest_bars(lake, base).rows_new == base.height
    v0 = lake.version("bars")
    before = lake.read("bars").select(*KEY, *VALUES).sort(KEY)

    # every writer: an overlapping range of revised SYN0 bars (changed values for bars 0-4,999,
    # new ones for 5,000-5,999) and unchanged SYN1 bars
    specs = [{"writer": i, "periods": PERIODS, "revise": True,
              "slices": [sliced(REVISED_SEED, "SYN0", 1100 * i, 2700), sliced(SEED, "SYN1", 2000 * i, 2000)]}
             for i in range(N_WRITERS)]
    syn0 = pl.concat([take(revised, specs[i]["slices"][0]) for i in range(N_WRITERS)]).unique(KEY)
    assert syn0.height == 6000
    n_changed = (syn0.join(base, on=KEY, suffix="_old")
                 .filter(pl.any_horizontal([pl.col(c).ne_missing(pl.col(f"{c}_old")) for c in VALUES])).height)
    assert n_changed > 4900

    reports = run_writers(tmp_path, specs)
    bars = lake.read("bars").select(*KEY, *VALUES).sort(KEY)
    assert_each_bar_once(bars)
    want = pl.concat([syn0, base.filter(pl.col("symbol") == "SYN1")]).select(*KEY, *VALUES).sort(KEY)
    assert bars.equals(want)
    # serialisable: every changed bar revised by exactly one writer, every new bar added once
    assert sum(r["rows_revised"] for r in reports) == n_changed, reports
    assert sum(r["rows_new"] for r in reports) == 1000, reports
    assert all(r["rows_new"] + r["rows_revised"] + r["rows_existing"] == r["rows_in"] == 4700 for r in reports)
    # one MERGE per writer that changed anything, at the version it reported, with its counts
    wrote = {r["bars_version"]: r for r in reports if r["rows_new"] or r["rows_revised"]}
    assert sorted(wrote) == list(range(v0 + 1, lake.version("bars") + 1))
    for v, h in ((h["version"], h) for h in lake.table("bars").history() if h["version"] > v0):
        m = h["operationMetrics"]
        assert (h["operation"], m["num_target_rows_updated"], m["num_target_rows_inserted"]) == (
            "MERGE", wrote[v]["rows_revised"], wrote[v]["rows_new"]), (v, m)
    # the version before the revisions still holds the old values
    assert lake.read("bars", version=v0).select(*KEY, *VALUES).sort(KEY).equals(before)
    print("rows_revised per writer:", [r["rows_revised"] for r in reports],
          "rows_new:", [r["rows_new"] for r in reports])
