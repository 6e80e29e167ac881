"""Commands that write runs: ``backlake backtest``, ``sweep``, ``optimize``, ``walk-forward``,
``monte-carlo`` and ``regress``; :func:`runs_summary` prints stored runs."""

from __future__ import annotations

import argparse
import json

from backlake.errors import ConfigError
from flows.cli.output import format_rows, read_config, read_configs, read_json, whole_number
from flows.cli.progress import add_progress_option, progress_bars


def _add_runner_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--runner", choices=("thread", "dask"), default="thread",
                    help="task runner: threads on this machine, or Dask (prefect-dask)")
    sp.add_argument("--address", help="Dask scheduler address (default: start a local cluster)")
    sp.add_argument("--workers", type=whole_number("a number of workers", 1, 256, "1 to 256"), default=2,
                    help="local Dask cluster size (1 to 256)")


def check_dask_address(address: str, timeout: float = 5.0) -> None:
    """A Dask scheduler address that is malformed or where nothing answers is one line before the
    flow starts (Dask itself waits 30 s and fails inside the flow)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if parts.scheme not in ("tcp", "tls") or not host or not port:
        raise ConfigError(f"--address {address!r} is not a Dask scheduler address: write tcp://HOST:PORT, "
                          "e.g. tcp://127.0.0.1:8786 (or leave it out for a local cluster)")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        raise ConfigError(f"--address {address!r}: no Dask scheduler answers there ({e.strerror or e}); start one "
                          "(`dask scheduler`) or leave --address out for a local cluster") from None


def _lake():
    """The lake from settings, for the checks made before any flow starts."""
    from backlake.lake import Lake

    return Lake()


def _prefect(args: argparse.Namespace | None = None) -> None:
    """Point Prefect at the running server (or start it): after the input checks (a Dask
    scheduler ``--address`` among them), before the flow."""
    from flows.cli.server import use_prefect_api

    if args is not None and getattr(args, "runner", "thread") == "dask" and args.address:
        check_dask_address(args.address)
    use_prefect_api()


def _check_backtests(configs: list[dict]) -> None:
    """Every config checked against the lake (symbols, timeframes, dates, benchmark) before
    any flow: one line per problem, nothing written."""
    from backlake.config import BacktestConfig
    from backlake.runs.checks import check_configs

    check_configs(_lake(), [BacktestConfig.model_validate(c) for c in configs])


def _with_runner(flow_obj, args: argparse.Namespace):
    from flows._common import task_runner

    if getattr(args, "runner", "thread") == "thread":
        return flow_obj
    return flow_obj.with_options(task_runner=task_runner(args.runner, args.address, args.workers))


# -- backtest -----------------------------------------------------------------------------------
def add_backtest(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("backtest", help="run the config(s) in a JSON file through the backtest flow")
    s.add_argument("config", help="JSON file: one config object or a list")
    s.set_defaults(fn=cmd_backtest)


def cmd_backtest(args: argparse.Namespace) -> int:
    from flows.backtest import backtest_flow

    configs = read_configs(args.config)  # every config validated, problems listed by position
    _check_backtests(configs)  # against the lake, before Prefect starts
    _prefect(args)
    results = backtest_flow(configs)
    print(runs_summary([r["run_id"] for r in results]))
    return 0


SUMMARY_SQL = """
SELECT run_id, strategy, symbols AS symbol, params, round(total_return * 100, 2) AS return_pct,
       round(sharpe, 3) AS sharpe, round(max_drawdown * 100, 2) AS max_dd_pct, n_trades AS trades
