"""Prefect flow ``alpha``: refresh alphas' signals into the lake, evaluate them (IC per horizon)
and backtest their weights, each alpha one run of kind ``alpha`` under the run protocol
(``backlake.runs.alpha``: every check before any task, pinned bars, idempotent commit).

Fan-out: one refresh task per alpha, one scores task per alpha, one task per alpha x horizon
(IC, quantiles, turnover) and one backtest task per alpha; the runs are committed together
once every task is in, the alphas' p-values adjusted jointly."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from backlake import progress
from backlake.engine import run_backtest
from backlake.runs import alpha as ra
from backlake.runs.commit import commit
from backlake.runs.events import End, finish
from flows._common import (
    STOP_HOOKS,
    Opaque,
    current_attempt,
    flow_run_namer,
    label_flow_run,
    lake_progress,
    open_lake,
    progress_job,
    publish_runs,
    start_runs,
)


def alpha_specs(alphas: list[Any] | None) -> list[tuple[str, dict[str, Any]]]:
    """The flow's ``alphas`` parameter as (name, params): each a name or ``{"name": ..., "params":
    {...}}``; None: :data:`backlake.runs.alpha.DEFAULT_ALPHAS`."""
    from backlake.errors import ConfigError

    out: list[tuple[str, dict[str, Any]]] = []
    for i, a in enumerate(ra.DEFAULT_ALPHAS if alphas is None else alphas):
        if isinstance(a, str):
            out.append((a, {}))
        elif isinstance(a, dict) and isinstance(a.get("name"), str) and set(a) <= {"name", "params"}:
            out.append((a["name"], dict(a.get("params") or {})))
        else:
            raise ConfigError(f"alphas[{i}]={a!r}: give an alpha name or {{\"name\": ..., \"params\": {{...}}}}")
    return out


def plan(alphas: list[Any] | None, *, universe: Any, horizons: list[int], n_quantiles: int,
         weights: dict[str, Any] | None, start: Any, end: Any, initial_cash: float, costs: dict[str, Any] | None,
         lake_uri: str | None = None) -> list:
    """Every check of the flow's parameters against the lake (ConfigError, before any task)."""
    specs = alpha_specs(alphas)
    configs = [ra.alpha_config(name, params, universe=universe, start=start, end=end, weights=weights,
                               initial_cash=initial_cash, costs=costs) for name, params in specs]
    return ra.plan_alphas(open_lake(lake_uri), configs, horizons=horizons, n_quantiles=n_quantiles)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1, task_run_name="refresh-{name}")
def refresh_task(name: str, params: dict, universe: list[str], full_rebuild: bool, lake_uri: str | None):
    """Bring the alpha's stored signals up to date (idempotent: a retry adds nothing)."""
    from backlake.alpha import store

    return store.refresh_signals(open_lake(lake_uri), name, params, universe, full_rebuild=full_rebuild)


@task(cache_policy=NO_CACHE, task_run_name="scores-{label}")
def scores_task(job: Opaque, label: str) -> Opaque:
    """The alpha's panel, scores and weights on the pinned bars."""
    return Opaque(ra.alpha_inputs(job.value))


@task(cache_policy=NO_CACHE, task_run_name="ic-{label}-h{horizon}")
def ic_task(job: Opaque, inputs: Opaque, horizon: int, label: str) -> Opaque:
    """IC, Rank IC, quantile returns and turnover at one horizon."""
    return Opaque(ra.evaluate_horizon(job.value, inputs.value, horizon))


@task(cache_policy=NO_CACHE, task_run_name="backtest-{label}")
def backtest_task(job: Opaque, label: str) -> Opaque:
    """The alpha's weights through the engine (next-bar fills, the config's costs)."""
    return Opaque(run_backtest(job.value.config, job.value.bars, validated=True))


