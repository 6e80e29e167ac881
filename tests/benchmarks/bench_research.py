"""Research benchmarks (not part of `make test`):

    .venv/bin/python tests/benchmarks/bench_research.py [--cases sweep_flow query] [--runs 10000]

- sweep_flow: the 3930-pair SMA sweep on the S&P 500 sample through the `sweep` flow into a
  local lake, with a Prefect server already running (started here, PREFECT_API_URL set), vs
  the compute-only `backlake.sweep` of the same grid: median wall time of 3 runs each (every
  flow run writes a fresh sweep: the grid's objective differs per run so nothing is reused),
  and peak RSS above the warmed-up baseline of one run each in a fresh process.
- query: a lake with N stored runs (runs + metrics + 2520-bar equity curves per run; the
  rows are synthetic random walks written through the lake's run-idempotent appends, then
  z-ordered by run_id by maintenance), and the dashboard's comparison query through
  `backlake.lake.connect()`: metrics of 5 runs side by side plus their equity curves. Median
  of 5 queries on a warm connection, and the first query on a fresh connection.
- optimize: a 32-trial TPE study on two workloads (SMA crossover on the S&P 500 sample, a
  few ms a trial; RSI mean reversion on 20 synthetic assets x 40,000 bars, ~0.25 s a trial):
  the library study on this process vs the `optimize` flow with --parallel 1 (the study in
  one task), --parallel 4 on threads, on a new 2-worker local Dask cluster per flow run
  (the default of --runner dask) and on a running 2-worker cluster given by address (Prefect
  server running; every run a new seed, so nothing is reused; best of 2). Informational.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

FAST = list(range(5, 51))
SLOW = list(range(20, 201, 2))
CFG = {"strategy": "sma_crossover", "universe": ["SP500"], "costs": {"commission_bps": 10}}


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_prefect_server(home: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    import urllib.request

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            return proc, url
        except Exception:
            time.sleep(0.5)
    proc.kill()
    raise TimeoutError("the Prefect server did not start in 120 s")


def _sweep_fns(lake_dir: str):
    import backlake as bl
    from backlake.data.samples import load_samples
    from backlake.lake import Lake
    from backlake.data.ingest import ingest_bars
    from backlake.settings import Settings

    lake = Lake(Settings(lake_uri=lake_dir))
    if not lake.exists("bars"):
        ingest_bars(lake, load_samples(["SP500"]))
    bars = lake.read("bars")
    cfg = bl.BacktestConfig.model_validate(CFG)
    grid = {"fast": FAST, "slow": SLOW}
    objectives = iter(["sharpe", "sortino", "calmar", "total_return", "cagr"] * 4)

    def compute():
        return bl.sweep(cfg, grid, bars)

    def flow():
        from flows.sweep import sweep_flow

        return sweep_flow(CFG, grid, objective=next(objectives), lake_uri=lake_dir)

    return compute, flow


def child(case: str, lake_dir: str) -> None:
    compute, flow = _sweep_fns(lake_dir)
    fn = compute if case == "compute" else flow
    fn()
    Path("/proc/self/clear_refs").write_text("5")
    base = _rss_kib("VmRSS")
    fn()
    print(json.dumps({"peak_mib": (_rss_kib("VmHWM") - base) / 1024}))


def bench_sweep_flow(rows: list) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_prefect_server(Path(tmp) / "prefect")
        os.environ["PREFECT_API_URL"] = url
        try:
            lake_dir = str(Path(tmp) / "lake")
            compute, flow = _sweep_fns(lake_dir)
            compute()
            flow()  # warm: numba caches, the Prefect client
            t_c, t_f = [], []
            for _ in range(3):
                t = time.perf_counter(); compute(); t_c.append(time.perf_counter() - t)
                t = time.perf_counter(); flow(); t_f.append(time.perf_counter() - t)
            mem = {}
            for case in ("compute", "flow"):
                out = subprocess.run([sys.executable, __file__, "--child", case, lake_dir], capture_output=True,
                                     text=True, check=True, env={**os.environ})
                mem[case] = json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]
        finally:
            os.killpg(proc.pid, 9)
    c, f = statistics.median(t_c), statistics.median(t_f)
    rows.append(("3930-pair sweep: sweep flow into the lake vs compute-only sweep", f"{f:.2f} s vs {c:.2f} s",
                 f"{f / c:.2f}x", "<= 2x"))
    rows.append(("same: peak memory above baseline", f"{mem['flow']:.0f} MiB vs {mem['compute']:.0f} MiB",
                 f"{mem['flow'] / max(mem['compute'], 1e-9):.2f}x", "<= 1.5x"))
    return {"flow_s": f, "compute_s": c, "flow_peak_mib": mem["flow"], "compute_peak_mib": mem["compute"]}


COMPARE_SQL = """
WITH picked AS (SELECT unnest(?::VARCHAR[]) AS run_id)
SELECT m.name,
       max(m.value) FILTER (WHERE m.run_id = (SELECT run_id FROM picked LIMIT 1 OFFSET 0)) AS r1,
       max(m.value) FILTER (WHERE m.run_id = (SELECT run_id FROM picked LIMIT 1 OFFSET 1)) AS r2,
       max(m.value) FILTER (WHERE m.run_id = (SELECT run_id FROM picked LIMIT 1 OFFSET 2)) AS r3,
       max(m.value) FILTER (WHERE m.run_id = (SELECT run_id FROM picked LIMIT 1 OFFSET 3)) AS r4,
       max(m.value) FILTER (WHERE m.run_id = (SELECT run_id FROM picked LIMIT 1 OFFSET 4)) AS r5
