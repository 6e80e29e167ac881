"""Prefect flow ``ingest``: load bars from a provider, validate, append new rows to ``bars``.

Bars already stored with other values reject the ingest (``ChangedBarsError``) unless
``revise=True``, which replaces them in one new version of ``bars``."""

from __future__ import annotations

from typing import Literal

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from backlake.data.file import read_bars_file
from backlake.data.ingest import check_ingest_request, ingest_bars
from backlake.data.samples import load_samples
from backlake.data.synthetic import synthetic_bars
from backlake.errors import ConfigError, DataValidationError
from flows._common import flow_run_namer, label_flow_run, open_lake


@task(cache_policy=NO_CACHE)
def load_bars_task(
    source: str, symbols: list[str] | None, path: str | None, symbol: str | None,
    timeframe: str, columns: dict[str, str] | None, seed: int, periods: int,
) -> pl.DataFrame:
    """Read raw bars from the chosen provider."""
    if source == "samples":
        return load_samples(symbols)
    if source == "synthetic":
        return synthetic_bars(tuple(symbols or ["SYN0", "SYN1", "SYN2"]), periods=periods, timeframe=timeframe,
                              seed=seed)
    if source == "file":
        if not path:
            raise ConfigError("source='file' needs path=<CSV or Parquet file>")
        return read_bars_file(path, symbol=symbol, timeframe=timeframe, columns=columns)
    raise ConfigError(f"source={source!r} is not a provider: use samples, synthetic or file")


def _retryable(task, task_run, state) -> bool:
    """Retry lake trouble, not a rejection of the data (it would be rejected again)."""
    try:
        state.result()
    except DataValidationError:
        return False
    except Exception:
        return True
    return True


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=_retryable)
def ingest_task(bars: pl.DataFrame, lake_uri: str | None, revise: bool = False) -> dict:
    """Validate and add only new rows (idempotent, so a retry is safe); ``revise``: replace
    stored bars whose values differ instead of rejecting the ingest."""
    report = ingest_bars(open_lake(lake_uri), bars, revise=revise)
    get_run_logger().info(report.summary())
    return report.to_dict()


@flow(name="ingest", flow_run_name=flow_run_namer("ingest"))
def ingest_flow(
    source: Literal["samples", "synthetic", "file"] = "samples",
    symbols: list[str] | None = None,
    path: str | None = None,
    symbol: str | None = None,
    timeframe: str = "1d",
    columns: dict[str, str] | None = None,
    seed: int = 0,
    periods: int = 2520,
    lake_uri: str | None = None,
    revise: bool = False,
) -> dict:
    """Ingest bars into the lake; returns the ingest report (counts per validation rule).

    ``revise``: bars stored with other values are replaced (one new ``bars`` version) instead
    of rejecting the ingest."""
    check_ingest_request(source, symbols, path, symbol, timeframe, columns, periods)
    label_flow_run("ingest")
    bars = load_bars_task(source, symbols, path, symbol, timeframe, columns, seed, periods)
    return ingest_task(bars, lake_uri, revise)
