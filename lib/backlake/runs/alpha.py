"""Alpha research as runs: an alpha evaluated (IC, Rank IC, quantile returns, decay) and
backtested through the engine, recorded as one run of kind ``alpha`` under the run protocol.

A run of kind ``alpha`` is a :class:`~backlake.config.BacktestConfig` with strategy ``alpha``
(:mod:`backlake.strategies.alpha`: the alpha, its parameters and the weight options) plus the
request ``{"horizons": [...], "n_quantiles": N}`` (and ``"together"``: the run ids' configs of
the other alphas when several are evaluated together, whose p-values are adjusted jointly).
Its id is ``run_id("alpha", {config, request}, fingerprint of the bars it reads)``: the same
request on the same rows is the same run, whatever else the lake holds, and the run replays at
its pinned ``bars`` version. It stores

- ``equity``, ``trades`` and ``metrics`` segment ``full`` of the backtest (the engine's: next-bar
  fills, the config's cost model);
- ``weights``: the target weights of the rebalance dates;
- ``ic``: the daily IC and Rank IC per horizon;
- ``metrics`` segments ``ic:h{h}`` (the IC summary of horizon h, with ``p_value`` and, for
  alphas evaluated together, ``p_bonferroni`` / ``p_bh``), ``quantiles:h{h}`` (``q1``..``qN``:
  the mean forward return of each score quantile, q1 the lowest scores) and ``decay``
  (``half_life``, ``mean_ic_h{h}``, ``mean_rank_ic_h{h}``).

Every check is made by :func:`plan_alphas` before any work starts. The evaluation reads the
same aligned panel as the engine (``backlake.engine.core.prepare``: the universe's bars within
the dates, from the first date every symbol has a bar); a bar a symbol lacks inside that range
is missing (NaN) for the evaluation, never a zero return.

Attribution of any run with an equity curve: :func:`attribute_run` (metrics segment
``attribution:<model>`` and ``factor_exposures`` rows, replaced on a re-run, never duplicated).

Example::

    cfg = alpha_config("momentum_12_1", universe="sp500_stocks", weights={"rebalance": "monthly"})
    (job,) = plan_alphas(lake, [cfg], horizons=(1, 5, 21))
    inputs = alpha_inputs(job)
    evals = {h: evaluate_horizon(job, inputs, h) for h in job.plan.horizons}
    record = alpha_record(job, run_backtest(job.config, job.bars, validated=True), inputs, evals, started, generation)
    commit(lake, [record], attempt)
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from backlake.config import BacktestConfig
from backlake.engine import BacktestResult
from backlake.engine.core import prepare
from backlake.errors import ConfigError
from backlake.lake.store import Lake
from backlake.runs.commit import RunRecord
from backlake.runs.events import Attempt
from backlake.runs.jobs import Job, plan_job
from backlake.strategies.alpha import (
    AlphaStrategyParams,
    alpha_scores,
    alpha_weights,
    can_short,
    config_problems,
    panel_of,
)

if TYPE_CHECKING:
    from backlake.alpha.ic import AlphaEvaluation
    from backlake.alpha.panel import Panel

__all__ = [
    "DEFAULT_HORIZONS", "DEFAULT_QUANTILES", "DEFAULT_ALPHAS", "ATTRIBUTION_MODELS", "AlphaPlan", "AlphaInputs",
    "Attributed", "alpha_config", "check_horizons", "check_dates", "plan_alphas", "alpha_inputs", "evaluate_horizon",
    "adjusted_pvalues", "evaluation_segments", "alpha_record", "group_records", "run_alphas", "score_correlation",
    "stored_summary",
    "attribute_run",
]

DEFAULT_HORIZONS: tuple[int, ...] = (1, 5, 10, 21)
DEFAULT_QUANTILES = 5
#: The alphas the daily ``alpha`` deployment refreshes and evaluates (close-only data suffices).
DEFAULT_ALPHAS: tuple[str, ...] = ("momentum_12_1", "reversal_5d", "low_volatility", "rsi_cs", "high_52w")
#: Attribution models (``backlake.alpha.factors.MODELS``; ff5 needs a 5-factor file ingested).
ATTRIBUTION_MODELS = ("capm", "ff3", "carhart4", "ff5")
_HORIZON_EXAMPLE = "e.g. 1,5,10,21"
#: The fewest names a date's IC is computed over (``backlake.alpha.ic``'s ``min_names``).
MIN_NAMES = 3


# -- configs and checks ------------------------------------------------------------------------
def alpha_config(
    name: str, params: Mapping[str, Any] | None = None, *, universe: str | Sequence[str] = "sp500_stocks",
    start: dt.date | str | None = None, end: dt.date | str | None = None, weights: Mapping[str, Any] | None = None,
    initial_cash: float = 1_000_000.0, costs: Mapping[str, Any] | None = None, timeframe: str = "1d",
) -> BacktestConfig:
    """The backtest config of alpha ``name``: strategy ``alpha`` with its parameters and the weight
    options ``weights`` (method, n, quantile, long_short, gross, net, max_weight, rebalance);
    fractional units, ``direction`` long_short when the weights can be negative (zscore, rank,
    long-short), else long_only. ConfigError naming the field for anything invalid."""
    raw: dict[str, Any] = {
        "strategy": "alpha", "params": {"alpha": name, "alpha_params": dict(params or {}), **dict(weights or {})},
        "universe": universe if isinstance(universe, str) else list(universe), "start": start, "end": end,
        "timeframe": timeframe, "initial_cash": initial_cash, "direction": "long_short",
        "sizing": {"method": "fixed_fraction", "fraction": 1.0, "whole_units": False}, "costs": dict(costs or {}),
    }
    cfg = BacktestConfig.model_validate(raw)
    if not can_short(_params(cfg)):
        cfg = BacktestConfig.model_validate({**raw, "direction": "long_only"})
    return cfg


def _params(cfg: BacktestConfig) -> AlphaStrategyParams:
    p = cfg.strategy_params()
    assert isinstance(p, AlphaStrategyParams)
    return p


def check_horizons(horizons: Sequence[Any]) -> tuple[int, ...]:
    """The forward horizons (trading days) as a sorted tuple: each a whole number > 0, none twice."""
    if isinstance(horizons, (str, bytes)) or not isinstance(horizons, Sequence) or not horizons:
        raise ConfigError(f"horizons={horizons!r}: give a list of forward horizons in trading days, {_HORIZON_EXAMPLE}")
    for h in horizons:
        if isinstance(h, bool) or not isinstance(h, int) or h <= 0:
            raise ConfigError(f"horizons={list(horizons)!r}: horizon {h!r} is not a whole number of trading days "
                              f"> 0; {_HORIZON_EXAMPLE}")
    if len(set(horizons)) != len(horizons):
        raise ConfigError(f"horizons={list(horizons)!r} lists a horizon twice; give each once")
    return tuple(sorted(int(h) for h in horizons))


def _check_quantiles(n_quantiles: Any) -> int:
    if isinstance(n_quantiles, bool) or not isinstance(n_quantiles, int) or not 2 <= n_quantiles <= 100:
        raise ConfigError(f"n_quantiles={n_quantiles!r}: the number of score quantiles must be a whole number "
                          "from 2 to 100, e.g. 5")
    return int(n_quantiles)


def _config_problems(cfg: BacktestConfig, n_quantiles: int) -> list[str]:
    """What is wrong with an alpha config before the lake is read (empty: nothing)."""
    if cfg.strategy != "alpha":
        return [f"strategy={cfg.strategy!r}: an alpha run needs strategy 'alpha' "
                "(see backlake.runs.alpha.alpha_config)"]
    p, m = _params(cfg), len(cfg.symbols)
    out = config_problems(cfg.timeframe, cfg.direction, p)  # intraday bars, a dropped short side
    universe = cfg.universe if isinstance(cfg.universe, str) else ",".join(cfg.symbols[:6]) + (
        f" and {m - 6} more" if m > 6 else "")
    if m < MIN_NAMES:
        out.append(f"universe {universe} has {m} symbol(s): the IC is a cross-sectional correlation over at least "
                   f"{MIN_NAMES} names per date; add symbols")
    elif m < n_quantiles:
        fix = f"add symbols or lower n_quantiles to {m}" if m >= 2 else "add symbols"
        out.append(f"universe {universe} has {m} symbol(s), fewer than n_quantiles={n_quantiles} (a quantile "
                   f"needs at least one name): {fix}")
    from backlake.alpha.weights import check_weight_options

    try:
        check_weight_options(p.weight_options(), m)  # n / quantile / max_weight against the universe
    except ConfigError as e:
        out.append(str(e))
    return out


@dataclass(frozen=True)
class AlphaPlan:
    """An alpha job's own plan: its validated parameters and the evaluation request."""

    params: AlphaStrategyParams
    horizons: tuple[int, ...]
    n_quantiles: int
    lookback: int
    label: str  # ``momentum_12_1`` (``name lookback=126`` when its parameters are not the defaults)


