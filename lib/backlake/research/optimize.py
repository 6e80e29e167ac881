"""``optimize(cfg, space, bars)``: an Optuna search over strategy parameters, scored in-sample
and out-of-sample, with the overfitting diagnostics of :mod:`backlake.research.overfitting`.

The bars are split once at a timestamp (``oos_fraction`` of the bars, or ``oos_start``);
every trial runs one backtest over all of them and reads its objective from the in-sample
(``ts < split``) and out-of-sample segments (see ``run_backtest(oos_start=...)``). The
sampler only ever sees the in-sample score.

Fan-out: :func:`plan_study` checks everything before any trial; :func:`run_study` is the
Optuna ask/tell loop, asking a batch of trials at a time and handing the batch to an
evaluator (the ``optimize`` flow submits one task per trial); :func:`evaluate_trial` is one
trial (picklable inputs, a small record out) and :func:`summarize_trials` the aggregate.
:func:`optimize` does all of it on this process.

Example::

    res = optimize(cfg, {"fast": {"low": 5, "high": 50}, "slow": {"low": 20, "high": 200, "step": 10}},
                   bars, objective="sharpe", n_trials=50, seed=0)
    res.best_params, res.pbo, res.deflated_sharpe
    res.trials_frame()   # -> the lake's ``trials`` rows (add parent_id)
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl
from pydantic import ValidationError

from backlake._suggest import unknown_name_message
from backlake.config import BacktestConfig
from backlake.engine.core import prepare, run_backtest
from backlake.errors import ConfigError
from backlake.research.overfitting import (
    PboResult,
    deflated_sharpe_from_returns,
    per_period_sharpe,
    probability_of_backtest_overfitting,
)
from backlake.research.sweep import expand_grid
from backlake.strategies import get_strategy

if TYPE_CHECKING:  # optuna itself is imported only when a study runs
    from optuna.samplers import BaseSampler
    from optuna.study import Study
    from optuna.trial import FrozenTrial, Trial, TrialState as OptunaTrialState

__all__ = [
    "OBJECTIVES", "SAMPLERS", "OVERFIT_FLAG", "TrialRecord", "StudyResult", "optimize", "evaluate_trial",
    "summarize_trials", "split_timestamp", "check_objective", "StudyPlan", "plan_study", "run_study",
    "sequential_evaluator",
]

#: Objectives (``compute_metrics`` names, all higher-is-better) a search can maximise.
OBJECTIVES: tuple[str, ...] = ("sharpe", "calmar", "total_return", "sortino")
SAMPLERS: tuple[str, ...] = ("tpe", "random", "grid")
#: A trial is flagged when (IS - OOS) / |IS| exceeds this.
OVERFIT_FLAG = 0.3
_RANGE_KEYS = ("low", "high", "step", "log")

TrialState = Literal["complete", "failed", "pruned"]


@dataclass(frozen=True)
class TrialRecord:
    """One evaluated trial. ``params``: the searched parameters only. Scores are the objective
    on the in-sample / out-of-sample segments (None when undefined). ``overfit_score``:
    (IS - OOS) / |IS| (None when IS is 0 or None, or OOS is None); ``flagged``: above
    :data:`OVERFIT_FLAG`. ``is_returns``: per-bar returns of the in-sample equity (n_is_bars - 1
    values; kept for PBO). ``state``: ``complete``, ``failed`` (IS score None) or ``pruned``
    (the strategy rejected the params; ``reason`` says why)."""

    number: int
    params: dict[str, Any]
    state: TrialState
    is_score: float | None = None
    oos_score: float | None = None
    overfit_score: float | None = None
    flagged: bool = False
    is_returns: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    reason: str | None = None


@dataclass(frozen=True)
class StudyResult:
    """The outcome of :func:`optimize`.

    ``trials``: the complete trials, in trial order; ``best``: the one with the highest IS
    score (lowest number on ties), None if no trial completed; ``n_trials``: trials run
    (pruned and failed included); ``pbo``: CSCV probability of backtest overfitting over the
    complete trials' IS returns (None below 2 complete trials), details in ``pbo_detail``;
    ``deflated_sharpe``: DSR of the best trial's IS returns given every complete trial's
    per-period IS Sharpe (None when undefined); ``split``: the first out-of-sample bar (UTC).
    """

    objective: str
    sampler: str
    split: dt.datetime
    trials: list[TrialRecord]
    best: TrialRecord | None
    n_trials: int
    n_pruned: int
    n_failed: int
    pbo: float | None
    pbo_detail: PboResult | None
    deflated_sharpe: float | None

    @property
    def best_params(self) -> dict[str, Any] | None:
        return None if self.best is None else dict(self.best.params)

    def trials_frame(self) -> pl.DataFrame:
        """The lake ``trials`` rows without ``parent_id``: trial, params (JSON), objective (the
        IS score), is_score, oos_score, overfit_score, flagged."""
        t = self.trials
        return pl.DataFrame({
            "trial": [r.number for r in t],
            "params": [json.dumps(r.params, sort_keys=True) for r in t],
            "objective": [r.is_score for r in t],
            "is_score": [r.is_score for r in t],
            "oos_score": [r.oos_score for r in t],
            "overfit_score": [r.overfit_score for r in t],
            "flagged": [r.flagged for r in t],
        }, schema={"trial": pl.Int64, "params": pl.String, "objective": pl.Float64, "is_score": pl.Float64,
                   "oos_score": pl.Float64, "overfit_score": pl.Float64, "flagged": pl.Boolean})


@dataclass(frozen=True)
class StudyPlan:
    """A validated study, ready to run: the parsed search space, the trial count, the IS/OOS
    split and the sampler settings. Made by :func:`plan_study` (every check happens there,
    before any trial) and run by :func:`run_study`."""

    cfg: BacktestConfig
    dists: dict[str, Any]
    objective: str
    sampler: str
    n_trials: int
    split: dt.datetime
    seed: int
    pbo_blocks: int
    validated: bool = False  # the bars are the lake's (validated by ingest): no row checks


#: Evaluates a batch of ``(trial number, params)`` and returns their records (any order).
BatchEvaluator = Callable[[Sequence[tuple[int, dict[str, Any]]]], Sequence[TrialRecord]]


def plan_study(
    cfg: BacktestConfig,
    space: Mapping[str, Any],
    bars: pl.DataFrame,
    *,
    objective: str = "sharpe",
    n_trials: int | None = None,
    sampler: str = "tpe",
    oos_fraction: float | None = None,
    oos_start: dt.date | dt.datetime | None = None,
    seed: int = 0,
    pbo_blocks: int = 16,
    validated: bool = False,
) -> StudyPlan:
    """Check every argument of :func:`optimize` (``ConfigError`` naming the field, the value and
    the fix) and return the plan; no trial runs here. ``validated``: ``bars`` were read from the
    lake (see ``run_backtest``)."""
    check_objective(objective)
    if sampler not in SAMPLERS:
        raise ConfigError("sampler: " + unknown_name_message("sampler", str(sampler), SAMPLERS))
    dists = _parse_space(cfg, space, grid=sampler == "grid")
    if sampler == "grid":
        expand_grid(cfg, dists)  # raises when no combination passes the strategy's validation
        size = math.prod(len(v) for v in dists.values())
        n_trials = size if n_trials is None else _check_count("n_trials", n_trials, "e.g. 50")
        n_trials = min(n_trials, size)
    else:
        n_trials = 50 if n_trials is None else _check_count("n_trials", n_trials, "e.g. 50")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 2**32 - 1:
        raise ConfigError(f"seed={seed!r} must be a whole number from 0 to 4,294,967,295, e.g. 0")
    split, n_is = _split(cfg, bars, oos_fraction, oos_start, validated)
    if not isinstance(pbo_blocks, int) or pbo_blocks % 2 or pbo_blocks < 2 or n_is - 1 < 2 * pbo_blocks:
        raise ConfigError(
            f"pbo_blocks={pbo_blocks!r} must be even, >= 2 and at most half the in-sample returns "
            f"({n_is - 1} before the split): use e.g. {max(2, min(16, (n_is - 1) // 4 * 2))}"
        )
    return StudyPlan(cfg, dists, objective, sampler, n_trials, split, seed, pbo_blocks, validated)


def run_study(
    plan: StudyPlan,
    evaluate: BatchEvaluator,
    *,
    batch_size: int = 1,
    on_trial: Callable[[TrialRecord, int, int], None] | None = None,
) -> StudyResult:
    """Run ``plan`` as an Optuna ask/tell loop: ask ``batch_size`` trials, hand them to
    ``evaluate`` together (a caller fans them out), tell the scores, repeat.

    While a batch is out, TPE's constant liar treats its trials as running, so the proposals
    of one batch differ from each other; the grid sampler never hands out a running grid
    point twice. The batch size therefore shapes which trials TPE proposes: a study is
    reproducible for a given ``(seed, batch_size)``, and ``batch_size=1`` is the plain
    sequential study. ``on_trial(record, done, total)`` is called as each record is told.
    """
    import optuna  # heavy import, only for searches

    batch_size = _check_count("batch_size", batch_size, "e.g. 4 (trials evaluated at once)")
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed/pruned trials are counted, not logged
    records: list[TrialRecord] = []
    try:
        study = optuna.create_study(direction="maximize", sampler=_sampler(plan.sampler, plan.dists, plan.seed))
        while len(records) < plan.n_trials:
            asked = [study.ask() for _ in range(min(batch_size, plan.n_trials - len(records)))]
            jobs = [(t.number, {name: _suggest(t, name, d) for name, d in plan.dists.items()}) for t in asked]
            by_number = {r.number: r for r in evaluate(jobs)}
            missing = sorted({n for n, _ in jobs} - set(by_number))
            if missing:
                raise RuntimeError(f"the trial evaluator returned no record for trial(s) {missing}")
            for trial in asked:
                rec = by_number[trial.number]
                if rec.state == "pruned":
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                elif rec.state == "failed":
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                else:
                    study.tell(trial, rec.is_score)
                records.append(rec)
                if on_trial is not None:
                    on_trial(rec, len(records), plan.n_trials)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return summarize_trials(records, objective=plan.objective, sampler=plan.sampler, split=plan.split,
                            pbo_blocks=plan.pbo_blocks)


def optimize(
    cfg: BacktestConfig,
    space: Mapping[str, Any],
    bars: pl.DataFrame,
    *,
    objective: str = "sharpe",
    n_trials: int | None = None,
    sampler: str = "tpe",
    oos_fraction: float | None = None,
    oos_start: dt.date | dt.datetime | None = None,
    seed: int = 0,
    pbo_blocks: int = 16,
    batch_size: int = 1,
    validated: bool = False,
) -> StudyResult:
    """Search ``space`` for the parameters that maximise ``objective`` in-sample, on this process.

    ``space``: parameter -> ``{"low": 5, "high": 50, "step": 5}`` (ints when low, high and step
    are ints, else floats; ``"log": true`` for a log scale), ``{"choices": [...]}``, or a plain
    list of values. With ``sampler="grid"`` every entry must be a list or ``choices``.
    ``n_trials``: trials to run (default 50; for ``grid`` the grid size, and never more).
    ``oos_fraction``: the share of the bars held out at the end (default 0.3), or ``oos_start``:
    the first out-of-sample date (give one of the two). ``seed`` seeds the sampler.
    ``pbo_blocks``: CSCV blocks for PBO (even; the IS period needs 2 bars per block).
    ``batch_size``: trials proposed together (see :func:`run_study`; the ``optimize`` flow
    evaluates each batch as parallel tasks; here they run one after another).
    ``validated``: ``bars`` were read from the lake (see ``run_backtest``).
    Every bad argument raises ``ConfigError`` before any trial runs.

    Example::

        optimize(cfg, {"fast": [5, 10, 20], "slow": [50, 100]}, bars, sampler="grid").best_params
    """
    plan = plan_study(cfg, space, bars, objective=objective, n_trials=n_trials, sampler=sampler,
                      oos_fraction=oos_fraction, oos_start=oos_start, seed=seed, pbo_blocks=pbo_blocks,
                      validated=validated)
    return run_study(plan, sequential_evaluator(plan, bars), batch_size=batch_size)


def sequential_evaluator(plan: StudyPlan, bars: pl.DataFrame) -> BatchEvaluator:
    """An evaluator for :func:`run_study` that runs a batch's trials one after another here."""

    def evaluate(jobs: Sequence[tuple[int, dict[str, Any]]]) -> list[TrialRecord]:
        return [evaluate_trial(plan.cfg, params, bars, split=plan.split, objective=plan.objective, number=n,
                               validated=plan.validated)
                for n, params in jobs]

    return evaluate


