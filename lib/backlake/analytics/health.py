"""Data health: how fresh every lake table and data source is, and which table versions moved on.

A :class:`HealthMonitor` holds sources, each registered with a check that returns the time of
its last successful update (or a group check returning many: one per symbol, say). Statuses:

- ``OK``: updated within its threshold (or it has no threshold: informational);
- ``STALE``: older than its threshold (:class:`~backlake.settings.HealthThresholds`: per
  category, per table or per source);
- ``ERROR``: the check raised (the message says why; the other sources are still checked) or
  returned no time ("no heartbeat recorded").

Results are cached per registered check with its own TTL (10 s for the fast categories
price / volume / signal, 60 s for the others), so any number of callers (dashboard sessions
polling every 10 s) cost one lake read per TTL; concurrent callers of an expired check wait for
the one read in flight. Each result says when it was checked. Ages are computed at read time.

:func:`lake_monitor` registers the lake's sources: each existing table's latest commit, the
``bars`` per source / symbol (``ingested_at``), the ``signals`` per alpha (when the table has an
``alpha`` column) and ``live_pnl`` per strategy (the time its files were written). All of them
are read from the Delta log and file statistics: no data file is opened.

:class:`VersionWatcher` answers "which of the versions a page shows are behind the lake, and
what changed" (``runs v12 shown, v15 in the lake: 3 commits (2 WRITE, 1 MERGE)``).

Example::

    lake = Lake()
    monitor = lake_monitor(lake, lake.settings.health_thresholds)
    for r in monitor.results():
        print(r.source, r.status, r.age_text)
    overall_status(monitor.results())            # "OK" | "STALE" | "ERROR"
    VersionWatcher(lake).changes({"runs": 12})   # [VersionChange(table="runs", shown=12, latest=15, ...)]
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from backlake.lake.schemas import TABLES
from backlake.lake.store import Lake
from backlake.settings import HealthThresholds

__all__ = [
    "Status", "Category", "CATEGORIES", "STATUSES", "FAST_TTL", "SLOW_TTL", "TABLE_CATEGORIES",
    "HealthResult", "HealthMonitor", "LakeProbe", "VersionChange", "VersionWatcher",
    "human_age", "human_span", "threshold_for", "overall_status", "exit_code", "lake_monitor", "bar_coverage",
    "check_rows", "alert_rows", "record_check", "summary_markdown",
]

Status = Literal["OK", "STALE", "ERROR"]
Category = Literal["price", "volume", "signal", "fundamental"]
CATEGORIES: tuple[Category, ...] = ("price", "volume", "signal", "fundamental")
#: worst last
STATUSES: tuple[Status, ...] = ("OK", "STALE", "ERROR")

#: Cache TTL (seconds) of checks of the fast categories, and of the others.
FAST_TTL = 10.0
SLOW_TTL = 60.0
FAST_CATEGORIES = frozenset({"price", "volume", "signal"})

#: The category of each table's sources; tables not listed have no staleness threshold unless
#: one is set for them in ``overrides`` (their commit time is shown, they are never STALE).
TABLE_CATEGORIES: dict[str, Category] = {
    "bars": "price", "signals": "signal", "weights": "signal", "ic": "signal",
    "live_pnl": "fundamental", "factors": "fundamental",
}

Clock = Callable[[], dt.datetime]
Check = Callable[[], dt.datetime | None]
GroupCheck = Callable[[], Mapping[str, dt.datetime | None]]

NO_HEARTBEAT = "no heartbeat recorded"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def human_age(seconds: float | None) -> str:
    """``"5m 32s ago"``: the two largest units (``"42s ago"``, ``"3h 05m ago"``, ``"2d 4h ago"``);
    ``"just now"`` under a second (or in the future), ``"never"`` for None."""
    if seconds is None:
        return "never"
    s = int(seconds)
    if s < 1:
        return "just now"
    days, rem = divmod(s, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, secs = divmod(rem, 60)
    if days:
        return f"{days}d {hours}h ago"
    if hours:
        return f"{hours}h {minutes:02d}m ago"
    if minutes:
        return f"{minutes}m {secs:02d}s ago"
    return f"{secs}s ago"


def human_span(seconds: float) -> str:
    """A threshold as people say it: ``"15m"``, ``"1d"``, ``"26h"``, ``"12s"``, ``"90m"``."""
    s = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{s // size}{unit}"
    return human_age(s).removesuffix(" ago")


def threshold_for(thresholds: HealthThresholds, source: str, table: str | None,
                  category: Category | None) -> int | None:
    """Seconds ``source`` may age: an override for the source (exact, then the first glob that
    matches), then one for its table, then its category's; None: no threshold."""
    overrides = thresholds.overrides
    if source in overrides:
        return overrides[source]
    for pattern, seconds in overrides.items():
        if any(ch in pattern for ch in "*?[") and fnmatch.fnmatchcase(source, pattern):
            return seconds
    if table is not None and table in overrides:
        return overrides[table]
    if category is None:
        return None
    return int(getattr(thresholds, category))


