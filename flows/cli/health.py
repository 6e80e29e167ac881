"""``backlake health``: how fresh every lake table and data source is, for people and cron.

    backlake health                  # a table, worst first
    backlake health --format json    # one object per source
    backlake health || alert-me      # exit 0 all OK, 1 something STALE, 2 something in ERROR

Thresholds come from ``BACKLAKE_HEALTH_THRESHOLDS`` (see ``backlake.settings.HealthThresholds``).
"""

from __future__ import annotations

import argparse
import json

from flows.cli.output import format_rows

COLUMNS = ("source", "status", "category", "last_update", "age", "threshold", "message")


def add_health(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "health", help="freshness of every lake table and source; exit 0 OK, 1 stale, 2 error (for cron)",
        description="Check every lake table's latest commit, the bars per source/symbol, the signals per alpha "
                    "and live_pnl per strategy against the staleness thresholds of BACKLAKE_HEALTH_THRESHOLDS "
                    '(JSON, e.g. \'{"price": 93600, "overrides": {"live_pnl": 172800}}\'). Exit code: 0 all OK, '
                    "1 some source STALE, 2 some source in ERROR.")
    s.add_argument("--format", choices=("table", "json"), default="table",
                   help="output: an aligned table, or a JSON object (overall status and one object per source)")
    s.set_defaults(fn=cmd_health)


def cmd_health(args: argparse.Namespace) -> int:
    from backlake.analytics.health import exit_code, human_span, lake_monitor, overall_status
    from backlake.lake import Lake
    from flows.cli.lake import require_lake

    require_lake()
    lake = Lake()
    results = lake_monitor(lake).results()
    overall = overall_status(results)
    if args.format == "json":
        print(json.dumps({"status": overall, "lake": lake.settings.lake_uri,
                          "sources": [r.to_dict() for r in results]}))
    else:
        rows = [(r.source, r.status, r.category or "-", r.last_update, r.age_text,
                 human_span(r.threshold_seconds) if r.threshold_seconds else "-", r.message)
                for r in results]
        print(format_rows(COLUMNS, rows))
        counts = {s: sum(r.status == s for r in results) for s in ("OK", "STALE", "ERROR")}
        print(f"overall: {overall} ({counts['OK']} OK, {counts['STALE']} STALE, {counts['ERROR']} ERROR)")
    return exit_code(overall)
