"""``backlake compare RUN RUN... [--baseline RUN] [--basis net|gross] [--format table|json|csv]``:
compare 2-10 completed runs from the lake (reads the lake only; no Prefect)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from flows.cli.output import FORMATS, format_rows, jsonable


def add_compare(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "compare", help="compare 2-10 runs: metrics diff, tracking error vs a baseline, correlation",
        description="Compare 2-10 completed runs (any kind with an equity curve). Metrics cover each run's full "
                    "period; tracking error and correlation use the runs' common dates.")
    s.add_argument("runs", nargs="+", metavar="RUN", help="run ids (2 to 10), e.g. from `backlake sql "
                                                          "\"SELECT run_id, strategy FROM runs\"`")
    s.add_argument("--baseline", metavar="RUN", help="the run tracking error is measured against (default: the first)")
    s.add_argument("--basis", choices=("net", "gross"), default="net",
                   help="net: equity as recorded; gross: each bar's costs added back (default net)")
    s.add_argument("--format", choices=FORMATS, default="table",
                   help="table (default), one JSON object, or CSV rows section,name,run_id,value")
    s.set_defaults(fn=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from backlake.analytics.compare import check_basis, check_run_ids, compare_runs
    from backlake.lake import connect
    from flows.cli.lake import require_lake

    ids = check_run_ids(args.runs)  # input errors before the lake is opened
    check_basis(args.basis)
    require_lake()
    with connect() as con:
        cmp = compare_runs(con, ids, baseline=args.baseline, basis=args.basis)
    for w in cmp.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(jsonable(cmp.to_dict())))
    elif args.format == "csv":
        print(format_rows(["section", "name", "run_id", "value"], _long_rows(cmp), "csv"))
    else:
        print(_table(cmp))
    return 0


def _long_rows(cmp: Any) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for m in cmp.metrics:
        rows += [["metric", m.name, r, m.values.get(r)] for r in cmp.run_ids]
    rows += [["tracking_error", cmp.baseline, r, te] for r, te in cmp.tracking_error.items()]
    if cmp.correlation is not None:
        for row in cmp.correlation.iter_rows(named=True):
            rows += [["correlation", row["run_id"], r, row[r]] for r in cmp.run_ids if r in row]
    return rows


def _table(cmp: Any) -> str:
    ids = cmp.run_ids
    head = [f"basis: {cmp.basis}" + (f" (asked {cmp.requested_basis})" if cmp.basis != cmp.requested_basis else ""),
            f"equity overlay: {cmp.subtitle}", f"baseline: {cmp.baseline or 'none (no run has returns)'}", ""]
    mrows = []
    for m in cmp.metrics:
        marks = {r: ("+" if r in m.best else "-" if r in m.worst else "") for r in ids}
        mrows.append([m.name, m.direction, *[_mark(m.name, m.values.get(r), marks[r]) for r in ids]])
    parts = ["\n".join(head), "metrics (+ best, - worst):",
             format_rows(["metric", "better", *ids], mrows), cmp.FOOTNOTE, ""]
    te = [[r, next(x.label for x in cmp.runs if x.run_id == r), f"{v:.2%}" if v is not None else "insufficient data"]
          for r, v in cmp.tracking_error.items()]
    parts += [f"tracking error vs {cmp.baseline} (annualised):", format_rows(["run_id", "run", "tracking_error"], te),
              ""]
    if cmp.correlation is not None:
        parts += ["correlation of returns:", format_rows(cmp.correlation.columns, cmp.correlation.rows())]
    return "\n".join(parts)


def _mark(name: str, v: float | None, mark: str) -> str:
    return f"{_unit_text(name, v)}{mark}" if v is not None else ""


def _unit_text(name: str, v: float) -> str:
    """A metric in its unit (``backlake.metrics.unit_kind``): fractions as %, ratios to 3
    decimals, counts and bars whole, days to 1 decimal, money (and the cost summary) to 2
    decimals with separators."""
    import math

    from backlake.metrics import unit_kind

    if not math.isfinite(v):
        return str(v)
    return _CLI_FORMATS[unit_kind(name)].format(v)


_CLI_FORMATS = {"pct": "{:.2%}", "ratio": "{:.3f}", "count": "{:,.0f}", "days": "{:,.1f}", "money": "{:,.2f}",
                "num": "{:.4g}"}
