"""The ``backlake`` command line: demo, ingest, backtest, sweep, optimize, walk-forward,
monte-carlo, regress, maintain, sql, lake status, dashboard, schema, strategies.

    backlake demo
    backlake ingest --source samples --symbols GOOG SP500
    backlake backtest config.json
    backlake sql "SELECT run_id, sharpe FROM runs ORDER BY sharpe DESC" --format json
    backlake lake status --format json
    backlake dashboard --port 5006
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import importlib.util
import io
import json
import logging
import math
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backlake.errors import BacklakeError, ConfigError, LakeConnectionError

if TYPE_CHECKING:
    from rich.console import Console

FORMATS = ("table", "json", "csv")
PROGRESS_MODES = ("auto", "always", "never")


# -- output -------------------------------------------------------------------------------------
def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if hasattr(v, "item"):  # numpy / decimal-like scalars
        try:
            return v.item()
        except Exception:
            pass
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if not math.isfinite(v):
            return ""
        return f"{v:.6g}" if abs(v) < 1e6 else f"{v:,.2f}"
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    return str(v)


def format_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str = "table") -> str:
    """Render rows as an aligned table, a JSON array of objects, or CSV."""
    if fmt == "json":
        return json.dumps([{c: _jsonable(v) for c, v in zip(columns, r)} for r in rows], indent=None)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        w.writerows([[_cell(v) for v in r] for r in rows])
        return buf.getvalue().rstrip("\n")
    cells = [[_cell(v) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join([line, sep, *body, f"({len(rows)} row{'s' if len(rows) != 1 else ''})"])


# -- progress bars ------------------------------------------------------------------------------
def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


class _PrintAbove(io.TextIOBase):
    """A stream for a log handler while bars are live: each whole line written is printed
    through the bars' console, which keeps it above the bars (its ANSI colours kept)."""

    def __init__(self, console: Console) -> None:
        from rich.ansi import AnsiDecoder

        self._console = console
        self._decoder = AnsiDecoder()
        self._partial = ""

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self._console.print(self._decoder.decode_line(line), soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        if self._partial:
            self.write("\n")

    def isatty(self) -> bool:
        return self._console.is_terminal


@contextlib.contextmanager
def _logs_above(console: Console) -> Iterator[None]:
    """While the block runs, log handlers that write to ``console``'s stream or to a terminal
    (Prefect's console handler) print through ``console``, above its live bars, instead of
    through them. Prefect's handler holds a rich Console of its own: its file is swapped too."""
    from rich.console import Console as RichConsole

    loggers = [logging.getLogger(), *list(logging.Logger.manager.loggerDict.values())]
    handlers = {h for lg in loggers for h in getattr(lg, "handlers", ()) if isinstance(h, logging.StreamHandler)}
    swapped: list[tuple[logging.StreamHandler, Any]] = []
    for h in handlers:
        if h.stream is console.file or _is_tty(h.stream):
            proxy = _PrintAbove(console)
            swapped.append((h, h.stream))
            h.setStream(proxy)
            if isinstance(getattr(h, "console", None), RichConsole):
                h.console.file = proxy  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for h, stream in swapped:
            h.setStream(stream)  # flushes a partial line through the proxy first
            if isinstance(getattr(h, "console", None), RichConsole):
                h.console.file = stream  # type: ignore[attr-defined]


@contextlib.contextmanager
def progress_bars(mode: str = "auto", console: Console | None = None) -> Iterator[None]:
    """While the block runs, show one progress bar per job that reports through
    ``backlake.progress`` (description, bar, done/total unit, elapsed, remaining) on stderr.

    ``mode``: ``auto`` shows them when stderr is a terminal, ``always`` even when it is not
    (rendered as for a terminal), ``never`` not at all: the block runs as without bars.
    ``console`` renders them elsewhere (tests). Stdout is left alone unless it is a terminal
    too; log lines print above the bars."""
    if mode not in PROGRESS_MODES:
        raise ConfigError(f"progress={mode!r}: use one of {', '.join(PROGRESS_MODES)}")
    if mode == "never":
        yield
        return
    from rich.console import Console as RichConsole
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as Bars

    from backlake.progress import Progress, listening

    console = console or RichConsole(stderr=True, force_terminal=mode == "always" or None)
    if mode == "auto" and not _is_tty(console.file):
        yield
        return
    bars = Bars(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[unit]}"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=console, redirect_stdout=_is_tty(sys.stdout))
    tasks: dict[str, TaskID] = {}
    lock = threading.Lock()

    def show(event: Progress) -> None:
        with lock:
            if event.job not in tasks:
                tasks[event.job] = bars.add_task(event.job, total=event.total, unit=event.unit)
        bars.update(tasks[event.job], completed=event.done, total=event.total)

    with bars, _logs_above(console), listening(show):
        yield


# -- commands -----------------------------------------------------------------------------------
def cmd_sql(args: argparse.Namespace) -> int:
    from backlake.lake import connect

    with connect() as con:
        for spec in args.at or []:
            table, _, version = spec.partition("=")
            if not version.isdigit():
                raise ConfigError(f"--at {spec!r}: write TABLE=VERSION, e.g. --at bars=3")
            con.at_version(table, int(version))
        try:
            rel = con.sql(args.query)
        except Exception as e:  # duckdb errors: show the message, not a traceback
            raise ConfigError(f"SQL error: {e}") from e
        if rel is None:
            return 0
        print(format_rows(rel.columns, rel.fetchall(), args.format))
    return 0


def cmd_lake_status(args: argparse.Namespace) -> int:
    from backlake.lake import Lake

    lake = Lake()
    status = lake.status()
    if args.format == "table":
        print(f"lake: {lake.settings.lake_uri}")
    print(format_rows(status.columns, status.rows(), args.format))
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from flows.ingest import ingest_flow

    columns = dict(kv.split("=", 1) for kv in args.map) if args.map else None
    report = ingest_flow(
        source=args.source, symbols=args.symbols, path=args.path, symbol=args.symbol,
        timeframe=args.timeframe, columns=columns, seed=args.seed, periods=args.periods,
    )
    print(_ingest_summary(report))
    return 0


def _ingest_summary(report: dict) -> str:
    v = report["validation"]
    counts = ", ".join(f"{k}={n}" for k, n in v["counts"].items())
    return (
        f"ingested {len(report['symbols'])} symbol(s): {report['rows_new']} new bar(s), "
        f"{report['rows_existing']} already in the lake; bars is at version {report['bars_version']}\n"
        f"validation: {v['rows_in']} rows in, {v['rows_valid']} valid, {v['rows_skipped']} skipped ({counts})"
    )


def _read_configs(path: str) -> list[dict]:
    data = _read_json(path, "config")
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list) and all(isinstance(d, dict) for d in data):
        return data
    raise ConfigError(f"{path} must hold one config object or a list of them")


