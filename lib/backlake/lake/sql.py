"""DuckDB over the lake: every table as a view, plus time travel.

Two connections:

* ``connect()`` (trusted code: the dashboard's own queries, notebooks) loads DuckDB's
  ``delta`` extension from its pip package (and ``httpfs`` for S3) and defines one view per
  table over ``delta_scan``: each query reads the table's latest version. Where the extension
  cannot load, each view is a pyarrow dataset of the table as of connect time
  (``con.backlake_engine`` says which). ``at_version(con, table, v)`` defines ``<table>_v<N>``
  and the table macro ``<table>_at(N)`` reads an earlier version (delta engine).
* ``connect_readonly()`` is the connection for SQL text that users type (``backlake sql``,
  anything else that takes SQL): the same views and macros, then it is locked down so that it
  reads the lake and nothing else (see :func:`connect_readonly`).

Example::

    con = connect()
    con.sql("SELECT strategy, avg(sharpe) FROM runs WHERE status = 'completed' GROUP BY 1").pl()
    con.sql(f"SELECT count(*) FROM {con.at_version('bars', 0)}")

    with connect_readonly() as ro:
        ro.sql("SELECT count(*) FROM bars_at(0)").fetchall()
        ro.sql("COPY runs TO '/tmp/x.csv'")    # QueryRefused: only SELECT queries run here
"""

from __future__ import annotations

import importlib
import json
import logging
import tempfile
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import duckdb
import polars as pl
from deltalake import DeltaTable

from backlake.errors import ConfigError, LakeError
from backlake.lake.schemas import SCHEMAS, TABLES
from backlake.lake.store import Lake
from backlake.settings import Settings

__all__ = [
    "connect", "connect_readonly", "at_version", "extension_path", "LakeConnection",
    "ReadOnlyLakeConnection", "QueryRefused", "SAFE_TABLE_FUNCTIONS", "one_line",
    "QueryTimeout", "run_limited", "lake_columns",
]

log = logging.getLogger(__name__)

#: Table functions that user SQL may call, besides the time-travel macros ``<table>_at``:
#: generators, JSON helpers and catalog introspection. Every table function that reads or
#: writes files (``read_csv``, ``read_text``, ``read_blob``, ``glob``, ``parquet_scan``,
#: ``delta_scan``, ...), changes settings (``enable_logging``, ``enable_profiling``), reads
#: secrets (``duckdb_secrets``, ``which_secret``) or runs SQL text (``query``, ``query_table``)
#: is left out.
SAFE_TABLE_FUNCTIONS = frozenset({
    "range", "generate_series", "unnest", "json_each", "json_tree",
    "duckdb_tables", "duckdb_views", "duckdb_columns", "duckdb_functions", "duckdb_types",
    "duckdb_schemas", "duckdb_databases", "duckdb_constraints", "duckdb_keywords", "pragma_table_info",
})
#: Core functions user SQL may not call (besides every function the loaded extensions add,
#: e.g. the delta extension's ``write_blob``, which writes files even with external access off).
#: ``current_setting`` is out too: httpfs copies AWS_* credentials from the environment into settings.
DENIED_FUNCTIONS = frozenset({"getenv", "current_setting", "write_log", "query", "query_table"})
#: Schemas and catalogs a table reference may name: a dotted name such as ``passwd.csv`` is a
#: file path for DuckDB's replacement scans.
_SAFE_QUALIFIERS = frozenset({"", "main", "memory", "system", "temp", "information_schema", "pg_catalog"})


class QueryRefused(ConfigError):
    """SQL text that the read-only connection does not run (not a single SELECT, or one that
    calls a function that reaches outside the lake). The message is one line."""


def extension_path(name: str) -> Path | None:
    """Path of the ``<name>.duckdb_extension`` shipped by the ``duckdb-extension-<name>`` package."""
    try:
        mod = importlib.import_module(f"duckdb_extension_{name}")
    except ImportError:
        return None
    if mod.__file__ is None:  # a namespace package: no files of its own
        return None
    base = Path(mod.__file__).parent / "extensions" / f"v{duckdb.__version__}"
    path = base / f"{name}.duckdb_extension"
    return path if path.exists() else None


def _load_extensions(con: duckdb.DuckDBPyConnection, s3: bool) -> bool:
    needed = ["delta"] + (["httpfs"] if s3 else [])
    for name in needed:
        path = extension_path(name)
        try:
            if path is not None:
                con.execute(f"LOAD {_lit(str(path))}")
            else:
                con.execute(f"LOAD {name}")  # installed into DuckDB's own extension directory
        except duckdb.Error as e:
            log.warning("DuckDB extension %s did not load (%s); using pyarrow datasets", name, e)
            return False
    return True