def _label(params: AlphaStrategyParams) -> str:
    from backlake.alpha.registry import get_alpha

    defaults = get_alpha(params.alpha).params_model().model_dump(mode="json")
    changed = {k: v for k, v in params.alpha_params.items() if defaults.get(k) != v}
    return " ".join([params.alpha, *(f"{k}={v}" for k, v in changed.items())])


def plan_alphas(
    lake: Lake, configs: Sequence[BacktestConfig], *, horizons: Sequence[Any] = DEFAULT_HORIZONS,
    n_quantiles: Any = DEFAULT_QUANTILES,
) -> list[Job]:
    """Check everything (one ConfigError listing every problem, before any work), pin each
    config's bars and name its run. Several configs are evaluated together: their request names
    the others (their configs' ids), so their jointly adjusted p-values belong to that group."""
    if not configs:
        raise ConfigError("no alpha to evaluate: name at least one (backlake alpha list)")
    hs, q = check_horizons(horizons), _check_quantiles(n_quantiles)
    problems = [(i, p) for i, c in enumerate(configs) for p in _config_problems(c, q)]
    ids = [c.id for c in configs]
    if len(set(ids)) != len(ids):
        problems.append((-1, "the same alpha config is given twice; give each once"))
    _raise(problems, len(configs))
    jobs: list[Job] = []
    for i, cfg in enumerate(configs):
        request: dict[str, Any] = {"horizons": list(hs), "n_quantiles": q}
        if len(configs) > 1:
            request["together"] = sorted(x for x in ids if x != cfg.id)
        span = _dates_problem(lake, cfg)
        if span:
            problems.append((i, span))
            continue
        try:
            job = plan_job(lake, "alpha", cfg, request)  # symbols, dates, timeframe: check_configs
        except ConfigError as e:
            problems.append((i, str(e)))
            continue
        data_problems = _data_problems(cfg, job, hs)
        problems += [(i, p) for p in data_problems]
        if not data_problems:
            params = _params(cfg)
            plan = AlphaPlan(params, hs, q, _lookback(params), _label(params))
            jobs.append(Job(**{**job.__dict__, "plan": plan}))
    _raise(problems, len(configs))
    return jobs


