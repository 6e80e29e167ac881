"""Data access for the dashboards: every read is a DuckDB query over the lake's views.

Pages read completed runs only (``runs.status = 'completed'``); a run's child rows
(equity, trades, metrics) are in the lake before its ``runs`` row, so they are complete too.
Loaders are cached per store; ``refresh()`` drops the cache and reconnects, so the next read
sees the lake's latest table versions. Frames are pandas (what Tabulator and hvplot take),
timestamps naive UTC; treat them as read-only (they are shared through the cache).

Example::

    store = LakeStore()                 # the lake of BACKLAKE_LAKE_URI
    store.runs()                        # completed runs, newest first
    store.equity("c760323b0de27b64")    # one run's equity curve and benchmark
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import duckdb
import pandas as pd

from backlake.errors import LakeError
from backlake.lake import LakeConnection, connect
from backlake.settings import Settings, get_settings

__all__ = ["LakeStore", "RUN_COLUMNS", "TRADE_COLUMNS"]

T = TypeVar("T")

#: Columns of the runs list, in display order.
RUN_COLUMNS = (
    "run_id", "strategy", "symbols", "params", "total_return", "cagr", "sharpe", "sortino",
    "max_drawdown", "n_trades", "created_at", "created_by",
)
#: Columns of one run's detail header.
RUN_DETAIL_COLUMNS = (
    "run_id", "kind", "strategy", "symbols", "timeframe", "params", "config", "data_versions",
    "code_version", "created_by", "created_at", "finished_at",
)
#: Columns of a run's trades, in display order.
TRADE_COLUMNS = (
    "trade_id", "symbol", "direction", "qty", "entry_ts", "entry_price", "exit_ts", "exit_price",
    "pnl", "return_pct", "fees", "bars_held", "mae", "mfe", "exit_reason",
)
_TS_COLUMNS = {"created_at", "finished_at", "entry_ts", "exit_ts", "ts"}


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

    def run(self, run_id: str) -> dict[str, Any] | None:
        """The ``runs`` row of one completed run (config, data versions, ...), or None."""
        def load() -> dict[str, Any] | None:
            df = self._query(
                f"SELECT {_select(RUN_DETAIL_COLUMNS)} FROM runs "
                "WHERE status = 'completed' AND run_id = ?", [run_id],
            )
            return df.iloc[0].to_dict() if len(df) else None

        return self._cached(("run", run_id), load)

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
