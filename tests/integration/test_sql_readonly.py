"""User SQL (``connect_readonly``, ``backlake sql``) reads the lake and nothing else.

Every escape is tried on a local lake and on a moto S3 lake: it is refused before it runs
(``QueryRefused``, one line), no file appears or changes anywhere under the test's tmp dir
(the local lake, the "outside" targets, the working directory) or in the buckets, and every
table keeps its Delta version.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from backlake.lake import TABLES, Lake, QueryRefused, connect_readonly
from backlake.lake.sql import extension_path
from backlake.settings import Settings
from flows.cli import main as cli
from tests.conftest import make_bucket

# -- the lake and what lies around it -----------------------------------------------------------


def run_row(run_id: str, sharpe: float, params: dict[str, int]) -> dict[str, object]:
    now = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    return {"run_id": run_id, "parent_id": None, "kind": "backtest", "strategy": "sma_crossover",
            "symbols": "GOOG", "timeframe": "1d", "params": json.dumps(params), "config": "{}",
            "config_id": run_id, "data_versions": "{}", "code_version": "t", "created_by": "me",
            "created_at": now, "finished_at": now, "status": "completed", "error": None,
            "total_return": 0.1, "cagr": 0.01, "sharpe": sharpe, "sortino": None, "max_drawdown": -0.2,
            "n_trades": 3}


def metrics_rows(run_id: str) -> pl.DataFrame:
    return pl.DataFrame({"run_id": [run_id] * 2, "segment": ["full"] * 2,
                         "name": ["sharpe", "total_return"], "value": [1.5, 0.1]})


@dataclass
class World:
    """A lake with two versions of ``runs`` and ``metrics``, a Delta table and a secret file
    outside it, and the placeholders the escapes are written with."""

    lake: Lake
    tmp: Path
    s3: object | None = None  # a boto3 client on the moto server
    buckets: list[str] = field(default_factory=list)
    places: dict[str, str] = field(default_factory=dict)

    def sql(self, template: str) -> str:
        return template.format(**self.places)

    def files(self) -> dict[str, tuple[int, int]]:
        """Every file under the tmp dir and every object in the buckets (size, mtime / etag)."""
        out: dict[str, tuple[int, int]] = {}
        for root, dirs, names in os.walk(self.tmp):
            for n in dirs + names:
                p = Path(root, n)
                st = p.lstat()
                out[str(p)] = (st.st_size if p.is_file() else -1, st.st_mtime_ns)
        for bucket in self.buckets:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):  # type: ignore[attr-defined]
                for o in page.get("Contents", []):
                    out[f"s3://{bucket}/{o['Key']}"] = (o["Size"], hash(o["ETag"]))
        return out

    def versions(self) -> dict[str, int | None]:
        """Each table's Delta version (None: not created), read without Lake.ensure (it creates)."""
        opts = self.lake.storage_options
        return {t: DeltaTable(self.lake.uri(t), storage_options=opts).version() if self.lake.exists(t) else None
                for t in TABLES}


@pytest.fixture
def world(lake_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    lake = Lake(lake_settings)
    lake.upsert_runs(pl.DataFrame([run_row("r1", 1.5, {"fast": 10})]))
    lake.upsert_runs(pl.DataFrame([run_row("r2", 0.5, {"fast": 20})]))
    lake.append_for_runs("metrics", metrics_rows("r1"), ["r1"])
    lake.append_for_runs("metrics", metrics_rows("r2"), ["r2"])

    outside = tmp_path / "outside"
    outside.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "secret.csv").write_text("secret\nlocal-cwd\n")
    monkeypatch.chdir(cwd)  # relative targets land under tmp_path too
    secret_csv = "secret\nbeside-the-lake\n"
    other_table = pa.table({"secret": ["in-another-table"]})
    w = World(lake=lake, tmp=tmp_path)
    root = lake_settings.root
    if lake_settings.is_s3:
        import boto3

        w.s3 = boto3.client("s3", endpoint_url=lake_settings.s3_endpoint_url, region_name="us-east-1")
        bucket = lake_settings.bucket
        assert bucket is not None
        other_bucket = bucket + "-other"
        make_bucket(lake_settings.s3_endpoint_url or "", other_bucket)
        w.buckets = [bucket, other_bucket]
        # beside the lake in its own bucket (reached with '..') and in another bucket
        w.s3.put_object(Bucket=bucket, Key="elsewhere/secret.csv", Body=secret_csv.encode())
        other = f"s3://{other_bucket}/elsewhere"
        write_deltalake(f"{other}/t", other_table, storage_options=lake.storage_options)
    else:
        (tmp_path / "elsewhere").mkdir()
        (tmp_path / "elsewhere" / "secret.csv").write_text(secret_csv)
        other = str(tmp_path / "elsewhere")
        write_deltalake(f"{other}/t", other_table)
    runs_version = DeltaTable(lake.uri("runs"), storage_options=lake.storage_options).version()
    w.places = {
        "lake": root, "tmp": str(outside), "other": other, "ext": str(extension_path("delta") or "delta"),
        "next_log": f"{root}/runs/_delta_log/{runs_version + 1:020d}.json",
    }
    return w