def _raise(problems: list[tuple[int, str]], n: int) -> None:
    if problems:
        lines = [f"alphas[{i}]: {p}" if n > 1 and i >= 0 else p for i, p in problems]
        raise ConfigError("\n".join(dict.fromkeys(lines)))


def _dates_problem(lake: Lake, cfg: BacktestConfig) -> str | None:
    """One line when the dates miss the universe's data altogether (instead of one per symbol)."""
    from backlake.runs.checks import coverage

    cov = coverage(lake, cfg.symbols)
    spans = [cov.spans.get((s, cfg.timeframe)) for s in cfg.symbols]
    if not spans or any(s is None for s in spans):
        return None  # a missing symbol or timeframe: check_configs names it
    lo = min(s[0] for s in spans if s).date()
    hi = max(s[1] for s in spans if s).date()
    if (cfg.start and cfg.start > hi) or (cfg.end and cfg.end < lo):
        return (f"start={cfg.start}, end={cfg.end}: the universe's {cfg.timeframe} bars cover {lo} to {hi}; "
                "move the dates inside that range")
    return None


def check_dates(lake: Lake, cfg: BacktestConfig) -> None:
    """ConfigError (one line) when the config's dates miss its universe's bars altogether."""
    span = _dates_problem(lake, cfg)
    if span:
        raise ConfigError(span)


