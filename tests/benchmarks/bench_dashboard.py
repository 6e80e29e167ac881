"""Runs page benchmark (not part of `make test`):

    .venv/bin/python tests/benchmarks/bench_dashboard.py [--runs 100000] [--bars 252] [--batch 20000] [--dir DIR]

Builds a local lake of N completed runs with ``bench_compare.build`` (``runs`` rows, 20
metrics each, one equity row per bar), then adds, in a few big appends: each run's events
(pending, running, completed: what the run protocol writes), 5 trades per run, and 1% more runs
known only from ``run_events`` (still running), so the list's join of ``runs`` with the latest
``run_events`` has the shape of a real lake.

Then times, each on a fresh ``LakeStore`` (a cold DuckDB connection, nothing cached), as the
median of 5 (and the first):

- the runs page's data load: the queries the page makes for its first page with the default
  filters (``strategies()`` for the strategy filter, then ``runs_page(RunFilter(), limit=25)``:
  the status counts and the page's 25 rows) — target < 1.5 s;
- the same with filters (kind + a params search + sorted by Sharpe) and a deep page
  (offset N/2, sorted by total return), for information;
- a run detail's load: the queries of the backtest detail view (``run`` with its events,
  ``equity``, ``trades``, ``metrics``) — target < 1 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the dashboards package

from tests.benchmarks.bench_compare import build

PAGE_TARGET_S, DETAIL_TARGET_S = 1.5, 1.0
REPEAT = 5


def add_events_and_trades(lake_dir: str, ids: list[str], batch: int) -> list[str]:
    """Each run's pending/running/completed events and 5 trades; 1% more runs only running.
    Returns the ids of the running runs."""
    from backlake.lake import Lake
    from backlake.settings import Settings

    lake = Lake(Settings(lake_uri=lake_dir))
    rng = np.random.default_rng(2)
    now = dt.datetime.now(dt.UTC)
    running = [hashlib.sha256(f"running-{i}".encode()).hexdigest()[:16] for i in range(max(1, len(ids) // 100))]
    for start in range(0, len(ids), batch):
        chunk = ids[start:start + batch]
        k = len(chunk)
        ts = [now - dt.timedelta(seconds=int(s)) for s in rng.integers(60, 86_400 * 365, k)]
        lake.append("run_events", pl.DataFrame({
            "run_id": np.repeat(chunk, 3), "status": ["pending", "running", "completed"] * k,
            "ts": [t + dt.timedelta(seconds=j) for t in ts for j in range(3)],
            "message": ["", "flow run bench", ""] * k, "attempt": "bench", "host": "bench", "pid": 1,
        }, schema_overrides={"ts": pl.Datetime("us", "UTC")}))
        n = 5
        entry = pl.datetime_range(dt.datetime(2017, 1, 3), dt.datetime(2017, 1, 3) + dt.timedelta(days=n - 1), "1d",
                                  eager=True, time_zone="UTC").dt.cast_time_unit("us")
        lake.append("trades", pl.DataFrame({
            "run_id": np.repeat(chunk, n), "trade_id": np.tile(np.arange(1, n + 1), k), "symbol": "SP500",
            "direction": "long", "qty": 10.0, "entry_ts": pl.concat([entry] * k),
            "entry_price": 100.0, "exit_ts": pl.concat([entry] * k), "exit_price": rng.uniform(90, 110, k * n),
            "pnl": rng.normal(0, 50, k * n), "return_pct": rng.normal(0, 0.05, k * n), "fees": 1.0,
            "bars_held": 5, "mae": -0.02, "mfe": 0.03, "exit_reason": "signal",
        }))
    lake.append("run_events", pl.DataFrame({
        "run_id": np.repeat(running, 2), "status": ["pending", "running"] * len(running),
        "ts": [now - dt.timedelta(minutes=5 - j) for _ in running for j in range(2)],
        "message": ["", "flow run bench-running"] * len(running), "attempt": "bench", "host": "bench", "pid": 1,
    }, schema_overrides={"ts": pl.Datetime("us", "UTC")}))
    return running


def timed(fn: Callable[[], object]) -> tuple[float, float, list[float]]:
    """(median, first, all) seconds of ``fn`` over REPEAT calls."""
    times = []
    for _ in range(REPEAT):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times[0], times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--bars", type=int, default=252)
    ap.add_argument("--batch", type=int, default=20_000, help="runs per append (one commit per table)")
    ap.add_argument("--dir", help="build the lake here (default: a temporary directory, removed after)")
    args = ap.parse_args()

    from backlake.settings import Settings
    from dashboards.store import LakeStore, RunFilter

    with tempfile.TemporaryDirectory() as tmp:
        lake_dir = args.dir or str(Path(tmp) / "lake")
        t = time.perf_counter()
        ids = build(lake_dir, args.runs, args.bars, args.batch)
        running = add_events_and_trades(lake_dir, ids, args.batch)
        built = time.perf_counter() - t
        print(f"lake: {args.runs:,} completed runs + {len(running):,} running (events only), "
              f"{args.runs * args.bars:,} equity rows, {args.runs * 5:,} trades, "
              f"{args.runs * 3 + len(running) * 2:,} run events; built in {built:.1f} s")
        settings = Settings(lake_uri=lake_dir)

        def first_page() -> None:
            store = LakeStore(settings)
            store.strategies()
            got = store.runs_page(RunFilter(), limit=25)
            assert len(got.rows) == 25 and got.total == args.runs + len(running), got.counts
            assert got.counts["running"] == len(running)
            store.close()

        def filtered_page() -> None:
            store = LakeStore(settings)
            got = store.runs_page(RunFilter(kinds=("backtest",), statuses=("completed",), search="{}"),
                                  sort="sharpe", limit=25)
            assert got.total == args.runs, got.counts
            store.close()

        def deep_page() -> None:
            store = LakeStore(settings)
            got = store.runs_page(RunFilter(), sort="total_return", offset=args.runs // 2, limit=25)
            assert len(got.rows) == 25
            store.close()

        rng = np.random.default_rng(3)
        picks = iter([str(x) for x in rng.choice(ids, REPEAT, replace=False)])

        def detail() -> None:
            store = LakeStore(settings)
            run_id = next(picks)
            run = store.run(run_id)
            assert run is not None and run["status"] == "completed"
            assert len(store.equity(run_id)) == args.bars and len(store.trades(run_id)) == 5
            assert len(store.metrics(run_id)) == 20
            store.close()

        results = {}
        for name, fn in (("runs page, first page (default filters)", first_page),
                         ("runs page, kind+status+search filters, sorted by Sharpe", filtered_page),
                         (f"runs page, page at offset {args.runs // 2:,} sorted by total return", deep_page),
                         ("run detail (run + events, equity, trades, metrics)", detail)):
            med, first, times = timed(fn)
            results[name] = med
            print(f"{name}: median {med * 1000:.0f} ms over {len(times)} cold loads "
                  f"(first {first * 1000:.0f}, min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f})")
        page = results["runs page, first page (default filters)"]
        det = results["run detail (run + events, equity, trades, metrics)"]
        ok = page < PAGE_TARGET_S and det < DETAIL_TARGET_S
        print(f"targets: runs page < {PAGE_TARGET_S} s ({page:.2f} s), run detail < {DETAIL_TARGET_S} s "
              f"({det:.2f} s): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