# -- the escapes --------------------------------------------------------------------------------
# (id, SQL, what the one-line refusal says)
ESCAPES = [
    # writes: COPY / EXPORT / ATTACH / CREATE / DML, anywhere including inside the lake
    ("copy-outside", "COPY (SELECT 42 AS x) TO '{tmp}/copy.csv'", "COPY statements are not allowed"),
    ("copy-forged-commit",
     """COPY (SELECT '{{"commitInfo":{{}}}}' AS j) TO '{next_log}' (FORMAT csv, HEADER false, QUOTE '')""",
     "COPY statements are not allowed"),
    ("copy-into-lake", "COPY runs TO '{lake}/runs/part-evil.parquet' (FORMAT parquet)", "COPY statements"),
    ("copy-to-other-place", "COPY runs TO '{other}/stolen.csv'", "COPY statements"),
    ("copy-relative", "COPY runs TO 'stolen.csv'", "COPY statements"),
    ("copy-after-comments", "/* monthly report */ -- runs\nCOPY runs TO '{tmp}/c.csv'", "COPY statements"),
    ("select-then-copy", "SELECT count(*) FROM runs; COPY runs TO '{tmp}/m.csv'", "COPY statements"),
    ("select-then-attach", "SELECT 1; ATTACH '{tmp}/a.duckdb' AS a", "ATTACH statements"),
    ("two-selects", "SELECT 1; SELECT 2", "give one SELECT query, not 2 statements"),
    ("export-database", "EXPORT DATABASE '{tmp}/export'", "EXPORT statements"),
    ("attach-outside", "ATTACH '{tmp}/evil.duckdb' AS evil", "ATTACH statements"),
    ("attach-in-lake", "ATTACH '{lake}/evil.duckdb' AS evil", "ATTACH statements"),
    ("create-secret", "CREATE SECRET evil (TYPE s3, KEY_ID 'k', SECRET 's', SCOPE '{other}')", "CREATE statements"),
    ("shadow-a-view", "CREATE OR REPLACE VIEW runs AS SELECT 1 AS run_id", "CREATE statements"),
    ("create-table", "CREATE TABLE t AS SELECT * FROM runs", "CREATE statements"),
    ("insert", "INSERT INTO runs SELECT * FROM runs", "INSERT statements"),
    ("delete", "DELETE FROM runs", "DELETE statements"),
    ("checkpoint", "CHECKPOINT", "statements are not allowed"),
    # functions that write or change settings from inside a SELECT
    ("write-blob-outside", "SELECT write_blob('{tmp}/blob.bin', 'x'::BLOB)", "function write_blob() is not allowed"),
    ("write-blob-forged-commit", "SELECT write_blob('{next_log}', '{{}}'::BLOB)", "function write_blob()"),
    ("copy-dir-macro", "SELECT * FROM copy_dir('{lake}/runs', '{tmp}/copied/')", "copy_dir() is not allowed"),
    ("enable-logging-to-file",
     "SELECT * FROM enable_logging(storage := 'file', storage_path := '{lake}/logs')", "enable_logging()"),
    ("enable-profiling", "SELECT * FROM enable_profiling()", "enable_profiling() is not allowed"),
    # extensions and settings
    ("install", "INSTALL httpfs", "LOAD statements"),
    ("load", "LOAD '{ext}'", "LOAD statements"),
    ("set-external-access", "SET enable_external_access = true", "SET statements"),
    ("unlock", "RESET lock_configuration", "statements are not allowed"),
    ("set-allowed-directories", "SET allowed_directories = ['/']", "SET statements"),
    ("pragma", "PRAGMA enable_profiling", "not allowed"),
    ("call", "CALL enable_logging(storage := 'file', storage_path := '{tmp}/logs')", "CALL statements"),
    ("explain-analyze", "EXPLAIN ANALYZE COPY runs TO '{tmp}/e.csv'", "EXPLAIN statements"),
    ("prepare", "PREPARE p AS SELECT * FROM read_text('/etc/hostname')", "PREPARE statements"),
    # reads outside the lake
    ("read-csv-passwd", "SELECT * FROM read_csv('/etc/passwd')", "table function read_csv() is not allowed"),
    ("read-blob-shadow", "SELECT * FROM read_blob('/etc/shadow')", "table function read_blob() is not allowed"),
    ("glob-etc", "SELECT * FROM glob('/etc/*')", "table function glob() is not allowed"),
    ("read-text-in-subquery",
     "SELECT * FROM runs WHERE run_id IN (SELECT content FROM read_text('/etc/hostname'))", "read_text()"),
    ("read-text-dot-dot", "SELECT content FROM read_text('{lake}/../elsewhere/secret.csv')", "read_text()"),
    ("file-as-table-dot-dot", "SELECT * FROM '{lake}/../elsewhere/secret.csv'", "is not a lake table"),
    ("file-as-dotted-name", "SELECT * FROM secret.csv", "is not a lake table"),
    ("describe-a-file", "DESCRIBE '/etc/passwd.csv'", "is not a lake table"),
    ("parquet-scan-other", "SELECT * FROM parquet_scan('{other}/t/*.parquet')", "parquet_scan() is not allowed"),
    ("delta-scan-other", "SELECT * FROM delta_scan('{other}/t')", "delta_scan() is not allowed"),
    ("delta-scan-qualified", "SELECT * FROM system.main.delta_scan('{other}/t')", "delta_scan() is not allowed"),
    ("delta-list-files-other", "SELECT * FROM delta_list_files('{other}/t')", "delta_list_files() is not allowed"),
    ("query-function", "SELECT * FROM query('SELECT * FROM read_text(''/etc/hostname'')')", "query() is not allowed"),
    ("query-table-function", "SELECT * FROM query_table('secret.csv')", "query_table() is not allowed"),
    ("autoload-sqlite", "SELECT * FROM sqlite_scan('{tmp}/x.db', 't')", "sqlite_scan() is not allowed"),
    ("http-url", "SELECT * FROM read_text('http://127.0.0.1:9/x')", "read_text() is not allowed"),
    # the environment, settings and the lake's S3 secret
    ("getenv", "SELECT getenv('AWS_SECRET_ACCESS_KEY')", "function getenv() is not allowed"),
    ("current-setting-secret", "SELECT current_setting('s3_secret_access_key')", "current_setting() is not allowed"),
    ("duckdb-secrets", "SELECT * FROM duckdb_secrets()", "duckdb_secrets() is not allowed"),
    ("duckdb-secrets-unredacted", "SELECT * FROM duckdb_secrets(redact := false)", "duckdb_secrets()"),
    ("which-secret", "SELECT * FROM which_secret('{lake}/runs', 's3')", "which_secret() is not allowed"),
    ("duckdb-settings", "SELECT * FROM duckdb_settings()", "duckdb_settings() is not allowed"),
]