def evaluate_trial(
    cfg: BacktestConfig,
    params: Mapping[str, Any],
    bars: pl.DataFrame,
    *,
    split: dt.datetime,
    objective: str = "sharpe",
    number: int = 0,
    validated: bool = False,
) -> TrialRecord:
    """One trial: ``cfg`` with ``params`` over ``bars``, scored before and from ``split``.

    Params the strategy rejects give a ``pruned`` record (not an error); an undefined IS score
    a ``failed`` one. Example::

        evaluate_trial(cfg, {"fast": 10, "slow": 50}, bars, split=split_timestamp(cfg, bars)).oos_score
    """
    check_objective(objective)
    model = get_strategy(cfg.strategy).params_model
    params = dict(params)
    try:
        full = model.model_validate({**cfg.params, **params}).model_dump(mode="json")
    except ValidationError as e:
        reason = e.errors()[0]["msg"].removeprefix("Value error, ")
        return TrialRecord(number, params, "pruned", reason=reason)
    res = run_backtest(cfg.model_copy(update={"params": full}), bars, oos_start=split, validated=validated)
    is_score, oos_score = res.segments["is"][objective], res.segments["oos"][objective]
    eq = res.equity
    k = int((eq["ts"] < split).sum())
    is_returns = eq["ret"].to_numpy()[1:k].copy()
    overfit = None
    if is_score and oos_score is not None:
        overfit = (is_score - oos_score) / abs(is_score)
    return TrialRecord(
        number, params, "complete" if is_score is not None else "failed", is_score, oos_score, overfit,
        overfit is not None and overfit > OVERFIT_FLAG, is_returns,
    )


