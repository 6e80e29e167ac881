"""Golden-run regression: re-run stored runs against the data versions they pinned (Delta
time travel) and compare every metric with what the lake holds, within per-metric tolerances.

The goldens come from the lake's ``goldens`` table (:mod:`backlake.runs.goldens`,
``backlake goldens add RUN``) or from a JSON file / a list of dicts::

    [{"run_id": "0967a32b87f26966", "tolerances": {"sharpe": 1e-9, "total_return": 1e-9}},
     {"run_id": "17af35b4890e3c67"}]

A metric without a tolerance must match within ``default_tolerance`` (absolute, 1e-9 unless
given). A golden is a completed single backtest (:func:`golden_run`). Example::

    report = regress(lake, load_goldens("goldens.json"))
    failures(report)   # rows that left their tolerance
    record_report(lake, report, report_id="nightly-2024-05-01", source="goldens.json")
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from backlake._suggest import unknown_name_message
from backlake.config import BacktestConfig
from backlake.errors import BacklakeError, ConfigError
from backlake.lake.store import Lake
from backlake.metrics import METRIC_UNITS
from backlake.runs.backtest import PlannedRun, execute_run
from backlake.runs.data import fingerprint, load_bars

__all__ = [
    "Golden", "load_goldens", "golden_run", "check_tolerances", "replay", "regress", "error_rows", "failures",
    "format_drift", "report_frame", "record_report", "markdown_report", "RegressionError", "DEFAULT_TOLERANCE",
    "REPORT_SCHEMA",
]

#: the absolute tolerance of a metric a golden gives none for
DEFAULT_TOLERANCE = 1e-9

#: the columns of a drift report (:func:`regress`); ``error``: why a golden could not be
#: replayed (then ``metric`` is null and ``ok`` false)
REPORT_SCHEMA: dict[str, pl.DataType] = {
    "run_id": pl.String(), "metric": pl.String(), "stored": pl.Float64(), "replayed": pl.Float64(),
    "abs_diff": pl.Float64(), "tolerance": pl.Float64(), "ok": pl.Boolean(), "error": pl.String(),
}

_PICK_RUN = ("pick one from `backlake sql \"SELECT run_id, strategy, symbols, sharpe FROM runs "
             "WHERE kind = 'backtest' AND status = 'completed'\"`")


class RegressionError(BacklakeError):
    """A golden run's metric left its tolerance, or a golden run could not be replayed."""


@dataclass(frozen=True)
class Golden:
    run_id: str
    tolerances: dict[str, float] = field(default_factory=dict)
    default_tolerance: float = DEFAULT_TOLERANCE


def check_tolerances(tolerances: Mapping[str, object], where: str = "tolerances") -> dict[str, float]:
    """``tolerances`` as metric -> float: every name a known metric (the closest one suggested
    on a typo), every value a finite number >= 0; else a ConfigError naming ``where``."""
    if not isinstance(tolerances, Mapping):
        raise ConfigError(f"{where} must map metric -> non-negative number, got {tolerances!r}")
    out: dict[str, float] = {}
    for name, value in tolerances.items():
        if name not in METRIC_UNITS:
            raise ConfigError(f"{where}: " + unknown_name_message("metric", str(name), METRIC_UNITS))
        out[name] = check_tolerance(value, f"{where}.{name}")
    return out


