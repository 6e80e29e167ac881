"""Prefect flow ``freshness``: check every lake table and source (``backlake.analytics.health``),
record the statuses in ``health_checks`` (one row per source, under the flow run's id), an alert
per STALE / ERROR source in ``alerts`` (kind ``health``), publish the Markdown artifact
``lake-health``, and POST each new alert (a source that was OK, or had another status, at the
previous check) as JSON to ``BACKLAKE_ALERT_WEBHOOK_URL`` when one is set. Scheduled hourly
(deployment ``freshness`` in prefect.yaml)."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from typing import Any

import polars as pl
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from backlake.analytics.health import (
    HealthResult,
    lake_monitor,
    overall_status,
    record_check,
    summary_markdown,
)
from backlake.lake import Lake
from flows._common import label_flow_run, open_lake

#: the key of the Markdown artifact each freshness flow run publishes
ARTIFACT_KEY = "lake-health"


def previous_statuses(lake: Lake) -> dict[str, str]:
    """Source -> status at the latest recorded check ({} before the first)."""
    if not lake.exists("health_checks"):
        return {}
    rows = lake.read("health_checks", columns=["check_id", "ts", "source", "status"])
    if rows.is_empty():
        return {}
    last = rows.sort("ts").get_column("check_id")[-1]
    return dict(rows.filter(pl.col("check_id") == last).select("source", "status").iter_rows())


def post_alert(url: str, payload: dict[str, Any], *, timeout: float = 5.0, attempts: int = 2) -> None:
    """POST one alert as JSON (a timeout per try, one retry); raises the last error."""
    body = json.dumps(payload).encode()
    for attempt in range(attempts):
        try:
            req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                resp.read()
            return
        except OSError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)


def _payload(r: HealthResult, lake_uri: str) -> dict[str, Any]:
    return {"kind": "health", "lake": lake_uri, **r.to_dict()}


@flow(name="freshness", flow_run_name="freshness")
def freshness_flow(lake_uri: str | None = None) -> dict[str, Any]:
    """Check, record and alert; returns the overall status, the alerts posted and every
    source's result."""
    from prefect.runtime import flow_run

    label_flow_run("health")
    log = get_run_logger()
    lake = open_lake(lake_uri)
    before = previous_statuses(lake)
    results = lake_monitor(lake).results(force=True)
    check_id = str(flow_run.id or uuid.uuid4())
    n_checks, n_alerts = record_check(lake, results, check_id)
    overall = overall_status(results)
    create_markdown_artifact(summary_markdown(results), key=ARTIFACT_KEY,
                             description=f"lake health: {overall} ({len(results)} sources)")
    new = [r for r in results if r.status != "OK" and before.get(r.source) != r.status]
    posted = 0
    url = lake.settings.alert_webhook_url
    for r in results:
        if r.status != "OK":
            log.warning("%s is %s: %s", r.source, r.status, r.message)
    if url:
        for r in new:
            try:
                post_alert(url, _payload(r, lake.settings.lake_uri))
                posted += 1
            except OSError as e:  # delivery failing must not lose the recorded check
                log.error("could not post the alert of %s to %s: %s", r.source, url, e)
    log.info("lake health %s: %d sources, %d recorded (check %s), %d alert(s), %d new, %d posted",
             overall, len(results), n_checks, check_id, n_alerts, len(new), posted)
    return {"status": overall, "check_id": check_id, "alerts": n_alerts, "new": [r.source for r in new],
            "posted": posted, "sources": [r.to_dict() for r in results]}