def _lookback(params: AlphaStrategyParams) -> int:
    from backlake.alpha.registry import get_alpha, validate_alpha_params

    return int(get_alpha(params.alpha).lookback(validate_alpha_params(params.alpha, params.alpha_params)))


def _data_problems(cfg: BacktestConfig, job: Job, horizons: tuple[int, ...]) -> list[str]:
    """Volume for a volume alpha, and enough bars for the alpha's look-back and a horizon."""
    from backlake.alpha.panel import panel_from_bars
    from backlake.alpha.registry import check_alpha_data
    from backlake.runs.data import used_rows

    p = _params(cfg)
    rows = used_rows(cfg, job.bars).filter(pl.col("symbol").is_in(cfg.symbols))
    out: list[str] = []
    try:
        check_alpha_data(p.alpha, panel_from_bars(rows, cfg.timeframe, symbols=cfg.symbols))
    except ConfigError as e:
        out.append(str(e))
    lookback = _lookback(p)
    n_dates = rows["ts"].n_unique()
    need = lookback + min(horizons) + 2
    if n_dates < need:
        out.append(f"start={cfg.start}, end={cfg.end}: {n_dates} trading day(s) of data, but alpha {p.alpha!r} "
                   f"needs {lookback} day(s) of history before its first score plus the {min(horizons)}-day "
                   f"horizon ({need} in all); widen the dates")
    return out


# -- evaluation --------------------------------------------------------------------------------
@dataclass(frozen=True)
class AlphaInputs:
    """What the evaluation reads: the panel (NaN where a symbol has no bar), the alpha's scores
    on it and the target weights (the same the engine trades)."""

    panel: Panel
    scores: np.ndarray
    weights: np.ndarray


def alpha_inputs(job: Job) -> AlphaInputs:
    """The job's panel, scores and weights, computed exactly as the ``alpha`` strategy does in
    the engine (on its aligned bars); then every value of a bar a symbol lacks is NaN."""
    from backlake.alpha.panel import Panel

    prep = prepare(job.config, job.bars, validated=True)
    traded = panel_of(prep.data)
    params: AlphaStrategyParams = job.plan.params
    scores = alpha_scores(traded, params)
    weights = alpha_weights(traded, scores, params)
    real = np.broadcast_to(np.asarray(prep.tradable, dtype=bool), scores.shape)
    if real.all():
        return AlphaInputs(traded, scores, weights)

    def masked(a: np.ndarray) -> np.ndarray:
        return np.where(real, a, np.nan)

    panel = Panel(dates=traded.dates, symbols=traded.symbols, close=masked(traded.close), open=masked(traded.open),
                  high=masked(traded.high), low=masked(traded.low), volume=masked(traded.volume))
    return AlphaInputs(panel, masked(scores), weights)


def evaluate_horizon(job: Job, inputs: AlphaInputs, horizon: int) -> AlphaEvaluation:
    """IC, Rank IC, quantile returns and turnover of the job's alpha at one forward horizon."""
    from backlake.alpha import ic

    return ic.evaluate(inputs.panel, inputs.scores, horizons=(horizon,), n_quantiles=job.plan.n_quantiles,
                       weights=inputs.weights)


