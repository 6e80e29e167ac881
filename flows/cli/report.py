"""``backlake report RUN``: a run's tear sheet as one self-contained HTML file."""

from __future__ import annotations

import argparse
from pathlib import Path

from backlake.errors import ConfigError


def add_report(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("report", help="write a run's tear sheet (self-contained HTML: opens offline, prints to PDF)",
                       description="The same charts and tables as the run's page on the dashboard, in one HTML "
                                   "file with every script inline: open it from disk with no server or network, "
                                   "print it to PDF from the browser.")
    s.add_argument("run", help="the run_id (see the runs page, or "
                               "`backlake sql \"SELECT run_id, strategy FROM runs\"`)")
    s.add_argument("--format", choices=["html"], default="html", help="the file format (html)")
    s.add_argument("--output", "-o", metavar="PATH", help="the file to write (default report-<run>.html here)")
    s.set_defaults(fn=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from dashboards.report import render_report
    from dashboards.store import LakeStore
    from flows.cli.lake import require_lake

    if args.format != "html":  # argparse refuses other values; kept for callers of cmd_report
        raise ConfigError(f"--format {args.format!r}: only html is written (print it to PDF from the browser)")
    require_lake()
    out = Path(args.output or f"report-{args.run}.html")
    if out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--output {str(out)!r}: the report is HTML, give a file name ending in .html")
    store = LakeStore()
    try:
        path = render_report(store, args.run, out)
    finally:
        store.close()
    size = path.stat().st_size
    print(f"wrote {path} ({size / 1e6:.1f} MB): open it in a browser (works offline); print to PDF from there")
    return 0