def _is_score(r: TrialRecord) -> float:
    assert r.is_score is not None  # a complete trial has an in-sample score
    return r.is_score


def summarize_trials(
    records: Sequence[TrialRecord], *, objective: str, sampler: str, split: dt.datetime, pbo_blocks: int = 16
) -> StudyResult:
    """Aggregate trial records (from any number of workers) into a :class:`StudyResult`."""
    records = sorted(records, key=lambda r: r.number)
    done = [r for r in records if r.state == "complete"]
    best = max(done, key=_is_score, default=None)  # max() keeps the first on ties
    pbo = dsr = None
    if len(done) >= 2:
        pbo = probability_of_backtest_overfitting(np.column_stack([r.is_returns for r in done]), pbo_blocks)
    if best is not None:
        sharpes = np.array([per_period_sharpe(r.is_returns) or 0.0 for r in done])
        if per_period_sharpe(best.is_returns) is not None:
            try:
                dsr = deflated_sharpe_from_returns(best.is_returns, sharpes)
            except ConfigError:  # moments so extreme the DSR's variance is not positive
                dsr = None
    return StudyResult(
        objective=objective, sampler=sampler, split=split, trials=done, best=best, n_trials=len(records),
        n_pruned=sum(r.state == "pruned" for r in records), n_failed=sum(r.state == "failed" for r in records),
        pbo=None if pbo is None else pbo.pbo, pbo_detail=pbo, deflated_sharpe=dsr,
    )