def adjusted_pvalues(summaries: Mapping[str, Mapping[int, Mapping[str, float | None]]]
                     ) -> dict[str, dict[int, dict[str, float | None]]]:
    """run id -> horizon -> {p_value[, p_bonferroni, p_bh]} from each run's IC summaries (the
    t-stat of the mean IC over n_dates dates), adjusted across the runs per horizon when there
    are several (Bonferroni and Benjamini-Hochberg)."""
    from backlake.alpha import ic

    out: dict[str, dict[int, dict[str, float | None]]] = {r: {} for r in summaries}
    horizons = sorted({h for s in summaries.values() for h in s})
    for h in horizons:
        t = {r: float(s[h]["t_stat"]) for r, s in summaries.items()  # type: ignore[arg-type]
             if h in s and _finite(s[h].get("t_stat")) and _finite(s[h].get("n_dates"))}
        if not t:
            continue
        n = {r: int(summaries[r][h]["n_dates"] or 0) for r in t}
        frame = ic.adjust_pvalues(t, n)
        for row in frame.iter_rows(named=True):
            vals: dict[str, float | None] = {"p_value": row["p_value"]}
            if len(summaries) > 1:
                vals.update(p_bonferroni=row["p_bonferroni"], p_bh=row["p_bh"])
            out[str(row["alpha"])][h] = vals
    return out


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def evaluation_segments(evals: Mapping[int, AlphaEvaluation], pvalues: Mapping[int, Mapping[str, float | None]]
                        ) -> dict[str, dict[str, float | None]]:
    """The ``metrics`` segments of an evaluation: ``ic:h{h}``, ``quantiles:h{h}``, ``decay``."""
    from backlake.alpha import ic

    segments: dict[str, dict[str, float | None]] = {}
    decay: dict[str, float | None] = {}
    for h in sorted(evals):
        ev = evals[h]
        summary = dict(ev.summary.get(h, {}))
        segments[f"ic:h{h}"] = {**{k: _num(v) for k, v in summary.items()}, **dict(pvalues.get(h, {}))}
        qs = ev.quantiles.filter(pl.col("horizon") == h).sort("quantile")
        segments[f"quantiles:h{h}"] = {f"q{int(q)}": _num(r) for q, r in zip(qs["quantile"], qs["mean_return"])}
        decay[f"mean_ic_h{h}"] = _num(summary.get("mean_ic"))
        decay[f"mean_rank_ic_h{h}"] = _num(summary.get("mean_rank_ic"))
    hs = sorted(evals)  # the half-life is fitted on the mean Rank IC by horizon (ic.decay_half_life)
    segments["decay"] = {"half_life": _num(ic.decay_half_life(hs, [decay[f"mean_rank_ic_h{h}"] for h in hs])),
                         **decay}
    return segments


def _num(v: object) -> float | None:
    return float(v) if _finite(v) else None  # type: ignore[arg-type]


def alpha_record(
    job: Job, result: BacktestResult, inputs: AlphaInputs, evals: Mapping[int, AlphaEvaluation],
    started_at: dt.datetime, generation: int, pvalues: Mapping[int, Mapping[str, float | None]] | None = None,
) -> RunRecord:
    """The alpha run: the backtest's equity, trades and segments, the weights, the IC rows and
    the evaluation's segments (``pvalues``: horizon -> p-values, :func:`adjusted_pvalues`)."""
    from backlake.alpha.weights import weights_frame

    ic_rows = pl.concat([ev.ic_frame.filter(pl.col("horizon") == h) for h, ev in sorted(evals.items())],
                        how="vertical_relaxed")
    segments: dict[str, dict[str, Any]] = {**(result.segments or {"full": result.metrics}),
                                           **evaluation_segments(evals, pvalues or {})}
    weights = weights_frame(job.run_id, inputs.weights, inputs.panel.dates, inputs.panel.symbols)
    return job.record(started_at, generation, params=job.config.params, segments=segments, headline=result.metrics,
                      equity=result.equity, trades=result.trades, ic=ic_rows, weights=weights)


