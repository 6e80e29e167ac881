"""The ``backlake`` parser, assembled from the command groups, and :func:`main`."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

from backlake.errors import BacklakeError, ConfigError, DataValidationError, LakeConnectionError
from flows.cli import alpha, app, compare, data, goldens, health, info, lake, live, report, runs, s3, server, users

# one function per subcommand, in the order `backlake --help` lists them
COMMANDS = (
    app.add_demo,
    data.add_ingest,
    runs.add_backtest,
    runs.add_sweep,
    runs.add_optimize,
    runs.add_walk_forward,
    runs.add_monte_carlo,
    runs.add_regress,
    alpha.add_alpha,
    goldens.add_goldens,
    lake.add_maintain,
    info.add_schema,
    info.add_strategies,
    lake.add_sql,
    lake.add_lake,
    health.add_health,
    compare.add_compare,
    report.add_report,
    live.add_live,
    app.add_dashboard,
    users.add_users,
    server.add_server,
    s3.add_s3,
)

# the commands that run a flow: each first picks the Prefect API (server.use_prefect_api)
FLOW_COMMANDS = {"demo", "ingest", "backtest", "sweep", "optimize", "walk-forward", "monte-carlo", "regress",
                 "maintain", "alpha"}
#: commands that check their input against the lake first and pick the Prefect API themselves,
#: just before their flow (so a user error is answered before any server is looked for)
CHECKED_FIRST = {"backtest", "sweep", "optimize", "walk-forward", "monte-carlo", "regress", "alpha"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="backlake", description="Backtests into a versioned Delta lake.")
    p.add_argument("--debug", action="store_true",
                   help="show Python tracebacks (of errors that are bugs; user errors are always one line)")
    sub = p.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in FLOW_COMMANDS - CHECKED_FIRST:
            server.use_prefect_api()
        code = int(args.fn(args) or 0)
    except (ConfigError, LakeConnectionError, BacklakeError) as e:
        if args.debug:
            raise
        return _report(e)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`backlake sql ... | head`): not an error
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # a bug: one line, the traceback with --debug
        if args.debug:
            raise
        print(f"internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
              "(rerun with --debug for the traceback, and please report it)", file=sys.stderr)
        return 1
    if argv is None and args.command in FLOW_COMMANDS:
        _exit_now(code)  # the `backlake` command itself, not a caller of main([...])
    return code


def _exit_now(code: int) -> None:
    """End the process once its output is flushed, Prefect's exit handlers (log and event
    drains) have run and its threads have finished, skipping the interpreter's teardown of
    numba, DuckDB and Prefect (most of a second, on every command that ran a flow)."""
    import atexit
    import os
    import threading

    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    for t in threading.enumerate():
        if t is not threading.current_thread() and not t.daemon:
            t.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def _report(exc: BacklakeError) -> int:
    """One line (or one per problem) on stderr, and the exit code: 2 user error (bad input or
    data), 3 the lake or the Prefect server cannot be reached, 1 other errors."""
    print(f"error: {exc}", file=sys.stderr)
    if isinstance(exc, (ConfigError, DataValidationError)):
        return 2
    if isinstance(exc, (LakeConnectionError, server.ServerError)):
        return 3
    return 1