def split_timestamp(
    cfg: BacktestConfig, bars: pl.DataFrame, *, oos_fraction: float | None = None,
    oos_start: dt.date | dt.datetime | None = None,
) -> dt.datetime:
    """The first out-of-sample bar's timestamp (UTC) of ``cfg`` on ``bars``: the last
    ``round(n_bars * oos_fraction)`` bars are out-of-sample (default fraction 0.3), or those at
    or after ``oos_start`` (a date means its midnight UTC). Both sides need at least 2 bars."""
    return _split(cfg, bars, oos_fraction, oos_start)[0]


def check_objective(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise ConfigError("objective: " + unknown_name_message("objective", str(objective), OBJECTIVES))


# ---------------------------------------------------------------------------------------------


def _split(
    cfg: BacktestConfig, bars: pl.DataFrame, oos_fraction: float | None, oos_start: dt.date | dt.datetime | None,
    validated: bool = False,
) -> tuple[dt.datetime, int]:
    """(first OOS timestamp, number of IS bars)."""
    if oos_fraction is not None and oos_start is not None:
        raise ConfigError(f"give oos_fraction ({oos_fraction}) or oos_start ({oos_start}), not both")
    ts = prepare(cfg, bars, validated=validated).ts
    n = ts.len()
    if oos_start is None:
        frac = 0.3 if oos_fraction is None else oos_fraction
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 < frac < 1:
            raise ConfigError(f"oos_fraction={oos_fraction!r} must be strictly between 0 and 1, e.g. 0.3")
        k = n - round(n * frac)
    else:
        if isinstance(oos_start, dt.datetime):
            cut = oos_start if oos_start.tzinfo else oos_start.replace(tzinfo=dt.UTC)
        elif isinstance(oos_start, dt.date):
            cut = dt.datetime.combine(oos_start, dt.time(), dt.UTC)
        else:
            raise ConfigError(f"oos_start={oos_start!r} must be a date or datetime, e.g. date(2020, 1, 1)")
        k = int((ts < cut).sum())
    if k < 2 or n - k < 2:
        raise ConfigError(
            f"the split leaves {k} in-sample and {n - k} out-of-sample bar(s) of {n} "
            f"({ts[0]:%Y-%m-%d} to {ts[-1]:%Y-%m-%d}): each side needs at least 2; move oos_start/oos_fraction"
        )
    return ts[k], k


def _parse_space(cfg: BacktestConfig, space: Mapping[str, Any], *, grid: bool) -> dict[str, Any]:
    """parameter -> list of values (choices) or a dict of range arguments."""
    model = get_strategy(cfg.strategy).params_model
    if not isinstance(space, Mapping) or not space:
        raise ConfigError('space is empty: give parameter -> {"low": .., "high": ..} or a list, e.g. {"fast": [5, 10]}')
    out: dict[str, Any] = {}
    for name, spec in space.items():
        if name not in model.model_fields:
            hint = unknown_name_message(f"parameter of {cfg.strategy}", str(name), model.model_fields)
            raise ConfigError("space: " + hint)
        if isinstance(spec, Mapping) and "choices" in spec:
            extra = set(spec) - {"choices"}
            if extra:
                raise ConfigError(f"space[{name!r}]: 'choices' cannot be combined with {sorted(extra)}")
            spec = spec["choices"]
        if isinstance(spec, (list, tuple, range)):
            values = list(spec)
            if not values or any(v is not None and not isinstance(v, (bool, int, float, str)) for v in values):
                raise ConfigError(f"space[{name!r}]={spec!r}: list at least one value (numbers, strings, booleans)")
            out[name] = values
        elif isinstance(spec, Mapping):
            if grid:
                raise ConfigError(
                    f"space[{name!r}]={dict(spec)!r}: sampler='grid' needs a list of values, "
                    f"e.g. {{{name!r}: [5, 10, 20]}} (ranges work with 'tpe' or 'random')"
                )
            out[name] = _parse_range(name, spec)
        else:
            raise ConfigError(
                f"space[{name!r}]={spec!r}: give {{'low': .., 'high': ..}}, {{'choices': [..]}} or a list"
            )
    return out


def _parse_range(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    for key in spec:
        if key not in _RANGE_KEYS:
            raise ConfigError(f"space[{name!r}]: " + unknown_name_message("key", str(key), (*_RANGE_KEYS, "choices")))
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"space[{name!r}]={dict(spec)!r} needs both 'low' and 'high', e.g. {{'low': 5, 'high': 50}}")
    low, high, step, log = spec["low"], spec["high"], spec.get("step"), bool(spec.get("log", False))
    nums = [v for v in (low, high, step) if v is not None]
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in nums):
        raise ConfigError(f"space[{name!r}]={dict(spec)!r}: low, high and step must be finite numbers")
    is_int = all(isinstance(v, int) for v in nums)
    if low > high:
        raise ConfigError(f"space[{name!r}]: low={low} is above high={high}: swap them")
    if step is not None and step <= 0:
        raise ConfigError(f"space[{name!r}]: step={step} must be > 0")
    if log and low <= 0:
        raise ConfigError(f"space[{name!r}]: a log scale needs low > 0 (got low={low})")
    if log and step is not None and not (is_int and step == 1):
        raise ConfigError(f"space[{name!r}]: 'log' cannot be combined with step={step}: drop one")
    if is_int and step is not None and (high - low) % step:
        raise ConfigError(
            f"space[{name!r}]: high - low = {high - low} is not a multiple of step={step}: "
            f"set high to {low + (high - low) // step * step}"
        )
    return {"int": is_int, "low": low, "high": high, "step": step, "log": log}