@pytest.mark.parametrize(("template", "says"), [e[1:] for e in ESCAPES], ids=[e[0] for e in ESCAPES])
def test_escape_is_refused(world: World, template: str, says: str):
    sql = world.sql(template)
    files, versions = world.files(), world.versions()
    with connect_readonly(lake=world.lake) as con:
        counts = con.sql("SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM metrics)").fetchall()
        for run in (con.sql, con.execute):
            with pytest.raises(QueryRefused) as refused:
                run(sql)
            message = str(refused.value)
            assert says in message
            assert "\n" not in message
        # the connection still reads the lake as before: nothing was shadowed or changed
        assert con.sql("SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM metrics)").fetchall() == counts
    assert world.files() == files
    assert world.versions() == versions


def test_lockdown_holds_without_the_statement_check(world: World):
    """Under the statement check, DuckDB's own settings refuse what they can (``raw`` skips the check)."""
    files, versions = world.files(), world.versions()
    with connect_readonly(lake=world.lake) as con:
        raw = con.raw
        settings = dict(raw.execute("SELECT name, value FROM duckdb_settings() WHERE name IN "
                                    "('enable_external_access', 'lock_configuration', 'allowed_directories', "
                                    "'autoload_known_extensions', 'autoinstall_known_extensions', "
                                    "'allow_persistent_secrets', 'python_enable_replacements')").fetchall())
        assert settings["enable_external_access"] == "false"
        assert settings["lock_configuration"] == "true"
        assert world.lake.settings.root.rstrip("/") + "/" in settings["allowed_directories"]
        for key in ("autoload_known_extensions", "autoinstall_known_extensions", "allow_persistent_secrets",
                    "python_enable_replacements"):
            assert settings[key] == "false"
        for sql in ("SET enable_external_access = true", "SET lock_configuration = false",
                    "SET allowed_directories = ['/']", "SET autoload_known_extensions = true"):
            with pytest.raises(duckdb.Error, match="configuration has been locked"):
                raw.execute(sql)
        for sql in ("SELECT * FROM read_csv('/etc/passwd')", "SELECT * FROM glob('/etc/*')",
                    world.sql("COPY (SELECT 1) TO '{tmp}/raw.csv'"),
                    world.sql("SELECT * FROM read_text('{other}/t/_delta_log/*.json')")):
            with pytest.raises(duckdb.PermissionException):
                raw.execute(sql)
        for sql in ("INSTALL spatial", "LOAD spatial"):  # loading the delta extension again is a no-op
            with pytest.raises(duckdb.PermissionException):
                raw.execute(sql)
        with pytest.raises(duckdb.Error, match="unredacted secrets is disabled"):
            raw.execute("SELECT * FROM duckdb_secrets(redact := false)")
        assert raw.execute("SELECT count(*) FROM runs").fetchone() == (2,)
    assert world.files() == files
    assert world.versions() == versions


