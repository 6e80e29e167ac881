"""Run events and claims: one set of events per attempt, never two attempts of a run at once.

An *attempt* is one execution of a run (a Prefect flow run, or a process using the library):
its id (the flow run id, or a fresh hex id), host and pid are recorded on every event.

- :func:`claim` starts runs: one commit to ``run_events`` with ``pending`` and ``running`` for
  every run it may start. Each run carries a claim counter (application transaction
  ``claim:<run_id>``, its value the run's *generation*); the end of a generation is marked
  ``end:<run_id>``, and a completed run is marked ``done:<run_id>`` (never claimed again).
  A run whose last claim has not ended is held by a live attempt and is not
  started again (concurrent attempts collide on the ``claim:`` id, Delta's conflict check, and
  the loser re-reads and backs off), unless its holder is gone: a process on this host that no
  longer exists, an attempt ``is_alive`` says is over, or a claim older than ``stale_after``
  with nothing to check it by. Such a run is taken over: its old generation ends ``crashed``.
- :func:`finish` ends runs (``completed``, ``failed``, ``cancelled``, ``crashed``): one commit,
  once per generation, so a retried commit or a late hook adds nothing.
- :func:`reap` (maintenance) ends the generations of runs whose holder is gone as ``crashed``.

Example::

    attempt = Attempt.new()
    started = claim(lake, ["3f2a..."], attempt)
    ...
    finish(lake, [End("3f2a...", started.claimed["3f2a..."], "completed")], attempt)
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from deltalake import DeltaTable, Transaction

from backlake.lake.store import Lake

__all__ = ["Attempt", "End", "Claimed", "claim", "finish", "reap", "holders", "open_generations",
           "DEFAULT_STALE_AFTER", "TERMINAL"]

TERMINAL = ("completed", "failed", "cancelled", "crashed")
#: A claim with no way to check its holder (another host, no Prefect) counts as live this long.
DEFAULT_STALE_AFTER = dt.timedelta(hours=6)

IsAlive = Callable[[str], "bool | None"]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Attempt:
    """One execution: ``id`` (a Prefect flow run id or a fresh hex id), where it runs, and the
    message of its ``running`` events (``tag``: the flows write which Prefect flow run it is)."""

    id: str
    host: str
    pid: int
    tag: str = ""

    @classmethod
    def new(cls, attempt_id: str | None = None, tag: str = "") -> Attempt:
        return cls(str(attempt_id) if attempt_id else uuid.uuid4().hex, socket.gethostname(), os.getpid(), tag)


@dataclass(frozen=True)
class End:
    """A run's generation ending with ``status`` (one of TERMINAL)."""

    run_id: str
    generation: int
    status: str
    message: str = ""


@dataclass
class Claimed:
    """What :func:`claim` did: run_id -> generation started; run_id -> attempt id of the live
    attempt that holds it; run_ids taken over from attempts that were gone; run_ids already
    completed (not started again)."""

    claimed: dict[str, int] = field(default_factory=dict)
    busy: dict[str, str] = field(default_factory=dict)
    taken_over: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)


def _rows(items: Sequence[tuple[str, str, str, Attempt, dt.datetime]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "run_id": [i[0] for i in items], "status": [i[1] for i in items], "ts": [i[4] for i in items],
            "message": [i[2] for i in items], "attempt": [i[3].id for i in items],
            "host": [i[3].host for i in items], "pid": [i[3].pid for i in items],
        },
        schema={"run_id": pl.String, "status": pl.String, "ts": pl.Datetime("us", "UTC"), "message": pl.String,
                "attempt": pl.String, "host": pl.String, "pid": pl.Int64},
    )


def _txn(app_id: str, version: int) -> Transaction:
    return Transaction(app_id=app_id, version=version, last_updated=int(_now().timestamp() * 1000))


def _gens(table: DeltaTable, run_id: str) -> tuple[int, int]:
    return table.transaction_version("claim:" + run_id) or 0, table.transaction_version("end:" + run_id) or 0


def holders(lake: Lake, run_ids: Sequence[str], table: DeltaTable | None = None) -> pl.DataFrame:
    """The latest ``running`` event of each run: run_id, attempt, host, pid, ts, message."""
    table = table or lake.ensure("run_events")
    return (pl.scan_delta(table, storage_options=lake.storage_options or None)
            .filter(pl.col("run_id").is_in(list(run_ids)) & (pl.col("status") == "running"))
            .sort("ts").group_by("run_id").last()
            .select("run_id", "attempt", "host", "pid", "ts", "message").collect())


def _gone(holder: dict[str, Any] | None, stale_after: dt.timedelta, is_alive: IsAlive | None, now: dt.datetime) -> bool:
    """Whether the attempt holding a claim has stopped (see the module docstring)."""
    if holder is None:
        return True
    if holder.get("host") == socket.gethostname() and holder.get("pid"):
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
    if is_alive is not None and holder.get("attempt"):
        alive = is_alive(str(holder["attempt"]))
        if alive is not None:
            return not alive
    ts = holder.get("ts")
    return ts is None or now - ts > stale_after