def _s3_secret(con: duckdb.DuckDBPyConnection, settings: Settings, opts: dict[str, str]) -> None:
    # scoped to the lake: reads elsewhere (another bucket or prefix) never get its credentials
    parts = ["TYPE s3", f"REGION {_lit(settings.s3_region)}", "URL_STYLE 'path'", f"SCOPE {_lit(_dir(settings.root))}"]
    if opts.get("AWS_ACCESS_KEY_ID"):
        parts.append(f"KEY_ID {_lit(opts['AWS_ACCESS_KEY_ID'])}")
        parts.append(f"SECRET {_lit(opts.get('AWS_SECRET_ACCESS_KEY', ''))}")
    if opts.get("AWS_SESSION_TOKEN"):
        parts.append(f"SESSION_TOKEN {_lit(opts['AWS_SESSION_TOKEN'])}")
    if settings.s3_endpoint_url:
        u = urlparse(settings.s3_endpoint_url)
        parts.append(f"ENDPOINT {_lit(u.netloc or u.path)}")
        parts.append(f"USE_SSL {'false' if u.scheme == 'http' else 'true'}")
    con.execute(f"CREATE OR REPLACE SECRET backlake_s3 ({', '.join(parts)})")
    # httpfs copies AWS_* credentials from the environment into settings, where any query could
    # read them (current_setting); the secret above (shown redacted) is what the reads use
    for name in ("s3_access_key_id", "s3_secret_access_key", "s3_session_token"):
        con.execute(f"SET {name} = ''")


def _define_lake(con: duckdb.DuckDBPyConnection, lake: Lake, engine: str) -> bool:
    """Load the extensions, the S3 secret and one view and one time-travel macro per table.
    Returns whether the delta engine is used (else pyarrow)."""
    if engine not in ("auto", "delta", "pyarrow"):
        raise ConfigError(f"engine {engine!r}: use 'auto', 'delta' or 'pyarrow'")
    con.execute("SET TimeZone = 'UTC'")
    use_delta = engine in ("auto", "delta") and _load_extensions(con, lake.settings.is_s3)
    if engine == "delta" and not use_delta:
        raise RuntimeError("the DuckDB delta extension did not load; install duckdb-extension-delta")
    if use_delta and lake.settings.is_s3:
        _s3_secret(con, lake.settings, lake.storage_options)
    for table in TABLES:
        if not lake.exists(table):
            empty = SCHEMAS[table].empty_table()
            con.register(f"__{table}_empty", empty)
            con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM __{table}_empty")
            missing = f"error('{table} has no version ' || v::UBIGINT || ': the table does not exist yet')"
            con.execute(f"CREATE OR REPLACE MACRO {table}_at(v) AS TABLE "
                        f"SELECT * FROM __{table}_empty WHERE (SELECT {missing})")
        elif use_delta:
            uri = _lit(_duck_uri(lake.uri(table)))
            con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM delta_scan({uri})")
            con.execute(f"CREATE OR REPLACE MACRO {table}_at(v) AS TABLE "
                        f"SELECT * FROM delta_scan({uri}, version => v::UBIGINT)")
        else:
            _register_dataset(con, lake, table, table, None)
            # the pyarrow engine reads the versions defined by at_version (``--at``) only
            con.execute(f"CREATE OR REPLACE MACRO {table}_at(v) AS TABLE "
                        f"SELECT * FROM query_table('{table}_v' || v::UBIGINT)")
    return use_delta


def connect(settings: Settings | None = None, *, lake: Lake | None = None, engine: str = "auto") -> LakeConnection:
    """A DuckDB connection with every lake table as a view, for trusted code (it runs any
    SQL: use :func:`connect_readonly` for SQL text from users). Nothing is created in the
    lake; a table that does not exist yet is an empty view with the table's schema.
    Timestamps are shown in UTC. ``<table>_at(N)`` reads version N (delta engine).

    ``engine``: ``"auto"`` (delta extension, else pyarrow), ``"delta"`` or ``"pyarrow"``.
    """
    lake = lake or Lake(settings)
    con = duckdb.connect(config={"allow_unsigned_extensions": "true", "allow_persistent_secrets": "false"})
    use_delta = _define_lake(con, lake, engine)
    return LakeConnection(con, lake, "delta" if use_delta else "pyarrow")


