"""``backlake ingest``: validate bars and append new rows to the lake."""

from __future__ import annotations

import argparse


def add_ingest(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("ingest", help="validate bars and append new rows to the lake")
    s.add_argument("--source", choices=("samples", "synthetic", "file"), default="samples",
                   help="the shipped samples, generated synthetic bars, or a file (--path)")
    s.add_argument("--symbols", nargs="+", help="symbols to load (samples/synthetic); default: all samples")
    s.add_argument("--path", help="CSV or Parquet file (source=file)")
    s.add_argument("--symbol", help="symbol of a file without a symbol column")
    s.add_argument("--timeframe", default="1d", help="bar size of the synthetic or file bars, e.g. 1d, 1h, 5m")
    s.add_argument("--map", nargs="+", metavar="OURS=THEIRS", help="column mapping, e.g. ts=Date close='Adj Close'")
    s.add_argument("--seed", type=int, default=0, help="random seed of the synthetic bars")
    s.add_argument("--periods", type=int, default=2520, help="bars per symbol (synthetic)")
    s.add_argument("--revise", action="store_true",
                   help="replace stored bars whose values differ (a new bars version; runs pinned to "
                        "earlier versions still replay); without it such an ingest is rejected")
    s.set_defaults(fn=cmd_ingest)


def cmd_ingest(args: argparse.Namespace) -> int:
    from backlake.data.ingest import check_ingest_request
    from backlake.errors import ConfigError
    from flows.cli.server import use_prefect_api
    from flows.ingest import ingest_flow

    columns: dict[str, str] | None = None
    for kv in args.map or []:
        ours, eq, theirs = kv.partition("=")
        if not eq or not ours:
            raise ConfigError(f"--map {kv!r}: write OURS=THEIRS, e.g. --map ts=Date close='Adj Close'")
        columns = {**(columns or {}), ours: theirs}
    check_ingest_request(args.source, args.symbols, args.path, args.symbol, args.timeframe, columns, args.periods)
    use_prefect_api()
    report = ingest_flow(
        source=args.source, symbols=args.symbols, path=args.path, symbol=args.symbol,
        timeframe=args.timeframe, columns=columns, seed=args.seed, periods=args.periods, revise=args.revise,
    )
    print(ingest_summary(report))
    return 0


def ingest_summary(report: dict) -> str:
    v = report["validation"]
    counts = ", ".join(f"{k}={n}" for k, n in v["counts"].items())
    return (
        f"ingested {len(report['symbols'])} symbol(s): {report['rows_new']} new bar(s), "
        f"{report.get('rows_revised', 0)} revised, {report['rows_existing']} already in the lake; "
        f"bars is at version {report['bars_version']}\n"
        f"validation: {v['rows_in']} rows in, {v['rows_valid']} valid, {v['rows_skipped']} skipped ({counts})"
    )
