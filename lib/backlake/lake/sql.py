"""DuckDB over the lake: every table as a view, plus time travel.

``connect()`` loads DuckDB's ``delta`` extension from its pip package (and ``httpfs`` for S3)
and defines one view per table over ``delta_scan``: each query reads the table's latest
version. Where the extension cannot load, each view is a pyarrow dataset of the table as of
connect time (``con.backlake_engine`` says which). ``at_version(con, table, v)`` and the SQL
table macro ``<table>_at(v)`` (delta engine) read an earlier version.

Example::

    con = connect()
    con.sql("SELECT strategy, avg(sharpe) FROM runs WHERE status = 'completed' GROUP BY 1").pl()
    con.sql(f"SELECT count(*) FROM {con.at_version('bars', 0)}")
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from urllib.parse import urlparse

import duckdb

from backlake.lake.schemas import SCHEMAS, TABLES
from backlake.lake.store import Lake
from backlake.settings import Settings

__all__ = ["connect", "at_version", "extension_path", "LakeConnection"]

log = logging.getLogger(__name__)


def extension_path(name: str) -> Path | None:
    """Path of the ``<name>.duckdb_extension`` shipped by the ``duckdb-extension-<name>`` package."""
    try:
        mod = importlib.import_module(f"duckdb_extension_{name}")
    except ImportError:
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
                con.execute(f"LOAD '{path}'")
            else:
                con.execute(f"LOAD {name}")  # installed into DuckDB's own extension directory
        except duckdb.Error as e:
            log.warning("DuckDB extension %s did not load (%s); using pyarrow datasets", name, e)
            return False
    return True


def _s3_secret(con: duckdb.DuckDBPyConnection, settings: Settings, opts: dict[str, str]) -> None:
    parts = ["TYPE s3", f"REGION '{settings.s3_region}'", "URL_STYLE 'path'"]
    if opts.get("AWS_ACCESS_KEY_ID"):
        parts.append(f"KEY_ID '{opts['AWS_ACCESS_KEY_ID']}'")
        parts.append(f"SECRET '{opts.get('AWS_SECRET_ACCESS_KEY', '')}'")
    if opts.get("AWS_SESSION_TOKEN"):
        parts.append(f"SESSION_TOKEN '{opts['AWS_SESSION_TOKEN']}'")
    if settings.s3_endpoint_url:
        u = urlparse(settings.s3_endpoint_url)
        parts.append(f"ENDPOINT '{u.netloc or u.path}'")
        parts.append(f"USE_SSL {'false' if u.scheme == 'http' else 'true'}")
    con.execute(f"CREATE OR REPLACE SECRET backlake_s3 ({', '.join(parts)})")


def connect(settings: Settings | None = None, *, lake: Lake | None = None, engine: str = "auto") -> "LakeConnection":
    """A DuckDB connection with every lake table as a view. Read-only: nothing is created in
    the lake; a table that does not exist yet is an empty view with the table's schema.
    Timestamps are shown in UTC.

    ``engine``: ``"auto"`` (delta extension, else pyarrow), ``"delta"`` or ``"pyarrow"``.
    """
    lake = lake or Lake(settings)
    con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
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
        elif use_delta:
            uri = _duck_uri(lake.uri(table))
            con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM delta_scan('{uri}')")
        else:
            _register_dataset(con, lake, table, table, None)
    return LakeConnection(con, lake, "delta" if use_delta else "pyarrow")


class LakeConnection:
    """A DuckDB connection (every DuckDB method works on it) that knows its lake.

    ``engine`` is ``"delta"`` (views over ``delta_scan``, always the latest version) or
    ``"pyarrow"`` (views over datasets as of connect time). ``raw`` is the DuckDB connection.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, lake: Lake, engine: str) -> None:
        self.raw = con
        self.lake = lake
        self.engine = engine

    def __getattr__(self, name: str):
        return getattr(self.raw, name)

    def __enter__(self) -> "LakeConnection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.raw.close()

    def at_version(self, table: str, version: int, name: str | None = None) -> str:
        """Define view ``<table>_v<N>``: ``table`` as of Delta version ``version``; returns its name."""
        return at_version(self, table, version, name)


def at_version(con: LakeConnection, table: str, version: int, name: str | None = None) -> str:
    """Register ``table`` as of ``version`` as a view; returns the view's name (``<table>_v<N>``)."""
    view = name or f"{table}_v{int(version)}"
    con.lake.table(table, version)  # a clear error if the version does not exist
    if con.engine == "delta":
        uri = _duck_uri(con.lake.uri(table))
        con.raw.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM delta_scan('{uri}', version => {int(version)})")
    else:
        _register_dataset(con.raw, con.lake, table, view, version)
    return view


def _register_dataset(con: duckdb.DuckDBPyConnection, lake: Lake, table: str, view: str, version: int | None) -> None:
    # a materialised arrow table: pyarrow dataset filters on this delta-rs/pyarrow pair fail
    # for string columns (string vs string_view statistics), so nothing is pushed down here
    data = lake.table(table, version).to_pyarrow_table()
    con.register(f"__{view}_ds", data)
    con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM __{view}_ds")


def _duck_uri(uri: str) -> str:
    return uri if "://" in uri else Path(uri).as_uri()
