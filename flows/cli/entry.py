"""The ``backlake`` parser, assembled from the command groups, and :func:`main`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from backlake.errors import BacklakeError, ConfigError, LakeConnectionError
from flows.cli import app, data, info, lake, runs

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
    lake.add_maintain,
    info.add_schema,
    info.add_strategies,
    lake.add_sql,
    lake.add_lake,
    app.add_dashboard,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="backlake", description="Backtests into a versioned Delta lake.")
    sub = p.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
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