def group_records(group: Sequence[Job], commit_ids: Sequence[str], generations: Mapping[str, int],
                  started_at: dt.datetime) -> list[RunRecord]:
    """Evaluate every job of ``group`` (the alphas evaluated together: their p-values are
    adjusted across all of them) and backtest those of ``commit_ids``: their records, in this
    process (the ``alpha`` flow fans the same steps out as tasks)."""
    from backlake.engine import run_backtest

    evals: dict[str, dict[int, AlphaEvaluation]] = {}
    inputs: dict[str, AlphaInputs] = {}
    for j in group:
        inputs[j.run_id] = alpha_inputs(j)
        evals[j.run_id] = {h: evaluate_horizon(j, inputs[j.run_id], h) for h in j.plan.horizons}
    pvalues = adjusted_pvalues({r: {h: ev.summary.get(h, {}) for h, ev in e.items()} for r, e in evals.items()})
    return [alpha_record(j, run_backtest(j.config, j.bars, validated=True), inputs[j.run_id], evals[j.run_id],
                         started_at, generations[j.run_id], pvalues.get(j.run_id))
            for j in group if j.run_id in commit_ids]


def run_alphas(lake: Lake, jobs: Sequence[Job], *, attempt: Attempt | None = None,
               created_by: str | None = None) -> dict[str, str]:
    """Compute and commit planned alpha jobs in this process (no Prefect): claim the runs not
    done, evaluate the group, commit; a failure ends the claimed runs ``failed`` and raises.
    Returns run id -> ``completed`` (committed now), ``existing`` or ``running elsewhere``."""
    from backlake.runs.commit import commit
    from backlake.runs.events import End, claim, finish

    attempt = attempt or Attempt.new()
    todo = [j for j in jobs if not j.done]
    claimed = claim(lake, [j.run_id for j in todo], attempt)
    mine = [j.run_id for j in todo if j.run_id in claimed.claimed]
    if mine:
        started = dt.datetime.now(dt.UTC)
        try:
            records = group_records(jobs if len(jobs) > 1 else [j for j in jobs if j.run_id in mine], mine,
                                    claimed.claimed, started)
            commit(lake, records, attempt, created_by=created_by)
        except Exception as e:
            finish(lake, [End(r, claimed.claimed[r], "failed", f"{type(e).__name__}: {e}") for r in mine], attempt)
            raise
    return {j.run_id: ("existing" if j.done else "completed" if j.run_id in mine else "running elsewhere")
            for j in jobs}


def score_correlation(jobs: Sequence[Job]) -> pl.DataFrame:
    """(alpha_a, alpha_b, corr): the mean cross-sectional rank correlation of the planned alphas'
    scores (:func:`backlake.alpha.ic.signal_correlation`: per date over the names both score,
    averaged over the dates both score), each alpha labelled as its run (``job.plan.label``). The
    scores are those the runs evaluate (:func:`alpha_inputs`), on the dates and symbols the
    jobs' panels have in common."""
    from backlake.alpha import ic

    panels: list[tuple[str, Panel, np.ndarray]] = []
    for j in jobs:
        inputs = alpha_inputs(j)
        label = j.plan.label if all(k.plan.label != j.plan.label for k in jobs if k is not j) else j.run_id
        panels.append((label, inputs.panel, inputs.scores))
    if not panels:
        return pl.DataFrame(schema={"alpha_a": pl.String, "alpha_b": pl.String, "corr": pl.Float64})
    dates = panels[0][1].dates
    symbols = list(panels[0][1].symbols)
    for _, p, _ in panels[1:]:
        dates = np.intersect1d(dates, p.dates)
        symbols = [s for s in symbols if s in set(p.symbols)]
    aligned: dict[str, np.ndarray] = {}
    for label, p, sc in panels:
        rows = np.searchsorted(p.dates, dates)
        cols = np.array([p.symbols.index(s) for s in symbols], dtype=np.int64)
        aligned[label] = sc[np.ix_(rows, cols)]
    return ic.signal_correlation(aligned)


