"""Golden-run regression: re-run stored runs against the data versions they pinned (Delta
time travel) and compare every metric with what the lake holds, within per-metric tolerances.

Goldens file (JSON)::

    [{"run_id": "0967a32b87f26966", "tolerances": {"sharpe": 1e-9, "total_return": 1e-9}},
     {"run_id": "17af35b4890e3c67"}]

A metric without a tolerance must match within ``default_tolerance`` (absolute, 1e-9 unless
given). Example::

    report = regress(lake, load_goldens("goldens.json"))
    failures(report)   # rows that left their tolerance
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from backlake.config import BacktestConfig
from backlake.errors import BacklakeError, ConfigError
from backlake.lake.store import Lake
from backlake.runs.backtest import PlannedRun, execute_run
from backlake.runs.data import fingerprint, load_bars

__all__ = ["Golden", "load_goldens", "replay", "regress", "failures", "format_drift", "RegressionError"]


class RegressionError(BacklakeError):
    """A golden run's metric left its tolerance."""


@dataclass(frozen=True)
class Golden:
    run_id: str
    tolerances: dict[str, float] = field(default_factory=dict)
    default_tolerance: float = 1e-9


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
        tol = g.get("tolerances", {})
        if any(not isinstance(v, (int, float)) or v < 0 for v in tol.values()):
            raise ConfigError(f"goldens[{i}].tolerances must map metric -> non-negative number, got {tol!r}")
        out.append(Golden(str(g["run_id"]), {k: float(v) for k, v in tol.items()},
                          float(g.get("default_tolerance", 1e-9))))
    return out


def replay(lake: Lake, run_id: str) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """(stored, replayed) full-segment metrics of a completed run, replayed at its pinned data."""
    runs = lake.read("runs", where={"run_id": run_id, "status": "completed"})
    if runs.is_empty():
        raise ConfigError(
            f"run {run_id!r} is not a completed run in the lake; "
            "pick one from `backlake sql \"SELECT run_id FROM runs\"`"
        )
    row = runs.row(0, named=True)
    if row["kind"] != "backtest":
        raise ConfigError(f"run {run_id} is a {row['kind']} run: goldens are single backtests")
    cfg = BacktestConfig.model_validate(json.loads(row["config"]))
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


def regress(lake: Lake, goldens: list[Golden]) -> pl.DataFrame:
    """Drift report: one row per golden run and metric."""
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
                         "abs_diff": diff, "tolerance": tol, "ok": ok})
    return pl.DataFrame(rows, schema={"run_id": pl.String, "metric": pl.String, "stored": pl.Float64,
                                      "replayed": pl.Float64, "abs_diff": pl.Float64, "tolerance": pl.Float64,
                                      "ok": pl.Boolean})


def failures(report: pl.DataFrame) -> pl.DataFrame:
    return report.filter(~pl.col("ok"))


def format_drift(report: pl.DataFrame) -> str:
    """A readable diff of the metrics that left their tolerance (empty when none did)."""
    bad = failures(report)
    if bad.is_empty():
        return ""
    lines = [f"{bad.height} metric(s) drifted beyond tolerance:"]
    for r in bad.iter_rows(named=True):
        lines.append(
            f"  {r['run_id']}  {r['metric']}: stored {r['stored']!r} -> replayed {r['replayed']!r}"
            f" (|diff| {r['abs_diff']!r} > tolerance {r['tolerance']!r})"
        )
    return "\n".join(lines)
