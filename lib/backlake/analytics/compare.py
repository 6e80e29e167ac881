"""Compare 2-10 runs: equity overlay, metrics diff, tracking error, correlation (pure).

Any completed run with an equity curve can be compared: a backtest, an optimisation's best
run, a walk-forward's stitched out-of-sample run, a Monte Carlo's base backtest. The formulas:

- **basis**: ``net`` is the equity the engine recorded; ``gross`` adds back the costs charged
  on each bar (``equity.costs``): gross equity = net equity + cumulative costs. One basis per
  comparison: if a run has no cost data (a run recorded before costs were, or a stitched
  walk-forward curve), every run is compared net, with a warning.
- **returns**: per bar, from each run's own equity (gross or net), from its second bar on.
- **overlay**: each run's equity on the dates every run has (inner join), divided by its value
  on the first of them, so every curve starts at 1; no common date -> a warning, no curves.
- **metrics**: each run's full-period metrics (segment ``full``; ``oos`` for a walk-forward;
  the ``runs`` row's headline metrics otherwise) and its cost summary (the ``runs`` row's
  ``total_costs``, ``cost_commission``, ``cost_fees``, ``cost_slippage``, ``cost_impact``),
  best / worst per metric by :data:`DIRECTIONS` (metrics cover each run's whole period, the
  overlay only the overlap).
- **tracking error** of each run against the baseline (the first run, or the one given; if it
  has no returns, the next that has): the two runs' returns on their common dates (inner join
  of that pair only), ``std(r_a - r_b, ddof=1) * sqrt(periods_per_year)``; None
  ("insufficient data") below 2 common dates; 0.0 for identical series.
- **correlation** of returns, each pair on its own common dates (None below 2 or when a
  series is constant there).

Example::

    from backlake.lake import connect
    with connect() as con:
        cmp = compare_runs(con, ["c760323b0de27b64", "0b9e2f..."], basis="gross")
    cmp.warnings, cmp.subtitle, cmp.tracking_error, cmp.metrics_frame()
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np
import polars as pl

from backlake._suggest import closest
from backlake.calendars import calendar_of, periods_per_year
from backlake.errors import ConfigError
from backlake.metrics import HEADLINE_METRICS, METRIC_UNITS
from backlake.strategies import display_name

__all__ = [
    "BASES", "MIN_RUNS", "MAX_RUNS", "DIRECTIONS", "COST_METRICS", "Direction", "RunSeries", "MetricRow",
    "Comparison", "direction", "best_worst", "check_run_ids", "check_basis", "level", "returns", "overlay",
    "tracking_error", "correlation", "compare", "load_runs", "compare_runs", "walk_forward_trades_note",
]

BASES = ("net", "gross")
MIN_RUNS, MAX_RUNS = 2, 10
Direction = Literal["higher", "lower", "neutral"]

#: The cost summary (the ``runs`` row's columns: money over the whole run), in display order.
COST_METRICS = ("total_costs", "cost_commission", "cost_fees", "cost_slippage", "cost_impact")

#: Which way is better, per metric: ``higher`` or ``lower``; any other metric is neutral.
#: Drawdowns, MAE and losing-trade figures are fractions <= 0, so higher (closer to 0) is better.
DIRECTIONS: dict[str, Direction] = {
    **dict.fromkeys((
        "total_return", "cagr", "annual_return", "sharpe", "sortino", "calmar", "omega", "tail_ratio",
        "excess_return", "alpha", "information_ratio", "win_rate", "profit_factor", "avg_trade_return",
        "avg_trade_pnl", "avg_winner", "avg_loser", "best_trade", "worst_trade", "avg_mae", "avg_mfe",
        "max_drawdown", "deflated_sharpe",
    ), "higher"),
    **dict.fromkeys((
        "annual_volatility", "max_drawdown_duration_bars", "max_drawdown_duration_days", "ulcer_index",
        "tracking_error", "max_consecutive_losses", "turnover", "pbo", *COST_METRICS,
    ), "lower"),
}

_RUN_COLUMNS = ("run_id", "kind", "status", "strategy", "symbols", "timeframe", "params", *HEADLINE_METRICS)
_LIST_RUNS = "backlake sql \"SELECT run_id, kind, strategy, symbols FROM runs WHERE status = 'completed'\""


def direction(name: str) -> Direction:
    """``higher`` / ``lower`` is better for ``name``, or ``neutral`` (not coloured)."""
    return DIRECTIONS.get(name, "neutral")


def best_worst(values: Mapping[str, float | None], how: Direction) -> tuple[list[str], list[str]]:
    """(best, worst) keys of ``values`` by ``how``: every key tied at the best / worst value;
    nothing for a neutral metric, fewer than 2 defined values, or all of them equal."""
    vals = {k: v for k, v in values.items() if v is not None and math.isfinite(v)}
    if how == "neutral" or len(vals) < 2:
        return [], []
    hi, lo = max(vals.values()), min(vals.values())
    if hi == lo:
        return [], []
    best, worst = (hi, lo) if how == "higher" else (lo, hi)
    return [k for k, v in vals.items() if v == best], [k for k, v in vals.items() if v == worst]


# -- one run --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSeries:
    """What a comparison needs of one run. ``equity``: ts (UTC), equity and, when the run
    recorded them, ``costs`` charged per bar (null = no cost data); ``metrics``: its
    full-period metrics (``metrics_segment`` says which segment they are) and cost summary."""

    run_id: str
    equity: pl.DataFrame
    metrics: dict[str, float | None] = field(default_factory=dict)
    kind: str = "backtest"
    strategy: str = ""
    symbols: str = ""
    timeframe: str = "1d"
    metrics_segment: str = "full"
    periods_per_year: float = 252.0

    @property
    def label(self) -> str:
        """Short name for legends: the run id's first 8 characters, the strategy (an alpha
        backtest: its alpha, as ``strategy`` holds it) and the symbols (more than 3: their count)."""
        syms = [s for s in self.symbols.split(",") if s]
        where = ",".join(syms) if len(syms) <= 3 else f"{len(syms)} symbols"
        what = " ".join(x for x in (self.strategy, where) if x)
        return f"{self.run_id[:8]} {what}".strip()

    @property
    def has_returns(self) -> bool:
        return self.equity.height >= 2

    @property
    def has_costs(self) -> bool:
        eq = self.equity
        return eq.height > 0 and "costs" in eq.columns and eq["costs"].null_count() == 0


def level(run: RunSeries, basis: str = "net") -> pl.DataFrame:
    """(ts, value): the run's equity, net or gross (net + cumulative costs), sorted by ts."""
    eq = run.equity.sort("ts")
    value = pl.col("equity")
    if basis == "gross":
        if not run.has_costs:
            raise ConfigError(f"run {run.run_id} has no cost data: compare it with basis='net'")
        value = value + pl.col("costs").cum_sum()
    return eq.select("ts", value.cast(pl.Float64).alias("value"))


