"""The ``live_monitor`` flow: the overlay of every linked live strategy on its backtest, one
``alerts`` row per strategy and date (a rerun the same day adds nothing), a markdown artifact
of the levels, and a JSON POST of each new YELLOW / RED alert to the webhook
(``webhook_url``, else ``BACKLAKE_ALERT_WEBHOOK_URL``; none: no posts).

A new alert is posted before it is recorded: a webhook that fails leaves the alert unrecorded
(the flow fails, naming it), so the next run posts it again rather than never."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any

from prefect import flow

from backlake.analytics.live import (
    Overlay,
    OverlayConfig,
    alert_recorded,
    alert_row,
    load_overlay,
    record_alert,
)
from backlake.errors import BacklakeError
from backlake.lake import connect
from backlake.settings import get_settings
from flows._common import label_flow_run, open_lake

log = logging.getLogger("backlake.flows.live_monitor")

#: The artifact's key in the Prefect UI (one per flow run, the latest under this key).
ARTIFACT_KEY = "live-monitor"
WEBHOOK_TIMEOUT = 10.0


class WebhookError(BacklakeError):
    """The alert webhook did not accept a post."""


def payload(ov: Overlay, row: dict[str, Any]) -> dict[str, Any]:
    """The JSON body posted for an alert."""
    figures = ov.to_dict()
    return {
        "type": "backlake.live_alert", "strategy": ov.strategy, "run_id": ov.run_id,
        "date": row["date"].isoformat() if row["date"] else None, "level": ov.level, "reasons": ov.reasons,
        "warnings": ov.warnings, "tracking_error": ov.tracking_error, "rolling_te": ov.rolling_te,
        "divergence": ov.divergence, "divergence_start": figures["divergence_start"], "basis": ov.basis,
        "cum_live": ov.cum_live, "cum_backtest": ov.cum_backtest, "config": figures["config"],
        "message": ov.message, "created_at": row["created_at"].isoformat(),
    }


def post_json(url: str, body: dict[str, Any], timeout: float = WEBHOOK_TIMEOUT) -> int:
    """POST ``body`` as JSON; the HTTP status (raises WebhookError unless 2xx)."""
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": "backlake-live-monitor"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        raise WebhookError(f"webhook {url} answered HTTP {e.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise WebhookError(f"webhook {url} could not be reached: {reason}") from None


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x * 100:.2f}%"


def markdown(results: list[dict[str, Any]]) -> str:
    """The artifact: one row per linked strategy."""
    icons = {"RED": "🔴 RED", "YELLOW": "🟡 YELLOW", "NONE": "🟢 NONE", "ERROR": "⚠️ ERROR"}
    lines = ["# Live vs backtest", "",
             "| strategy | run | date | level | TE (ann.) | rolling TE | divergence | divergence start | new | "
             "posted | message |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        msg = str(r.get("message") or "").replace("|", "/")
        lines.append(f"| {r['strategy']} | {r.get('run_id') or ''} | {r.get('date') or ''} | "
                     f"{icons.get(r['level'], r['level'])} | {_fmt(r.get('tracking_error'))} | "
                     f"{_fmt(r.get('rolling_te'))} | {_fmt(r.get('divergence'))} | "
                     f"{r.get('divergence_start') or ''} | {'yes' if r.get('new') else 'no'} | "
                     f"{'yes' if r.get('posted') else ''} | {msg} |")
    if not results:
        lines.append("| (no live strategy is linked: `backlake live link NAME RUN`) |||||||||||")
    return "\n".join(lines)


def _name() -> str:
    return "live-monitor"


@flow(name="live_monitor", flow_run_name=_name)
def live_monitor_flow(
    webhook_url: str | None = None, config: dict[str, Any] | None = None, strategies: list[str] | None = None,
    lake_uri: str | None = None,
) -> dict[str, Any]:
    """Compute every linked overlay (or those of ``strategies``), record one alert per strategy
    and date, post the new YELLOW / RED ones, publish the artifact. Returns ``results`` (one
    dict per strategy) and ``posted`` (how many alerts were posted)."""
    label_flow_run("live")
    cfg = OverlayConfig.parse(config)
    url = webhook_url or get_settings().alert_webhook_url
    lake = open_lake(lake_uri)
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    with connect(lake=lake) as con:
        linked = con.execute("SELECT strategy, run_id FROM live_links ORDER BY strategy").fetchall()
        for strategy, run_id in linked:
            if strategies and strategy not in strategies:
                continue
            try:
                ov = load_overlay(con, strategy, run_id, cfg)
            except BacklakeError as e:
                log.warning("live strategy %s: %s", strategy, e)
                results.append({"strategy": strategy, "run_id": run_id, "level": "ERROR", "message": str(e),
                                "new": False})
                failures.append(f"{strategy}: {e}")
                continue
            row = alert_row(ov)
            out = {"strategy": strategy, "run_id": run_id, "date": row["date"], "level": ov.level,
                   "tracking_error": ov.tracking_error, "rolling_te": ov.rolling_te, "divergence": ov.divergence,
                   "divergence_start": ov.divergence_start, "message": ov.message, "new": False, "posted": False}
            results.append(out)
            if row["date"] is None or alert_recorded(lake, strategy, row["date"]):
                continue
            if ov.level in ("YELLOW", "RED") and url:
                try:
                    post_json(url, payload(ov, row))
                except WebhookError as e:
                    log.error("live strategy %s: %s; the alert stays unrecorded so the next run posts it", strategy, e)
                    failures.append(f"{strategy}: {e}")
                    continue
                out["posted"] = True
            out["new"] = record_alert(lake, row)
            log.info("live strategy %s vs %s on %s: %s (%s)", strategy, run_id, row["date"], ov.level, ov.message)
    try:
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(key=ARTIFACT_KEY, markdown=markdown(results),
                                 description="Live vs backtest: level of each linked strategy")
    except Exception:  # outside a flow run context or without a server: the results are still returned
        log.warning("could not publish the live-monitor artifact", exc_info=True)
    if failures:
        raise WebhookError("live monitor: " + "; ".join(failures))
    return {"results": results, "posted": sum(bool(r.get("posted")) for r in results),
            "new": sum(bool(r.get("new")) for r in results)}