def connect_readonly(
    settings: Settings | None = None,
    *,
    lake: Lake | None = None,
    engine: str = "auto",
    at: Iterable[tuple[str, int]] = (),
) -> ReadOnlyLakeConnection:
    """The DuckDB connection for SQL text from users (``backlake sql``, a dashboard's SQL box).

    After the lake's views and ``<table>_at(N)`` macros (and a ``<table>_v<N>`` view per
    ``(table, N)`` in ``at``) are defined, the connection can read the lake and nothing else:

    * DuckDB's external access is off except for the lake root (``allowed_directories``; for
      S3 the ``s3://bucket/prefix/`` of the lake, and the S3 secret is scoped to it): no file
      or URL outside the lake, no extension install or load;
    * persistent secrets, extension autoload/autoinstall, community extensions and Python
      replacement scans are off; spills go to a private temporary directory;
    * the configuration is locked (``lock_configuration``, set last): no query can undo it;
    * :meth:`ReadOnlyLakeConnection.sql` / ``execute`` run one statement that DuckDB's parser
      says is a ``SELECT`` (so no COPY, EXPORT, ATTACH, CREATE, SET, PRAGMA, CALL, LOAD...),
      and only if its syntax tree (DuckDB's ``json_serialize_sql``) calls no table function
      outside :data:`SAFE_TABLE_FUNCTIONS` and the ``<table>_at`` macros, no function that an
      extension added (the delta extension's ``write_blob`` writes files whatever the
      configuration) and names no file as a table. Anything else raises :class:`QueryRefused`.

    The statement check is what keeps writes out of the lake itself: external access must
    allow the lake root for the views to read it, and would then let ``COPY ... TO`` write
    there (e.g. a forged ``_delta_log`` commit).
    """
    lake = lake or Lake(settings)
    spill = Path(tempfile.gettempdir()) / f"backlake-sql-{uuid.uuid4().hex[:16]}"  # created by DuckDB if it spills
    con = duckdb.connect(config={
        "allow_unsigned_extensions": "true",  # the pip packages' delta and httpfs builds
        "allow_community_extensions": "false",
        "autoinstall_known_extensions": "false",
        "autoload_known_extensions": "false",
        "allow_persistent_secrets": "false",  # no ~/.duckdb/stored_secrets
        "python_enable_replacements": "false",  # no scans of the caller's Python variables
        "temp_directory": str(spill),
    })
    try:
        builtin = _function_names(con)
        use_delta = _define_lake(con, lake, engine)
        ro = ReadOnlyLakeConnection(con, lake, "delta" if use_delta else "pyarrow")
        for table, version in at:
            ro.at_version(table, version)
        # functions the extensions added (delta_scan, write_blob, copy_dir, ...) minus our macros
        ro.denied_functions = frozenset(_function_names(con) - builtin - ro.allowed_table_functions) | DENIED_FUNCTIONS
        ro.self_test()
        con.execute(f"SET allowed_directories = [{_lit(_dir(lake.settings.root))}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")  # last: nothing above can change from here on
    except BaseException:
        con.close()
        raise
    return ro


