"""The row and time limits of interactive SQL (``backlake.lake.sql.run_limited``), on the real
read-only DuckDB connection over an (empty) lake directory."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from backlake.errors import ConfigError
from backlake.lake.schemas import SCHEMAS, TABLES
from backlake.lake.sql import QueryRefused, QueryTimeout, connect_readonly, lake_columns, run_limited
from backlake.settings import Settings

SLOW = "SELECT sum(a.range * b.range) FROM range(200000) a, range(200000) b"  # minutes of work


@pytest.fixture
def con(tmp_path: Path):
    lake_dir = tmp_path / "lake"
    lake_dir.mkdir()
    with connect_readonly(Settings(lake_uri=str(lake_dir))) as ro:
        yield ro


def test_row_limit_truncates_and_says_so(con) -> None:
    frame, truncated = run_limited(con, "SELECT range AS n FROM range(1000)", max_rows=25, timeout_s=10)
    assert truncated and frame.height == 25 and frame["n"].to_list() == list(range(25))
    frame, truncated = run_limited(con, "SELECT range AS n FROM range(25)", max_rows=25, timeout_s=10)
    assert not truncated and frame.height == 25
    frame, truncated = run_limited(con, "SELECT 1 AS one WHERE false", max_rows=5, timeout_s=10)
    assert not truncated and frame.height == 0 and frame.columns == ["one"]


def test_timeout_interrupts_the_query_and_the_connection_stays_usable(con) -> None:
    t0 = time.monotonic()
    with pytest.raises(QueryTimeout, match=r"stopped after 0.5 s \(the time limit\)"):
        run_limited(con, SLOW, max_rows=10, timeout_s=0.5)
    assert time.monotonic() - t0 < 10  # interrupted, not run to the end
    frame, truncated = run_limited(con, "SELECT 42 AS answer", max_rows=10, timeout_s=5)
    assert frame["answer"].to_list() == [42] and not truncated


def test_a_fast_query_is_not_interrupted_later(con) -> None:
    run_limited(con, "SELECT 1", max_rows=1, timeout_s=0.2)
    time.sleep(0.4)  # the timer of the finished query must not fire into the next one
    frame, _ = run_limited(con, "SELECT count(*) AS n FROM range(3000000)", max_rows=1, timeout_s=30)
    assert frame["n"].to_list() == [3000000]


@pytest.mark.parametrize("query", [
    "COPY runs TO '/tmp/backlake-refused.csv'",
    "DELETE FROM runs",
    "CREATE TABLE x AS SELECT 1",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT 1; SELECT 2",
])
def test_refused_queries_run_nothing(con, query: str) -> None:
    with pytest.raises(QueryRefused) as info:
        run_limited(con, query, max_rows=10, timeout_s=5)
    assert "\n" not in str(info.value)
    assert not Path("/tmp/backlake-refused.csv").exists()


def test_sql_errors_are_one_line_config_errors(con) -> None:
    with pytest.raises(ConfigError) as info:
        run_limited(con, "SELECT no_such_column FROM runs", max_rows=10, timeout_s=5)
    assert "no_such_column" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs, field", [({"max_rows": 0, "timeout_s": 5}, "max_rows=0"),
                                          ({"max_rows": 5, "timeout_s": 0}, "timeout_s=0")])
def test_bad_limits_name_the_field(con, kwargs, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        run_limited(con, "SELECT 1", **kwargs)


def test_lake_columns_lists_every_table_in_schema_order(con) -> None:
    cols = lake_columns(con)
    assert set(cols) == set(TABLES)
    for table in TABLES:
        assert [c for c, _ in cols[table]] == SCHEMAS[table].empty_table().column_names
