"""The lake: Delta tables under one root (a local directory or ``s3://bucket/prefix``).

Every write goes through :class:`Lake`. Writes that belong to a run are idempotent on
``run_id`` (Delta application transactions record which runs a table already holds), so a
retried task never duplicates rows. Commit conflicts are retried with backoff.

Example::

    lake = Lake()                       # settings from BACKLAKE_* variables
    lake.read("runs").filter(pl.col("status") == "completed")
    lake.read("bars", version=3)        # time travel
    lake.status()                       # table, version, rows, last commit, age
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias, TypedDict, TypeVar

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from backlake.errors import LakeConnectionError, LakeError
from backlake.lake.schemas import PARTITIONS, REQUIRED, SCHEMAS, TABLES, TS
from backlake.settings import Settings, get_settings

__all__ = ["Lake", "is_marked"]

T = TypeVar("T")

#: rows to write: a polars frame or an Arrow table
Rows: TypeAlias = pl.DataFrame | pa.Table
#: what an append_checked ``build`` returns: rows (None: nothing), or rows and application transactions
Built: TypeAlias = Rows | tuple[Rows | None, list[Transaction]] | None

#: Table properties set at creation: a checkpoint every 10 commits keeps log replay short.
TABLE_CONFIG = {"delta.checkpointInterval": "10"}

#: delta-rs retries a lost commit race this many times itself before raising.
MAX_COMMIT_RETRIES = 100
#: and we retry the whole write (re-reading the table) this many more times with backoff.
WRITE_ATTEMPTS = 8
#: conditional appends re-read and retry on every concurrent commit, so they may take more turns
CHECKED_WRITE_ATTEMPTS = 60


class _StatusRow(TypedDict):
    table: str
    version: int | None
    rows: int
    files: int
    last_commit: dt.datetime | None
    age_seconds: float | None


class Lake:
    """Handle on the lake's Delta tables. Cheap to create; holds no open connection."""

    def __init__(self, settings: Settings | None = None, *, check: bool = True) -> None:
        self.settings = settings or get_settings()
        self.root = self.settings.root
        self._opts = self.settings.storage_options()
        self._checked = False
        self._tables: dict[str, DeltaTable] = {}
        if check:
            self.check()

    # -- connectivity ------------------------------------------------------------------------
    def check(self) -> None:
        """Fail fast with a clear message if the lake's storage cannot be used."""
        if self._checked:
            return
        if self.settings.is_s3:
            _check_s3(self.settings)
        else:
            path = Path(self.root)
            parent = next((p for p in (path, *path.parents) if p.exists()), None)
            if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK):
                raise LakeConnectionError(
                    f"the lake directory {path} (BACKLAKE_LAKE_URI={self.settings.lake_uri!r}) is not "
                    "a writable directory; set BACKLAKE_LAKE_URI to one"
                )
        self._checked = True

    def uri(self, table: str) -> str:
        _known(table)
        return self.settings.table_uri(table)

    @property
    def storage_options(self) -> dict[str, str]:
        return dict(self._opts)

    # -- tables ------------------------------------------------------------------------------
    def exists(self, table: str) -> bool:
        try:
            return DeltaTable.is_deltatable(self.uri(table), storage_options=self._opts)
        except Exception:
            return False

    def ensure(self, table: str) -> DeltaTable:
        """Open ``table`` at its latest version, creating it with its schema on first use.

        The handle is kept and brought up to date incrementally (only new commits are read),
        so repeated writes do not replay the whole log.
        """
        cached = self._tables.get(table)
        if cached is not None:
            try:
                cached.update_incremental()
                return cached
            except Exception:
                self._tables.pop(table, None)
        uri = self.uri(table)
        try:
            dt_ = DeltaTable(uri, storage_options=self._opts)
        except TableNotFoundError:
            with contextlib.suppress(CommitFailedError, DeltaError):  # another writer created it first
                DeltaTable.create(
                    uri, schema=SCHEMAS[table], mode="ignore", partition_by=PARTITIONS.get(table),
                    storage_options=self._opts, name=table, configuration=TABLE_CONFIG,
                    # a lost creation race must fail, not land a second CREATE commit
                    commit_properties=CommitProperties(max_commit_retries=0),
                )
            dt_ = DeltaTable(uri, storage_options=self._opts)
        dt_ = self._replace_outdated(table, dt_)
        _add_missing_columns(table, dt_)
        self._tables[table] = dt_
        return dt_

    def _replace_outdated(self, table: str, dt_: DeltaTable) -> DeltaTable:
        """A table made by an older release with a different schema (a column the schema no
        longer has, a column of another type, other partition columns): replaced by an empty
        table with the current schema (a new version) when it holds no rows; a LakeError when
        it does (its rows are never dropped). Missing columns alone are added elsewhere."""
        stale = _schema_differences(table, dt_)
        if not stale:
            return dt_
        adds = pa.table(dt_.get_add_actions(flatten=True))
        n_rows = int(pc.sum(adds["num_records"]).as_py() or 0) if adds.num_rows else 0
        if n_rows:
            raise LakeError(
                f"table {table} at {self.uri(table)} has an older schema ({'; '.join(stale)}) and {n_rows} "
                f"rows; move or drop it (this release writes {SCHEMAS[table].names})")
        with contextlib.suppress(CommitFailedError, DeltaError):  # another writer replaced it first
            DeltaTable.create(
                self.uri(table), schema=SCHEMAS[table], mode="overwrite", partition_by=PARTITIONS.get(table),
                storage_options=self._opts, name=table, configuration=TABLE_CONFIG,
                commit_properties=CommitProperties(max_commit_retries=0),
            )
        dt_ = DeltaTable(self.uri(table), storage_options=self._opts)
        if _schema_differences(table, dt_):
            raise LakeError(f"could not replace the empty table {table} of an older schema at {self.uri(table)}")
        return dt_

    def ensure_all(self) -> None:
        for table in TABLES:
            self.ensure(table)

    def table(self, table: str, version: int | None = None) -> DeltaTable:
        """The table at ``version`` (a fresh handle: time travel), or the latest."""
        latest = self.ensure(table)
        if version is None:
            return latest
        try:
            return DeltaTable(self.uri(table), version=version, storage_options=self._opts)
        except Exception as e:
            raise LakeError(f"{table} has no version {version} (latest is {latest.version()}): {e}") from e

    def version(self, table: str) -> int:
        return self.ensure(table).version()

    def read(
        self,
        table: str,
        *,
        version: int | None = None,
        columns: Sequence[str] | None = None,
        where: Mapping[str, object] | None = None,
    ) -> pl.DataFrame:
        """Rows of ``table`` (at ``version``; latest by default) as a polars frame.

        ``where`` maps a column to a value (equality) or a list of values (membership); the
        filter is pushed down to partitions and file statistics.
        """
        lf = pl.scan_delta(self.table(table, version), storage_options=self._opts or None)
        for name, value in (where or {}).items():
            if isinstance(value, (list, tuple, set)):
                lf = lf.filter(pl.col(name).is_in(list(value)))
            else:
                lf = lf.filter(pl.col(name) == value)
        if columns:
            lf = lf.select(list(columns))
        return lf.collect()

    # -- writes ------------------------------------------------------------------------------
    def append(self, table: str, df: pl.DataFrame | pa.Table) -> int | None:
        """Append rows (cast to the table's schema); returns the new version, None if empty."""
        data = self._conform(table, df)
        if data.num_rows == 0:
            return None

        def write() -> int:
            dt_ = self.ensure(table)
            write_deltalake(
                dt_, data, mode="append", partition_by=PARTITIONS.get(table),
                commit_properties=CommitProperties(max_commit_retries=MAX_COMMIT_RETRIES),
            )
            return dt_.version()

        return _retry(write, f"append to {table}")

    def append_for_runs(
        self, table: str, df: pl.DataFrame | pa.Table, run_ids: Sequence[str], *, app_prefix: str = ""
    ) -> list[str]:
        """Append the rows of ``run_ids`` once: runs whose rows this table holds are skipped.

        One commit covers all given runs and marks an application transaction per run
        (``app_id = app_prefix + run_id``, see :func:`is_marked`). A retry of the same write
        finds the marks and writes nothing; two writers racing with the same run collide on
        its app id (Delta's conflict check), and the loser re-checks and skips it. Returns the
        run ids actually written.
        """
        data = self._conform(table, df)
        wanted = list(dict.fromkeys(run_ids))

        def write() -> list[str]:
            dt_ = self.ensure(table)
            marks = {r: dt_.transaction_version(app_prefix + r) for r in wanted}
            new = [r for r in wanted if not is_marked(marks[r])]
            if not new:
                return []
            rows = data.filter(pc.is_in(data["run_id"], pa.array(new))) if len(new) < len(wanted) else data
            props = CommitProperties(
                max_commit_retries=MAX_COMMIT_RETRIES,
                app_transactions=[_mark(app_prefix + r, marks[r], present=True) for r in new],
            )
            write_deltalake(dt_, rows, mode="append", partition_by=PARTITIONS.get(table), commit_properties=props)
            return new

        return _retry(write, f"append to {table}")

    def append_once(self, table: str, df: pl.DataFrame | pa.Table, app_id: str) -> bool:
        """Append ``df`` in one commit unless the rows marked ``app_id`` are already in (then
        write nothing). Returns whether it wrote."""
        data = self._conform(table, df)

        def write() -> bool:
            dt_ = self.ensure(table)
            mark = dt_.transaction_version(app_id)
            if is_marked(mark):
                return False
            props = CommitProperties(max_commit_retries=MAX_COMMIT_RETRIES,
                                     app_transactions=[_mark(app_id, mark, present=True)])
            write_deltalake(dt_, data, mode="append", partition_by=PARTITIONS.get(table), commit_properties=props)
            return True

        return _retry(write, f"append to {table}")

    def append_checked(
        self, table: str, build: Callable[[DeltaTable], Built], what: str, *, strict: bool = True,
    ) -> int:
        """A conditional append: ``build(table)`` looks at the table at its latest version and
        returns the rows to add (None or empty: nothing to do), or ``(rows, transactions)``
        with application transactions to record in the same commit.

        ``strict``: the commit succeeds only if no other commit landed since that version;
        otherwise the table is re-read and ``build`` asked again (serialisable, so rows decided
        from what the table holds, ingest's new bars say, are never added twice). Not strict:
        concurrent commits are rebased unless they record one of the same application ids
        (Delta's conflict check), and only then is ``build`` asked again. Returns the rows
        written."""

        def write() -> int:
            dt_ = self.ensure(table)
            built = build(dt_)
            rows, txns = built if isinstance(built, tuple) else (built, None)
            if rows is None:
                return 0
            data = self._conform(table, rows)
            if data.num_rows == 0 and not txns:
                return 0
            props = CommitProperties(max_commit_retries=0 if strict else MAX_COMMIT_RETRIES,
                                     app_transactions=txns or None)
            write_deltalake(dt_, data, mode="append", partition_by=PARTITIONS.get(table), commit_properties=props)
            return int(data.num_rows)

        return _retry(write, what, attempts=CHECKED_WRITE_ATTEMPTS)

    def delete_marked(self, table: str, predicate: str, app_ids: Sequence[str], what: str) -> None:
        """Delete rows matching ``predicate`` and clear the marks ``app_ids`` in the same commit,
        so a later attempt writes those rows again (an empty commit clears marks whose rows
        were already gone)."""

        def delete() -> None:
            dt_ = self.ensure(table)
            marks = [_mark(a, dt_.transaction_version(a), present=False) for a in app_ids]
            dt_.delete(predicate, commit_properties=CommitProperties(
                max_commit_retries=MAX_COMMIT_RETRIES, app_transactions=marks or None))
            dt_ = self.ensure(table)
            left = [_mark(a, v, present=False) for a in app_ids if is_marked(v := dt_.transaction_version(a))]
            if left:  # nothing matched, so no commit carried the marks
                write_deltalake(dt_, pa.Table.from_batches([], schema=SCHEMAS[table]), mode="append",
                                commit_properties=CommitProperties(max_commit_retries=MAX_COMMIT_RETRIES,
                                                                   app_transactions=left))

        _retry(delete, what)

    def delete(self, table: str, predicate: str, what: str) -> int:
        """Delete the rows matching ``predicate`` (Delta SQL) in one commit; returns how many
        were deleted (0: none matched, nothing committed). A concurrent commit that removed the
        same files fails this one, which then re-reads the table, so of two callers deleting
        the same row one deletes it and the other finds nothing."""

        def delete() -> int:
            metrics = self.ensure(table).delete(
                predicate, commit_properties=CommitProperties(max_commit_retries=MAX_COMMIT_RETRIES))
            return int(metrics.get("num_deleted_rows") or 0)

        return _retry(delete, what)

    def replace_checked(
        self, table: str, build: Callable[[DeltaTable], Rows | None], predicate: str, what: str,
    ) -> int:
        """A conditional replace: ``build(table)`` looks at the table at its latest version and
        returns the rows that replace every row matching ``predicate`` (Delta SQL), in one commit
        (a new version; None: nothing to do; empty: delete them). Like :meth:`append_checked`
        (strict) the commit succeeds only if no other commit landed since that version, else
        the table is re-read and ``build`` asked again. Rows must match ``predicate``. Returns
        the rows written (0: nothing committed when ``build`` returned None)."""

        def write() -> int:
            dt_ = self.ensure(table)
            rows = build(dt_)
            if rows is None:
                return 0
            data = self._conform(table, rows)
            write_deltalake(dt_, data, mode="overwrite", predicate=predicate, partition_by=PARTITIONS.get(table),
                            commit_properties=CommitProperties(max_commit_retries=0))
            return int(data.num_rows)

        return _retry(write, what, attempts=CHECKED_WRITE_ATTEMPTS)

    def upsert_runs(self, df: pl.DataFrame | pa.Table) -> list[str]:
        """Record run rows: at most one row per run_id, a completed row never replaced.

        Rows of runs without a row are appended; a run whose row is failed / cancelled /
        crashed has it replaced (a MERGE, in the same commit). Either way the commit succeeds
        only on the version the decision was made on (else the table is re-read), so
        concurrent writers of the same runs never duplicate one. Returns the run ids written."""
        data = self._conform("runs", df)
        if data.num_rows == 0:
            return []
        wanted = data["run_id"].to_pylist()

        def write() -> list[str]:
            dt_ = self.ensure("runs")
            existing = (pl.scan_delta(dt_, storage_options=self._opts or None)
                        .filter(pl.col("run_id").is_in(wanted)).select("run_id", "status").collect())
            done = set(existing.filter(pl.col("status") == "completed")["run_id"].to_list())
            stale = set(existing["run_id"].to_list()) - done
            keep = [i for i, r in enumerate(wanted) if r not in done]
            if not keep:
                return []
            rows = data.take(keep)
            strict = CommitProperties(max_commit_retries=0)
            if stale & {wanted[i] for i in keep}:
                (dt_.merge(rows, predicate="t.run_id = s.run_id", source_alias="s", target_alias="t",
                           commit_properties=strict)
                 .when_matched_update_all(predicate="t.status <> 'completed'")
                 .when_not_matched_insert_all().execute())
            else:
                write_deltalake(dt_, rows, mode="append", commit_properties=strict)
            return [wanted[i] for i in keep]

        return _retry(write, "record runs", attempts=CHECKED_WRITE_ATTEMPTS)

    def _conform(self, table: str, df: pl.DataFrame | pa.Table) -> pa.Table:
        schema = SCHEMAS[_known(table)]
        tbl = df.to_arrow() if isinstance(df, pl.DataFrame) else df
        missing = [n for n in REQUIRED[table] if n not in tbl.column_names]
        if missing:
            raise LakeError(f"rows for {table} lack column(s) {missing}; expected {schema.names}")
        for f in schema:
            if f.name not in tbl.column_names:
                tbl = tbl.append_column(f.name, pa.nulls(tbl.num_rows, type=f.type))
        tbl = tbl.select(schema.names)
        try:
            return tbl.cast(schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
            raise LakeError(f"rows for {table} do not match its schema: {e}") from e

    # -- status ------------------------------------------------------------------------------
    def status(self) -> pl.DataFrame:
        """One row per table: version, rows, files, last commit time (UTC) and its age in seconds."""
        now = dt.datetime.now(dt.UTC)
        rows: list[_StatusRow] = []
        for table in TABLES:
            if not self.exists(table):
                rows.append({"table": table, "version": None, "rows": 0, "files": 0,
                             "last_commit": None, "age_seconds": None})
                continue
            dt_ = DeltaTable(self.uri(table), storage_options=self._opts)
            adds = pa.table(dt_.get_add_actions(flatten=True))
            n_rows = int(pc.sum(adds["num_records"]).as_py() or 0) if adds.num_rows else 0
            hist = dt_.history(1)
            ts = dt.datetime.fromtimestamp(hist[0]["timestamp"] / 1000, tz=dt.UTC) if hist else None
            rows.append({
                "table": table, "version": dt_.version(), "rows": n_rows, "files": adds.num_rows,
                "last_commit": ts, "age_seconds": (now - ts).total_seconds() if ts else None,
            })
        return pl.DataFrame(rows, schema={
            "table": pl.String, "version": pl.Int64, "rows": pl.Int64, "files": pl.Int64,
            "last_commit": pl.Datetime("us", "UTC"), "age_seconds": pl.Float64,
        })

    def merge_checked(
        self, table: str, build: Callable[[DeltaTable], pl.DataFrame | pa.Table | None], predicate: str,
        what: str, *, update_when: str | None = None, insert: bool = True,
    ) -> dict[str, Any]:
        """A conditional MERGE, serialisable like :meth:`append_checked`: ``build(table)`` looks
        at the table at its latest version and returns the source rows (None or empty: nothing
        to do); they are merged on ``predicate`` (aliases ``s`` source, ``t`` target) in one
        commit: a matched row is updated (all columns; only where ``update_when`` holds, if
        given), an unmatched one inserted (if ``insert``). The commit succeeds only if no other
        commit landed since that version, otherwise the table is re-read and ``build`` asked
        again. Returns delta-rs' merge metrics ({} when nothing was written)."""

        def write() -> dict[str, Any]:
            dt_ = self.ensure(table)
            rows = build(dt_)
            if rows is None:
                return {}
            data = self._conform(table, rows)
            if data.num_rows == 0:
                return {}
            merger = dt_.merge(
                data, predicate=predicate, source_alias="s", target_alias="t", streamed_exec=False,
                commit_properties=CommitProperties(max_commit_retries=0),
            ).when_matched_update_all(predicate=update_when)
            if insert:
                merger = merger.when_not_matched_insert_all()
            return merger.execute()

        return _retry(write, what, attempts=CHECKED_WRITE_ATTEMPTS)


def is_marked(version: int | None) -> bool:
    """Whether an application-transaction mark says its rows are in the table: marks count
    up, odd = written, even = deleted since (so a later attempt may write them again)."""
    return version is not None and version % 2 == 1


def _mark(app_id: str, current: int | None, *, present: bool) -> Transaction:
    v = current or 0
    v = v + 1 if (v % 2 == 0) == present else v + 2
    return Transaction(app_id=app_id, version=v, last_updated=int(time.time() * 1000))


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _add_missing_columns(table: str, dt_: DeltaTable) -> None:
    """Bring a table made by an older release up to its schema: add the columns it lacks
    (nullable; old rows read them as null)."""
    have = {f.name for f in dt_.schema().fields}
    missing = [f for f in SCHEMAS[table] if f.name not in have]
    if not missing:
        return
    from deltalake.schema import Field, PrimitiveType

    types = {pa.string(): "string", pa.float64(): "double", pa.int64(): "long", pa.bool_(): "boolean", TS: "timestamp",
             pa.date32(): "date"}
    fields = [Field(f.name, PrimitiveType(types[f.type]), nullable=True) for f in missing]
    try:
        dt_.alter.add_columns(fields)
    except (CommitFailedError, DeltaError):
        dt_.update_incremental()  # another writer added them first


def _schema_differences(table: str, dt_: DeltaTable) -> list[str]:
    """How ``table`` differs from its schema beyond columns it lacks: columns the schema does
    not have, columns of another type, other partition columns (empty: none)."""
    from deltalake import Schema

    want = {f.name: str(f.type) for f in Schema.from_arrow(SCHEMAS[table]).fields}
    have = {f.name: str(f.type) for f in dt_.schema().fields}
    out = [f"column {n} is not in the schema" for n in have if n not in want]
    out += [f"column {n} is {t}, not {want[n]}" for n, t in have.items() if n in want and t != want[n]]
    parts = list(dt_.metadata().partition_columns)
    if parts != list(PARTITIONS.get(table) or []):
        out.append(f"partitioned by {parts}, not {PARTITIONS.get(table) or []}")
    return out


def _known(table: str) -> str:
    if table not in SCHEMAS:
        from backlake._suggest import unknown_name_message

        raise LakeError(unknown_name_message("table", table, SCHEMAS))
    return table


def _retry(fn: Callable[[], T], what: str, attempts: int = WRITE_ATTEMPTS) -> T:
    """Run a write, retrying lost commit races with jittered exponential backoff."""
    for attempt in range(attempts):
        try:
            return fn()
        except CommitFailedError as e:
            if attempt == attempts - 1:
                raise LakeError(f"{what} kept losing commit races after {attempts} attempts: {e}") from e
            time.sleep(min(2.0, 0.02 * 2**attempt) * (0.5 + random.random()))
        except OSError as e:  # network trouble surfaces as OSError from the object store
            raise LakeConnectionError(f"{what} failed talking to the lake: {e}") from e
    raise AssertionError("unreachable")


def _check_s3(settings: Settings) -> None:
    """HEAD the bucket; turn the usual failures into one actionable message."""
    import boto3
    import botocore.exceptions as bx
    from botocore.config import Config

    endpoint = settings.s3_endpoint_url
    where = f"BACKLAKE_LAKE_URI={settings.lake_uri!r}" + (f" at endpoint {endpoint}" if endpoint else "")
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name=settings.s3_region,
        config=Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 1},
                      s3={"addressing_style": "path"}),
    )
    try:
        client.head_bucket(Bucket=settings.bucket)
    except bx.EndpointConnectionError as e:
        raise LakeConnectionError(
            f"cannot reach the S3 endpoint for {where}: is the server running? "
            "Set BACKLAKE_S3_ENDPOINT_URL to your MinIO/S3 endpoint (e.g. http://127.0.0.1:9000)"
        ) from e
    except bx.NoCredentialsError as e:
        raise LakeConnectionError(
            f"no S3 credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ) from e
    except bx.ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise LakeConnectionError(
                f"bucket {settings.bucket!r} does not exist for {where}: create it "
                f"(e.g. `aws s3 mb s3://{settings.bucket}`, or infra/bootstrap) or fix BACKLAKE_LAKE_URI"
            ) from e
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise LakeConnectionError(
                f"access denied to bucket {settings.bucket!r} for {where}: check AWS_ACCESS_KEY_ID "
                "and AWS_SECRET_ACCESS_KEY"
            ) from e
        raise LakeConnectionError(f"S3 error for {where}: {e}") from e
    except bx.BotoCoreError as e:
        raise LakeConnectionError(f"S3 error for {where}: {e}") from e
