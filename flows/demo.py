"""``backlake demo``: ingest the real samples, run SMA-crossover backtests, a sweep and a
walk-forward through the flows, make the first backtest (GOOG) a golden run, print a summary.
Idempotent: a second run adds no runs, no bars and no golden."""

from __future__ import annotations

from prefect import flow

from backlake import progress
from backlake.runs.goldens import add_golden
from backlake.settings import get_settings
from flows._common import STOP_HOOKS, flow_run_namer, label_flow_run, open_lake
from flows.backtest import backtest_flow
from flows.cli.data import ingest_summary
from flows.cli.progress import progress_bars
from flows.cli.runs import runs_summary
from flows.cli.server import ui_hint
from flows.ingest import ingest_flow
from flows.research import walk_forward_flow
from flows.sweep import sweep_flow

DEMO_CONFIGS: list[dict] = [
    {
        "strategy": "sma_crossover", "params": {"fast": 10, "slow": 30}, "universe": ["GOOG"],
        "start": "2004-08-19", "end": "2013-03-01", "timeframe": "1d", "initial_cash": 10000,
        "direction": "long_only",
        "sizing": {"method": "fixed_fraction", "fraction": 1.0, "whole_units": True},
        "costs": {"commission_bps": 10}, "execution": {"fill": "next_open"},
    },
    *[
        {
            "strategy": "sma_crossover", "params": {"fast": fast, "slow": slow}, "universe": ["SP500"],
            "timeframe": "1d", "initial_cash": 100_000, "costs": {"commission_bps": 2, "slippage_bps": 1},
        }
        for fast, slow in ((10, 30), (20, 100), (50, 200))
    ],
]


SWEEP_GRID = {"fast": [5, 10, 15, 20, 30, 50], "slow": [30, 50, 100, 150, 200]}
#: the note of the golden the demo adds: its reference backtest (the first config)
GOLDEN_NOTE = "demo reference: GOOG SMA crossover 10/30"
WALK_FORWARD = {"grid": {"fast": [10, 20, 50], "slow": [100, 200]}, "train": "4y", "test": "1y"}
#: the demo's live feed: SMA 5/20 on the S&P 500 over 2018 as backtested, and as "traded live" with
#: worse fills (the next bar's close instead of its open, 10 bps more slippage), linked to the backtest
LIVE_STRATEGY = "sma-sp500-live"
LIVE_CONFIG: dict = {
    "strategy": "sma_crossover", "params": {"fast": 5, "slow": 20}, "universe": ["SP500"],
    "start": "2018-01-01", "end": "2018-12-31", "timeframe": "1d", "initial_cash": 100_000,
    "costs": {"commission_bps": 2, "slippage_bps": 1},
}


def demo_live_feed() -> dict:
    """Backtest :data:`LIVE_CONFIG`, ingest its worse-fills feed as :data:`LIVE_STRATEGY`, link
    the two and run the live monitor once (idempotent, like the rest of the demo)."""
    from backlake.analytics.live import seed_live_feed
    from flows.live_monitor import live_monitor_flow

    run = backtest_flow([LIVE_CONFIG])[0]
    report = seed_live_feed(open_lake(), LIVE_CONFIG, run["run_id"], LIVE_STRATEGY, user=get_settings().user)
    monitor = live_monitor_flow(strategies=[LIVE_STRATEGY])
    level = next((r["level"] for r in monitor["results"] if r["strategy"] == LIVE_STRATEGY), "NONE")
    return {"strategy": LIVE_STRATEGY, "run_id": run["run_id"], "new_days": report.rows_new, "level": level}


#: the demo's alpha research: two alphas evaluated together on the 20-stock panel (monthly
#: rebalance), the first one attributed to the Fama-French 3 factors (the Alpha page's data)
DEMO_ALPHAS = ["momentum_12_1", "low_volatility"]
DEMO_ALPHA_WEIGHTS = {"method": "zscore", "rebalance": "monthly"}


def demo_alpha() -> dict:
    """Evaluate and backtest :data:`DEMO_ALPHAS` on sp500_stocks through the ``alpha`` flow and
    attribute the first run (ff3); idempotent like the rest of the demo."""
    from backlake.runs.alpha import attribute_run
    from flows.alpha import alpha_flow

    out = alpha_flow(DEMO_ALPHAS, universe="sp500_stocks", weights=DEMO_ALPHA_WEIGHTS)
    attributed = attribute_run(open_lake(), out["runs"][0]["run_id"], "ff3")
    return {**out, "attributed": attributed.run_id, "alpha_t": attributed.metrics.get("alpha_t")}


