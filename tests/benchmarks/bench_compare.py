"""Compare benchmark (not part of `make test`):

    .venv/bin/python tests/benchmarks/bench_compare.py [--runs 100000] [--bars 252] [--batch 20000]

Builds a local lake holding N completed runs (default 100,000): ``runs`` rows, ``metrics``
(20 full-period metrics per run), ``equity`` (one row per bar, with per-bar costs) and the
cost summary on the ``runs`` rows, written directly with the Lake API in a few big appends of
synthetic random walks (run ids are hashes, as real ones: a batch's files span every id).
Then ``backlake.analytics.compare.compare_runs`` of 5 random runs (load from the lake through
``backlake.lake.connect()`` + every figure: overlay, metrics diff, tracking error, correlation,
gross basis) is timed:

- as appended (files not laid out by run id), and
- after maintenance's layout (``optimize.z_order(["run_id"])`` on equity, metrics and runs),

each as the median of 7 comparisons on a warm connection, plus the first one on a fresh
connection. Target: < 1 s for 5 runs in a lake of 100,000 runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

METRICS = ("total_return", "cagr", "annual_return", "annual_volatility", "sharpe", "sortino", "calmar",
           "max_drawdown", "max_drawdown_duration_bars", "omega", "ulcer_index", "tail_ratio", "n_trades",
           "n_closed_trades", "win_rate", "profit_factor", "avg_trade_return", "avg_bars_held", "exposure_time",
           "tracking_error")
COSTS = ("total_costs", "cost_commission", "cost_fees", "cost_slippage", "cost_impact")
TARGET_S = 1.0


def build(lake_dir: str, n_runs: int, n_bars: int, batch: int) -> list[str]:
    from backlake.lake import Lake
    from backlake.settings import Settings

    lake = Lake(Settings(lake_uri=lake_dir))
    rng = np.random.default_rng(0)
    ts = pl.datetime_range(dt.datetime(2017, 1, 2), dt.datetime(2017, 1, 2) + dt.timedelta(days=n_bars - 1), "1d",
                           eager=True, time_zone="UTC").dt.cast_time_unit("us")
    ids = [hashlib.sha256(f"run-{i}".encode()).hexdigest()[:16] for i in range(n_runs)]
    now = dt.datetime.now(dt.UTC)
    for start in range(0, n_runs, batch):
        chunk = ids[start:start + batch]
        k = len(chunk)
        rets = rng.normal(0.0003, 0.01, (k, n_bars))
        rets[:, 0] = 0.0
        eq = 100_000 * np.cumprod(1 + rets, axis=1)
        costs = np.where(rng.random((k, n_bars)) < 0.05, rng.uniform(5, 50, (k, n_bars)), 0.0)
        lake.append("equity", pl.DataFrame({
            "run_id": np.repeat(chunk, n_bars), "ts": pl.concat([ts] * k), "equity": eq.ravel(), "cash": 0.0,
            "gross_exposure": 1.0, "net_exposure": 1.0,
            "drawdown": (eq / np.maximum.accumulate(eq, axis=1) - 1).ravel(), "ret": rets.ravel(),
            "benchmark_equity": eq.ravel(), "costs": costs.ravel(), "cost_commission": (costs * 0.6).ravel(),
            "cost_fees": (costs * 0.05).ravel(), "cost_slippage": (costs * 0.35).ravel(), "cost_impact": 0.0,
        }))
        lake.append("metrics", pl.DataFrame({
            "run_id": np.repeat(chunk, len(METRICS)), "segment": "full", "name": np.tile(METRICS, k),
            "value": rng.normal(0, 1, k * len(METRICS)),
        }))
        total = costs.sum(axis=1)
        lake.append("runs", pl.DataFrame({
            "run_id": chunk, "parent_id": None, "kind": "backtest", "strategy": "sma_crossover", "symbols": "SP500",
            "timeframe": "1d", "params": "{}", "config": "{}", "config_id": "x", "data_versions": '{"bars": 1}',
            "code_version": "bench", "created_by": "bench", "created_at": now, "finished_at": now,
            "status": "completed", "error": None, "total_return": rng.normal(0, 1, k), "cagr": 0.0, "sharpe": 0.0,
            "sortino": 0.0, "max_drawdown": -0.1, "n_trades": 10, "total_costs": total,
            "cost_commission": total * 0.6, "cost_fees": total * 0.05, "cost_slippage": total * 0.35, "cost_impact": 0.0,
        }, schema_overrides={"parent_id": pl.String, "error": pl.String}))
    return ids


def time_compares(lake_dir: str, ids: list[str], n_bars: int) -> tuple[float, float, list[float]]:
    from backlake.analytics.compare import compare_runs
    from backlake.lake import connect
    from backlake.settings import Settings

    rng = np.random.default_rng(1)
    picks = [[str(x) for x in rng.choice(ids, 5, replace=False)] for _ in range(8)]
    settings = Settings(lake_uri=lake_dir)
    t = time.perf_counter()
    con = connect(settings)
    cmp = compare_runs(con, picks[0], basis="gross")
    first = time.perf_counter() - t
    assert cmp.overlap_count == n_bars and cmp.basis == "gross" and not cmp.warnings, (cmp.overlap_count, cmp.warnings)
    assert len(cmp.metrics) == len(METRICS) + len(COSTS)
    times = []
    for p in picks[1:]:
        t = time.perf_counter()
        cmp = compare_runs(con, p, basis="gross")
        times.append(time.perf_counter() - t)
        assert cmp.overlap_count == n_bars and all(v is not None for v in cmp.tracking_error.values())
    con.close()
    return statistics.median(times), first, times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--bars", type=int, default=252)
    ap.add_argument("--batch", type=int, default=20_000, help="runs per append (one commit per table)")
    ap.add_argument("--dir", help="build the lake here (default: a temporary directory, removed after)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lake_dir = args.dir or str(Path(tmp) / "lake")
        t = time.perf_counter()
        ids = build(lake_dir, args.runs, args.bars, args.batch)
        built = time.perf_counter() - t
        print(f"lake: {args.runs:,} runs, {args.runs * args.bars:,} equity rows, "
              f"{args.runs * len(METRICS):,} metrics rows; built in {built:.1f} s "
              f"({-(-args.runs // args.batch)} appends per table)")
        med, first, times = time_compares(lake_dir, ids, args.bars)
        print(f"compare 5 runs, as appended: median {med * 1000:.0f} ms over {len(times)} "
              f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}); first on a fresh connection "
              f"{first * 1000:.0f} ms")
        from deltalake import DeltaTable

        from backlake.lake import Lake
        from backlake.settings import Settings

        lake = Lake(Settings(lake_uri=lake_dir))
        t = time.perf_counter()
        for table in ("equity", "metrics", "runs"):  # what maintenance's layout step does
            DeltaTable(lake.uri(table)).optimize.z_order(["run_id"])
        laid = time.perf_counter() - t
        med2, first2, times2 = time_compares(lake_dir, ids, args.bars)
        print(f"compare 5 runs, after z-order by run_id ({laid:.1f} s): median {med2 * 1000:.0f} ms over "
              f"{len(times2)} (min {min(times2) * 1000:.0f}, max {max(times2) * 1000:.0f}); first on a fresh "
              f"connection {first2 * 1000:.0f} ms")
        ok = max(med, med2) < TARGET_S
        print(f"target < {TARGET_S:.0f} s: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