@dataclass(frozen=True)
class HealthResult:
    """One source's health at ``now``: its last update, age, threshold, and when it was checked."""

    source: str
    status: Status
    category: Category | None
    table: str | None
    last_update: dt.datetime | None
    age_seconds: float | None
    threshold_seconds: int | None
    checked_at: dt.datetime
    message: str = ""

    @property
    def age_text(self) -> str:
        return human_age(self.age_seconds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "status": self.status, "category": self.category, "table": self.table,
            "last_update": self.last_update.isoformat() if self.last_update else None,
            "age_seconds": None if self.age_seconds is None else round(self.age_seconds, 3),
            "age": self.age_text, "threshold_seconds": self.threshold_seconds,
            "checked_at": self.checked_at.isoformat(), "message": self.message,
        }


def overall_status(results: Iterable[HealthResult]) -> Status:
    """The worst status of ``results`` (``OK`` when there are none)."""
    worst = 0
    for r in results:
        worst = max(worst, STATUSES.index(r.status))
    return STATUSES[worst]


def exit_code(status: Status) -> int:
    """For cron: 0 OK, 1 STALE, 2 ERROR."""
    return STATUSES.index(status)


@dataclass
class _Entry:
    """One registered check (a single source, or a group of sources) and its cached outcome."""

    name: str
    check: GroupCheck
    category: Category | None
    table: str | None
    ttl: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    times: Mapping[str, dt.datetime | None] | None = None
    error: str | None = None
    checked_at: dt.datetime | None = None
    reads: int = 0

    def fresh(self, now: dt.datetime) -> bool:
        return self.checked_at is not None and (now - self.checked_at).total_seconds() < self.ttl