@flow(name="demo", flow_run_name=flow_run_namer("demo"), **STOP_HOOKS)
def demo_flow() -> dict:
    """Ingest the samples, backtest the demo configs, sweep and walk forward on the S&P 500
    (four steps, reported as job ``demo``; the sweep and the walk-forward report their own)."""
    label_flow_run("demo")
    progress.report("demo", 0, 4, "steps")
    report = ingest_flow(source="samples")
    progress.report("demo", 1, 4, "steps")
    runs = backtest_flow(DEMO_CONFIGS)
    reference = runs[0]
    if reference["status"] in ("completed", "existing"):  # the regression's golden, once (never replaced)
        add_golden(open_lake(), reference["run_id"], note=GOLDEN_NOTE, if_absent=True)
    live = demo_live_feed()
    progress.report("demo", 2, 4, "steps")
    sweep = sweep_flow(DEMO_CONFIGS[1], SWEEP_GRID)
    progress.report("demo", 3, 4, "steps")
    wf = walk_forward_flow(DEMO_CONFIGS[1], WALK_FORWARD["grid"], train=WALK_FORWARD["train"],
                           test=WALK_FORWARD["test"])
    alpha = demo_alpha()
    progress.report("demo", 4, 4, "steps")
    return {"ingest": report, "runs": runs, "sweep": sweep, "walk_forward": wf, "golden": reference["run_id"],
            "live": live, "alpha": alpha}


def run_demo(progress_mode: str = "auto") -> int:
    """Run :func:`demo_flow` (progress bars on stderr per ``progress_mode``, see
    ``flows.cli.progress_bars``) and print the summary."""
    settings = get_settings()
    with progress_bars(progress_mode):
        out = demo_flow()
    print()
    print(f"lake: {settings.lake_uri}")
    print(ingest_summary(out["ingest"]))
    new = sum(r["status"] == "completed" for r in out["runs"])
    print(f"backtests: {len(out['runs'])} run(s), {new} new, {len(out['runs']) - new} already in the lake\n")
    print(runs_summary([r["run_id"] for r in out["runs"]]))
    print(f"\ngolden run: {out['golden']} (the GOOG backtest; `backlake regress` replays it, "
          "`backlake goldens list` shows the goldens)")
    sw = out["sweep"]
    print(f"\nsweep {sw['run_id']} on SP500: {sw['n_valid']} combinations; best by sharpe "
          f"{sw['best_params']} (sharpe {sw['best']['sharpe']:.3f})" if sw.get("best") else "")
    wf = out["walk_forward"]
    if wf.get("windows"):
        print(f"walk-forward {wf['run_id']} on SP500: {len(wf['windows'])} windows (train 4y, test 1y); "
              f"stitched out-of-sample sharpe {wf['oos_sharpe']:.3f}")
    else:
        print(f"walk-forward {wf['run_id']}: already in the lake")
    live = out.get("live")
    if live:
        print(f"live feed {live['strategy']} (worse fills of run {live['run_id']}): {live['new_days']} new day(s); "
              f"live monitor level {live['level']} (`backlake live overlay {live['strategy']}`, page /live)")
    alpha = out.get("alpha")
    if alpha:
        names = ", ".join(f"{r['alpha']} {r['run_id']}" for r in alpha["runs"])
        t = alpha.get("alpha_t")
        print(f"alphas on sp500_stocks (IC at 1, 5, 10, 21 days, monthly zscore backtest): {names}; "
              f"ff3 attribution of {alpha['attributed']}" + (f" (alpha t-stat {t:.2f})" if t is not None else "")
              + " (`backlake alpha evaluate NAME`, page /alpha)")
    print(
        "\nNext:\n"
        "  open the dashboards:  .venv/bin/backlake dashboard   then browse http://127.0.0.1:5006/app\n"
        "  query the lake:       .venv/bin/backlake sql \"SELECT run_id, strategy, symbols, sharpe FROM runs "
        "WHERE status = 'completed' ORDER BY sharpe DESC\"\n"
        "  lake tables:          .venv/bin/backlake lake status\n"
        "  more research:        .venv/bin/backlake sweep | optimize | walk-forward | monte-carlo --help"
    )
    hint = ui_hint()  # where the flow runs are seen, and how the local Prefect server stops
    if hint:
        print(hint)
    return 0