def stored_summary(lake: Lake, run_ids: Sequence[str]) -> pl.DataFrame:
    """The stored IC summaries of alpha runs: one row per run and horizon (run_id, horizon,
    mean_ic, icir, t_stat, hit_rate, mean_rank_ic, coverage, turnover, spread, p_value...)."""
    if not run_ids or not lake.exists("metrics"):
        return pl.DataFrame(schema={"run_id": pl.String, "horizon": pl.Int64})
    m = lake.read("metrics", where={"run_id": list(run_ids)}).filter(pl.col("segment").str.starts_with("ic:h"))
    if m.is_empty():
        return pl.DataFrame(schema={"run_id": pl.String, "horizon": pl.Int64})
    wide = (m.with_columns(pl.col("segment").str.strip_prefix("ic:h").cast(pl.Int64).alias("horizon"))
            .pivot(on="name", index=["run_id", "horizon"], values="value", aggregate_function="first"))
    order = {r: i for i, r in enumerate(run_ids)}
    return wide.with_columns(pl.col("run_id").replace_strict(order, return_dtype=pl.Int64).alias("_o")) \
        .sort("_o", "horizon").drop("_o")


# -- attribution -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Attributed:
    """What :func:`attribute_run` computed and whether it wrote (False: the lake held the same)."""

    run_id: str
    model: str
    window: int
    metrics: dict[str, float | None]
    exposures: pl.DataFrame = field(repr=False)
    written: bool


def _check_attribution(model: str, window: Any) -> None:
    from backlake.alpha.factors import model_factors

    k = len(model_factors(model)) + 1  # ConfigError naming the valid models
    if isinstance(window, bool) or not isinstance(window, int) or window < k + 2:
        raise ConfigError(f"window={window!r}: the rolling window is a whole number of months >= {k + 2} for "
                          f"model {model!r}, e.g. 36")


def _run_returns(lake: Lake, run_id: str) -> pl.DataFrame:
    """The run's daily returns (date, ret) from its equity; ConfigError when it has none."""
    rid = run_id.strip()
    runs = lake.read("runs", columns=["run_id", "status", "kind"], where={"run_id": rid}) \
        if lake.exists("runs") else pl.DataFrame()
    if runs.is_empty():
        raise ConfigError(f"run {rid!r} is not in the lake; list runs with `backlake sql \"SELECT run_id, kind, "
                          "strategy FROM runs WHERE status = 'completed'\"`")
    if "completed" not in runs["status"].to_list():
        raise ConfigError(f"run {rid} is {runs['status'][0]}, not completed: attribute a completed run")
    eq = lake.read("equity", columns=["ts", "equity"], where={"run_id": rid}).sort("ts") \
        if lake.exists("equity") else pl.DataFrame()
    if eq.height < 3:
        raise ConfigError(f"run {rid} ({runs['kind'][0]}) has no equity curve to attribute; pick a backtest, "
                          "alpha, optimize, walk-forward or Monte Carlo run")
    # one return per calendar day: an intraday (e.g. 1h) run's equity at each day's last bar
    daily = eq.group_by(pl.col("ts").dt.date().alias("date"), maintain_order=True).agg(pl.col("equity").last())
    return daily.select("date", (pl.col("equity") / pl.col("equity").shift(1) - 1).alias("ret")).drop_nulls()


