"""Data access for the dashboards: every read is a DuckDB query over the lake's views.

``runs()`` (the compare and live pages' run choices) reads completed runs only; a run's child
rows (equity, trades, metrics) are in the lake before its ``runs`` row, so they are complete
too. The runs page reads every run with its latest status (``runs_page``: the ``runs`` rows
joined with the latest ``run_events``, filtered, sorted and paged in DuckDB), and ``run()``
returns a run of any status.
Loaders are cached per store; ``refresh()`` drops the cache and reconnects, so the next read
sees the lake's latest table versions. Frames are pandas (what Tabulator and hvplot take),
timestamps naive UTC; treat them as read-only (they are shared through the cache).

Example::

    store = LakeStore()                 # the lake of BACKLAKE_LAKE_URI
    store.runs()                        # completed runs, newest first
    store.runs_page(RunFilter(kinds=("sweep",)), sort="sharpe", limit=25)  # one page, any status
    store.equity("c760323b0de27b64")    # one run's equity curve and benchmark
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

import duckdb
import pandas as pd

from backlake.errors import LakeError
from backlake.lake import LakeConnection, connect
from backlake.settings import Settings, get_settings

__all__ = ["LakeStore", "RUN_COLUMNS", "TRADE_COLUMNS", "RunFilter", "RunList", "LIST_COLUMNS", "SORTABLE",
           "KINDS", "STATUSES"]

T = TypeVar("T")

#: Columns of the runs list, in display order.
RUN_COLUMNS = (
    "run_id", "strategy", "symbols", "params", "total_return", "cagr", "sharpe", "sortino",
    "max_drawdown", "n_trades", "created_at", "created_by",
)
#: Columns of one run's detail header.
RUN_DETAIL_COLUMNS = (
    "run_id", "kind", "strategy", "symbols", "timeframe", "params", "config", "data_versions",
    "code_version", "created_by", "created_at", "finished_at", "status", "error", "parent_id",
)
#: Columns of the runs page's list (:meth:`LakeStore.runs_page`), in display order; ``status``
#: is the run's latest status, ``message`` its latest event's message, ``status_ts`` when.
LIST_COLUMNS = (
    "run_id", "kind", "status", "strategy", "symbols", "timeframe", "params", "total_return", "cagr",
    "sharpe", "sortino", "max_drawdown", "n_trades", "created_at", "finished_at", "created_by", "error",
    "message", "status_ts",
)
#: Columns the runs list may be sorted by.
SORTABLE = frozenset(LIST_COLUMNS) - {"error", "message"}
#: Run kinds and statuses (what the filters offer).
KINDS = ("backtest", "sweep", "optimize", "walk_forward", "monte_carlo", "alpha")
STATUSES = ("completed", "running", "pending", "failed", "cancelled", "crashed")

#: Every run with its latest status: the ``runs`` rows (completed, failed) joined with each
#: run's latest event; runs still pending or running (and cancelled or crashed ones that never
#: wrote a row) exist only in ``run_events``. A completed row is final whatever came after.
_ALL_RUNS = """
WITH ev AS (
    SELECT run_id, arg_max(status, ts) AS ev_status, arg_max(message, ts) AS ev_message,
           max(ts) AS ev_ts, min(ts) AS ev_first
    FROM run_events GROUP BY run_id
), r AS (
    SELECT run_id, kind, status, strategy, symbols, timeframe, params, total_return, cagr, sharpe,
           sortino, max_drawdown, n_trades, created_at, finished_at, created_by, error
    FROM runs
)
SELECT coalesce(r.run_id, ev.run_id) AS run_id, r.kind,
       CASE WHEN r.status = 'completed' OR ev.ev_status IS NULL THEN r.status ELSE ev.ev_status END AS status,
       r.strategy, r.symbols, r.timeframe, r.params, r.total_return, r.cagr, r.sharpe, r.sortino,
       r.max_drawdown, r.n_trades, coalesce(r.created_at, ev.ev_first) AS created_at,
       r.finished_at, r.created_by, r.error, ev.ev_message AS message, ev.ev_ts AS status_ts
