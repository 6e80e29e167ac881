"""Golden runs kept in the lake: the ``goldens`` table, one row per golden backtest with its
per-metric tolerances, who added it, when, and a note. The regression flow replays them.

Adding a run that is already a golden updates its row (tolerances, default tolerance, note,
added_by, added_at) in one MERGE on ``run_id``; adding it again unchanged writes nothing, so
the table never holds a run twice. Every write is a serialisable conditional commit
(:meth:`Lake.merge_checked`, :meth:`Lake.delete`): concurrent adds and removes re-read the
table and decide again.

Example::

    add_golden(lake, "0967a32b87f26966", {"sharpe": 1e-6}, note="GOOG reference", user="alice")
    list_goldens(lake)        # run_id, tolerances (JSON), default_tolerance, added_by, added_at, note
    regress(lake, goldens_from_lake(lake))
    remove_golden(lake, "0967a32b87f26966")
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Literal

import polars as pl
from deltalake import DeltaTable

from backlake.errors import ConfigError
from backlake.lake.schemas import SCHEMAS
from backlake.lake.store import Lake
from backlake.runs.regression import DEFAULT_TOLERANCE, Golden, check_tolerance, check_tolerances, golden_run

__all__ = ["add_golden", "list_goldens", "remove_golden", "goldens_from_lake", "GOLDEN_COLUMNS", "Added",
           "NO_GOLDENS"]

#: the columns of ``goldens`` (and of :func:`list_goldens`), in order
GOLDEN_COLUMNS = tuple(SCHEMAS["goldens"].names)

#: what :func:`add_golden` did: a new row, an updated one, or nothing (the same row was there)
Added = Literal["added", "updated", "unchanged"]

#: what the regression says when the lake has no goldens
NO_GOLDENS = "no goldens yet: add one with `backlake goldens add RUN` (a completed backtest's run id)"


def add_golden(
    lake: Lake, run_id: str, tolerances: Mapping[str, object] | None = None, note: str | None = None,
    user: str | None = None, *, default_tolerance: float = DEFAULT_TOLERANCE, if_absent: bool = False,
) -> Added:
    """Make ``run_id`` (a completed single backtest in the lake) a golden run.

    ``tolerances``: metric -> absolute tolerance (known metric names, numbers >= 0); the other
    metrics must match within ``default_tolerance``. ``user``: recorded as ``added_by`` (the
    settings user by default). A golden already there is updated, unless ``if_absent`` (then
    it is left as it is) or nothing changes. Returns what was done."""
    run_id = run_id.strip()
    tol = check_tolerances(tolerances or {}, "tolerances")
    default = check_tolerance(default_tolerance, "default_tolerance")
    golden_run(lake, run_id)  # exists, completed, a backtest
    row = {
        "run_id": run_id, "tolerances": json.dumps(tol, sort_keys=True), "default_tolerance": default,
        "added_by": user or lake.settings.user, "added_at": dt.datetime.now(dt.UTC), "note": note or None,
    }
    outcome: list[Added] = []

    def build(table: DeltaTable) -> pl.DataFrame | None:
        outcome.clear()
        old = _read(lake, table).filter(pl.col("run_id") == run_id)
        if not old.is_empty():
            have = old.row(0, named=True)
            same = (json.loads(have["tolerances"]) == tol and have["default_tolerance"] == default
                    and have["note"] == row["note"])
            if if_absent or same:
                outcome.append("unchanged")
                return None
        outcome.append("added" if old.is_empty() else "updated")
        return pl.DataFrame([row], schema=_frame_schema())

    lake.merge_checked("goldens", build, "t.run_id = s.run_id", f"add golden {run_id}")
    return outcome[0]


def list_goldens(lake: Lake) -> pl.DataFrame:
    """The goldens, oldest first (:data:`GOLDEN_COLUMNS`; ``tolerances`` a JSON object).
    A lake without the table has none (and the table is not created)."""
    if not lake.exists("goldens"):
        return pl.DataFrame(schema=_frame_schema())
    return lake.read("goldens").select(GOLDEN_COLUMNS).sort("added_at", "run_id")


def remove_golden(lake: Lake, run_id: str) -> None:
    """Stop ``run_id`` being a golden (the run itself stays); a ConfigError if it is not one."""
    run_id = run_id.strip()
    quoted = "'" + run_id.replace("'", "''") + "'"
    if not lake.exists("goldens") or lake.delete("goldens", f"run_id = {quoted}", f"remove golden {run_id}") == 0:
        raise ConfigError(f"run {run_id!r} is not a golden; `backlake goldens list` shows them")


def goldens_from_lake(lake: Lake) -> list[Golden]:
    """The lake's goldens as :class:`Golden` (empty when there are none)."""
    return [Golden(r["run_id"], {k: float(v) for k, v in json.loads(r["tolerances"] or "{}").items()},
                   DEFAULT_TOLERANCE if r["default_tolerance"] is None else float(r["default_tolerance"]))
            for r in list_goldens(lake).iter_rows(named=True)]


def _read(lake: Lake, table: DeltaTable) -> pl.DataFrame:
    return pl.scan_delta(table, storage_options=lake.storage_options or None).select(GOLDEN_COLUMNS).collect()


def _frame_schema() -> dict[str, pl.DataType]:
    return {"run_id": pl.String(), "tolerances": pl.String(), "default_tolerance": pl.Float64(),
            "added_by": pl.String(), "added_at": pl.Datetime("us", "UTC"), "note": pl.String()}