FROM metrics m JOIN runs r USING (run_id)
WHERE r.status = 'completed' AND m.segment = 'full' AND m.run_id IN (SELECT run_id FROM picked)
GROUP BY m.name ORDER BY m.name
"""
EQUITY_SQL = """
SELECT e.run_id, e.ts, e.equity, e.benchmark_equity FROM equity e
WHERE e.run_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY e.run_id, e.ts
"""


def build_runs_lake(lake_dir: str, n_runs: int, n_bars: int = 2520, batch: int = 500) -> list[str]:
    from backlake.lake import Lake
    from backlake.lake.maintenance import maintain
    from backlake.settings import Settings

    lake = Lake(Settings(lake_uri=lake_dir))
    rng = np.random.default_rng(0)
    ts = pl.datetime_range(dt.datetime(2010, 1, 1), dt.datetime(2010, 1, 1) + dt.timedelta(days=n_bars - 1),
                           "1d", eager=True, time_zone="UTC").dt.cast_time_unit("us")
    import hashlib

    ids = [hashlib.sha256(str(i).encode()).hexdigest()[:16] for i in range(n_runs)]  # like real run ids
    now = dt.datetime.now(dt.timezone.utc)
    names = ["total_return", "cagr", "sharpe", "sortino", "max_drawdown", "n_trades", "win_rate", "calmar"]
    for start in range(0, n_runs, batch):
        chunk = ids[start:start + batch]
        k = len(chunk)
        rets = rng.normal(0.0003, 0.01, (k, n_bars))
        eq = 10_000 * np.exp(np.cumsum(rets, axis=1))
        lake.append_for_runs("equity", pl.DataFrame({
            "run_id": np.repeat(chunk, n_bars), "ts": pl.concat([ts] * k), "equity": eq.ravel(),
            "cash": 0.0, "gross_exposure": 1.0, "net_exposure": 1.0,
            "drawdown": (eq / np.maximum.accumulate(eq, axis=1) - 1).ravel(), "ret": rets.ravel(),
            "benchmark_equity": eq.ravel(),
        }), chunk)
        lake.append_for_runs("metrics", pl.DataFrame({
            "run_id": np.repeat(chunk, len(names)), "segment": "full", "name": names * k,
            "value": rng.normal(0, 1, k * len(names)),
        }), chunk)
        lake.upsert_runs(pl.DataFrame({
            "run_id": chunk, "parent_id": None, "kind": "backtest", "strategy": "sma_crossover", "symbols": "SYN",
            "timeframe": "1d", "params": "{}", "config": "{}", "config_id": "x", "data_versions": '{"bars": 1}',
            "code_version": "bench", "created_by": "bench", "created_at": now, "finished_at": now,
            "status": "completed", "error": None, "total_return": rng.normal(0, 1, k), "cagr": 0.0, "sharpe": 0.0,
            "sortino": 0.0, "max_drawdown": -0.1, "n_trades": 10,
        }, schema_overrides={"parent_id": pl.String, "error": pl.String}))
    from deltalake import DeltaTable

    for t in ("equity", "metrics", "runs"):  # maintenance lays files out by run_id so scans prune
        DeltaTable(lake.uri(t)).optimize.z_order(["run_id"])
    maintain(lake, compact=False, vacuum_retention_hours=None, failed_retention_days=None)
    return ids


def bench_query(rows: list, n_runs: int) -> dict:
    from backlake.lake import connect
    from backlake.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        lake_dir = str(Path(tmp) / "lake")
        t = time.perf_counter()
        ids = build_runs_lake(lake_dir, n_runs)
        build = time.perf_counter() - t
        rng = np.random.default_rng(1)
        picks = [list(rng.choice(ids, 5, replace=False)) for _ in range(6)]
        con = connect(Settings(lake_uri=lake_dir))

        def query(p):
            m = con.execute(COMPARE_SQL, [p]).pl()
            e = con.execute(EQUITY_SQL, [p]).pl()
            assert m.height == 8 and e.height == 5 * 2520, (m.height, e.height)

        t = time.perf_counter(); query(picks[0]); first = time.perf_counter() - t
        times = []
        for p in picks[1:]:
            t = time.perf_counter(); query(p); times.append(time.perf_counter() - t)
        con.close()
    q = statistics.median(times)
    rows.append((f"compare 5 runs (metrics + equity curves) over {n_runs:,} stored runs",
                 f"{q * 1000:.0f} ms (first query {first * 1000:.0f} ms)", "", "< 1 s"))
    return {"runs": n_runs, "query_s": q, "first_query_s": first, "build_s": build}


OPT_SPACE = {"fast": {"low": 5, "high": 50}, "slow": {"low": 20, "high": 200, "step": 2}}
HEAVY_SYMBOLS = [f"S{i:02d}" for i in range(20)]
HEAVY_CFG = {"strategy": "rsi_mean_reversion", "universe": HEAVY_SYMBOLS, "sizing": {"method": "equal_weight"}}
HEAVY_SPACE = {"window": {"low": 5, "high": 30}, "oversold": {"low": 15.0, "high": 40.0}}


def bench_optimize(rows: list, n_trials: int = 32) -> dict:
    import backlake as bl
    from backlake.data.ingest import ingest_bars
    from backlake.data.samples import load_samples
    from backlake.data.synthetic import synthetic_bars
    from backlake.lake import Lake
    from backlake.research.optimize import optimize
    from backlake.settings import Settings

    workloads = {
        "S&P 500 daily, 1 asset": (CFG, OPT_SPACE, lambda: load_samples(["SP500"])),
        "20 assets x 40,000 bars": (HEAVY_CFG, HEAVY_SPACE,
                                    lambda: synthetic_bars(HEAVY_SYMBOLS, periods=40_000, seed=1)),
    }
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_prefect_server(Path(tmp) / "prefect")
        os.environ["PREFECT_API_URL"] = url
        try:
            from flows._common import task_runner
            from flows.research import optimize_flow

            from distributed import LocalCluster

            dask_flow = optimize_flow.with_options(task_runner=task_runner("dask", n_workers=2))
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
            on_cluster = optimize_flow.with_options(task_runner=task_runner("dask", cluster.scheduler_address))
            seeds = iter(range(1000))
            for wname, (cfg_dict, space, load) in workloads.items():
                lake_dir = str(Path(tmp) / f"lake-{len(out)}")
                lake = Lake(Settings(lake_uri=lake_dir))
                ingest_bars(lake, load())
                cfg = bl.BacktestConfig.model_validate(cfg_dict)
                bars = lake.read("bars", where={"symbol": cfg.symbols})
                optimize(cfg, space, bars, n_trials=4, seed=next(seeds))  # warm: numba caches, imports
                optimize_flow(cfg_dict, space, n_trials=4, seed=next(seeds), lake_uri=lake_dir)

                def flow(fn, parallel):
                    return lambda s: fn(cfg_dict, space, n_trials=n_trials, seed=s, parallel=parallel, lake_uri=lake_dir)

                cases = {
                    "library, one process": lambda s: optimize(cfg, space, bars, n_trials=n_trials, seed=s),
                    "flow --parallel 1 (one task)": flow(optimize_flow, 1),
                    "flow --parallel 4, threads": flow(optimize_flow, 4),
                    "flow --parallel 4, new local Dask cluster of 2 workers": flow(dask_flow, 4),
                    "flow --parallel 4, running Dask cluster of 2 workers (--address)": flow(on_cluster, 4),
                }
                on_cluster(cfg_dict, space, n_trials=4, seed=next(seeds), parallel=4, lake_uri=lake_dir)  # warm workers
                times: dict[str, float] = {}
                for name, fn in cases.items():
                    runs = []
                    for _ in range(2):
                        t = time.perf_counter(); fn(next(seeds)); runs.append(time.perf_counter() - t)
                    times[name] = min(runs)
                base = times["library, one process"]
                per_trial = base / n_trials
                for name, t in times.items():
                    rows.append((f"{n_trials}-trial TPE study, {wname} (~{per_trial * 1000:.0f} ms a trial): {name}",
                                 f"{t:.2f} s", f"{t / base:.2f}x", "(informational)"))
                out[wname] = times
            cluster.close()
        finally:
            os.killpg(proc.pid, 9)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cases", nargs="+", default=["sweep_flow", "query"])
    p.add_argument("--runs", type=int, default=10_000)
    p.add_argument("--child", nargs=2)
    p.add_argument("--json")
    args = p.parse_args()
    if args.child:
        child(*args.child)
        return
    rows: list = []
    res = {}
    if "sweep_flow" in args.cases:
        res["sweep_flow"] = bench_sweep_flow(rows)
    if "query" in args.cases:
        res["query"] = bench_query(rows, args.runs)
    if "optimize" in args.cases:
        res["optimize"] = bench_optimize(rows)
    print(f"\n{os.cpu_count()} cores\n\n| case | measured | ratio | target |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
