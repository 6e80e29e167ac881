"""Engine benchmarks, backlake side by side with vectorbt in the same run (not part of `make test`).

    .venv/bin/python tests/benchmarks/bench_vs_vectorbt.py            # all cases
    .venv/bin/python tests/benchmarks/bench_vs_vectorbt.py --cases single sweep

Cases (S&P 500 daily sample data, 5031 bars, unless stated):
- single:  one SMA(10, 30) backtest, 10 bps commission, next-open fills, with full results
           (backlake: trades, equity, 30+ metrics; vectorbt: Portfolio.from_signals + stats() +
           trade records). Median of 20 runs after warm-up.
- sweep:   fast 5..50 x slow 20..200 step 2 with fast < slow (3930 pairs): backlake.sweep vs
           vectorbt (MA per distinct window once, signals for all pairs, one from_signals over
           3930 columns, sharpe/total return/max drawdown). Median of 3 runs; peak memory of
           one run measured in a fresh child process (peak RSS above the warmed-up baseline).
- assets:  500 synthetic assets x 2520 daily bars, SMA(10, 30), shared cash, full results
           (backlake: equal-weight sizing, 1/500 of equity per entry; vectorbt: from_signals with
           cash sharing, 1/500 of the initial cash per entry (it cannot size from signals by
           target percent), stats() + trade records).
- first:   wall time of a fresh `python -c` that imports backlake, loads the S&P 500 sample
           and runs one backtest (numba cache warm). Median of 3. Measured as a runtime
           install sees it (scipy not importable: only the test-only peers bring it) and as
           this test venv has it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")

FAST = list(range(5, 51))
SLOW = list(range(20, 201, 2))
PAIRS = [(f, s) for f in FAST for s in SLOW if f < s]


# -- data ---------------------------------------------------------------------------------------
def sp500():
    from backlake.data.samples import load_samples

    return load_samples(["SP500"])


def synthetic_500():
    from backlake.data.synthetic import synthetic_bars

    return synthetic_bars(tuple(f"A{i:03d}" for i in range(500)), periods=2520, seed=1)


def to_pandas(bars):
    wide = {}
    for c in ("open", "close"):
        w = bars.pivot(on="symbol", index="ts", values=c).sort("ts").to_pandas().set_index("ts")
        wide[c] = w
    return wide["open"], wide["close"]


# -- backlake -----------------------------------------------------------------------------------
def bl_config(symbols, **extra):
    import backlake as bl

    return bl.BacktestConfig.model_validate({
        "strategy": "sma_crossover", "params": {"fast": 10, "slow": 30}, "universe": symbols,
        "initial_cash": 10_000 if len(symbols) == 1 else 1_000_000, "costs": {"commission_bps": 10}, **extra,
    })


def bl_single(bars, cfg):
    import backlake as bl

    return bl.run_backtest(cfg, bars)


def bl_sweep(bars, cfg):
    import backlake as bl

    return bl.sweep(cfg, {"fast": FAST, "slow": SLOW}, bars)


# -- vectorbt -----------------------------------------------------------------------------------
def vbt_single(open_, close):
    import vectorbt as vbt

    f = vbt.MA.run(close, 10).ma
    s = vbt.MA.run(close, 30).ma
    e = f.vbt.crossed_above(s).shift(1, fill_value=False)
    x = f.vbt.crossed_below(s).shift(1, fill_value=False)
    pf = vbt.Portfolio.from_signals(close, e, x, price=open_, fees=0.001, init_cash=10_000, size=np.inf,
                                    size_granularity=1, freq="1D")
    return pf.stats(), pf.trades.records_readable


def vbt_sweep(open_, close):
    import vectorbt as vbt

    windows = sorted(set(FAST) | set(SLOW))
    ma = vbt.MA.run(close, windows).ma.to_numpy()
    col = {w: i for i, w in enumerate(windows)}
    f = ma[:, [col[p[0]] for p in PAIRS]]
    s = ma[:, [col[p[1]] for p in PAIRS]]
    with np.errstate(invalid="ignore"):
        up = (f[:-1] < s[:-1]) & (f[1:] > s[1:])
        down = (f[:-1] > s[:-1]) & (f[1:] < s[1:])
    n = close.shape[0]
    e = np.zeros((n, len(PAIRS)), dtype=bool)
    x = np.zeros((n, len(PAIRS)), dtype=bool)
    e[2:] = up[:-1]  # cross at bar i (needs i-1), acted on at bar i+1's open
    x[2:] = down[:-1]
    pf = vbt.Portfolio.from_signals(
        close.to_numpy()[:, None], e, x, price=open_.to_numpy()[:, None], fees=0.001,
        init_cash=10_000, size=np.inf, size_granularity=1, freq="1D",
    )
    return pf.sharpe_ratio(), pf.total_return(), pf.max_drawdown()


def vbt_assets(open_, close):
    import vectorbt as vbt

    f = vbt.MA.run(close, 10).ma
    s = vbt.MA.run(close, 30).ma
    e = f.vbt.crossed_above(s).shift(1, fill_value=False)
    x = f.vbt.crossed_below(s).shift(1, fill_value=False)
    pf = vbt.Portfolio.from_signals(
        close, e, x, price=open_, fees=0.001, init_cash=1_000_000, size=1_000_000 / close.shape[1],
        size_type="value", group_by=True, cash_sharing=True, call_seq="auto", freq="1D",
    )
    return pf.stats(), pf.trades.records_readable


# -- measurement --------------------------------------------------------------------------------
def median_time(fn, repeat: int) -> float:
    fn()  # warm-up (compilation, caches)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def child_peak_memory(case: str, tool: str) -> float:
    """Peak RSS (MiB) one run adds above the warmed-up baseline, in a fresh process."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", case, tool], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def child(case: str, tool: str) -> None:
    fn = _case_fn(case, tool)
    fn()  # warm-up
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM)
    base = _rss_kib("VmRSS")
    fn()
    peak = _rss_kib("VmHWM")
    print(json.dumps({"peak_mib": (peak - base) / 1024}))