class LakeConnection:
    """A DuckDB connection (every DuckDB method works on it) that knows its lake.

    ``engine`` is ``"delta"`` (views over ``delta_scan``, always the latest version) or
    ``"pyarrow"`` (views over datasets as of connect time). ``raw`` is the DuckDB connection.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, lake: Lake, engine: str) -> None:
        self.raw = con
        self.lake = lake
        self.engine = engine

    def __getattr__(self, name: str) -> Any:  # everything else is the DuckDB connection's
        return getattr(self.raw, name)

    def __enter__(self) -> LakeConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.raw.close()

    def at_version(self, table: str, version: int, name: str | None = None) -> str:
        """Define view ``<table>_v<N>``: ``table`` as of Delta version ``version``; returns its name."""
        return at_version(self, table, version, name)


class ReadOnlyLakeConnection:
    """A locked DuckDB connection over the lake for SQL text from users (see :func:`connect_readonly`).

    ``sql`` and ``execute`` check the text first (:class:`QueryRefused` if it is not one
    admissible ``SELECT``). ``raw`` is the DuckDB connection for trusted code: it skips the
    statement check, but its configuration is locked and external access limited to the lake.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, lake: Lake, engine: str) -> None:
        self.raw = con
        self.lake = lake
        self.engine = engine
        self.allowed_table_functions = SAFE_TABLE_FUNCTIONS | {f"{t}_at" for t in TABLES}
        self.denied_functions: frozenset[str] = DENIED_FUNCTIONS

    def __enter__(self) -> ReadOnlyLakeConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.raw.close()

    def at_version(self, table: str, version: int, name: str | None = None) -> str:
        """Define view ``<table>_v<N>`` (``table`` as of Delta version ``version``); returns its name."""
        return at_version(self, table, version, name)

    def sql(self, query: str) -> duckdb.DuckDBPyRelation | None:
        """Check ``query`` (one SELECT that stays in the lake) and run it as a relation."""
        self.check(query)
        return self.raw.sql(query)

    def execute(self, query: str, parameters: object = None) -> duckdb.DuckDBPyConnection:
        """Check ``query`` and execute it with ``parameters``; fetch from the returned cursor."""
        self.check(query)
        return self.raw.execute(query, parameters)

    def check(self, query: str) -> None:
        """Raise :class:`QueryRefused` unless ``query`` is one SELECT that reads only the lake."""
        try:
            statements = self.raw.extract_statements(query)
        except duckdb.Error as e:
            raise QueryRefused(one_line(e)) from e
        kinds = [s.type for s in statements]
        refused = [k for k in kinds if k != duckdb.StatementType.SELECT]
        if refused:
            raise QueryRefused(
                f"{refused[0].name} statements are not allowed: only SELECT queries run here (the lake is read-only)"
            )
        if len(kinds) != 1:
            raise QueryRefused(f"give one SELECT query, not {len(kinds)} statements")
        row = self.raw.execute("SELECT json_serialize_sql(?)", [query]).fetchone()
        try:
            tree = json.loads(row[0]) if row else None
        except (ValueError, RecursionError):
            tree = None
        if not isinstance(tree, dict) or tree.get("error"):
            # e.g. a PRAGMA that the parser turns into a SELECT but that is not a query
            raise QueryRefused("only SELECT queries run here (the lake is read-only)")
        self._check_tree(tree)

    def self_test(self) -> None:
        """Fail unless the check sees function names in DuckDB's syntax trees (it would pass a
        denied function if a DuckDB release renamed the field it reads)."""
        try:
            self.check("SELECT getenv('HOME')")
        except QueryRefused:
            return
        raise RuntimeError(f"the read-only SQL check does not recognise DuckDB {duckdb.__version__}'s syntax trees")

    def _check_tree(self, tree: object) -> None:
        stack = [tree]
        while stack:
            node = stack.pop()
            if isinstance(node, list):
                stack.extend(node)
                continue
            if not isinstance(node, dict):
                continue
            kind = node.get("type")
            if kind == "TABLE_FUNCTION":
                fn = node.get("function")
                name = str(fn.get("function_name", "")).lower() if isinstance(fn, dict) else ""
                if name not in self.allowed_table_functions:
                    raise QueryRefused(
                        f"table function {name}() is not allowed here: query the lake's tables "
                        f"(e.g. runs, bars) and <table>_at(version)"
                    )
            elif kind in ("BASE_TABLE", "SHOW_REF"):
                self._check_table_name(node)
            if "function_name" in node:
                name = str(node["function_name"]).lower()
                if name in self.denied_functions:
                    raise QueryRefused(f"function {name}() is not allowed here: it reaches outside the lake")
            stack.extend(node.values())

    @staticmethod
    def _check_table_name(node: dict[str, Any]) -> None:
        name = str(node.get("table_name") or "")
        quals = [str(node.get(k) or "").lower() for k in ("schema_name", "catalog_name")]
        if any(c in name for c in "/\\:.") or any(q not in _SAFE_QUALIFIERS for q in quals):
            shown = ".".join(p for p in (node.get("catalog_name"), node.get("schema_name"), name) if p)
            raise QueryRefused(f"{shown!r} is not a lake table: files cannot be read here, query the lake's tables")


def one_line(error: BaseException) -> str:
    """An error message on one line (DuckDB's parser errors add a ``LINE 1: ...`` excerpt)."""
    lines = [ln.strip() for ln in str(error).splitlines()]
    kept = [ln for ln in lines if ln and not ln.startswith("LINE ") and set(ln) != {"^"}]
    return " ".join(kept) or type(error).__name__


def at_version(
    con: LakeConnection | ReadOnlyLakeConnection, table: str, version: int, name: str | None = None
) -> str:
    """Register ``table`` as of ``version`` as a view; returns the view's name (``<table>_v<N>``).
    Reads only: a table that does not exist is an error, not created."""
    view = name or f"{table}_v{int(version)}"
    _open(con.lake, table, int(version))  # a clear error if the version does not exist
    if con.engine == "delta":
        uri = _lit(_duck_uri(con.lake.uri(table)))
        con.raw.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM delta_scan({uri}, version => {int(version)})")
    else:
        _register_dataset(con.raw, con.lake, table, view, version)
    return view