FROM runs WHERE status = 'completed' AND run_id IN (SELECT unnest(?::VARCHAR[]))
ORDER BY symbol, params
"""


def runs_summary(run_ids: list[str]) -> str:
    from backlake.lake import connect

    with connect() as con:
        rel = con.execute(SUMMARY_SQL, [run_ids])
        cols = [d[0] for d in rel.description]
        return format_rows(cols, rel.fetchall())


# -- sweep --------------------------------------------------------------------------------------
def add_sweep(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sweep", help="sweep a parameter grid through the sweep flow into the lake")
    s.add_argument("config", help="JSON file with one backtest config")
    s.add_argument("--grid", required=True, help="JSON file: parameter -> list of values")
    s.add_argument("--chunk-size", type=int, default=1000, help="combinations per task")
    s.add_argument("--objective", default="sharpe",
                   help="metric that picks the best combination: sharpe, sortino, calmar, total_return or cagr")
    _add_runner_options(s)
    add_progress_option(s)
    s.set_defaults(fn=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from backlake.config import BacktestConfig
    from flows.sweep import sweep_flow

    config = read_json(args.config, "config")
    grid = read_json(args.grid, "grid")
    if not isinstance(config, dict):
        raise ConfigError(f"{args.config} must hold one config object")
    if not isinstance(grid, dict):
        raise ConfigError(f"{args.grid} must map parameter -> list of values, e.g. {{\"fast\": [5, 10]}}")
    from backlake.runs.sweep import plan_sweep

    plan_sweep(_lake(), BacktestConfig.model_validate(config), grid, chunk_size=args.chunk_size,
               objective=args.objective)  # every check, before Prefect starts
    _prefect(args)
    with progress_bars(args.progress):
        out = _with_runner(sweep_flow, args)(config, grid, chunk_size=args.chunk_size, objective=args.objective)
    print(f"\nsweep {out['run_id']}: {out['n_valid']} combination(s), {out['n_skipped']} skipped as invalid")
    if out["best_params"]:
        best = out["best"]
        print(f"best by {out['objective']}: {json.dumps(out['best_params'])}")
        print(format_rows(list(best), [list(best.values())]))
    print(
        f"\ntrials:  backlake sql \"SELECT params, sharpe, total_return, max_drawdown FROM trials "
        f"WHERE parent_id = '{out['run_id']}' ORDER BY sharpe DESC LIMIT 10\""
    )
    return 0


# -- optimize -----------------------------------------------------------------------------------
def add_optimize(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("optimize", help="Optuna search with IS/OOS scores, overfitting, PBO and deflated Sharpe")
    s.add_argument("config", help="JSON file with one backtest config")
    s.add_argument("--space", required=True, help='JSON file: {"fast": {"low": 5, "high": 50}, ...}')
    s.add_argument("--objective", default="sharpe", help="sharpe, calmar, total_return or sortino")
    s.add_argument("--trials", type=int, default=50, help="number of trials")
    s.add_argument("--sampler", default="tpe", help="tpe, random or grid")
    s.add_argument("--oos-fraction", type=float, default=0.3,
                   help="share of the bars held out at the end as out-of-sample")
    s.add_argument("--seed", type=int, default=0, help="sampler seed: the same seed gives the same study")
    s.add_argument("--parallel", type=int, default=1,
                   help="trials proposed and run at once as parallel tasks (default 1: the study in one task; "
                        "part of the study's identity)")
    _add_runner_options(s)
    add_progress_option(s)
    s.set_defaults(fn=cmd_optimize)


def cmd_optimize(args: argparse.Namespace) -> int:
    from flows.research import optimize_flow

    config, space = read_config(args.config), read_json(args.space, "space")
    from backlake.config import BacktestConfig
    from backlake.runs.jobs import plan_optimize

    plan_optimize(_lake(), BacktestConfig.model_validate(config), space, objective=args.objective,
                  n_trials=args.trials, sampler=args.sampler, oos_fraction=args.oos_fraction, seed=args.seed,
                  parallel=args.parallel)  # every check, before Prefect starts
    _prefect(args)
    with progress_bars(args.progress):
        out = _with_runner(optimize_flow, args)(
            config, space, objective=args.objective, n_trials=args.trials, sampler=args.sampler,
            oos_fraction=args.oos_fraction, seed=args.seed, parallel=args.parallel)
    print(f"\noptimize {out['run_id']}: best {json.dumps(out.get('best_params'))}")
    keys = ("is_score", "oos_score", "pbo", "deflated_sharpe", "n_trials", "n_flagged")
    print(format_rows(keys, [[out.get(k) for k in keys]]))
    print(f"\ntrials:  backlake sql \"SELECT trial, params, is_score, oos_score, overfit_score, flagged FROM trials "
          f"WHERE parent_id = '{out['run_id']}' ORDER BY is_score DESC\"")
    return 0


# -- walk-forward -------------------------------------------------------------------------------
def add_walk_forward(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("walk-forward", help="rolling or anchored walk-forward optimisation")
    s.add_argument("config", help="JSON file with one backtest config")
    s.add_argument("--grid", required=True, help="JSON file: parameter -> list of values, searched per train window")
    s.add_argument("--train", required=True, help="bars (e.g. 1000) or a span: 4y, 18m, 26w, 90d")
    s.add_argument("--test", required=True, help="test window: bars or a span, as --train")
    s.add_argument("--step", help="how far each window moves on: bars or a span (default: --test)")
    s.add_argument("--mode", choices=("rolling", "anchored"), default="rolling",
                   help="rolling: train windows of a fixed size; anchored: train from the first bar, growing")
    s.add_argument("--objective", default="sharpe",
                   help="metric optimised on each train window: sharpe, calmar, total_return or sortino")
    add_progress_option(s)
    s.set_defaults(fn=cmd_walk_forward)


def cmd_walk_forward(args: argparse.Namespace) -> int:
    from flows.research import walk_forward_flow

    def span(v: str):
        return int(v) if v.isdigit() else v

    config, grid = read_config(args.config), read_json(args.grid, "grid")
    from backlake.config import BacktestConfig
    from backlake.runs.jobs import plan_walk_forward

    plan_walk_forward(_lake(), BacktestConfig.model_validate(config), grid, train=span(args.train),
                      test=span(args.test), step=span(args.step) if args.step else None, mode=args.mode,
                      objective=args.objective)  # every check, before Prefect starts
    _prefect(args)
    with progress_bars(args.progress):
        out = walk_forward_flow(config, grid, train=span(args.train), test=span(args.test),
                                step=span(args.step) if args.step else None, mode=args.mode, objective=args.objective)
    if out.get("windows"):
        cols = ["window", "test_start", "test_end", "best_params", "is_sharpe", "oos_sharpe", "degradation"]
        print(format_rows(cols, [[w.get(c) for c in cols] for w in out["windows"]]))
    print(f"\nwalk-forward {out['run_id']}: stitched out-of-sample sharpe {out.get('oos_sharpe')}, "
          f"total return {out.get('oos_total_return')}")
    print(f"equity:  backlake sql \"SELECT ts, equity FROM equity WHERE run_id = '{out['run_id']}' ORDER BY ts\"")
    return 0


# -- monte-carlo --------------------------------------------------------------------------------
def add_monte_carlo(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("monte-carlo", help="resample a backtest: confidence intervals, probability of ruin")
    s.add_argument("config", help="JSON file with one backtest config")
    s.add_argument("--method", default="trade_bootstrap",
                   help="trade_bootstrap, return_shuffle, block_bootstrap or random_entry")
    s.add_argument("--paths", type=int, default=1000, help="paths per seed")
    s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3], help="random seeds, one task each")
    s.add_argument("--block-size", type=int, default=20, help="returns per block (block_bootstrap)")
    s.add_argument("--confidence", type=float, default=0.95, help="confidence level of the intervals, e.g. 0.95")
    s.add_argument("--ruin-drawdown", type=float, default=0.5,
                   help="drawdown that counts as ruin, as a fraction (0.5: half the peak equity lost)")
    add_progress_option(s)
    s.set_defaults(fn=cmd_monte_carlo)


def cmd_monte_carlo(args: argparse.Namespace) -> int:
    from flows.research import monte_carlo_flow

    config = read_config(args.config)
    from backlake.config import BacktestConfig
    from backlake.runs.jobs import plan_monte_carlo

    plan_monte_carlo(_lake(), BacktestConfig.model_validate(config), method=args.method, n_paths=args.paths,
                     seeds=args.seeds, block_size=args.block_size, confidence=args.confidence,
                     ruin_drawdown=args.ruin_drawdown)  # every check, before Prefect starts
    _prefect(args)
    with progress_bars(args.progress):
        out = monte_carlo_flow(config, method=args.method, n_paths=args.paths, seeds=args.seeds,
                               block_size=args.block_size, confidence=args.confidence,
                               ruin_drawdown=args.ruin_drawdown)
    if "ci" in out:
        rows = [[m, *v] for m, v in out["ci"].items()]
        print(format_rows(("metric", "low", "median", "high"), rows))
        print(f"probability of a drawdown of {args.ruin_drawdown:.0%} or worse: {out['prob_ruin']:.2%} "
              f"over {out['n_paths']} paths")
    print(f"run: {out['run_id']}")
    return 0


# -- regress ------------------------------------------------------------------------------------
def add_regress(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("regress", help="replay golden runs at their pinned data; fail on drift",
                       description="Replay the golden runs (the lake's goldens, see `backlake goldens`, or a JSON "
                                   "file) at their pinned data versions, record the report in the lake table "
                                   "regression_reports, and fail (exit 1) when a metric left its tolerance.")
    s.add_argument("goldens", nargs="?", default=None,
                   help='optional JSON file instead of the lake\'s goldens: [{"run_id": ..., "tolerances": '
                        '{"sharpe": 1e-9}}]')
    s.set_defaults(fn=cmd_regress)


def cmd_regress(args: argparse.Namespace) -> int:
    from backlake.runs.goldens import NO_GOLDENS
    from flows.cli.lake import require_lake
    from flows.regression import check, load, regression_flow

    require_lake()
    lake = _lake()
    goldens, _ = load(args.goldens, lake)  # every check, before Prefect starts
    if not goldens:
        print(NO_GOLDENS)
        return 0
    check(goldens, lake, from_lake=args.goldens is None)
    _prefect(args)
    rows = regression_flow(args.goldens)
    runs = sorted({r["run_id"] for r in rows})
    print(f"{len(runs)} golden run(s), {len(rows)} metric(s): all within tolerance")
    if rows:
        print(f"report:  backlake sql \"SELECT run_id, metric, stored, replayed, abs_diff, tolerance FROM "
              f"regression_reports WHERE report_id = '{rows[0]['report_id']}'\"")
    return 0
