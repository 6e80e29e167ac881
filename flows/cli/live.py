"""``backlake live``: live results in the lake and their overlay on a backtest.

    backlake live ingest pnl.csv --strategy sma-live [--revise] [--capital 1000000]
    backlake live link sma-live 0967a32b87f26966
    backlake live list [--format table|json|csv]
    backlake live overlay sma-live [--run RUN] [--te-threshold 0.05] [--format table|json|csv]
    backlake live monitor [--webhook-url URL]      # the live_monitor flow, once
"""

from __future__ import annotations

import argparse
import json
import math

from flows.cli.output import add_format_option, format_rows, jsonable


def _float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number, e.g. 0.05") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number, e.g. 0.05")
    return v


def add_live(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("live", help="live P&L: ingest it, link it to a backtest, overlay and monitor it")
    lsub = s.add_subparsers(dest="live_command", required=True)

    i = lsub.add_parser("ingest", help="validate a CSV / Parquet file of live results and add it to live_pnl",
                        description="FILE has a date column and one or more of daily_pnl (or pnl), ret (or return: "
                                    "a fraction, 0.01 is 1%%) and nav. Bad rows are skipped and counted; dates already "
                                    "stored with the same values are skipped (re-ingesting adds nothing); dates "
                                    "stored with other values are refused unless --revise.")
    i.add_argument("file", metavar="FILE", help="CSV (with a header row) or Parquet (.parquet)")
    i.add_argument("--strategy", required=True, metavar="NAME", help="the live strategy's name, e.g. sma-live")
    i.add_argument("--revise", action="store_true", help="replace the stored values of dates whose values changed")
    i.add_argument("--capital", type=_float, metavar="X",
                   help="starting NAV of a daily_pnl-only file (later files continue from the stored NAV)")
    i.add_argument("--format", choices=("table", "json"), default="table", help="the report as text or JSON")
    i.set_defaults(fn=cmd_ingest)

    ln = lsub.add_parser("link", help="watch live strategy NAME against the completed run RUN (replaces a link)")
    ln.add_argument("strategy", metavar="NAME")
    ln.add_argument("run", metavar="RUN", help="run id of a completed backtest")
    ln.set_defaults(fn=cmd_link)

    ls = lsub.add_parser("list", help="live strategies: days, first and last date, linked run")
    add_format_option(ls)
    ls.set_defaults(fn=cmd_list)

    ov = lsub.add_parser("overlay", help="live vs backtest: tracking error, divergence, alert level",
                         description="Exit code 0 whatever the level (the level is in the output); 2 on bad input.")
    ov.add_argument("strategy", metavar="NAME")
    ov.add_argument("--run", metavar="RUN", help="compare with this run instead of the linked one")
    _add_config_options(ov)
    ov.add_argument("--format", choices=("table", "json", "csv"), default="table",
                    help="table: the figures; json: figures and the daily series; csv: the daily series")
    ov.set_defaults(fn=cmd_overlay)

    m = lsub.add_parser("monitor", help="run the live_monitor flow once (alerts table, artifact, webhook)")
    m.add_argument("--webhook-url", metavar="URL", help="POST new YELLOW / RED alerts here "
                                                        "(default: BACKLAKE_ALERT_WEBHOOK_URL)")
    _add_config_options(m)
    m.set_defaults(fn=cmd_monitor)


def _add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--te-threshold", type=_float, metavar="X",
                   help="annualised rolling tracking error threshold of YELLOW (default 0.05)")
    p.add_argument("--divergence-threshold", type=_float, metavar="X",
                   help="cumulative divergence threshold of RED (default 0.10)")
    p.add_argument("--consecutive-days", type=int, metavar="N",
                   help="consecutive days above the TE threshold for YELLOW (default 5)")
    p.add_argument("--window", type=int, metavar="N", help="rolling window in days (default 20)")


def _config(args: argparse.Namespace):
    from backlake.analytics.live import OverlayConfig

    return OverlayConfig.parse(
        tracking_error_threshold=args.te_threshold, divergence_threshold=args.divergence_threshold,
        consecutive_days_for_yellow=args.consecutive_days, rolling_window_days=args.window)


def cmd_ingest(args: argparse.Namespace) -> int:
    from backlake.analytics.live import ingest_live
    from backlake.lake import Lake

    report = ingest_live(Lake(), args.file, args.strategy, revise=args.revise, capital=args.capital)
    print(json.dumps(report.to_dict()) if args.format == "json" else report.summary())
    return 0


def cmd_link(args: argparse.Namespace) -> int:
    from backlake.analytics.live import link_strategy
    from backlake.lake import Lake, connect
    from backlake.settings import get_settings

    lake = Lake()
    with connect(lake=lake) as con:
        result = link_strategy(lake, con, args.strategy, args.run, get_settings().user)
    print(f"{result}: live strategy {args.strategy} -> run {args.run}"
          + ("" if result != "unchanged" else " (already linked)"))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from backlake.analytics.live import live_strategies
    from backlake.lake import connect

    with connect() as con:
        df = live_strategies(con)
    print(format_rows(df.columns, df.rows(), args.format))
    return 0


def cmd_overlay(args: argparse.Namespace) -> int:
    from backlake.analytics.live import load_overlay
    from backlake.lake import connect

    cfg = _config(args)
    with connect() as con:
        ov = load_overlay(con, args.strategy, args.run, cfg)
    if args.format == "csv":
        print(format_rows(ov.frame.columns, ov.frame.rows(), "csv"))
        return 0
    if args.format == "json":
        out = ov.to_dict()
        out["series"] = [{k: jsonable(v) for k, v in r.items()} for r in ov.frame.iter_rows(named=True)]
        print(json.dumps(jsonable(out)))
        return 0
    d = ov.to_dict()
    pct = {"tracking_error", "rolling_te", "divergence", "cum_live", "cum_backtest"}
    rows = [(k, (f"{d[k] * 100:.2f}%" if k in pct and d[k] is not None else d[k]))
            for k in ("strategy", "run_id", "level", "basis", "start", "end", "n_live", "n_aligned", "n_overlap",
                      "n_outside", "cum_live", "cum_backtest", "tracking_error", "rolling_te", "divergence",
                      "divergence_start")]
    print(format_rows(["figure", "value"], rows))
    for r in ov.reasons:
        print(f"{ov.level}: {r}")
    for w in ov.warnings:
        print(f"warning: {w}")
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    from flows.cli.server import use_prefect_api

    cfg = _config(args)  # checked before any server is looked for
    use_prefect_api()
    from flows.live_monitor import live_monitor_flow

    out = live_monitor_flow(webhook_url=args.webhook_url, config=cfg.model_dump())
    rows = [(r["strategy"], r.get("run_id"), r.get("date"), r["level"], r.get("new"), r.get("posted"), r["message"])
            for r in out["results"]]
    print(format_rows(["strategy", "run_id", "date", "level", "new", "posted", "message"], rows))
    if not rows:
        print("no live strategy is linked: `backlake live link NAME RUN`")
    return 0
