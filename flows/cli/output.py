"""What the commands print (aligned table, JSON or CSV) and the JSON files they read."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import math
from collections.abc import Sequence
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


def cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if not math.isfinite(v):
            return ""
        return f"{v:.6g}" if abs(v) < 1e6 else f"{v:,.2f}"
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
        w.writerows([[cell(v) for v in r] for r in rows])
        return buf.getvalue().rstrip("\n")
    cells = [[cell(v) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join([line, sep, *body, f"({len(rows)} row{'s' if len(rows) != 1 else ''})"])


# -- input files --------------------------------------------------------------------------------
def read_json(path: str, what: str):
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{what} file {path!r} does not exist")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from e


def read_configs(path: str) -> list[dict]:
    data = read_json(path, "config")
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list) and all(isinstance(d, dict) for d in data):
        return data
    raise ConfigError(f"{path} must hold one config object or a list of them")


def read_config(path: str) -> dict:
    """The one backtest config in ``path``, validated (before Prefect starts)."""
    from backlake.config import BacktestConfig

    config = read_json(path, "config")
    if not isinstance(config, dict):
        raise ConfigError(f"{path} must hold one config object")
    BacktestConfig.model_validate(config)
    return config
