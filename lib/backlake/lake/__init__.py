"""The lake: Delta tables (local directory or S3), the run write protocol, DuckDB views."""

from backlake.lake.schemas import RUN_STATUSES, SCHEMAS, TABLES
from backlake.lake.sql import (
    LakeConnection,
    QueryRefused,
    ReadOnlyLakeConnection,
    at_version,
    connect,
    connect_readonly,
)
from backlake.lake.store import Lake

__all__ = [
    "Lake", "LakeConnection", "ReadOnlyLakeConnection", "QueryRefused", "connect", "connect_readonly",
    "at_version", "SCHEMAS", "TABLES", "RUN_STATUSES",
]
