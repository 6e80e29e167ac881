"""Commands over the lake itself: ``backlake sql``, ``lake status`` and ``maintain``."""

from __future__ import annotations

import argparse
import sys

from backlake.errors import ConfigError
from flows.cli.output import add_format_option, format_rows


# -- sql ----------------------------------------------------------------------------------------
def add_sql(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sql", help="run a read-only SQL query over the lake's tables (DuckDB)")
    s.add_argument("query", help="one SELECT; each lake table is a view of the same name (runs, trials, ...) "
                                 "and <table>_at(N) reads version N")
    add_format_option(s)
    s.add_argument("--at", nargs="+", metavar="TABLE=VERSION", help="also define TABLE_vVERSION views (time travel)")
    s.set_defaults(fn=cmd_sql)


def require_lake() -> None:
    """For commands that only read the lake: a local lake directory that does not exist is an
    error naming it (rather than an empty lake, which a typo in the path would look like)."""
    from pathlib import Path

    from backlake.settings import get_settings

    settings = get_settings()
    if not settings.is_s3 and not Path(settings.root).exists():
        raise ConfigError(
            f"the lake directory {settings.root} does not exist (BACKLAKE_LAKE_URI={settings.lake_uri!r}): "
            "fix BACKLAKE_LAKE_URI, or create the lake with `backlake demo` or `backlake ingest`")


def cmd_sql(args: argparse.Namespace) -> int:
    """Run the query on the read-only connection; a refused or failed query is one line on
    stderr (``SQL error: ...``) and exit code 2."""
    import duckdb

    from backlake.lake.sql import QueryRefused, connect_readonly, one_line

    require_lake()
    at: list[tuple[str, int]] = []
    for spec in args.at or []:
        table, _, version = spec.partition("=")
        if not version.isdigit():
            raise ConfigError(f"--at {spec!r}: write TABLE=VERSION, e.g. --at bars=3")
        at.append((table, int(version)))
    if at:  # a table or version that is not there is the user's mistake (exit 2), named before any query
        from backlake._suggest import unknown_name_message
        from backlake.lake import Lake
        from backlake.lake.schemas import SCHEMAS

        lake = Lake()
        for table, version in at:
            if table not in SCHEMAS:
                raise ConfigError(f"--at {table}={version}: " + unknown_name_message("table", table, SCHEMAS))
            latest = lake.version(table) if lake.exists(table) else None
            if latest is None or version > latest:
                raise ConfigError(f"--at {table}={version}: {table} has no version {version} ("
                                  + ("the table does not exist yet" if latest is None else f"latest is {latest}")
                                  + ")")
    with connect_readonly(at=at) as con:
        try:
            cur = con.execute(args.query)
            columns = [d[0] for d in cur.description or []]
            rows = cur.fetchall() if columns else []
        except (QueryRefused, duckdb.Error) as e:  # the message, on one line, not a traceback
            print(f"SQL error: {one_line(e)}", file=sys.stderr)
            return 2
    if columns:
        print(format_rows(columns, rows, args.format))
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

    require_lake()
    lake = Lake()
    status = lake.status()
    if args.format == "table":
        print(f"lake: {lake.settings.lake_uri}")
    print(format_rows(status.columns, status.rows(), args.format))
    return 0


# -- maintain -----------------------------------------------------------------------------------
def add_maintain(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("maintain", help="compact, checkpoint, vacuum (pin-aware), expire old failed runs",
                       description="Once the users file has users, maintain follows the role of BACKLAKE_USER "
                                   "(or the OS user): an admin maintains everything; a researcher only expires "
                                   "their own old failed/cancelled runs (and reaps crashed runs); a viewer, or "
                                   "a user not in the file, is refused.")
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


def _expiry_scope() -> tuple[bool, str | None]:
    """(restricted, user): whether this user may only expire their own runs, and who they are.
    Without users (no users file) nothing is restricted, as before roles existed."""
    from backlake import auth
    from backlake.settings import get_settings

    if not auth.has_users():
        return False, None
    name = get_settings().user
    user = auth.get_user(name)
    if user is None:
        raise ConfigError(
            f"maintain: user {name!r} (BACKLAKE_USER or the OS user) is not in the users file {auth.users_path()}; "
            f"an admin can add it: `backlake users add {name} --role researcher` (own runs) or `--role admin`"
        )
    scope = auth.expiry_scope(user)  # a viewer: ConfigError
    return scope is not None, scope


def cmd_maintain(args: argparse.Namespace) -> int:
    from backlake.lake.maintenance import check_maintenance_options
    from flows.cli.server import use_prefect_api

    check_maintenance_options(args.retention_hours, args.failed_days, args.stale_hours)
    restricted, user = _expiry_scope()
    use_prefect_api()
    if restricted:
        from backlake.lake import Lake
        from backlake.lake.maintenance import maintain
        from flows._common import prefect_alive

        print(f"maintain as {user} (researcher): expiring only your failed/cancelled runs; compaction, "
              "checkpoints, vacuum and other users' runs need the admin role")
        report = maintain(Lake(), compact=False, checkpoint=False, vacuum_retention_hours=None,
                          failed_retention_days=args.failed_days, stale_after_hours=args.stale_hours,
                          dry_run=args.dry_run, is_alive=prefect_alive, expire_only_user=user)
        out = {"tables": [], "deleted_runs": report.deleted_runs, "reaped_runs": report.reaped_runs,
               "debris_runs": report.debris_runs, "notes": report.notes}
    else:
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
