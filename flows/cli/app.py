"""``backlake demo`` and ``backlake dashboard``."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from backlake.errors import ConfigError
from flows.cli.progress import add_progress_option


def add_demo(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("demo", help="ingest the samples, run backtests through Prefect, print a summary")
    add_progress_option(s)
    s.set_defaults(fn=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from flows.demo import run_demo  # flows.demo imports the CLI's helpers: import it only here

    return run_demo(args.progress)


def add_dashboard(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("dashboard", help="serve the Panel dashboards")
    s.add_argument("--port", type=int, default=5006, help="port to serve on")
    s.add_argument("--address", default="127.0.0.1", help="address to listen on")
    s.add_argument("--show", action="store_true", help="open a browser")
    s.set_defaults(fn=cmd_dashboard)


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
