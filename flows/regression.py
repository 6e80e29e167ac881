"""Prefect flow ``regression``: replay golden runs at their pinned data versions; fail with a
readable diff when any metric leaves its tolerance."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from backlake.runs.regression import Golden, RegressionError, format_drift, load_goldens, regress
from flows._common import open_lake


@task(cache_policy=NO_CACHE, task_run_name="replay-{golden.run_id}")
def replay_task(golden: Golden, lake_uri: str | None) -> list[dict]:
    """Replay one golden run; returns its drift rows."""
    return regress(open_lake(lake_uri), [golden]).to_dicts()


@flow(name="regression")
def regression_flow(goldens: str | list[dict] = "goldens.json", lake_uri: str | None = None) -> list[dict]:
    """Replay every golden run (in parallel); the drift report, or a failure listing the drift."""
    items = load_goldens(goldens)  # errors before any task
    futures = [replay_task.submit(g, lake_uri) for g in items]
    rows = [r for f in futures for r in f.result()]
    import polars as pl

    report = pl.DataFrame(rows)
    diff = format_drift(report)
    if diff:
        raise RegressionError(diff)
    get_run_logger().info("%d golden run(s), %d metric(s): all within tolerance", len(items), report.height)
    return rows
