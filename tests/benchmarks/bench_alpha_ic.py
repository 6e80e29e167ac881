"""IC benchmark, backlake.alpha.ic side by side with alphalens-reloaded in the same run (not part
of `make test`; writes nothing).

    .venv/bin/python tests/benchmarks/bench_alpha_ic.py                 # best of 3
    .venv/bin/python tests/benchmarks/bench_alpha_ic.py --repeat 5 --assets 500 --days 2520

One factor (21-day reversal: -(close[t] / close[t - 21] - 1)) over synthetic assets (default 500
x 2,520 daily bars, seed 1) and 4 horizons (1, 5, 10, 21 trading days):

- backlake:  ``ic.forward_returns`` + ``ic.daily_ic`` (Pearson IC and Spearman Rank IC per date,
             every horizon), on the (dates, symbols) arrays of the panel.
- backlake evaluate: the full ``ic.evaluate`` (also quantile returns, summaries, decay, frames).
- alphalens: ``utils.get_clean_factor_and_forward_returns`` (forward returns, cleaning, quantile
             binning; ``filter_zscore=None``, ``max_loss=1.0``) + ``performance.
             factor_information_coefficient`` (Spearman per date and period), from the same
             factor (a (date, asset) Series) and wide price frame. Its inputs are built outside
             the timing, as ours are.

Best of N runs after one warm-up each; the ratio is backlake / alphalens (target <= 0.1). The
script also checks the two Rank IC series agree on alphalens' dates (it drops the last 21 dates,
where a longer horizon has no forward return).
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")

HORIZONS = (1, 5, 10, 21)


def best_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    out = fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", type=int, default=500)
    ap.add_argument("--days", type=int, default=2520)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from alphalens import performance, utils

    from backlake.alpha import ic
    from backlake.alpha.panel import panel_from_bars
    from backlake.data.synthetic import synthetic_bars

    panel = panel_from_bars(synthetic_bars(tuple(f"A{i:03d}" for i in range(args.assets)), periods=args.days, seed=1))
    close = panel.close
    factor = np.full(close.shape, np.nan)
    factor[21:] = -(close[21:] / close[:-21] - 1.0)

    idx = pd.DatetimeIndex(panel.dates.astype("datetime64[ns]"), name="date")
    prices = pd.DataFrame(close, index=idx, columns=panel.symbols)
    fac = pd.DataFrame(factor, index=idx, columns=panel.symbols).stack().dropna()
    fac.index = fac.index.set_names(["date", "asset"])

    def ours() -> dict[int, tuple[np.ndarray, np.ndarray]]:
        fwd = ic.forward_returns(close, HORIZONS)
        return {h: ic.daily_ic(factor, fwd[h]) for h in HORIZONS}

    def ours_full() -> ic.AlphaEvaluation:
        return ic.evaluate(panel, factor, HORIZONS, 5)

    def theirs() -> pd.DataFrame:
        fd = utils.get_clean_factor_and_forward_returns(
            fac, prices, periods=HORIZONS, quantiles=5, filter_zscore=None, max_loss=1.0)
        return performance.factor_information_coefficient(fd)

    print(f"IC + Rank IC, 1 factor, {args.assets} assets x {args.days} days x {len(HORIZONS)} horizons "
          f"{HORIZONS}; best of {args.repeat}")
    t_ours, res = best_time(ours, args.repeat)
    t_full, _ = best_time(ours_full, args.repeat)
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # alphalens prints its drop summary on every call
        t_al, al_ic = best_time(theirs, args.repeat)

    # agreement check (alphalens' IC is Spearman; it drops the dates where any horizon lacks a return)
    row_of = {d: i for i, d in enumerate(panel.dates)}
    rows = [row_of[np.datetime64(d.date(), "D")] for d in al_ic.index]
    worst = 0.0
    for h, col in zip(HORIZONS, al_ic.columns, strict=True):
        worst = max(worst, float(np.nanmax(np.abs(res[h][1][rows] - al_ic[col].to_numpy()))))

    rows_out = [
        ("backlake forward returns + IC + Rank IC", t_ours, t_ours / t_al),
        ("backlake evaluate (+ quantiles, summaries, decay)", t_full, t_full / t_al),
        ("alphalens get_clean_factor_and_forward_returns + IC", t_al, 1.0),
    ]
    w = max(len(r[0]) for r in rows_out)
    print(f"{'case':<{w}}  {'best (s)':>9}  {'x alphalens':>11}")
    for name, t, ratio in rows_out:
        print(f"{name:<{w}}  {t:>9.3f}  {ratio:>11.4f}")
    print(f"speed-up {t_al / t_ours:.0f}x (target ratio <= 0.1: {'met' if t_ours / t_al <= 0.1 else 'NOT met'}); "
          f"max |Rank IC difference| on {len(rows)} common dates: {worst:.2e}")


if __name__ == "__main__":
    main()
