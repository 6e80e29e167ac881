"""Commit benchmark for the run protocol (not part of `make test`):

    .venv/bin/python tests/benchmarks/bench_commits.py [--runs 200] [--procs 4] [--code DIR ...]

200 distinct single-asset backtests (SMA crossover on 4 synthetic symbols x 1,000 daily bars)
written to a moto S3 lake (its own process, over HTTP) through `backlake backtest`, with a
Prefect server already running (started here, PREFECT_API_URL set):

- batched: all configs as one JSON list, one `backlake backtest` process;
- concurrent: the same configs split over `--procs` processes started together (each its
  own `backlake backtest` of runs/procs configs).

Reported per case: wall time of the `backlake backtest` commands (Python start-up, flow and
lake writes included; the bars are ingested before and not timed), runs per second, and
commits made per run (Delta versions added across every table / runs). Every case uses a
fresh bucket, so nothing is reused.

`--code DIR` (repeatable) runs the same cases with the code of another checkout (e.g. a
`git worktree` of an older commit), put first on PYTHONPATH, for before/after figures in one
run; the current tree is always measured, last.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "benchmarks"))

from bench_research import start_prefect_server  # noqa: E402

SYMBOLS = ("SYN0", "SYN1", "SYN2", "SYN3")
TABLES = ("bars", "runs", "run_events", "equity", "trades", "metrics")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return proc, f"http://127.0.0.1:{port}"
        time.sleep(0.1)
    proc.kill()
    raise TimeoutError("moto did not start")


def configs(n: int) -> list[dict]:
    out = []
    fasts, slows = list(range(3, 28)), list(range(30, 110, 10))
    for k in range(n):
        sym = SYMBOLS[k % len(SYMBOLS)]
        f, s = fasts[(k // len(SYMBOLS)) % len(fasts)], slows[(k // (len(SYMBOLS) * len(fasts))) % len(slows)]
        out.append({"strategy": "sma_crossover", "params": {"fast": f, "slow": s}, "universe": [sym],
                    "costs": {"commission_bps": 5}})
    assert len({json.dumps(c, sort_keys=True) for c in out}) == n
    return out


def lake_env(endpoint: str, bucket: str, prefect_url: str, code: Path | None) -> dict[str, str]:
    env = {**os.environ, "BACKLAKE_LAKE_URI": f"s3://{bucket}/lake", "BACKLAKE_S3_ENDPOINT_URL": endpoint,
           "BACKLAKE_S3_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
           "AWS_REGION": "us-east-1", "PREFECT_API_URL": prefect_url, "PREFECT_LOGGING_LEVEL": "WARNING"}
    if code is not None:
        env["PYTHONPATH"] = f"{code / 'lib'}{os.pathsep}{code}"
    return env


def versions(env: dict[str, str]) -> dict[str, int]:
    script = ("import json; from backlake.lake import Lake; lake = Lake(); "
              f"print(json.dumps({{t: (lake.version(t) if lake.exists(t) else -1) for t in {TABLES!r}}}))")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True,
                         cwd=tempfile.gettempdir())
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def run_case(name: str, cfgs: list[dict], procs: int, endpoint: str, prefect_url: str, code: Path | None,
             work: Path) -> dict[str, float | str]:
    import boto3

    bucket = f"bench-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x",
                 aws_secret_access_key="x").create_bucket(Bucket=bucket)
    env = lake_env(endpoint, bucket, prefect_url, code)
    ingest = ("from backlake.lake import Lake; from backlake.data.ingest import ingest_bars; "
              "from backlake.data.synthetic import synthetic_bars; lake = Lake(); "
              f"ingest_bars(lake, synthetic_bars({SYMBOLS!r}, periods=1000, seed=1)); "
              "[lake.ensure(t) for t in ('runs', 'run_events', 'equity', 'trades', 'metrics')]")
    subprocess.run([sys.executable, "-c", ingest], env=env, check=True, capture_output=True, cwd=work)
    before = versions(env)
    parts = [cfgs[i::procs] for i in range(procs)]
    files = []
    for i, part in enumerate(parts):
        f = work / f"{name}-{i}.json"
        f.write_text(json.dumps(part))
        files.append(f)
    t0 = time.perf_counter()
    running = [subprocess.Popen([sys.executable, "-m", "flows.cli", "backtest", str(f)], env=env, cwd=work,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for f in files]
    for p in running:
        _, err = p.communicate(timeout=1800)
        if p.returncode != 0:
            raise RuntimeError(f"{name}: backtest exited {p.returncode}:\n{err[-3000:]}")
    wall = time.perf_counter() - t0
    after = versions(env)
    commits = sum(after[t] - before[t] for t in TABLES if t != "bars")
    check = ("from backlake.lake import Lake; lake = Lake(); r = lake.read('runs'); "
             "print(r.height, r['run_id'].n_unique())")
    out = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, check=True,
                         cwd=work)
    rows, unique = map(int, out.stdout.split()[-2:])
    if rows != len(cfgs) or unique != len(cfgs):
        raise RuntimeError(f"{name}: runs holds {rows} rows / {unique} run ids, expected {len(cfgs)}")
    return {"case": name, "wall_s": round(wall, 2), "runs_per_s": round(len(cfgs) / wall, 2),
            "commits": commits, "commits_per_run": round(commits / len(cfgs), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200, help="distinct backtests per case")
    ap.add_argument("--procs", type=int, default=4, help="processes of the concurrent case")
    ap.add_argument("--code", type=Path, action="append", default=[],
                    help="another checkout to measure too (its lib/ and root first on PYTHONPATH)")
    args = ap.parse_args()
    cfgs = configs(args.runs)
    moto, endpoint = start_moto()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prefect, url = start_prefect_server(work / "prefect")
        try:
            rows = []
            for code in [*args.code, None]:
                label = str(code) if code else "current"
                for name, procs in (("batched", 1), (f"concurrent-{args.procs}x{args.runs // args.procs}", args.procs)):
                    r = run_case(name, cfgs, procs, endpoint, url, code, work)
                    r = {"code": label, **r}
                    print(json.dumps(r), flush=True)
                    rows.append(r)
        finally:
            for p in (prefect, moto):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, 15)
    print("\n| code | case | wall (s) | runs/s | commits | commits/run |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['code']} | {r['case']} | {r['wall_s']} | {r['runs_per_s']} | {r['commits']} | "
              f"{r['commits_per_run']} |")


if __name__ == "__main__":
    main()