def _sampler(name: str, dists: dict[str, Any], seed: int) -> BaseSampler:
    import optuna  # already loaded by run_study, the one caller

    if name == "grid":

        class _Grid(optuna.samplers.GridSampler):
            def after_trial(
                self, study: Study, trial: FrozenTrial, state: OptunaTrialState, values: Sequence[float] | None
            ) -> None:
                # Optuna's grid sampler stops an optimize() loop once the grid is exhausted; the
                # ask/tell loop here never asks for more trials than the grid holds.
                pass

        return _Grid(dists, seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)  # batches: running trials count as bad


def _suggest(trial: Trial, name: str, dist: Any) -> Any:
    if isinstance(dist, list):
        return trial.suggest_categorical(name, dist)
    if dist["int"]:
        return trial.suggest_int(name, dist["low"], dist["high"], step=dist["step"] or 1, log=dist["log"])
    return trial.suggest_float(name, float(dist["low"]), float(dist["high"]), step=dist["step"], log=dist["log"])


#: Trials (and parallel workers) at most.
MAX_COUNT = 100_000


def _check_count(name: str, value: object, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r} must be a whole number >= 1, {example}")
    if value > MAX_COUNT:
        raise ConfigError(f"{name}={value!r} is more than {MAX_COUNT:,}: use 1 to {MAX_COUNT:,}, {example}")
    return value