def cmd_backtest(args: argparse.Namespace) -> int:
    from backlake.config import BacktestConfig
    from flows.backtest import backtest_flow

    configs = _read_configs(args.config)
    for c in configs:
        BacktestConfig.model_validate(c)  # fail before Prefect starts
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


def _read_json(path: str, what: str):
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{what} file {path!r} does not exist")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from e


def _with_runner(flow_obj, args: argparse.Namespace):
    from flows._common import task_runner

    if getattr(args, "runner", "thread") == "thread":
        return flow_obj
    return flow_obj.with_options(task_runner=task_runner(args.runner, args.address, args.workers))


def cmd_sweep(args: argparse.Namespace) -> int:
    from backlake.config import BacktestConfig
    from flows.sweep import sweep_flow

    config = _read_json(args.config, "config")
    grid = _read_json(args.grid, "grid")
    if not isinstance(config, dict):
        raise ConfigError(f"{args.config} must hold one config object")
    if not isinstance(grid, dict):
        raise ConfigError(f"{args.grid} must map parameter -> list of values, e.g. {{\"fast\": [5, 10]}}")
    BacktestConfig.model_validate(config)
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


def _config_arg(path: str) -> dict:
    from backlake.config import BacktestConfig

    config = _read_json(path, "config")
    if not isinstance(config, dict):
        raise ConfigError(f"{path} must hold one config object")
    BacktestConfig.model_validate(config)
    return config


def cmd_optimize(args: argparse.Namespace) -> int:
    from flows.research import optimize_flow

    config, space = _config_arg(args.config), _read_json(args.space, "space")
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


def cmd_walk_forward(args: argparse.Namespace) -> int:
    from flows.research import walk_forward_flow

    def span(v: str):
        return int(v) if v.isdigit() else v

    config, grid = _config_arg(args.config), _read_json(args.grid, "grid")
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