FROM r FULL OUTER JOIN ev ON r.run_id = ev.run_id
"""


@dataclass(frozen=True)
class RunFilter:
    """What the runs page asks for: each field narrows the list (empty: no restriction).
    ``symbol`` matches one symbol of the universe exactly (any case); ``search`` is a
    case-insensitive substring of the params, as stored (``"fast": 10``) or as shown
    (``fast=10``), or the start of a run id; dates are UTC days,
    inclusive, on ``created_at``."""

    kinds: tuple[str, ...] = ()
    strategies: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    symbol: str = ""
    owner: str | None = None
    since: dt.date | None = None
    until: dt.date | None = None
    search: str = ""

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition (over :data:`LIST_COLUMNS`) and its parameters."""
        conds: list[str] = []
        params: list[Any] = []
        for col, values in (("kind", self.kinds), ("strategy", self.strategies), ("status", self.statuses)):
            if values:
                conds.append(f"{col} IN ({', '.join('?' for _ in values)})")
                params.extend(values)
        if self.symbol.strip():
            conds.append("list_contains(string_split(upper(symbols), ','), ?)")
            params.append(self.symbol.strip().upper())
        if self.owner is not None:
            conds.append("created_by = ?")
            params.append(self.owner)
        if self.since is not None:
            conds.append("created_at >= ?")
            params.append(dt.datetime.combine(self.since, dt.time(), dt.UTC))
        if self.until is not None:
            conds.append("created_at < ?")
            params.append(dt.datetime.combine(self.until + dt.timedelta(days=1), dt.time(), dt.UTC))
        if self.search.strip():
            # the params JSON as stored ('"fast": 10') or as the table shows it ('fast=10')
            shown = "replace(replace(replace(lower(params), '\": ', '='), '\"', ''), '{', '')"
            conds.append(f"(contains(lower(params), ?) OR contains({shown}, ?) OR starts_with(run_id, ?))")
            text = self.search.strip().lower()
            params.extend([text, text.replace(" = ", "=").replace("= ", "="), text])
        return (" AND ".join(conds) or "TRUE"), params


@dataclass(frozen=True)
class RunList:
    """One page of the runs list: its rows (:data:`LIST_COLUMNS`), and how many runs of each
    status match the filter (all pages)."""

    rows: pd.DataFrame
    counts: dict[str, int]
    offset: int
    limit: int

    @property
    def total(self) -> int:
        return sum(self.counts.values())
#: Columns of a run's trades, in display order.
TRADE_COLUMNS = (
    "trade_id", "symbol", "direction", "qty", "entry_ts", "entry_price", "exit_ts", "exit_price",
    "pnl", "return_pct", "fees", "bars_held", "mae", "mfe", "exit_reason",
)
_TS_COLUMNS = {"created_at", "finished_at", "entry_ts", "exit_ts", "ts", "status_ts"}


def _select(columns: tuple[str, ...]) -> str:
    """A select list with timestamps as naive UTC (bokeh and Tabulator want naive datetimes)."""
    return ", ".join(f"timezone('UTC', {c}) AS {c}" if c in _TS_COLUMNS else c for c in columns)