class HealthMonitor:
    """Sources, their checks and the per-check TTL cache. Thread-safe.

    ``clock`` returns the current UTC time (a fake clock in tests); ``max_workers`` checks run
    concurrently when several are due.
    """

    def __init__(self, thresholds: HealthThresholds | None = None, *, clock: Clock = _utcnow,
                 max_workers: int = 8) -> None:
        self.thresholds = thresholds or HealthThresholds()
        self.clock = clock
        self.max_workers = max_workers
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def register(self, name: str, check: Check, *, category: Category | None = None, table: str | None = None,
                 ttl: float | None = None) -> None:
        """Add source ``name`` whose ``check()`` returns its last update time (None: none yet)."""
        self.register_group(name, lambda: {name: check()}, category=category, table=table, ttl=ttl)

    def register_group(self, name: str, check: GroupCheck, *, category: Category | None = None,
                       table: str | None = None, ttl: float | None = None) -> None:
        """Add the sources ``check()`` returns (source name -> last update time) under one cached
        read named ``name``; if it raises, ``name`` is one ERROR result."""
        if ttl is None:
            ttl = FAST_TTL if category in FAST_CATEGORIES else SLOW_TTL
        if ttl < 0:
            raise ValueError(f"ttl={ttl} for health source {name!r} must be >= 0 seconds")
        with self._lock:
            self._entries[name] = _Entry(name, check, category, table, float(ttl))

    @property
    def names(self) -> list[str]:
        return list(self._entries)

    def reads(self) -> dict[str, int]:
        """How many times each registered check actually ran (the cache's misses)."""
        return {name: e.reads for name, e in self._entries.items()}

    def results(self, *, force: bool = False) -> list[HealthResult]:
        """Every source's result (checks whose cache expired run now, concurrently), sorted
        worst first, then by name. ``force`` ignores the cache."""
        entries = list(self._entries.values())
        now = self.clock()
        due = [e for e in entries if force or not e.fresh(now)]
        if len(due) > 1 and self.max_workers > 1:
            with ThreadPoolExecutor(max_workers=min(self.max_workers, len(due))) as pool:
                list(pool.map(lambda e: self._run(e, force), due))
        else:
            for e in due:
                self._run(e, force)
        now = self.clock()
        out = [r for e in entries for r in self._results_of(e, now)]
        return sorted(out, key=lambda r: (-STATUSES.index(r.status), r.source))

    def _run(self, entry: _Entry, force: bool) -> None:
        with entry.lock:  # one read in flight per check: the others wait for its result
            if not force and entry.fresh(self.clock()):
                return
            try:
                times = dict(entry.check())
                error = None
            except Exception as e:
                times, error = None, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            entry.times, entry.error, entry.checked_at = times, error, self.clock()
            entry.reads += 1

    def _results_of(self, entry: _Entry, now: dt.datetime) -> list[HealthResult]:
        checked = entry.checked_at or now
        if entry.error is not None or entry.times is None:
            return [HealthResult(entry.name, "ERROR", entry.category, entry.table, None, None,
                                 self._threshold(entry.name, entry), checked, entry.error or NO_HEARTBEAT)]
        out = []
        for source, last in entry.times.items():
            limit = self._threshold(source, entry)
            if last is None:
                out.append(HealthResult(source, "ERROR", entry.category, entry.table, None, None, limit,
                                        checked, NO_HEARTBEAT))
                continue
            if last.tzinfo is None:
                last = last.replace(tzinfo=dt.UTC)
            age = max((now - last).total_seconds(), 0.0)
            if limit is not None and age > limit:
                status: Status = "STALE"
                message = f"last update {human_age(age)}, threshold {human_span(limit)}"
            else:
                status, message = "OK", "" if limit is not None else "no staleness threshold (informational)"
            out.append(HealthResult(source, status, entry.category, entry.table, last, age, limit, checked, message))
        return out

    def _threshold(self, source: str, entry: _Entry) -> int | None:
        return threshold_for(self.thresholds, source, entry.table, entry.category)


# -- the lake's sources ------------------------------------------------------------------------
class LakeProbe:
    """Cached Delta table handles of one lake, brought up to date incrementally (only new
    commits are read). Thread-safe; missing tables are None."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self._tables: dict[str, DeltaTable] = {}
        self._commits: dict[str, tuple[int, dt.datetime]] = {}
        self._locks = {t: threading.Lock() for t in TABLES}

    def table(self, name: str) -> DeltaTable | None:
        """The table at its latest version (None if it does not exist)."""
        with self._locks.setdefault(name, threading.Lock()):
            cached = self._tables.get(name)
            if cached is not None:
                cached.update_incremental()
                return cached
            try:
                handle = DeltaTable(self.lake.uri(name), storage_options=self.lake.storage_options or None)
            except TableNotFoundError:
                return None
            self._tables[name] = handle
            return handle

    def last_commit(self, name: str) -> tuple[int, dt.datetime] | None:
        """(version, commit time) of the table's latest commit; None if it does not exist."""
        handle = self.table(name)
        if handle is None:
            return None
        with self._locks[name]:
            version = handle.version()
            known = self._commits.get(name)
            if known is not None and known[0] == version:  # no new commit: no log read
                return known
            hist = handle.history(1)
            if not hist:
                return None
            self._commits[name] = (version, dt.datetime.fromtimestamp(hist[0]["timestamp"] / 1000, tz=dt.UTC))
            return self._commits[name]

    def history(self, name: str, limit: int) -> list[dict[str, Any]]:
        handle = self.table(name)
        if handle is None:
            return []
        with self._locks[name]:
            return handle.history(limit)

    def add_actions(self, name: str) -> pa.Table | None:
        """The table's file list with partition values and column statistics (the log only)."""
        handle = self.table(name)
        if handle is None:
            return None
        with self._locks[name]:
            return pa.table(handle.get_add_actions(flatten=True))