def cmd_monte_carlo(args: argparse.Namespace) -> int:
    from flows.research import monte_carlo_flow

    config = _config_arg(args.config)
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


def cmd_regress(args: argparse.Namespace) -> int:
    from flows.regression import regression_flow

    rows = regression_flow(args.goldens)
    runs = sorted({r["run_id"] for r in rows})
    print(f"{len(runs)} golden run(s), {len(rows)} metric(s): all within tolerance")
    return 0


def cmd_maintain(args: argparse.Namespace) -> int:
    from flows.maintenance import maintenance_flow

    out = maintenance_flow(vacuum_retention_hours=args.retention_hours, failed_retention_days=args.failed_days,
                           dry_run=args.dry_run)
    if out["tables"]:
        cols = list(dict.fromkeys(k for t in out["tables"] for k in t))
        print(format_rows(cols, [[t.get(c) for c in cols] for t in out["tables"]]))
    for note in out["notes"]:
        print(note)
    print(f"expired failed/cancelled runs: {out['deleted_runs']}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from backlake.config import config_json_schema

    print(json.dumps(config_json_schema(), indent=2))
    return 0


def cmd_strategies(args: argparse.Namespace) -> int:
    from backlake.strategies import get_strategy, list_strategies

    rows = []
    for name in list_strategies():
        model = get_strategy(name).params_model
        params = ", ".join(f"{k}={f.default}" for k, f in model.model_fields.items())
        doc = " ".join(get_strategy(name).doc.split())
        first = doc.split(". ")[0]
        rows.append((name, params, first if len(first) <= 100 else first[:97] + "..."))
    print(format_rows(("strategy", "parameters (defaults)", "rule"), rows, args.format))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from flows.demo import run_demo

    return run_demo(args.progress)


def cmd_dashboard(args: argparse.Namespace) -> int:
    spec = importlib.util.find_spec("dashboards")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the dashboards package is not installed; run `make demo` or `pip install -e .`")
    app = Path(list(spec.submodule_search_locations)[0]) / "app.py"
    cmd = [
        sys.executable, "-m", "panel", "serve", str(app), "--port", str(args.port),
        "--address", args.address, "--allow-websocket-origin", f"{args.address}:{args.port}",
        "--allow-websocket-origin", f"localhost:{args.port}", "--index", "app",
    ]
    if args.show:
        cmd.append("--show")
    print(f"serving the dashboard at http://{args.address}:{args.port}/app (Ctrl-C to stop)")
    return subprocess.call(cmd, env=os.environ.copy())


# -- parser -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="backlake", description="Backtests into a versioned Delta lake.")
    sub = p.add_subparsers(dest="command", required=True)

    def progress_option(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--progress", choices=PROGRESS_MODES, default="auto",
                        help="progress bars on stderr: auto (when stderr is a terminal), always or never")

    s = sub.add_parser("demo", help="ingest the samples, run backtests through Prefect, print a summary")
    progress_option(s)
    s.set_defaults(fn=cmd_demo)

    s = sub.add_parser("ingest", help="validate bars and append new rows to the lake")
    s.add_argument("--source", choices=("samples", "synthetic", "file"), default="samples")
    s.add_argument("--symbols", nargs="+", help="symbols to load (samples/synthetic); default: all samples")
    s.add_argument("--path", help="CSV or Parquet file (source=file)")
    s.add_argument("--symbol", help="symbol of a file without a symbol column")
    s.add_argument("--timeframe", default="1d")
    s.add_argument("--map", nargs="+", metavar="OURS=THEIRS", help="column mapping, e.g. ts=Date close='Adj Close'")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--periods", type=int, default=2520)
    s.set_defaults(fn=cmd_ingest)

    s = sub.add_parser("backtest", help="run the config(s) in a JSON file through the backtest flow")
    s.add_argument("config", help="JSON file: one config object or a list")
    s.set_defaults(fn=cmd_backtest)

    def runner_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--runner", choices=("thread", "dask"), default="thread",
                        help="task runner: threads on this machine, or Dask (prefect-dask)")
        sp.add_argument("--address", help="Dask scheduler address (default: start a local cluster)")
        sp.add_argument("--workers", type=int, default=2, help="local Dask cluster size")

    s = sub.add_parser("sweep", help="sweep a parameter grid through the sweep flow into the lake")
    s.add_argument("config", help="JSON file with one backtest config")
    s.add_argument("--grid", required=True, help="JSON file: parameter -> list of values")
    s.add_argument("--chunk-size", type=int, default=1000, help="combinations per task")
    s.add_argument("--objective", default="sharpe")
    runner_options(s)
    progress_option(s)
    s.set_defaults(fn=cmd_sweep)

    s = sub.add_parser("optimize", help="Optuna search with IS/OOS scores, overfitting, PBO and deflated Sharpe")
    s.add_argument("config")
    s.add_argument("--space", required=True, help='JSON file: {"fast": {"low": 5, "high": 50}, ...}')
    s.add_argument("--objective", default="sharpe", help="sharpe, calmar, total_return or sortino")
    s.add_argument("--trials", type=int, default=50)
    s.add_argument("--sampler", default="tpe", help="tpe, random or grid")
    s.add_argument("--oos-fraction", type=float, default=0.3)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--parallel", type=int, default=1,
                   help="trials proposed and run at once as parallel tasks (default 1: the study in one task; "
                        "part of the study's identity)")
    runner_options(s)
    progress_option(s)
    s.set_defaults(fn=cmd_optimize)

    s = sub.add_parser("walk-forward", help="rolling or anchored walk-forward optimisation")
    s.add_argument("config")
    s.add_argument("--grid", required=True)
    s.add_argument("--train", required=True, help="bars (e.g. 1000) or a span: 4y, 18m, 26w, 90d")
    s.add_argument("--test", required=True)
    s.add_argument("--step")
    s.add_argument("--mode", choices=("rolling", "anchored"), default="rolling")
    s.add_argument("--objective", default="sharpe")
    progress_option(s)
    s.set_defaults(fn=cmd_walk_forward)

    s = sub.add_parser("monte-carlo", help="resample a backtest: confidence intervals, probability of ruin")
    s.add_argument("config")
    s.add_argument("--method", default="trade_bootstrap",
                   help="trade_bootstrap, return_shuffle, block_bootstrap or random_entry")
    s.add_argument("--paths", type=int, default=1000, help="paths per seed")
    s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    s.add_argument("--block-size", type=int, default=20)
    s.add_argument("--confidence", type=float, default=0.95)
    s.add_argument("--ruin-drawdown", type=float, default=0.5)
    progress_option(s)
    s.set_defaults(fn=cmd_monte_carlo)

    s = sub.add_parser("regress", help="replay golden runs at their pinned data; fail on drift")
    s.add_argument("goldens", help='JSON file: [{"run_id": ..., "tolerances": {"sharpe": 1e-9}}]')
    s.set_defaults(fn=cmd_regress)

    s = sub.add_parser("maintain", help="compact, checkpoint, vacuum (pin-aware), expire old failed runs")
    s.add_argument("--retention-hours", type=float, default=168.0)
    s.add_argument("--failed-days", type=float, default=30.0)
    s.add_argument("--dry-run", action="store_true")
    s.set_defaults(fn=cmd_maintain)

    s = sub.add_parser("schema", help="print the JSON Schema of a backtest config")
    s.set_defaults(fn=cmd_schema)

    s = sub.add_parser("strategies", help="list the registered strategies and their parameters")
    s.add_argument("--format", choices=FORMATS, default="table")
    s.set_defaults(fn=cmd_strategies)

    s = sub.add_parser("sql", help="run SQL over the lake's tables (DuckDB)")
    s.add_argument("query")
    s.add_argument("--format", choices=FORMATS, default="table")
    s.add_argument("--at", nargs="+", metavar="TABLE=VERSION", help="also define TABLE_vVERSION views (time travel)")
    s.set_defaults(fn=cmd_sql)

    s = sub.add_parser("lake", help="lake commands")
    lsub = s.add_subparsers(dest="lake_command", required=True)
    st = lsub.add_parser("status", help="tables with version, rows, last commit and age")
    st.add_argument("--format", choices=FORMATS, default="table")
    st.set_defaults(fn=cmd_lake_status)

    s = sub.add_parser("dashboard", help="serve the Panel dashboards")
    s.add_argument("--port", type=int, default=5006)
    s.add_argument("--address", default="127.0.0.1")
    s.add_argument("--show", action="store_true", help="open a browser")
    s.set_defaults(fn=cmd_dashboard)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except LakeConnectionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except BacklakeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
