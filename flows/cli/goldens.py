"""``backlake goldens``: the golden runs the regression flow replays, kept in the lake's
``goldens`` table.

    backlake goldens add 0967a32b87f26966 --tol sharpe=1e-6 --tol total_return=1e-9 --note "GOOG reference"
    backlake goldens list [--format table|json|csv]
    backlake goldens remove 0967a32b87f26966
"""

from __future__ import annotations

import argparse
import json
import math

from backlake.errors import ConfigError
from flows.cli.output import add_format_option, format_rows

_TOL_EXAMPLE = "e.g. --tol sharpe=1e-6"


def add_goldens(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("goldens", help="golden runs that `backlake regress` replays: add, list, remove")
    gsub = s.add_subparsers(dest="goldens_command", required=True)

    a = gsub.add_parser("add", help="make a completed backtest a golden run (again: update its tolerances and note)",
                        description="Make RUN (a completed single backtest in the lake) a golden run. Adding a "
                                    "golden again replaces its tolerances, default tolerance and note.")
    a.add_argument("run", metavar="RUN", help="the run id of a completed backtest")
    a.add_argument("--tol", action="append", default=[], metavar="METRIC=X",
                   help="absolute tolerance of one metric, e.g. --tol sharpe=1e-6 (repeat for more)")
    a.add_argument("--default-tol", default=None, metavar="X",
                   help="tolerance of the metrics without a --tol (default 1e-9)")
    a.add_argument("--note", metavar="TEXT", help="why this run is a golden")
    a.set_defaults(fn=cmd_goldens_add)

    ls = gsub.add_parser("list", help="the golden runs, their tolerances, who added them and when")
    add_format_option(ls)
    ls.set_defaults(fn=cmd_goldens_list)

    rm = gsub.add_parser("remove", help="stop replaying a golden run (the run stays in the lake)")
    rm.add_argument("run", metavar="RUN", help="the run id of a golden")
    rm.set_defaults(fn=cmd_goldens_remove)


def _number(text: str, what: str) -> float:
    """``text`` as a tolerance (a finite number >= 0), else a ConfigError naming ``what``."""
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not a number; {_TOL_EXAMPLE}") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{what}: the tolerance must be a non-negative number, got {text}")
    return value


def parse_tolerances(specs: list[str]) -> dict[str, float]:
    """``["sharpe=1e-6", ...]`` as metric -> tolerance; one-line errors for a bad spec, an
    unknown metric (the closest one suggested), a negative value or a metric given twice."""
    from backlake._suggest import unknown_name_message
    from backlake.metrics import METRIC_UNITS

    out: dict[str, float] = {}
    for spec in specs:
        name, eq, value = spec.partition("=")
        name, value = name.strip(), value.strip()
        if not eq or not name or not value:
            raise ConfigError(f"--tol {spec!r}: write METRIC=TOLERANCE, {_TOL_EXAMPLE}")
        if name not in METRIC_UNITS:
            raise ConfigError(f"--tol {spec!r}: " + unknown_name_message("metric", name, METRIC_UNITS))
        if name in out:
            raise ConfigError(f"--tol {name} is given twice; give each metric once")
        out[name] = _number(value, f"--tol {spec!r}")
    return out


def cmd_goldens_add(args: argparse.Namespace) -> int:
    from backlake.lake import Lake
    from backlake.runs.goldens import add_golden
    from backlake.runs.regression import DEFAULT_TOLERANCE
    from backlake.settings import get_settings
    from flows.cli.lake import require_lake

    tol = parse_tolerances(args.tol)  # before the lake: a typo costs nothing
    default = DEFAULT_TOLERANCE if args.default_tol is None else _number(args.default_tol, "--default-tol")
    require_lake()
    done = add_golden(Lake(), args.run, tol, note=args.note, user=get_settings().user, default_tolerance=default)
    what = {"added": "added golden", "updated": "updated golden", "unchanged": "unchanged: golden"}[done]
    tols = ", ".join(f"{k} {v:g}" for k, v in tol.items())
    print(f"{what} {args.run.strip()} (tolerances: {tols + '; ' if tols else ''}other metrics {default:g})")
    return 0


def cmd_goldens_list(args: argparse.Namespace) -> int:
    from backlake.lake import Lake
    from backlake.runs.goldens import NO_GOLDENS, list_goldens
    from flows.cli.lake import require_lake

    require_lake()
    df = list_goldens(Lake())
    if df.is_empty() and args.format == "table":
        print(NO_GOLDENS)
        return 0
    rows = []
    for r in df.iter_rows(named=True):
        tol = json.loads(r["tolerances"] or "{}")
        if args.format == "json":  # objects and numbers as such
            r["tolerances"] = tol
        elif args.format == "table":  # 1e-09, not 0.0000
            r["tolerances"] = ", ".join(f"{k}={v:g}" for k, v in tol.items())
            r["default_tolerance"] = f"{r['default_tolerance']:g}"
        rows.append([r[c] for c in df.columns])
    print(format_rows(df.columns, rows, args.format))
    return 0


def cmd_goldens_remove(args: argparse.Namespace) -> int:
    from backlake.lake import Lake
    from backlake.runs.goldens import remove_golden
    from flows.cli.lake import require_lake

    require_lake()
    remove_golden(Lake(), args.run)
    print(f"removed golden {args.run.strip()} (the run stays in the lake)")
    return 0