class LakeStore:
    """Cached, read-only queries over one lake (one store per browser session)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._con: LakeConnection | None = None
        self._cache: dict[Hashable, Any] = {}
        self._lock = threading.RLock()

    @property
    def lake_uri(self) -> str:
        return self.settings.lake_uri

    def refresh(self) -> None:
        """Forget every cached frame: the next read reconnects and sees the latest versions."""
        self.close()

    def close(self) -> None:
        """Drop the cache and close the DuckDB connection (a later read opens a new one)."""
        with self._lock:
            self._cache.clear()
            if self._con is not None:
                self._con.close()
                self._con = None

    # -- loaders -------------------------------------------------------------------------------
    def runs(self) -> pd.DataFrame:
        """Completed runs, newest first, with their headline metrics (fractions)."""
        return self._cached("runs", lambda: self._query(
            f"SELECT {_select(RUN_COLUMNS)} FROM runs WHERE status = 'completed' "
            "ORDER BY created_at DESC, run_id"
        ))

    def runs_page(self, flt: RunFilter | None = None, *, sort: str = "created_at", descending: bool = True,
                  offset: int = 0, limit: int = 25) -> RunList:
        """One page of every run (any kind and status, see :data:`LIST_COLUMNS`) matching ``flt``,
        sorted by ``sort`` (then run_id), ``limit`` rows from ``offset``: filter, sort and paging
        run in DuckDB, so only the page comes back (cached per arguments)."""
        flt = flt or RunFilter()
        if sort not in SORTABLE:
            raise LakeError(f"sort: cannot sort runs by {sort!r}; pick one of {sorted(SORTABLE)}")
        where, params = flt.where()
        direction = "DESC NULLS LAST" if descending else "ASC NULLS LAST"

        def load() -> RunList:
            counts = self._query(
                f"SELECT status, count(*) AS n FROM ({_ALL_RUNS}) WHERE {where} GROUP BY status", params)
            rows = self._query(
                f"SELECT {_select(LIST_COLUMNS)} FROM ({_ALL_RUNS}) WHERE {where} "
                f"ORDER BY {sort} {direction}, run_id LIMIT ? OFFSET ?", [*params, int(limit), int(offset)])
            return RunList(rows=rows, counts={str(s): int(n) for s, n in zip(counts["status"], counts["n"])},
                            offset=offset, limit=limit)

        return self._cached(("runs_page", flt, sort, descending, offset, limit), load)

    def strategies(self) -> list[str]:
        """The strategies of the lake's runs, sorted."""
        return self._cached("strategies", lambda: [str(s) for s in self._query(
            "SELECT DISTINCT strategy FROM runs WHERE strategy IS NOT NULL ORDER BY strategy")["strategy"]])

    def run(self, run_id: str) -> dict[str, Any] | None:
        """One run of any status: its ``runs`` row (config, data versions, error...) with
        ``status`` its latest status; a run known only from its events (pending, running,
        cancelled before it wrote a row) has only run_id, status, created_at and message. None
        for an unknown run."""
        def load() -> dict[str, Any] | None:
            df = self._query(
                f"SELECT {_select(RUN_DETAIL_COLUMNS)} FROM runs WHERE run_id = ?", [run_id],
            )
            events = self.run_events(run_id)
            if not len(df) and events.empty:
                return None
            run: dict[str, Any] = (df.iloc[0].to_dict() if len(df)
                                   else {c: None for c in RUN_DETAIL_COLUMNS} | {"run_id": run_id})
            if not events.empty:
                last = events.iloc[-1]
                run["message"] = last["message"]
                if run.get("status") != "completed":
                    run["status"] = last["status"]
                if run.get("created_at") is None or pd.isna(run["created_at"]):
                    run["created_at"] = events["ts"].iloc[0]
            return run

        return self._cached(("run", run_id), load)

    def progress(self, run_ids: list[str]) -> pd.DataFrame:
        """The latest progress report (``run_progress``) of each of ``run_ids`` made by the
        attempt running it now (its latest ``running`` event's): run_id, done, total, unit, ts
        (naive UTC). Runs with no report by that attempt are absent."""
        ids = sorted(dict.fromkeys(str(r) for r in run_ids))
        if not ids:
            return pd.DataFrame(columns=["run_id", "done", "total", "unit", "ts"])
        marks = ", ".join("?" for _ in ids)
        return self._cached(("progress", tuple(ids)), lambda: self._query(f"""
            WITH cur AS (SELECT run_id, arg_max(attempt, ts) AS attempt FROM run_events
                         WHERE status = 'running' AND run_id IN ({marks}) GROUP BY run_id)
            SELECT p.run_id, arg_max(p.done, p.ts) AS done, arg_max(p.total, p.ts) AS total,
                   arg_max(p.unit, p.ts) AS unit, timezone('UTC', max(p.ts)) AS ts
            FROM run_progress p JOIN cur ON p.run_id = cur.run_id AND p.attempt = cur.attempt
            WHERE p.run_id IN ({marks}) GROUP BY p.run_id ORDER BY p.run_id""", [*ids, *ids]))

    def run_events(self, run_id: str) -> pd.DataFrame:
        """A run's events in order: ts, status, message, attempt, host, pid."""
        return self._cached(("run_events", run_id), lambda: self._query(
            f"SELECT {_select(('ts', 'status', 'message', 'attempt', 'host', 'pid'))} FROM run_events "
            "WHERE run_id = ? ORDER BY ts, status", [run_id],
        ))

    def equity(self, run_id: str) -> pd.DataFrame:
        """One row per bar: ts, equity, benchmark_equity, drawdown (a negative fraction)."""
        return self._cached(("equity", run_id), lambda: self._query(
            f"SELECT {_select(('ts', 'equity', 'benchmark_equity', 'drawdown'))} FROM equity "
            "WHERE run_id = ? ORDER BY ts", [run_id],
        ))

    def trades(self, run_id: str) -> pd.DataFrame:
        """The run's trades in order (``return_pct``, ``mae``, ``mfe`` are fractions)."""
        return self._cached(("trades", run_id), lambda: self._query(
            f"SELECT {_select(TRADE_COLUMNS)} FROM trades WHERE run_id = ? ORDER BY trade_id", [run_id],
        ))

    def metrics(self, run_id: str, segment: str = "full") -> dict[str, float | None]:
        """Metric name -> value for one segment of the run (None where undefined)."""
        def load() -> dict[str, float | None]:
            df = self._query(
                "SELECT name, value FROM metrics WHERE run_id = ? AND segment = ?", [run_id, segment]
            )
            return {n: (None if pd.isna(v) else float(v)) for n, v in zip(df["name"], df["value"])}

        return self._cached(("metrics", run_id, segment), load)

    def comparison(self, run_ids: list[str], baseline: str | None = None, basis: str = "net") -> Any:
        """``backlake.analytics.compare.compare_runs`` over this store's connection (cached;
        a ConfigError for bad input is raised, not cached)."""
        from backlake.analytics.compare import compare_runs

        def load() -> Any:
            with self._lock:
                if self._con is None:
                    self._con = connect(self.settings)
                try:
                    return compare_runs(self._con, run_ids, baseline=baseline, basis=basis)
                except duckdb.Error as e:
                    raise LakeError(f"query on the lake at {self.lake_uri} failed: {e}") from e

        return self._cached(("compare", tuple(run_ids), baseline, basis), load)

    def query(self, sql: str, params: list[Any] | None = None, *, key: Hashable | None = None) -> pd.DataFrame:
        """Any read-only query over the lake's views (pandas, timestamps as stored), cached under
        ``key`` when one is given (cleared by :meth:`refresh`). For views in other modules (the
        run detail views, reports) that need a query this store has no method for."""
        if key is None:
            return self._query(sql, params)
        return self._cached(("query", key), lambda: self._query(sql, params))

    # -- plumbing ------------------------------------------------------------------------------
    def _cached(self, key: Hashable, load: Callable[[], T]) -> T:
        with self._lock:
            if key not in self._cache:
                self._cache[key] = load()
            return self._cache[key]

    def _query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        with self._lock:  # one query at a time: a DuckDB connection is not thread-safe
            if self._con is None:
                self._con = connect(self.settings)
            try:
                return self._con.execute(sql, params or []).pl().to_pandas()
            except duckdb.Error as e:
                raise LakeError(f"query on the lake at {self.lake_uri} failed: {e}") from e
