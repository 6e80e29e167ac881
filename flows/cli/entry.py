"""The ``backlake`` parser, assembled from the command groups, and :func:`main`."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
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
CHECKED_FIRST = {"backtest", "sweep", "optimize", "walk-forward", "monte-carlo", "regress", "alpha", "ingest",
                 "maintain"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="backlake", description="Backtests into a versioned Delta lake.")
    p.add_argument("--debug", action="store_true",
                   help="show Python tracebacks (of errors that are bugs; user errors are always one line)")
    sub = p.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return p


#: a value that starts like a negative number (``-5``, ``-0.5``, ``-5,1``): no option of backlake
#: starts with a digit, so after an option that takes a value it is that value
_NEGATIVE_VALUE = re.compile(r"^-\.?\d")


def _options_with_values(parser: argparse.ArgumentParser) -> set[str]:
    """The option strings (``--horizons``...) of every command that take a value."""
    found: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found |= _options_with_values(child)
        elif action.option_strings and action.nargs != 0:
            found.update(action.option_strings)
    return found


def attach_negative_values(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """``--horizons -5,1`` as ``--horizons=-5,1``: argparse takes a value that starts with ``-``
    and is not a plain number for an option, and answers "expected one argument"; attached,
    the value reaches the command's own check, which says what is wrong with it."""
    takes_value = _options_with_values(parser)
    out: list[str] = []
    for token in argv:
        if out and out[-1] in takes_value and _NEGATIVE_VALUE.match(token) and "--" not in out:
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(attach_negative_values(parser, sys.argv[1:] if argv is None else argv))
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