def returns(run: RunSeries, basis: str = "net") -> pl.DataFrame:
    """(ts, ret): per-bar returns of the run's equity on ``basis``, from its second bar on."""
    lv = level(run, basis)
    return lv.select("ts", (pl.col("value") / pl.col("value").shift(1) - 1.0).alias("ret")).slice(1)


def overlay(levels: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """The levels (ts, value) on the dates all of them have, each divided by its value on the
    first of those dates: ts plus one column per key, starting at 1. Empty when no date is
    common (or a level is 0 there)."""
    joined: pl.DataFrame | None = None
    for key, lv in levels.items():
        part = lv.select("ts", pl.col("value").alias(key))
        joined = part if joined is None else joined.join(part, on="ts", how="inner")
    if joined is None or joined.is_empty():
        return pl.DataFrame(schema={"ts": pl.Datetime("us", "UTC"), **dict.fromkeys(levels, pl.Float64)})
    joined = joined.sort("ts")
    first = joined.row(0, named=True)
    if any(not first[k] for k in levels):
        return joined.clear()
    # numpy divides each value (polars may multiply by the reciprocal: the start would not be exactly 1)
    return joined.with_columns([pl.Series(k, joined[k].to_numpy() / first[k]) for k in levels])


def tracking_error(a: pl.DataFrame, b: pl.DataFrame, ppy: float) -> float | None:
    """Annualised tracking error of returns ``a`` against ``b`` (each ts, ret): inner join on
    ts, ``std(a - b, ddof=1) * sqrt(ppy)``; None below 2 common dates; 0.0 when identical."""
    both = a.select("ts", pl.col("ret").alias("a")).join(b.select("ts", pl.col("ret").alias("b")), on="ts",
                                                            how="inner")
    diff = (both["a"] - both["b"]).drop_nulls().to_numpy()
    if diff.size < 2:
        return None
    if not diff.any():
        return 0.0
    return float(np.std(diff, ddof=1) * math.sqrt(ppy))


def _corr(a: pl.DataFrame, b: pl.DataFrame) -> float | None:
    both = a.select("ts", pl.col("ret").alias("a")).join(b.select("ts", pl.col("ret").alias("b")), on="ts",
                                                            how="inner").drop_nulls()
    if both.height < 2:
        return None
    x, y = both["a"].to_numpy(), both["b"].to_numpy()
    if x.std() == 0 or y.std() == 0:
        return None
    return float(np.clip(np.corrcoef(x, y)[0, 1], -1.0, 1.0))


def correlation(rets: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """Correlation matrix of returns (each pair on its common dates): a ``run_id`` column and
    one column per run; None where undefined."""
    keys = list(rets)
    cols: dict[str, list[float | None]] = {k: [] for k in keys}
    for a in keys:
        for b in keys:
            cols[b].append(_corr(rets[a], rets[b]) if a != b else (1.0 if _corr(rets[a], rets[a]) else None))
    return pl.DataFrame({"run_id": keys, **cols}, schema={"run_id": pl.String, **dict.fromkeys(keys, pl.Float64)})


# -- the comparison -------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricRow:
    """One metric across the runs: values by run id, and the best / worst run ids."""

    name: str
    direction: Direction
    values: dict[str, float | None]
    best: list[str]
    worst: list[str]
    unit: str = ""


@dataclass(frozen=True)
class Comparison:
    """The outcome of :func:`compare` (see the module docstring)."""

    runs: list[RunSeries]
    baseline: str | None
    basis: str
    requested_basis: str
    warnings: list[str]
    curves: pl.DataFrame  # ts + one normalised column per run id (empty without overlap)
    metrics: list[MetricRow]
    tracking_error: dict[str, float | None]
    correlation: pl.DataFrame | None
    overlap_start: dt.datetime | None = None
    overlap_end: dt.datetime | None = None
    overlap_count: int = 0

    FOOTNOTE = ("Metrics cover each run's full period (a walk-forward: its stitched out-of-sample period); "
                "the chart and the correlation cover the overlap only.")

    @property
    def run_ids(self) -> list[str]:
        return [r.run_id for r in self.runs]

    @property
    def subtitle(self) -> str:
        """What the overlay shows: the basis, the overlap range and its number of dates."""
        if not self.overlap_count or self.overlap_start is None or self.overlap_end is None:
            return f"{self.basis} of costs · no overlapping dates"
        return (f"{self.basis} of costs · normalised to 1 on {self.overlap_start:%Y-%m-%d} · overlap "
                f"{self.overlap_start:%Y-%m-%d} to {self.overlap_end:%Y-%m-%d}, {self.overlap_count} dates")

    def metrics_frame(self) -> pl.DataFrame:
        """One row per metric: metric, direction, then one column per run id."""
        return pl.DataFrame(
            {"metric": [m.name for m in self.metrics], "direction": [m.direction for m in self.metrics],
             **{r: [m.values.get(r) for m in self.metrics] for r in self.run_ids}},
            schema={"metric": pl.String, "direction": pl.String, **dict.fromkeys(self.run_ids, pl.Float64)},
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: everything but the curves' points (see ``curves``)."""
        return {
            "runs": [{"run_id": r.run_id, "kind": r.kind, "strategy": r.strategy, "symbols": r.symbols,
                      "timeframe": r.timeframe, "metrics_segment": r.metrics_segment,
                      "has_returns": r.has_returns, "has_costs": r.has_costs} for r in self.runs],
            "baseline": self.baseline, "basis": self.basis, "requested_basis": self.requested_basis,
            "overlap": {"start": self.overlap_start.isoformat() if self.overlap_start else None,
                        "end": self.overlap_end.isoformat() if self.overlap_end else None,
                        "count": self.overlap_count},
            "subtitle": self.subtitle, "warnings": list(self.warnings),
            "metrics": [{"name": m.name, "direction": m.direction, "values": m.values, "best": m.best,
                         "worst": m.worst} for m in self.metrics],
            "tracking_error": self.tracking_error,
            "correlation": self.correlation.to_dicts() if self.correlation is not None else None,
            "footnote": self.FOOTNOTE,
        }


def check_run_ids(run_ids: Sequence[str]) -> list[str]:
    """The run ids, stripped, checked for count (2-10) and duplicates."""
    ids = [str(r).strip() for r in run_ids if str(r).strip()]
    dup = next((r for i, r in enumerate(ids) if r in ids[:i]), None)
    if dup is not None:
        raise ConfigError(f"run {dup!r} is given twice: list each run once")
    if not MIN_RUNS <= len(ids) <= MAX_RUNS:
        shown = ", ".join(ids) or "none"
        fix = "add runs to compare" if len(ids) < MIN_RUNS else f"keep at most {MAX_RUNS}"
        raise ConfigError(f"runs: compare needs {MIN_RUNS} to {MAX_RUNS} runs, got {len(ids)} ({shown}); {fix}")
    return ids


def check_basis(basis: str) -> str:
    if basis not in BASES:
        raise ConfigError(f"basis={basis!r} is not a basis: use 'net' (what the engine recorded) or 'gross' "
                          "(costs added back)")
    return basis


def walk_forward_trades_note(metrics: Mapping[str, float | None]) -> str:
    """What a walk-forward's out-of-sample trade statistics cover (they can disagree with its
    returns: a trend position carried across window boundaries earns returns but no closed trade)."""
    n, closed = metrics.get("n_trades"), metrics.get("n_closed_trades")
    counts = f" ({closed:.0f} of {n:.0f} closed)" if n is not None and closed is not None else ""
    return (f"its trade statistics cover the trades entered in its test windows{counts}; a position carried "
            "into a test window from its training period, or still open at the window's end, counts in the "
            "returns only")


def _metrics_rows(runs: Sequence[RunSeries]) -> list[MetricRow]:
    names: list[str] = []
    for r in runs:
        names += [n for n in r.metrics if n not in names]
    order = {n: i for i, n in enumerate([*HEADLINE_METRICS, *METRIC_UNITS, *COST_METRICS])}
    names.sort(key=lambda n: (order.get(n, len(order)), n))
    rows = []
    for n in names:
        values = {r.run_id: r.metrics.get(n) for r in runs}
        how = direction(n)
        best, worst = best_worst(values, how)
        unit = METRIC_UNITS.get(n, "currency of initial_cash" if n in COST_METRICS else "").split(";")[0]
        rows.append(MetricRow(n, how, values, best, worst, unit))
    return rows


def compare(runs: Sequence[RunSeries], *, baseline: str | None = None, basis: str = "net") -> Comparison:
    """Compare loaded runs (see the module docstring). ``baseline``: a run id among them (the
    first run by default)."""
    check_basis(basis)
    ids = check_run_ids([r.run_id for r in runs])
    if baseline is not None and baseline not in ids:
        raise ConfigError(f"baseline {baseline!r} is not one of the compared runs ({', '.join(ids)}): "
                          "pick one of them, or leave it out to use the first")
    warnings: list[str] = []
    with_returns = [r for r in runs if r.has_returns]
    for r in runs:
        if not r.has_returns:
            warnings.append(f"run {r.run_id} ({r.kind}) has no returns (fewer than 2 equity rows): it is left out "
                            "of the chart, the tracking error and the correlation")
    used = basis
    if basis == "gross":
        lacking = [r.run_id for r in with_returns if not r.has_costs]
        if lacking:
            used = "net"
            warnings.append(f"basis gross needs per-bar costs, which run(s) {', '.join(lacking)} did not record: "
                            "every run is compared net of costs")
    for r in runs:
        if r.kind == "walk_forward" and r.metrics.get("n_trades") is not None:
            warnings.append(f"run {r.run_id} (walk_forward): {walk_forward_trades_note(r.metrics)}")
    timeframes = sorted({r.timeframe for r in with_returns})
    if len(timeframes) > 1:
        warnings.append(f"the runs have different timeframes ({', '.join(timeframes)}): the overlay and the "
                        "correlation use the dates they share; tracking error is annualised at the baseline's")
    base = baseline or ids[0]
    base_run = next(r for r in runs if r.run_id == base)
    if not base_run.has_returns:
        fallback = next((r for r in runs if r.has_returns and r.run_id != base), None)
        if fallback is not None:
            warnings.append(f"baseline {base} has no returns: tracking error is measured against {fallback.run_id}")
        base_run = fallback or base_run
    base_id: str | None = base_run.run_id if base_run.has_returns else None
    levels = {r.run_id: level(r, used) for r in with_returns}
    rets = {r.run_id: returns(r, used) for r in with_returns}
    curves = overlay(levels) if len(levels) >= 2 else overlay({})
    if len(levels) >= 2 and curves.is_empty():
        warnings.append("the runs share no dates: no equity overlay (compare runs whose periods overlap)")
    te: dict[str, float | None] = {}
    if base_id is not None:
        for r in runs:
            te[r.run_id] = tracking_error(rets[r.run_id], rets[base_id], base_run.periods_per_year) \
                if r.run_id in rets else None
    corr = correlation(rets) if len(rets) >= 2 else None
    start = cast(dt.datetime, curves["ts"][0]) if curves.height else None
    end = cast(dt.datetime, curves["ts"][-1]) if curves.height else None
    return Comparison(
        runs=list(runs), baseline=base_id, basis=used, requested_basis=basis, warnings=warnings, curves=curves,
        metrics=_metrics_rows(runs), tracking_error=te, correlation=corr, overlap_start=start, overlap_end=end,
        overlap_count=curves.height,
    )


# -- from the lake ---------------------------------------------------------------------------------
def _frame(con: Any, sql: str, params: Sequence[object]) -> pl.DataFrame:
    return cast(pl.DataFrame, con.execute(sql, list(params)).pl())


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


def _unknown(con: Any, missing: list[str]) -> ConfigError:
    run = missing[0]
    hint = ""
    starts = _frame(con, "SELECT DISTINCT run_id FROM runs WHERE starts_with(run_id, ?) LIMIT 2", [run[:6]])
    candidates = starts["run_id"].to_list()
    near = closest(run, candidates) if candidates else None
    if near is None and len(run) >= 4:
        prefix = _frame(con, "SELECT DISTINCT run_id FROM runs WHERE starts_with(run_id, ?) LIMIT 2", [run[:4]])
        near = prefix["run_id"][0] if prefix.height else None
    if near:
        hint = f" (did you mean {near!r}?)"
    more = f" (and {len(missing) - 1} more: {', '.join(missing[1:])})" if len(missing) > 1 else ""
    return ConfigError(f"run {run!r} is not in the lake{hint}{more}; list the runs with {_LIST_RUNS}")


def load_runs(con: Any, run_ids: Sequence[str]) -> list[RunSeries]:
    """The runs from a lake connection (:func:`backlake.lake.connect`, or any DuckDB
    connection with the lake's ``runs``, ``equity`` and ``metrics`` views), in the given order.
    Unknown or unfinished runs are a ConfigError naming the run and the fix."""
    ids = check_run_ids(run_ids)
    ph = _placeholders(len(ids))
    have_runs = set(_frame(con, "SELECT * FROM runs LIMIT 0", []).columns)
    cost_cols = [c if c in have_runs else f"CAST(NULL AS DOUBLE) AS {c}" for c in COST_METRICS]
    runs = _frame(con, f"SELECT {', '.join([*_RUN_COLUMNS, *cost_cols])} FROM runs WHERE run_id IN ({ph})", ids)
    found = {row["run_id"]: row for row in runs.iter_rows(named=True)}
    done = {r["run_id"]: r for r in runs.filter(pl.col("status") == "completed").iter_rows(named=True)}
    missing = [r for r in ids if r not in found]
    if missing:
        raise _unknown(con, missing)
    unfinished = [r for r in ids if r not in done]
    if unfinished:
        r = unfinished[0]
        raise ConfigError(f"run {r} is {found[r]['status']}, not completed: compare completed runs "
                          f"(list them with {_LIST_RUNS})")
    have = set(_frame(con, "SELECT * FROM equity LIMIT 0", []).columns)
    costs = "costs" if "costs" in have else "CAST(NULL AS DOUBLE) AS costs"
    eq = _frame(con, f"SELECT run_id, ts, equity, {costs} FROM equity WHERE run_id IN ({ph}) ORDER BY run_id, ts",
                ids)
    met = _frame(con, f"SELECT run_id, segment, name, value FROM metrics WHERE run_id IN ({ph}) "
                      "AND segment IN ('full', 'oos')", ids)
    eq_by = {k[0]: g for k, g in eq.partition_by("run_id", as_dict=True).items()} if eq.height else {}
    out = []
    for r in ids:
        row = done[r]
        mine = met.filter(pl.col("run_id") == r)
        segs = set(mine["segment"].to_list())
        seg = "full" if "full" in segs else ("oos" if "oos" in segs else "runs")
        if seg == "runs":
            metrics = {m: (float(row[m]) if row[m] is not None else None) for m in HEADLINE_METRICS}
        else:
            part = mine.filter(pl.col("segment") == seg)
            metrics = dict(zip(part["name"].to_list(), part["value"].to_list()))
        metrics.update({c: row[c] for c in COST_METRICS if row[c] is not None})
        metrics = {k: (None if v is None or not math.isfinite(v) else float(v)) for k, v in metrics.items()}
        symbols = str(row["symbols"] or "")
        timeframe = str(row["timeframe"] or "1d")
        first = symbols.split(",")[0] if symbols else ""
        equity = eq_by.get(r, pl.DataFrame(schema={"run_id": pl.String, "ts": pl.Datetime("us", "UTC"),
                                                   "equity": pl.Float64, "costs": pl.Float64}))
        out.append(RunSeries(
            run_id=r, equity=equity.drop("run_id"), metrics=metrics, kind=str(row["kind"]),
            strategy=display_name(row["strategy"], row["params"]), symbols=symbols, timeframe=timeframe,
            metrics_segment=seg,
            periods_per_year=_ppy(timeframe, first),
        ))
    return out


def _ppy(timeframe: str, symbol: str) -> float:
    try:
        return periods_per_year(timeframe, calendar_of(symbol))
    except Exception:  # an unknown timeframe in an old row: daily
        return 252.0


def compare_runs(con: Any, run_ids: Sequence[str], *, baseline: str | None = None, basis: str = "net") -> Comparison:
    """:func:`load_runs` then :func:`compare` (input checked before the lake is read)."""
    check_basis(basis)
    ids = check_run_ids(run_ids)
    if baseline is not None and baseline not in ids:
        raise ConfigError(f"baseline {baseline!r} is not one of the compared runs ({', '.join(ids)}): "
                          "pick one of them, or leave it out to use the first")
    return compare(load_runs(con, ids), baseline=baseline, basis=basis)