def _ms(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(int(value) / 1000, tz=dt.UTC)


def _table_check(probe: LakeProbe, table: str) -> GroupCheck:
    def check() -> dict[str, dt.datetime | None]:
        last = probe.last_commit(table)
        return {} if last is None else {table: last[1]}  # a table not created yet is no source
    return check


def _bars_check(probe: LakeProbe) -> GroupCheck:
    """``bars/<source>/<symbol>``: the latest ``ingested_at`` of its files (from file
    statistics; the file's write time where a file has none)."""
    def check() -> dict[str, dt.datetime | None]:
        adds = probe.add_actions("bars")
        if adds is None or adds.num_rows == 0:
            return {}
        cols = adds.column_names
        df = pl.from_arrow(adds.select([c for c in ("partition.symbol", "min.source", "max.source",
                                                    "max.ingested_at", "modification_time") if c in cols]))
        assert isinstance(df, pl.DataFrame)
        if "max.ingested_at" in df.columns:
            stamp = pl.col("max.ingested_at").cast(pl.Datetime("us", "UTC"))
        else:
            stamp = pl.lit(None, pl.Datetime("us", "UTC"))
        written = pl.from_epoch(pl.col("modification_time"), time_unit="ms").dt.replace_time_zone("UTC")
        df = df.with_columns(stamp.fill_null(written).alias("_t"))
        out: dict[str, dt.datetime | None] = {}
        for end in ("min.source", "max.source"):
            src = pl.col(end).fill_null("unknown") if end in df.columns else pl.lit("unknown")
            part = df.select(pl.col("partition.symbol").alias("symbol"), src.alias("source"), "_t")
            for sym, source, t in part.group_by("symbol", "source").agg(pl.col("_t").max()).iter_rows():
                name = f"bars/{source}/{sym}"
                prev = out.get(name)
                out[name] = t if prev is None or (t is not None and t > prev) else prev
        return out
    return check


def _grouped_check(probe: LakeProbe, table: str, column: str) -> GroupCheck:
    """``<table>/<value of column>``: when its rows were last written (the newest ``ingested_at``
    of the files whose ``column`` statistics cover the value; a file's write time where the
    table has no ``ingested_at`` statistics)."""
    def check() -> dict[str, dt.datetime | None]:
        adds = probe.add_actions(table)
        if adds is None or adds.num_rows == 0:
            return {}
        lo, hi = f"min.{column}", f"max.{column}"
        if lo not in adds.column_names or hi not in adds.column_names:
            return {}
        written = [_ms(m) for m in adds["modification_time"].to_pylist()]
        if "max.ingested_at" in adds.column_names:
            written = [_ms(i) or w for i, w in zip(adds["max.ingested_at"].to_pylist(), written, strict=True)]
        files = list(zip(adds[lo].to_pylist(), adds[hi].to_pylist(), written, strict=True))
        values = {v for a, b, _ in files for v in (a, b) if v is not None}
        if any(a != b for a, b, _ in files):  # files holding several values: name them all
            handle = probe.table(table)
            assert handle is not None
            values |= set(pl.scan_delta(handle, storage_options=probe.lake.storage_options or None)
                          .select(pl.col(column).unique()).collect()[column].drop_nulls().to_list())
        out: dict[str, dt.datetime | None] = {}
        for value in sorted(values):
            stamps = [m for a, b, m in files if a is not None and b is not None and m is not None and a <= value <= b]
            out[f"{table}/{value}"] = max(stamps) if stamps else None
        return out
    return check


def lake_monitor(lake: Lake, thresholds: HealthThresholds | None = None, *, probe: LakeProbe | None = None,
                 clock: Clock = _utcnow, fast_ttl: float = FAST_TTL, slow_ttl: float = SLOW_TTL) -> HealthMonitor:
    """A monitor of the lake's sources: every table's latest commit (tables not created yet are
    left out), ``bars`` per source / symbol, ``signals`` per alpha, ``live_pnl`` per strategy."""
    probe = probe or LakeProbe(lake)
    monitor = HealthMonitor(thresholds or lake.settings.health_thresholds, clock=clock)

    def ttl(category: Category | None) -> float:
        return fast_ttl if category in FAST_CATEGORIES else slow_ttl

    for table in TABLES:
        cat = TABLE_CATEGORIES.get(table)
        monitor.register_group(f"table:{table}", _table_check(probe, table), category=cat, table=table, ttl=ttl(cat))
    monitor.register_group("bars per source/symbol", _bars_check(probe), category="price", table="bars",
                           ttl=ttl("price"))
    monitor.register_group("signals per alpha", _grouped_check(probe, "signals", "alpha"), category="signal",
                           table="signals", ttl=ttl("signal"))
    monitor.register_group("live_pnl per strategy", _grouped_check(probe, "live_pnl", "strategy"),
                           category="fundamental", table="live_pnl", ttl=ttl("fundamental"))
    return monitor


# -- bar coverage ------------------------------------------------------------------------------
def bar_coverage(lake: Lake) -> pl.DataFrame:
    """Per symbol and timeframe: bars, first and last bar, last ingest, and the gaps against the
    symbol's exchange calendar (the ingest validation's gap rule, ``backlake.data.validate``):
    how many, the largest (from, to, days). Reads the bars' symbol, timeframe and ts columns."""
    from backlake.data.validate import _find_gaps  # the one definition of a gap

    schema: dict[str, pl.DataType] = {"symbol": pl.String(), "timeframe": pl.String(), "bars": pl.UInt32(),
              "first_bar": pl.Datetime("us", "UTC"), "last_bar": pl.Datetime("us", "UTC"),
              "last_ingested": pl.Datetime("us", "UTC"), "gaps": pl.UInt32(),
              "largest_gap_from": pl.Datetime("us", "UTC"), "largest_gap_to": pl.Datetime("us", "UTC"),
              "largest_gap_days": pl.Float64()}
    if not lake.exists("bars"):
        return pl.DataFrame(schema=schema)
    bars = lake.read("bars", columns=["symbol", "timeframe", "ts", "ingested_at"]).sort("symbol", "timeframe", "ts")
    if bars.is_empty():
        return pl.DataFrame(schema=schema)
    summary = bars.group_by("symbol", "timeframe").agg(
        pl.len().alias("bars"), pl.col("ts").min().alias("first_bar"), pl.col("ts").max().alias("last_bar"),
        pl.col("ingested_at").max().alias("last_ingested"),
    )
    gaps = _find_gaps(bars.select("symbol", "timeframe", "ts"), {})
    gaps = gaps.with_columns(((pl.col("to") - pl.col("from")).dt.total_seconds() / 86400).alias("days"))
    per = gaps.group_by("symbol", "timeframe").agg(
        pl.len().alias("gaps"),
        pl.col("from").sort_by("days").last().alias("largest_gap_from"),
        pl.col("to").sort_by("days").last().alias("largest_gap_to"),
        pl.col("days").max().alias("largest_gap_days"),
    )
    out = summary.join(per, on=["symbol", "timeframe"], how="left").with_columns(pl.col("gaps").fill_null(0))
    return out.select([pl.col(c).cast(t) for c, t in schema.items()]).sort("symbol", "timeframe")


# -- version freshness -------------------------------------------------------------------------
@dataclass(frozen=True)
class VersionChange:
    """A table a page shows at ``shown`` while the lake holds ``latest``."""

    table: str
    shown: int
    latest: int
    operations: dict[str, int]
    last_commit: dt.datetime | None

    @property
    def commits(self) -> int:
        return self.latest - self.shown

    @property
    def message(self) -> str:
        """``runs v12 shown, v15 in the lake: 3 commits (2 WRITE, 1 MERGE)``."""
        ops = ", ".join(f"{n} {op}" for op, n in sorted(self.operations.items(), key=lambda kv: (-kv[1], kv[0])))
        plural = "commit" if self.commits == 1 else "commits"
        if self.shown < 0:
            return f"{self.table} created in the lake since: {self.commits} {plural}" + (f" ({ops})" if ops else "")
        return (f"{self.table} v{self.shown} shown, v{self.latest} in the lake: {self.commits} {plural}"
                + (f" ({ops})" if ops else ""))


class VersionWatcher:
    """Which tables moved on since a page read them. The lake's latest versions are read at
    most once per ``ttl`` seconds however many pages poll (thread-safe)."""

    #: commits whose operations are summarised (older ones are only counted)
    HISTORY_LIMIT = 50

    def __init__(self, lake: Lake, *, probe: LakeProbe | None = None, ttl: float = 5.0,
                 clock: Clock = _utcnow) -> None:
        self.probe = probe or LakeProbe(lake)
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[dt.datetime, int | None]] = {}
        self.reads = 0

    def latest(self, tables: Iterable[str], *, fresh: bool = False) -> dict[str, int | None]:
        """Table -> its latest version (None: the table does not exist yet); ``fresh`` reads
        the lake now (what a page records before it reads)."""
        out: dict[str, int | None] = {}
        for table in tables:
            with self._lock:
                now = self.clock()
                cached = self._latest.get(table)
                if fresh or cached is None or (now - cached[0]).total_seconds() >= self.ttl:
                    handle = self.probe.table(table)
                    self._latest[table] = (now, None if handle is None else handle.version())
                    self.reads += 1
                out[table] = self._latest[table][1]
        return out

    def changes(self, shown: Mapping[str, int | None]) -> list[VersionChange]:
        """The tables of ``shown`` (table -> version shown; None: the table did not exist) that
        the lake has moved past, with what the new commits did."""
        latest = self.latest(shown)
        out = []
        for table, version in shown.items():
            now_v = latest[table]
            if now_v is None or (version is not None and now_v <= version):
                continue
            base = -1 if version is None else version
            hist = self.probe.history(table, min(now_v - base, self.HISTORY_LIMIT))
            newer = [h for h in hist if int(h.get("version", -1)) > base]
            ops = Counter(str(h.get("operation", "?")) for h in newer)
            last = _ms(max((h["timestamp"] for h in newer if "timestamp" in h), default=None))
            out.append(VersionChange(table, base, now_v, dict(ops), last))
        return out