def check_tolerance(value: object, where: str) -> float:
    """``value`` as a tolerance: a finite number >= 0 (a bool is not one)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where} must be a non-negative number (an absolute tolerance, e.g. 1e-9), got {value!r}")
    return float(value)


def load_goldens(source: str | Path | list[dict[str, Any]]) -> list[Golden]:
    """Goldens from a JSON file path or a list of dicts; clear errors for bad entries."""
    if isinstance(source, (str, Path)):
        p = Path(source)
        if not p.exists():
            raise ConfigError(f"goldens file {str(p)!r} does not exist")
        try:
            source = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{p} is not valid JSON: {e}") from e
    if not isinstance(source, list) or not source:
        raise ConfigError("goldens must be a non-empty list of {\"run_id\": ..., \"tolerances\": {...}}")
    out = []
    for i, g in enumerate(source):
        if not isinstance(g, dict) or "run_id" not in g:
            raise ConfigError(f"goldens[{i}] needs a run_id, got {g!r}")
        unknown = set(g) - {"run_id", "tolerances", "default_tolerance"}
        if unknown:
            raise ConfigError(
                f"goldens[{i}] has unknown key(s) {sorted(unknown)}: use run_id, tolerances, default_tolerance"
            )
        tol = check_tolerances(g.get("tolerances", {}), f"goldens[{i}].tolerances")
        default = check_tolerance(g.get("default_tolerance", DEFAULT_TOLERANCE), f"goldens[{i}].default_tolerance")
        out.append(Golden(str(g["run_id"]), tol, default))
    return out


def golden_run(lake: Lake, run_id: str) -> dict[str, Any]:
    """The ``runs`` row of ``run_id`` if it can be a golden (a completed single backtest),
    else a ConfigError naming the run and how to find one that can."""
    runs = lake.read("runs", where={"run_id": run_id}) if lake.exists("runs") else pl.DataFrame()
    if runs.is_empty():
        hint = ""
        if lake.exists("runs") and len(run_id) >= 4:
            ids = lake.read("runs", columns=["run_id"])["run_id"].to_list()
            starts = sorted({r for r in ids if r.startswith(run_id)})
            hint = f" (did you mean {starts[0]!r}?)" if len(starts) == 1 else ""
        raise ConfigError(f"run {run_id!r} is not in the lake{hint}; {_PICK_RUN}")
    done = runs.filter(pl.col("status") == "completed")
    if done.is_empty():
        raise ConfigError(f"run {run_id} is {runs['status'][0]}, not completed: a golden is a completed backtest; "
                          f"{_PICK_RUN}")
    row = done.row(0, named=True)
    if row["kind"] not in GOLDEN_KINDS:
        raise ConfigError(f"run {run_id} is a {row['kind']} run: goldens are single backtests or alpha runs; "
                          f"{_PICK_RUN}")
    return row


#: the kinds of run a golden can be: a single backtest, or an alpha run (its backtest replays)
GOLDEN_KINDS = ("backtest", "alpha")


def _stored_config(row: dict[str, Any]) -> BacktestConfig:
    """The backtest config of a stored run (an alpha run's ``config`` also holds its request)."""
    stored = json.loads(row["config"])
    return BacktestConfig.model_validate({k: v for k, v in stored.items() if k in BacktestConfig.model_fields})


def replay(lake: Lake, run_id: str) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """(stored, replayed) full-segment metrics of a completed run, replayed at its pinned data."""
    row = golden_run(lake, run_id)
    cfg = _stored_config(row)
    versions = json.loads(row["data_versions"])
    fp = fingerprint(cfg, load_bars(lake, cfg, versions["bars"]))
    if row.get("data_fingerprint") and row["data_fingerprint"] != fp:
        raise RegressionError(
            f"replaying {run_id}: the bars at version {versions['bars']} no longer give the fingerprint it "
            f"recorded ({row['data_fingerprint']} vs {fp}); the pinned data was changed or vacuumed")
    planned = PlannedRun(run_id, cfg, versions, fp, kind="backtest")
    outcome = execute_run(lake, planned)
    if outcome.result is None:
        raise RegressionError(f"replaying {run_id} failed: {outcome.error}")
    stored_rows = lake.read("metrics", where={"run_id": run_id, "segment": "full"})
    stored = {n: (None if v is None or (isinstance(v, float) and math.isnan(v)) else v)
              for n, v in zip(stored_rows["name"], stored_rows["value"])}
    return stored, dict(outcome.result.metrics)


def regress(lake: Lake, goldens: Sequence[Golden]) -> pl.DataFrame:
    """Drift report (:data:`REPORT_SCHEMA`): one row per golden run and metric."""
    rows = []
    for g in goldens:
        stored, new = replay(lake, g.run_id)
        for name in sorted(set(stored) | set(new)):
            a, b = stored.get(name), new.get(name)
            tol = g.tolerances.get(name, g.default_tolerance)
            if a is None or b is None:
                diff, ok = (None, a is None and b is None)
            else:
                diff = abs(float(a) - float(b))
                ok = diff <= tol
            rows.append({"run_id": g.run_id, "metric": name, "stored": a, "replayed": b,
                         "abs_diff": diff, "tolerance": tol, "ok": ok, "error": None})
    return pl.DataFrame(rows, schema=REPORT_SCHEMA)


def error_rows(golden: Golden, error: BaseException | str) -> pl.DataFrame:
    """The report row of a golden that could not be replayed (metric null, not ok)."""
    return pl.DataFrame([{"run_id": golden.run_id, "metric": None, "stored": None, "replayed": None,
                          "abs_diff": None, "tolerance": None, "ok": False, "error": str(error)}],
                        schema=REPORT_SCHEMA)


def failures(report: pl.DataFrame) -> pl.DataFrame:
    return report.filter(~pl.col("ok"))


def format_drift(report: pl.DataFrame) -> str:
    """A readable diff of the metrics that left their tolerance and the goldens that could not
    be replayed (empty when none did)."""
    bad = failures(report)
    if bad.is_empty():
        return ""
    errors = bad.filter(pl.col("error").is_not_null()) if "error" in bad.columns else bad.clear()
    drift = bad.filter(pl.col("error").is_null()) if "error" in bad.columns else bad
    lines = []
    if not drift.is_empty():
        lines.append(f"{drift.height} metric(s) drifted beyond tolerance:")
        for r in drift.iter_rows(named=True):
            lines.append(
                f"  {r['run_id']}  {r['metric']}: stored {r['stored']!r} -> replayed {r['replayed']!r}"
                f" (|diff| {r['abs_diff']!r} > tolerance {r['tolerance']!r})"
            )
    if not errors.is_empty():
        lines.append(f"{errors.height} golden run(s) could not be replayed:")
        lines.extend(f"  {r['run_id']}: {r['error']}" for r in errors.iter_rows(named=True))
    return "\n".join(lines)


def report_frame(report: pl.DataFrame, report_id: str, source: str, ts: dt.datetime | None = None) -> pl.DataFrame:
    """The report as ``regression_reports`` rows: each row with the report's id, time and source."""
    ts = ts or dt.datetime.now(dt.UTC)
    return report.select(
        pl.lit(report_id, pl.String).alias("report_id"), pl.lit(ts, pl.Datetime("us", "UTC")).alias("ts"),
        pl.lit(source, pl.String).alias("source"), *(pl.col(c) for c in REPORT_SCHEMA if c in report.columns),
    )


def record_report(lake: Lake, report: pl.DataFrame, report_id: str, source: str,
                  ts: dt.datetime | None = None) -> bool:
    """Append the report to ``regression_reports`` in one commit, once per ``report_id`` (a
    retry writes nothing). Returns whether it wrote (False also for an empty report)."""
    if report.is_empty():
        return False
    return lake.append_once("regression_reports", report_frame(report, report_id, source, ts),
                            f"regression-report-{report_id}")


def markdown_report(report: pl.DataFrame, source: str, report_id: str | None = None) -> str:
    """The report as Markdown: the verdict, one line per golden run, then every golden x metric
    (those out of tolerance first)."""
    if report.is_empty():
        return ("# Regression report\n\nNo goldens yet: add one with `backlake goldens add RUN` "
                "(a completed backtest's run id).\n")
    n_gold = report["run_id"].n_unique()
    bad = failures(report)
    verdict = (f"**PASS**: {n_gold} golden run(s), {report.height} metric(s), all within tolerance" if bad.is_empty()
               else f"**FAIL**: {bad['run_id'].n_unique()} of {n_gold} golden run(s) drifted or could not be "
                    f"replayed ({bad.height} row(s))")
    lines = ["# Regression report", "", verdict, "", f"Goldens from: `{source}`"]
    if report_id:
        lines.append(f"Rows in the lake: `SELECT * FROM regression_reports WHERE report_id = '{report_id}'`")
    lines += ["", "| golden run | metrics | within tolerance | out of tolerance | result |", "|---|---:|---:|---:|---|"]
    for (run_id,), rows in report.group_by("run_id", maintain_order=True):
        metrics = rows.filter(pl.col("metric").is_not_null())
        n_ok = int(metrics["ok"].sum())
        errors = rows["error"].drop_nulls()
        result = "replay failed" if errors.len() else ("pass" if n_ok == metrics.height else "**FAIL**")
        lines.append(f"| `{run_id}` | {metrics.height} | {n_ok} | {metrics.height - n_ok} | {result} |")
    lines += ["", "## Metrics", "", "| golden run | metric | stored | replayed | abs diff | tolerance | result |",
              "|---|---|---:|---:|---:|---:|---|"]
    for r in report.sort("ok", maintain_order=True).iter_rows(named=True):
        if r["error"] is not None:
            msg = " ".join(str(r["error"]).split()).replace("|", "\\|")
            lines.append(f"| `{r['run_id']}` | (replay failed) | | | | | {msg} |")
        else:
            lines.append(f"| `{r['run_id']}` | {r['metric']} | {_num(r['stored'])} | {_num(r['replayed'])} | "
                         f"{_num(r['abs_diff'])} | {_num(r['tolerance'])} | {'pass' if r['ok'] else '**FAIL**'} |")
    return "\n".join(lines) + "\n"


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.10g}"