def _case_fn(case: str, tool: str):
    if case == "sweep":
        bars = sp500()
        if tool == "backlake":
            cfg = bl_config(["SP500"])
            return lambda: bl_sweep(bars, cfg)
        open_, close = to_pandas(bars)
        return lambda: vbt_sweep(open_["SP500"], close["SP500"])
    if case == "assets":
        bars = synthetic_500()
        if tool == "backlake":
            cfg = bl_config(sorted(bars["symbol"].unique().to_list()),
                            sizing={"method": "equal_weight", "fraction": 1.0})
            return lambda: bl_single(bars, cfg)
        open_, close = to_pandas(bars)
        return lambda: vbt_assets(open_, close)
    bars = sp500()
    if tool == "backlake":
        cfg = bl_config(["SP500"])
        return lambda: bl_single(bars, cfg)
    open_, close = to_pandas(bars)
    return lambda: vbt_single(open_["SP500"], close["SP500"])


# A runtime install of backlake has no scipy (only the test-only peers pull it in); numba
# imports scipy.linalg on its first compiled call when scipy is present (about 0.3 s here).
_NO_SCIPY = (
    "import sys, importlib.abc\n"
    "class _NoScipy(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'scipy' or name.startswith('scipy.'):\n"
    "            raise ImportError(name)\n"
    "sys.meta_path.insert(0, _NoScipy())\n"
)


def first_backtest_seconds(repeat: int = 3, runtime_only: bool = False) -> float:
    code = (_NO_SCIPY if runtime_only else "") + (
        "import backlake as bl\n"
        "from backlake.data.samples import load_samples\n"
        "bars = load_samples(['SP500'])\n"
        "cfg = bl.BacktestConfig.model_validate({'strategy': 'sma_crossover', 'universe': ['SP500']})\n"
        "bl.run_backtest(cfg, bars)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)  # make sure the numba cache is warm
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cases", nargs="+", default=["single", "sweep", "assets", "first"])
    p.add_argument("--child", nargs=2, metavar=("CASE", "TOOL"))
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args()
    if args.child:
        child(*args.child)
        return
    import numba
    import vectorbt

    import backlake

    rows = []
    res: dict[str, dict] = {}
    if "single" in args.cases:
        bl_t = median_time(_case_fn("single", "backlake"), 20)
        vb_t = median_time(_case_fn("single", "vectorbt"), 20)
        res["single"] = {"backlake_s": bl_t, "vectorbt_s": vb_t, "ratio": bl_t / vb_t}
        rows.append(("one backtest, full results (S&P 500, 5031 bars)", f"{bl_t*1e3:.1f} ms", f"{vb_t*1e3:.1f} ms",
                     f"{bl_t / vb_t:.2f}x the time", "<= 0.5x"))
    if "sweep" in args.cases:
        bl_t = median_time(_case_fn("sweep", "backlake"), 3)
        vb_t = median_time(_case_fn("sweep", "vectorbt"), 3)
        bl_m = child_peak_memory("sweep", "backlake")
        vb_m = child_peak_memory("sweep", "vectorbt")
        n = len(PAIRS)
        res["sweep"] = {"pairs": n, "backlake_s": bl_t, "vectorbt_s": vb_t, "backlake_peak_mib": bl_m,
                        "vectorbt_peak_mib": vb_m}
        rows.append((f"sweep, {n} pairs: combinations/s", f"{n / bl_t:,.0f}/s ({bl_t:.2f} s)",
                     f"{n / vb_t:,.0f}/s ({vb_t:.2f} s)", f"{vb_t / bl_t:.1f}x the rate", ">= 4x"))
        rows.append(("sweep: peak memory above baseline", f"{bl_m:.0f} MiB", f"{vb_m:.0f} MiB",
                     f"{bl_m / vb_m:.2f}x the memory", "<= 0.33x"))
    if "assets" in args.cases:
        bl_t = median_time(_case_fn("assets", "backlake"), 3)
        vb_t = median_time(_case_fn("assets", "vectorbt"), 3)
        res["assets"] = {"backlake_s": bl_t, "vectorbt_s": vb_t, "ratio": bl_t / vb_t}
        rows.append(("500 assets x 2520 bars, shared cash", f"{bl_t:.2f} s", f"{vb_t:.2f} s",
                     f"{bl_t / vb_t:.2f}x the time", "<= 0.5x"))
    if "first" in args.cases:
        t_rt = first_backtest_seconds(runtime_only=True)
        t = first_backtest_seconds()
        res["first"] = {"backlake_runtime_install_s": t_rt, "backlake_with_test_deps_s": t}
        rows.append(("first backtest in a fresh process, runtime install (imports included)", f"{t_rt:.2f} s",
                     "", "", "<= 2 s"))
        rows.append(("the same with the test-only peers installed (numba then loads scipy)", f"{t:.2f} s",
                     "", "", ""))
    print(f"\nbacklake {backlake.__version__}, vectorbt {vectorbt.__version__}, numba {numba.__version__}, "
          f"{os.cpu_count()} cores\n")
    print("| case | backlake | vectorbt | backlake vs vectorbt | target |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
