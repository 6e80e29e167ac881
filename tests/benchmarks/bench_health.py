"""Health-check benchmark (not part of `make test`):

    .venv/bin/python tests/benchmarks/bench_health.py [--repeat 5] [--runs 10]

A moto S3 lake (its own process, over HTTP) holding the real sample bars of every shipped
symbol, ``--runs`` SMA backtests through the run protocol (runs, run_events, equity, trades,
metrics), and live P&L of 3 strategies. Measured:

- cold: a new ``Lake`` and ``lake_monitor`` (no handle, no cache) checking every source;
  target < 1 s;
- warm: the same monitor again within the TTL (what every dashboard session polling costs);
  target < 50 ms;
- refresh: the same monitor after its TTLs expired (handles brought up to date incrementally).

Prints the median and worst of ``--repeat`` measurements and exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "benchmarks"))

from bench_commits import start_moto  # noqa: E402

COLD_TARGET = 1.0
WARM_TARGET = 0.050


def build_lake(settings, n_runs: int) -> None:
    import polars as pl

    from backlake.config import BacktestConfig
    from backlake.data.ingest import ingest_bars
    from backlake.data.samples import load_samples
    from backlake.lake import Lake
    from backlake.runs.backtest import commit_outcomes, execute_run, plan_runs

    lake = Lake(settings)
    ingest_bars(lake, load_samples())
    configs = [BacktestConfig.model_validate({
        "strategy": "sma_crossover", "params": {"fast": 5 + i, "slow": 40 + 5 * i}, "universe": ["GOOG"],
        "timeframe": "1d", "initial_cash": 10_000}) for i in range(n_runs)]
    planned = plan_runs(lake, configs)
    outcomes = [execute_run(lake, p) for p in planned]
    errors = [o.error for o in outcomes if o.error]
    if errors:
        raise SystemExit(f"backtests failed: {errors}")
    commit_outcomes(lake, outcomes, created_by="bench")
    for name in ("alpha", "beta", "gamma"):
        days = 250
        lake.append("live_pnl", pl.DataFrame({
            "strategy": [name] * days, "date": [dt.date(2025, 1, 1) + dt.timedelta(days=i) for i in range(days)],
            "daily_pnl": [float(i % 7 - 3) for i in range(days)],
        }))


def measure(settings, repeat: int) -> dict[str, list[float]]:
    from backlake.analytics.health import lake_monitor
    from backlake.lake import Lake

    out: dict[str, list[float]] = {"cold": [], "warm": [], "refresh": []}
    sources = 0
    for _ in range(repeat):
        now = {"t": dt.datetime.now(dt.UTC)}
        t0 = time.perf_counter()
        monitor = lake_monitor(Lake(settings, check=False), clock=lambda n=now: n["t"])
        results = monitor.results()
        out["cold"].append(time.perf_counter() - t0)
        sources = len(results)
        t0 = time.perf_counter()
        for _ in range(10):
            monitor.results()
        out["warm"].append((time.perf_counter() - t0) / 10)
        now["t"] += dt.timedelta(seconds=61)
        t0 = time.perf_counter()
        monitor.results()
        out["refresh"].append(time.perf_counter() - t0)
        assert all(r.status != "ERROR" for r in results), [(r.source, r.message) for r in results]
    print(f"{sources} sources checked")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--runs", type=int, default=10)
    args = p.parse_args()
    moto, endpoint = start_moto()
    try:
        import boto3

        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                     aws_access_key_id="x", aws_secret_access_key="x").create_bucket(Bucket=bucket)
        os.environ.update({"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
                           "BACKLAKE_LAKE_URI": f"s3://{bucket}/lake", "BACKLAKE_S3_ENDPOINT_URL": endpoint,
                           "BACKLAKE_S3_ALLOW_HTTP": "true"})
        from backlake.settings import get_settings

        settings = get_settings()
        t0 = time.perf_counter()
        build_lake(settings, args.runs)
        print(f"lake built on moto S3 in {time.perf_counter() - t0:.1f} s ({settings.lake_uri})")
        timings = measure(settings, args.repeat)
    finally:
        moto.terminate()
        moto.wait(timeout=10)
    ok = True
    for name, target in (("cold", COLD_TARGET), ("warm", WARM_TARGET), ("refresh", None)):
        xs = timings[name]
        verdict = "" if target is None else ("  OK" if max(xs) < target else "  MISSED")
        ok &= target is None or max(xs) < target
        goal = f" (target < {target * 1000:.0f} ms)" if target else ""
        print(f"{name:8s} median {statistics.median(xs) * 1000:8.2f} ms  worst {max(xs) * 1000:8.2f} ms{goal}{verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