def _open(lake: Lake, table: str, version: int | None) -> DeltaTable:
    """``table`` (at ``version``) without :meth:`Lake.ensure`, which creates and upgrades tables."""
    uri = lake.uri(table)  # an unknown table name is a LakeError here
    if not lake.exists(table):
        raise LakeError(f"{table} has no version {version}: the table does not exist yet")
    latest = DeltaTable(uri, storage_options=lake.storage_options)
    if version is None:
        return latest
    try:
        return DeltaTable(uri, version=version, storage_options=lake.storage_options)
    except Exception as e:
        raise LakeError(f"{table} has no version {version} (latest is {latest.version()})") from e


def _register_dataset(con: duckdb.DuckDBPyConnection, lake: Lake, table: str, view: str, version: int | None) -> None:
    # a materialised arrow table: pyarrow dataset filters on this delta-rs/pyarrow pair fail
    # for string columns (string vs string_view statistics), so nothing is pushed down here
    data = _open(lake, table, version).to_pyarrow_table()
    con.register(f"__{view}_ds", data)
    con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM __{view}_ds")


def _function_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {str(r[0]).lower() for r in con.execute("SELECT DISTINCT function_name FROM duckdb_functions()").fetchall()}


def _duck_uri(uri: str) -> str:
    return uri if "://" in uri else Path(uri).as_uri()


def _dir(path: str) -> str:
    return path if path.endswith("/") else path + "/"


def _lit(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


# -- limits for interactive SQL (the dashboard's SQL page) -----------------------------------------
class QueryTimeout(ConfigError):
    """A query stopped at its time limit (:func:`run_limited`). The message is one line."""


def run_limited(
    con: ReadOnlyLakeConnection, query: str, *, max_rows: int, timeout_s: float
) -> tuple[pl.DataFrame, bool]:
    """Run user SQL ``query`` on the read-only connection with a row and a time limit.

    Returns ``(frame, truncated)``: at most ``max_rows`` rows (``truncated`` when the query had
    more; only ``max_rows + 1`` are ever fetched). After ``timeout_s`` seconds a timer interrupts
    the DuckDB connection and :class:`QueryTimeout` is raised. A refused query raises
    :class:`QueryRefused` (nothing runs); any other DuckDB error is a :class:`ConfigError` whose
    message is one line.
    """
    if max_rows < 1:
        raise ConfigError(f"max_rows={max_rows}: give at least 1 row")
    if not timeout_s > 0:
        raise ConfigError(f"timeout_s={timeout_s}: give a positive number of seconds")
    fired = threading.Event()

    def stop() -> None:
        fired.set()
        con.raw.interrupt()

    timer = threading.Timer(timeout_s, stop)
    timer.daemon = True
    timer.start()
    try:
        rel = con.sql(query)  # checks the text (QueryRefused) and plans it
        if rel is None:
            raise QueryRefused("the query returns no rows: only SELECT queries run here")
        frame = rel.limit(max_rows + 1).pl()
    except duckdb.Error as e:
        if fired.is_set() or isinstance(e, duckdb.InterruptException):
            raise QueryTimeout(
                f"query stopped after {timeout_s:g} s (the time limit): filter or aggregate more, "
                "e.g. add a WHERE on run_id or symbol"
            ) from e
        raise ConfigError(one_line(e)) from e
    finally:
        timer.cancel()
    if fired.is_set() and frame.height == 0:  # interrupted as it finished: not a complete answer
        raise QueryTimeout(f"query stopped after {timeout_s:g} s (the time limit)")
    truncated = frame.height > max_rows
    return (frame.head(max_rows) if truncated else frame), truncated


def lake_columns(con: ReadOnlyLakeConnection | LakeConnection) -> dict[str, list[tuple[str, str]]]:
    """Lake table -> its ``(column, type)`` pairs, in schema order (the views of the connection)."""
    rows = con.raw.execute(
        "SELECT table_name, column_name, data_type FROM duckdb_columns() "
        "WHERE schema_name = 'main' ORDER BY table_name, column_index"
    ).fetchall()
    out: dict[str, list[tuple[str, str]]] = {t: [] for t in TABLES}
    for table, column, dtype in rows:
        if table in out:
            out[table].append((str(column), str(dtype)))
    return out
