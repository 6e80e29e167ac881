"""Commands over the lake itself: ``backlake sql``, ``lake status`` and ``maintain``."""

from __future__ import annotations

import argparse

from backlake.errors import ConfigError
from flows.cli.output import add_format_option, format_rows


# -- sql ----------------------------------------------------------------------------------------
def add_sql(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sql", help="run SQL over the lake's tables (DuckDB)")
    s.add_argument("query", help="the SQL; each lake table is a view of the same name, e.g. runs, trials")
    add_format_option(s)
    s.add_argument("--at", nargs="+", metavar="TABLE=VERSION", help="also define TABLE_vVERSION views (time travel)")
    s.set_defaults(fn=cmd_sql)


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


# -- lake status --------------------------------------------------------------------------------
def add_lake(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("lake", help="lake commands")
    lsub = s.add_subparsers(dest="lake_command", required=True)
    st = lsub.add_parser("status", help="tables with version, rows, last commit and age")
    add_format_option(st)
    st.set_defaults(fn=cmd_lake_status)


def cmd_lake_status(args: argparse.Namespace) -> int:
    from backlake.lake import Lake

    lake = Lake()
    status = lake.status()
    if args.format == "table":
        print(f"lake: {lake.settings.lake_uri}")
    print(format_rows(status.columns, status.rows(), args.format))
    return 0


# -- maintain -----------------------------------------------------------------------------------
def add_maintain(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("maintain", help="compact, checkpoint, vacuum (pin-aware), expire old failed runs")
    s.add_argument("--retention-hours", type=float, default=168.0,
                   help="vacuum retention: versions this recent stay readable by time travel "
                        "(stretched for versions that stored runs pin)")
    s.add_argument("--failed-days", type=float, default=30.0,
                   help="delete failed and cancelled runs that finished more than this many days ago")
    s.add_argument("--stale-hours", type=float, default=6.0,
                   help="a run left running whose attempt cannot be checked (another host, no Prefect flow run) "
                        "is reaped as crashed after this many hours")
    s.add_argument("--dry-run", action="store_true",
                   help="only report: no compaction, checkpoint, vacuum or deletion")
    s.set_defaults(fn=cmd_maintain)


def cmd_maintain(args: argparse.Namespace) -> int:
    from flows.maintenance import maintenance_flow

    out = maintenance_flow(vacuum_retention_hours=args.retention_hours, failed_retention_days=args.failed_days,
                           stale_after_hours=args.stale_hours, dry_run=args.dry_run)
    if out["tables"]:
        cols = list(dict.fromkeys(k for t in out["tables"] for k in t))
        print(format_rows(cols, [[t.get(c) for c in cols] for t in out["tables"]]))
    for note in out["notes"]:
        print(note)
    print(f"runs reaped as crashed: {len(out['reaped_runs'])}"
          + (f" ({', '.join(out['reaped_runs'])})" if out["reaped_runs"] else ""))
    print(f"runs whose debris was deleted: {len(out['debris_runs'])}")
    print(f"expired failed/cancelled runs: {out['deleted_runs']}")
    return 0