# -- recording -----------------------------------------------------------------------------------
def check_rows(results: Iterable[HealthResult], check_id: str) -> pl.DataFrame:
    """The ``health_checks`` rows of one check (one per source)."""
    ts = pl.Datetime("us", "UTC")
    rows = [{"check_id": check_id, "ts": r.checked_at, "source": r.source, "category": r.category,
             "table_name": r.table, "status": r.status, "last_update": r.last_update,
             "age_seconds": r.age_seconds, "threshold_seconds": r.threshold_seconds, "message": r.message}
            for r in results]
    return pl.DataFrame(rows, schema={
        "check_id": pl.String, "ts": ts, "source": pl.String, "category": pl.String, "table_name": pl.String,
        "status": pl.String, "last_update": ts, "age_seconds": pl.Float64, "threshold_seconds": pl.Int64,
        "message": pl.String,
    })


def alert_rows(results: Iterable[HealthResult], *, now: dt.datetime | None = None) -> pl.DataFrame:
    """``alerts`` rows (kind ``health``, level STALE or ERROR) of the sources that are not OK;
    ``figures`` holds the age, threshold, last update, category and table as JSON."""
    import json

    now = now or _utcnow()
    rows = [{
        "source": r.source, "kind": "health", "run_id": None, "date": now.date(), "level": r.status,
        "figures": json.dumps({"age_seconds": r.age_seconds, "threshold_seconds": r.threshold_seconds,
                               "last_update": r.last_update.isoformat() if r.last_update else None,
                               "category": r.category, "table": r.table}, sort_keys=True),
        "message": f"{r.source} is {r.status}: {r.message}", "created_at": now,
    } for r in results if r.status != "OK"]
    return pl.DataFrame(rows, schema={
        "source": pl.String, "kind": pl.String, "run_id": pl.String, "date": pl.Date, "level": pl.String,
        "figures": pl.String, "message": pl.String, "created_at": pl.Datetime("us", "UTC"),
    })