@pytest.mark.s3
def test_the_s3_secret_is_not_readable(s3_settings: Settings, monkeypatch: pytest.MonkeyPatch):
    key_id, secret = "AKIABACKLAKESQLTEST", "sql-readonly-test-secret-value"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    lake = Lake(s3_settings)
    lake.append_for_runs("metrics", metrics_rows("r1"), ["r1"])
    seen: list[str] = []
    with connect_readonly(lake=lake) as con:
        assert con.sql("SELECT count(*) FROM metrics").fetchone() == (2,)
        for sql in ("SELECT * FROM duckdb_secrets()", "SELECT * FROM which_secret('s3://x/y', 's3')",
                    "SELECT current_setting('s3_secret_access_key')", "SELECT getenv('AWS_SECRET_ACCESS_KEY')",
                    "SELECT * FROM duckdb_settings()", "SHOW ALL TABLES", "SELECT * FROM duckdb_views()",
                    "SELECT * FROM duckdb_functions() WHERE function_name LIKE '%_at'", "DESCRIBE metrics"):
            try:
                seen.append(str(con.execute(sql).fetchall()))
            except (QueryRefused, duckdb.Error) as e:
                seen.append(str(e))
        # trusted code on the raw connection: settings hold no credentials, the secret is redacted
        seen.append(str(con.raw.execute("SELECT * FROM duckdb_settings()").fetchall()))
        seen.append(str(con.raw.execute("SELECT * FROM duckdb_secrets()").fetchall()))
    text = "\n".join(seen)
    assert secret not in text
    assert key_id not in text.replace(f"key_id={key_id}", "")  # the raw duckdb_secrets() row names the key id only


# -- what still works ---------------------------------------------------------------------------
def test_queries_joins_ctes_and_introspection_work(world: World):
    with connect_readonly(lake=world.lake) as con:
        assert con.sql("SELECT run_id, sharpe FROM runs ORDER BY run_id").fetchall() == [("r1", 1.5), ("r2", 0.5)]
        joined = con.sql("SELECT r.run_id, m.value FROM runs r JOIN metrics m USING (run_id) "
                         "WHERE m.name = 'sharpe' ORDER BY 1").fetchall()
        assert joined == [("r1", 1.5), ("r2", 1.5)]
        cte = con.sql("WITH best AS (SELECT run_id, rank() OVER (ORDER BY sharpe DESC) AS k FROM runs) "
                      "SELECT run_id FROM best WHERE k = 1").fetchall()
        assert cte == [("r1",)]
        assert con.sql("SELECT json_extract(params, '$.fast')::INT AS fast FROM runs ORDER BY 1").fetchall() == \
            [(10,), (20,)]
        assert con.sql("FROM runs SELECT count(*)").fetchall() == [(2,)]
        assert con.sql("SELECT count(*) FROM range(5)").fetchall() == [(5,)]
        assert con.sql("SELECT count(*) FROM (VALUES (1), (2)) v(x)").fetchall() == [(2,)]
        assert con.sql("SELECT count(*) FROM signals").fetchall() == [(0,)]  # a table not created yet
        assert "sharpe" in {r[0] for r in con.sql("DESCRIBE runs").fetchall()}
        assert len(con.sql("SUMMARIZE metrics").fetchall()) == 4
        assert {"runs", "metrics"} <= {r[0] for r in con.execute("SHOW TABLES").fetchall()}
        assert con.execute("SELECT count(*) FROM runs WHERE sharpe > ?", [1.0]).fetchall() == [(1,)]
        df = con.sql("SELECT * FROM metrics").pl()
        assert df.height == 4


