"""What the commands print (aligned table, JSON or CSV) and the JSON files they read."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from backlake.errors import ConfigError

FORMATS = ("table", "json", "csv")


def add_format_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--format", choices=FORMATS, default="table",
                    help="output: an aligned table, a JSON array of objects, or CSV")


# -- rows ---------------------------------------------------------------------------------------
def jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if hasattr(v, "item"):  # numpy / decimal-like scalars
        try:
            return v.item()
        except Exception:
            pass
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


def cell(v: Any, *, exact: bool = False) -> str:
    """A value as table text. Floats are rounded as the dashboard shows them: two decimals
    (thousands separated) from 1 up, four below 1 (ratios, fractions); ``exact`` (CSV) keeps
    every digit."""
    if v is None:
        return ""
    if isinstance(v, float):
        if not math.isfinite(v):
            return ""
        if exact:
            return repr(v)
        return f"{v:,.2f}" if abs(v) >= 1 else f"{v:.4f}"
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    return str(v)


def format_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str = "table") -> str:
    """Render rows as an aligned table, a JSON array of objects, or CSV."""
    if fmt == "json":
        return json.dumps([{c: jsonable(v) for c, v in zip(columns, r)} for r in rows], indent=None)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        w.writerows([[cell(v, exact=True) for v in r] for r in rows])
        return buf.getvalue().rstrip("\n")
    cells = [[cell(v) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join([line, sep, *body, f"({len(rows)} row{'s' if len(rows) != 1 else ''})"])


# -- input files --------------------------------------------------------------------------------
def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows; numbers must be finite")


def read_json(path: str, what: str) -> Any:
    """The JSON in ``path``: one-line errors for a missing, unreadable, binary or invalid file
    (NaN and Infinity, which Python's JSON would take, are refused)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{what} file {path!r} does not exist")
    if p.is_dir():
        raise ConfigError(f"{what} file {path!r} is a directory; give a JSON file")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not a UTF-8 text file (byte {e.start}); give a JSON {what} file") from None
    except OSError as e:
        raise ConfigError(f"cannot read {what} file {path}: {e.strerror}") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None


def read_configs(path: str) -> list[dict[str, Any]]:
    """The config(s) in ``path`` (one object or a list), each validated; the problems of a
    list are reported together, each with its position."""
    from backlake.config import BacktestConfig

    data = read_json(path, "config")
    if isinstance(data, dict):
        BacktestConfig.model_validate(data)
        return [data]
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{path} must hold one config object or a non-empty list of them")
    problems = []
    for i, d in enumerate(data):
        if not isinstance(d, dict):
            problems.append(f"configs[{i}]: must be a config object, got {type(d).__name__}")
            continue
        try:
            BacktestConfig.model_validate(d)
        except ConfigError as e:
            problems.append(f"configs[{i}]: {str(e).removeprefix('invalid backtest config: ')}")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise ConfigError("\n".join(shown))
    return data


def read_config(path: str) -> dict:
    """The one backtest config in ``path``, validated (before Prefect starts)."""
    from backlake.config import BacktestConfig

    config = read_json(path, "config")
    if not isinstance(config, dict):
        raise ConfigError(f"{path} must hold one config object")
    BacktestConfig.model_validate(config)
    return config


def whole_number(what: str, low: int, high: int, allowed: str) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``; a bad one is
    ``'<text>' is not <what>: use <allowed>``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}: use {allowed}")
        return value

    return parse


#: An argparse type: a TCP port, 1 to 65535.
port = whole_number("a port", 1, 65535, "a whole number from 1 to 65535")