def record_check(lake: Lake, results: list[HealthResult], check_id: str) -> tuple[int, int]:
    """Record one check: every status in ``health_checks`` and an alert per STALE / ERROR source
    in ``alerts``, each once (a retry with the same ``check_id`` writes nothing). Returns the rows
    written to each."""
    checks = check_rows(results, check_id)
    alerts = alert_rows(results)
    n_checks = checks.height if checks.height and lake.append_once("health_checks", checks, f"health:{check_id}") else 0
    n_alerts = alerts.height if alerts.height and lake.append_once("alerts", alerts, f"health:{check_id}") else 0
    return n_checks, n_alerts


def summary_markdown(results: list[HealthResult]) -> str:
    """A Markdown table of the results, worst first (for a Prefect artifact)."""
    lines = [f"# Lake health: {overall_status(results)}", "",
             "| source | status | last update | age | threshold | message |", "|---|---|---|---|---|---|"]
    for r in results:
        last = r.last_update.strftime("%Y-%m-%d %H:%M:%S UTC") if r.last_update else "-"
        limit = human_span(r.threshold_seconds) if r.threshold_seconds else "-"
        lines.append(f"| {r.source} | {r.status} | {last} | {r.age_text} | {limit} | {r.message} |")
    return "\n".join(lines)