def test_time_travel(world: World):
    v_runs, v_metrics = world.versions()["runs"], world.versions()["metrics"]
    assert v_runs is not None and v_metrics is not None
    with connect_readonly(lake=world.lake, at=[("metrics", v_metrics - 1)]) as con:
        assert con.engine == "delta"
        assert con.sql(f"SELECT count(*) FROM runs_at({v_runs - 1})").fetchall() == [(1,)]
        assert con.sql(f"SELECT count(*) FROM metrics_at({v_metrics - 1})").fetchall() == [(2,)]
        assert con.sql(f"SELECT count(*) FROM metrics_v{v_metrics - 1}").fetchall() == [(2,)]
        assert con.sql(f"SELECT count(*) FROM metrics_at({v_metrics})").fetchall() == [(4,)]
        now_vs_then = con.sql(f"SELECT (SELECT count(*) FROM runs) - (SELECT count(*) FROM runs_at({v_runs - 1}))")
        assert now_vs_then.fetchall() == [(1,)]
        with pytest.raises(duckdb.Error):
            con.sql("SELECT * FROM metrics_at(99)").fetchall()
        with pytest.raises(duckdb.Error, match="signals has no version 0"):
            con.sql("SELECT * FROM signals_at(0)").fetchall()


def test_time_travel_on_the_pyarrow_engine(world: World):
    v = world.versions()["metrics"]
    assert v is not None
    with connect_readonly(lake=world.lake, engine="pyarrow", at=[("metrics", v - 1)]) as con:
        assert con.engine == "pyarrow"
        assert con.sql("SELECT count(*) FROM metrics").fetchall() == [(4,)]
        assert con.sql(f"SELECT count(*) FROM metrics_at({v - 1})").fetchall() == [(2,)]
        with pytest.raises(QueryRefused):
            con.sql("SELECT * FROM read_csv('/etc/passwd')")


def test_at_version_creates_no_table(lake_settings: Settings):
    from backlake.errors import LakeError

    lake = Lake(lake_settings)
    with pytest.raises(LakeError, match="does not exist yet"):
        connect_readonly(lake=lake, at=[("runs", 0)])
    with connect_readonly(lake=lake) as con:
        assert con.sql("SELECT count(*) FROM runs").fetchall() == [(0,)]
    assert not any(lake.exists(t) for t in TABLES)


# -- the CLI ------------------------------------------------------------------------------------
def sql_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli(["sql", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_refuses_with_one_line(world: World, capsys: pytest.CaptureFixture[str]):
    files, versions = world.files(), world.versions()
    for sql in (world.sql("COPY (SELECT '{{}}' AS j) TO '{next_log}' (FORMAT csv, HEADER false, QUOTE '')"),
                "SELECT * FROM read_csv('/etc/passwd')", "SELECT 1; DELETE FROM runs", "SELEC 1",
                "SELECT * FROM metrics_at(99)"):
        code, out, err = sql_cli(capsys, sql)
        assert code == 2, sql
        assert out == ""
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("SQL error: "), err
        assert "Traceback" not in err
    assert world.files() == files
    assert world.versions() == versions


def test_cli_queries_and_time_travel(world: World, capsys: pytest.CaptureFixture[str]):
    v = world.versions()["metrics"]
    assert v is not None
    code, out, err = sql_cli(capsys, "SELECT run_id FROM runs ORDER BY run_id", "--format", "json")
    assert (code, err) == (0, "")
    assert json.loads(out) == [{"run_id": "r1"}, {"run_id": "r2"}]
    code, out, _ = sql_cli(capsys, f"SELECT (SELECT count(*) FROM metrics_v{v - 1}) AS a, "
                                   f"(SELECT count(*) FROM metrics_at({v - 1})) AS b", "--at", f"metrics={v - 1}",
                           "--format", "json")
    assert code == 0
    assert json.loads(out) == [{"a": 2, "b": 2}]