def claim(
    lake: Lake, run_ids: Sequence[str], attempt: Attempt, *, stale_after: dt.timedelta = DEFAULT_STALE_AFTER,
    is_alive: IsAlive | None = None,
) -> Claimed:
    """Start ``run_ids`` for ``attempt`` in one commit; see the module docstring."""
    wanted = list(dict.fromkeys(run_ids))
    out = Claimed()
    if not wanted:
        return out

    def build(table: DeltaTable) -> tuple[pl.DataFrame | None, list[Transaction]]:
        out.claimed, out.busy, out.taken_over, out.done = {}, {}, [], []
        now = _now()
        gens = {r: _gens(table, r) for r in wanted}
        seen = [r for r, (c, _) in gens.items() if c > 0]
        held = ({row["run_id"]: row for row in holders(lake, seen, table).iter_rows(named=True)}
                if seen else {})
        rows: list[tuple[str, str, str, Attempt, dt.datetime]] = []
        txns: list[Transaction] = []
        for r in wanted:
            c, e = gens[r]
            if table.transaction_version("done:" + r):
                out.done.append(r)
                continue
            h = held.get(r)
            if c > 0 and h is not None and h["attempt"] == attempt.id:
                out.claimed[r] = c  # this attempt holds it already (or ended it: a retried commit)
                continue
            if c > e:
                if not _gone(h, stale_after, is_alive, now):
                    out.busy[r] = str(h["attempt"]) if h else ""
                    continue
                who = f"attempt {h['attempt']} on {h['host']} (pid {h['pid']})" if h else "an unknown attempt"
                old = Attempt(str(h["attempt"]), str(h["host"]), int(h["pid"] or 0)) if h else attempt
                rows.append((r, "crashed", f"{who} stopped without ending the run; taken over by {attempt.id}",
                             old, now))
                txns.append(_txn("end:" + r, c))
                out.taken_over.append(r)
            out.claimed[r] = c + 1
            rows.append((r, "pending", "", attempt, now))
            rows.append((r, "running", attempt.tag, attempt, now + dt.timedelta(microseconds=1)))
            txns.append(_txn("claim:" + r, c + 1))
        return (_rows(rows) if rows else None), txns

    lake.append_checked("run_events", build, "record started runs", strict=False)
    return out


def finish(lake: Lake, ends: Sequence[End], attempt: Attempt) -> list[str]:
    """Record each run's end once per generation (one commit); returns the run ids recorded."""
    ends = [e for e in ends if e.run_id]
    done: list[str] = []
    if not ends:
        return done

    def build(table: DeltaTable) -> tuple[pl.DataFrame, list[Transaction]] | None:
        now = _now()
        todo = [e for e in ends if (table.transaction_version("end:" + e.run_id) or 0) < e.generation]
        done[:] = [e.run_id for e in todo]
        if not todo:
            return None
        rows = _rows([(e.run_id, e.status, e.message, attempt, now) for e in todo])
        # the claim marks again (same value): a claim racing this commit collides on them and
        # re-reads; ``done:`` tells later claims the run is completed
        txns = [_txn(f"{m}:{e.run_id}", e.generation) for e in todo for m in ("end", "claim")]
        txns += [_txn("done:" + e.run_id, 1) for e in todo if e.status == "completed"]
        return rows, txns

    lake.append_checked("run_events", build, "record ended runs", strict=False)
    return done


def open_generations(lake: Lake) -> dict[str, int]:
    """run_id -> generation, for every run whose last claim has not ended."""
    if not lake.exists("run_events"):
        return {}
    table = lake.ensure("run_events")
    ids = (pl.scan_delta(table, storage_options=lake.storage_options or None)
           .select("run_id").unique().collect()["run_id"].to_list())
    out = {}
    for r in ids:
        c, e = _gens(table, r)
        if c > e:
            out[r] = c
    return out


def reap(
    lake: Lake, *, stale_after: dt.timedelta = DEFAULT_STALE_AFTER, is_alive: IsAlive | None = None,
    dry_run: bool = False,
) -> list[str]:
    """End as ``crashed`` every open run whose holder is gone; returns their run ids."""
    gens = open_generations(lake)
    if not gens:
        return []
    now = _now()
    held = {row["run_id"]: row for row in holders(lake, list(gens)).iter_rows(named=True)}
    gone = [r for r in gens if _gone(held.get(r), stale_after, is_alive, now)]
    if dry_run or not gone:
        return gone
    reaper = Attempt.new(tag="maintenance")
    ends = []
    for r in gone:
        h = held.get(r)
        who = f"attempt {h['attempt']} on {h['host']} (pid {h['pid']})" if h else "an unknown attempt"
        ends.append(End(r, gens[r], "crashed", f"{who} stopped without ending the run (reaped by maintenance)"))
    return finish(lake, ends, reaper)
