"""`backlake backtest one.json` end to end with the local Prefect server running (not part of
`make test`):

    .venv/bin/python tests/benchmarks/bench_cli.py [--runs 5] [--before 2]

In a temporary Prefect home and a temporary local lake: `backlake server start` (timed), the
S&P 500 sample ingested with `backlake ingest`, one warm-up backtest (numba's cache and the
OS's file cache), then `backlake backtest one.json` --runs times, each a fresh process with a
config of its own (another `fast`), so every run is new: wall time from spawning the command
to its exit, median. Each run is then checked in the lake (`runs`, status completed) and on
the server (a Completed `backtest` flow run, read with Prefect's client), and the UI answers.

--before N also times the same command as it ran before the recorded server: Prefect's own
temporary server started by each command (no API URL; one Prefect home whose database a
warm-up run created), median of N.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BACKLAKE = Path(sys.executable).parent / "backlake"


def cli(args: list[str], env: dict[str, str], check: bool = True) -> tuple[float, subprocess.CompletedProcess]:
    cmd = [str(BACKLAKE)] if BACKLAKE.exists() else [sys.executable, "-m", "flows.cli"]
    t = time.perf_counter()
    out = subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    if check and out.returncode != 0:
        raise SystemExit(f"backlake {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr[-4000:]}")
    return wall, out


def config(fast: int) -> dict:
    return {"strategy": "sma_crossover", "params": {"fast": fast, "slow": 100}, "universe": ["SP500"],
            "costs": {"commission_bps": 10}}


BEFORE = """
import sys
from flows.cli.entry import build_parser
args = build_parser().parse_args(["backtest", sys.argv[1]])
sys.exit(args.fn(args))  # the command without server.use_prefect_api: Prefect's temporary server
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--before", type=int, default=2, help="runs of the old way (0: skip)")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        home, lake = Path(tmp) / "prefect", Path(tmp) / "lake"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_API_KEY")}
        env.update(PREFECT_HOME=str(home), BACKLAKE_LAKE_URI=str(lake), PREFECT_SERVER_ANALYTICS_ENABLED="false")
        for k in ("BACKLAKE_S3_ENDPOINT_URL", "BACKLAKE_S3_ALLOW_HTTP"):
            env.pop(k, None)
        try:
            t_start, _ = cli(["server", "start"], env)
            state = json.loads((home / "backlake-server.json").read_text())
            rows.append(("`backlake server start` (fresh Prefect home: creates the database)", f"{t_start:.1f} s", "", ""))
            cli(["ingest", "--source", "samples", "--symbols", "SP500"], env)
            (Path(tmp) / "warm.json").write_text(json.dumps(config(3)))
            t_warm, _ = cli(["backtest", str(Path(tmp) / "warm.json")], env)
            times = []
            for i in range(a.runs):
                f = Path(tmp) / f"one-{i}.json"
                f.write_text(json.dumps(config(5 + i)))
                t, out = cli(["backtest", str(f)], env)
                assert "started a local Prefect server" not in out.stderr, "the server should be running"
                times.append(t)
                print(f"run {i + 1}: {t:.2f} s", file=sys.stderr)
            med = statistics.median(times)
            rows.append((f"`backlake backtest one.json`, S&P 500, server running: median of {a.runs} (fresh process each)",
                         f"{med:.2f} s", f"{min(times):.2f}-{max(times):.2f} s", "<= 3 s"))
            rows.append(("(the warm-up run before them)", f"{t_warm:.2f} s", "", ""))

            # every run in the lake, every flow run on the server, the UI up
            sys.path[:0] = [str(REPO / "lib"), str(REPO)]
            from backlake.lake import Lake
            from backlake.settings import Settings

            runs = Lake(Settings(lake_uri=str(lake))).read("runs")
            done = runs.filter(runs["status"] == "completed").height
            assert done == a.runs + 1, f"{done} completed runs in the lake, expected {a.runs + 1}"
            os.environ["PREFECT_API_URL"] = state["url"]
            from prefect.client.orchestration import get_client
            from prefect.client.schemas.filters import FlowFilter, FlowFilterName

            with get_client(sync_client=True) as client:
                flow_runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["backtest"])))
            completed = [r for r in flow_runs if r.state and r.state.is_completed()]
            assert len(completed) == a.runs + 1, f"{len(completed)} completed backtest flow runs on the server"
            with urllib.request.urlopen(f"{state['url'].removesuffix('/api')}/", timeout=10) as r:
                assert r.status == 200
            print(f"checked: {done} completed runs in the lake, {len(completed)} completed `backtest` flow runs "
                  f"on {state['url']}, its UI answers", file=sys.stderr)
        finally:
            cli(["server", "stop"], env, check=False)

        if a.before:
            before = []
            ph = Path(tmp) / "prefect-before"  # one home, its database created by a warm-up run (not timed)
            ph.mkdir()
            for i in range(-1, a.before):
                f = Path(tmp) / f"before-{i}.json"
                f.write_text(json.dumps(config(30 + i)))
                t = time.perf_counter()
                out = subprocess.run([sys.executable, "-c", BEFORE, str(f)], cwd=REPO, capture_output=True, text=True,
                                     env={**env, "PREFECT_HOME": str(ph),
                                          "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"})
                if i >= 0:
                    before.append(time.perf_counter() - t)
                if out.returncode != 0:
                    raise SystemExit(f"the old way failed:\n{out.stderr[-4000:]}")
            rows.append((f"before: the same command starting Prefect's temporary server, median of {a.before}",
                         f"{statistics.median(before):.2f} s", f"{min(before):.2f}-{max(before):.2f} s", ""))

    print("| case | measured | range | target |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