def attribute_run(lake: Lake, run_id: str, model: str = "ff3", window: int = 36) -> Attributed:
    """Fama-French attribution of a run's returns (``model`` ff3 or carhart4; ``window`` months
    for the rolling exposures), stored as metrics segment ``attribution:<model>`` (with the
    ``window``) and ``factor_exposures`` rows. The factors are ingested on first use. A re-run
    with the same result writes nothing; a different one replaces the run's rows of that model."""
    from backlake.alpha import attribution, factors

    _check_attribution(model, window)
    returns = _run_returns(lake, run_id)
    rid = run_id.strip()
    try:
        wide = factors.read_factors(lake, model)
    except ConfigError:  # first use: the shipped factors are not in the lake yet
        factors.ingest_factors(lake)
        wide = factors.read_factors(lake, model)
    try:
        attr = attribution.attribute(returns, wide, model=model)
        rolling = attribution.rolling_exposures(returns, wide, model, window=window)
    except ConfigError as e:
        raise ConfigError(f"run {rid}: {e}") from None
    if window > attr.n_obs:
        raise ConfigError(f"window={window}: run {rid} has {attr.n_obs} month(s) in common with the {model} factors "
                          f"({attr.start} to {attr.end}); choose a window of at most {attr.n_obs} months, e.g. 36")
    metrics = {**{k: _num(v) for k, v in attribution.metrics(attr).items()}, "window": float(window)}
    exposures = rolling.select(
        pl.lit(rid).alias("run_id"), pl.lit(model).alias("model"), pl.col("date").cast(pl.Date), "factor",
        pl.col("beta").cast(pl.Float64)).sort("date", "factor")
    wrote = _write_attribution(lake, rid, model, metrics, exposures)
    return Attributed(rid, model, window, metrics, exposures, wrote)


def _write_attribution(lake: Lake, run_id: str, model: str, metrics: dict[str, float | None],
                       exposures: pl.DataFrame) -> bool:
    """Write the segment (merged on run, segment, name) and the exposures (the run's rows of
    ``model`` replaced) unless the lake already holds exactly these; returns whether it wrote."""
    from deltalake import DeltaTable

    segment = f"attribution:{model}"
    rows = pl.DataFrame({"run_id": run_id, "segment": segment, "name": list(metrics),
                         "value": list(metrics.values())},
                        schema={"run_id": pl.String, "segment": pl.String, "name": pl.String, "value": pl.Float64})
    wrote = False

    def build(table: DeltaTable) -> pl.DataFrame | None:
        have = pl.scan_delta(table, storage_options=lake.storage_options or None).filter(
            (pl.col("run_id") == run_id) & (pl.col("segment") == segment)).select("name", "value").collect()
        return None if _same_rows(have, rows.select("name", "value"), ["name"]) else rows

    done = lake.merge_checked("metrics", build, "t.run_id = s.run_id AND t.segment = s.segment AND t.name = s.name",
                              f"attribution {model} of {run_id}")
    wrote = bool(done)
    quoted = run_id.replace("'", "''")
    have = lake.read("factor_exposures", where={"run_id": run_id, "model": model}) \
        if lake.exists("factor_exposures") else pl.DataFrame()
    cols = ["date", "factor", "beta"]
    if not (have.height and _same_rows(have.select(cols), exposures.select(cols), ["date", "factor"])):
        if have.height:
            lake.delete("factor_exposures", f"run_id = '{quoted}' AND model = '{model}'",
                        f"replace {model} exposures of {run_id}")
        if exposures.height:
            lake.append("factor_exposures", exposures)
        wrote = wrote or bool(have.height or exposures.height)
    return wrote


def _same_rows(a: pl.DataFrame, b: pl.DataFrame, key: list[str]) -> bool:
    """Whether two frames hold the same rows (by ``key``; floats equal within 1e-12, NaN = NaN)."""
    if a.height != b.height:
        return False
    if a.is_empty():
        return True
    sa, sb = a.sort(key), b.select(a.columns).sort(key)
    for c in a.columns:
        x, y = sa[c], sb[c]
        if x.dtype.is_float() or y.dtype.is_float():
            xa = x.cast(pl.Float64).fill_null(np.nan).to_numpy()
            ya = y.cast(pl.Float64).fill_null(np.nan).to_numpy()
            if not np.allclose(xa, ya, rtol=0, atol=1e-12, equal_nan=True):
                return False
        elif x.cast(pl.String).to_list() != y.cast(pl.String).to_list():
            return False
    return True