@flow(name="alpha", flow_run_name=flow_run_namer("alpha"), **STOP_HOOKS)
def alpha_flow(
    alphas: list[Any] | None = None,
    universe: str | list[str] = "sp500_stocks",
    horizons: list[int] | None = None,
    n_quantiles: int = ra.DEFAULT_QUANTILES,
    weights: dict[str, Any] | None = None,
    start: str | None = None,
    end: str | None = None,
    initial_cash: float = 1_000_000.0,
    costs: dict[str, Any] | None = None,
    refresh: bool = True,
    full_rebuild: bool = False,
    lake_uri: str | None = None,
) -> dict:
    """Refresh, evaluate and backtest ``alphas`` (names or {"name", "params"}; default: the
    shipped close-only alphas) on ``universe``: one run of kind ``alpha`` per alpha. Returns the
    runs (run_id, alpha, status) and the signal refreshes."""
    label_flow_run("alpha", ["alpha"])
    log = get_run_logger()
    hs = list(ra.DEFAULT_HORIZONS) if horizons is None else horizons
    lake = open_lake(lake_uri)
    jobs = plan(alphas, universe=universe, horizons=hs, n_quantiles=n_quantiles, weights=weights, start=start,
                end=end, initial_cash=initial_cash, costs=costs, lake_uri=lake_uri)  # ConfigError before any task
    refreshed = []
    if refresh:
        seen: dict[str, Any] = {}
        for j in jobs:  # one refresh per alpha and parameters
            p = j.plan.params
            key = f"{p.alpha}:{sorted(p.alpha_params.items())}"
            if key not in seen:
                seen[key] = refresh_task.submit(p.alpha, dict(p.alpha_params), j.config.symbols, full_rebuild,
                                                lake_uri)
        for fut in seen.values():
            res = fut.result()
            refreshed.append({"alpha": res.alpha, "alpha_id": res.alpha_id, "rows_added": res.rows_added,
                              "first_date": res.first_date, "last_date": res.last_date, "version": res.version})
    todo = [j for j in jobs if not j.done]
    claimed = start_runs(lake, [j.run_id for j in todo])
    mine = [j for j in todo if j.run_id in claimed.claimed]
    log.info("%d alpha run(s): %d new, %d already in the lake, %d being run by another attempt",
             len(jobs), len(mine), len(jobs) - len(todo), len(claimed.busy))
    if mine:
        # the adjusted p-values belong to the whole group: evaluate every alpha of it
        group = jobs if len(jobs) > 1 else mine
        try:
            with contextlib.ExitStack() as stack:
                for j in mine:
                    stack.enter_context(lake_progress(lake, "alpha", j.run_id))
                records = _evaluate(lake, group, {j.run_id for j in mine}, claimed.claimed)
            commit(lake, records, current_attempt())
        except Exception as e:
            finish(lake, [End(j.run_id, claimed.claimed[j.run_id], "failed", f"{type(e).__name__}: {e}")
                          for j in mine], current_attempt())
            raise
    runs = [{"run_id": j.run_id, "alpha": j.plan.label,
             "status": "existing" if j.done else ("running elsewhere" if j.run_id in claimed.busy else "completed")}
            for j in jobs]
    publish_runs(lake, "alpha", [j.run_id for j in jobs], details={
        "alphas": ", ".join(j.plan.label for j in jobs), "horizons": ",".join(map(str, jobs[0].plan.horizons)),
        "quantiles": jobs[0].plan.n_quantiles})
    return {"runs": runs, "refreshed": refreshed}


def _evaluate(lake, group: list, commit_ids: set[str], generations: dict[str, int]) -> list:
    """Fan out the group's scores, IC (per alpha x horizon) and backtests; the records of the
    runs ``commit_ids``, their p-values adjusted across the group."""
    started = dt.datetime.now(dt.UTC)
    total = {j.run_id: 2 + len(j.plan.horizons) for j in group}
    done = dict.fromkeys(total, 0)

    def tick(job) -> None:
        done[job.run_id] += 1
        progress.report(progress_job("alpha", job.run_id), done[job.run_id], total[job.run_id], "tasks")

    for j in group:
        progress.report(progress_job("alpha", j.run_id), 0, total[j.run_id], "tasks")
    shared = {j.run_id: Opaque(j) for j in group}
    backtests = {j.run_id: backtest_task.submit(shared[j.run_id], j.plan.label) for j in group
                 if j.run_id in commit_ids}
    inputs = {j.run_id: scores_task.submit(shared[j.run_id], j.plan.label) for j in group}
    evals: dict[str, dict[int, Any]] = {}
    for j in group:
        ins = inputs[j.run_id].result()
        tick(j)
        futures = {h: ic_task.submit(shared[j.run_id], ins, h, j.plan.label) for h in j.plan.horizons}
        evals[j.run_id] = {}
        for h, f in futures.items():
            evals[j.run_id][h] = f.result().value
            tick(j)
        inputs[j.run_id] = ins
    pvalues = ra.adjusted_pvalues({r: {h: ev.summary.get(h, {}) for h, ev in e.items()} for r, e in evals.items()})
    records = []
    for j in group:
        if j.run_id not in commit_ids:
            continue
        result = backtests[j.run_id].result().value
        tick(j)
        records.append(ra.alpha_record(j, result, inputs[j.run_id].value, evals[j.run_id], started,
                                       generations[j.run_id], pvalues.get(j.run_id)))
    return records


__all__ = ["alpha_flow", "alpha_specs", "plan"]
