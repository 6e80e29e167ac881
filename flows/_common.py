"""Small helpers shared by the flows (no business logic here)."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import PurePath
from typing import Any

from backlake.errors import ConfigError
from backlake.lake import Lake
from backlake.runs.backtest import cached_bars
from backlake.runs.events import Attempt, Claimed, End, claim, finish, holders, open_generations
from backlake.settings import get_settings

RUNNERS = ("thread", "dask")


def open_lake(lake_uri: str | None = None) -> Lake:
    """The lake from settings, or at ``lake_uri`` when a flow parameter gives one."""
    return Lake(get_settings(lake_uri=lake_uri) if lake_uri else get_settings())


def task_runner(runner: str = "thread", address: str | None = None, n_workers: int = 2):
    """The task runner for ``--runner``: threads on this machine (default), or Dask: the
    scheduler at ``address``, or a local cluster of ``n_workers`` processes."""
    if runner == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner()
    if runner == "dask":
        from prefect_dask import DaskTaskRunner

        if address:
            return DaskTaskRunner(address=address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": n_workers, "threads_per_worker": 1, "processes": True,
                                              "dashboard_address": None})
    raise ConfigError(f"runner={runner!r}: use one of {', '.join(RUNNERS)}")


class PinnedBars:
    """The bars a task needs, as a reference that travels light: the frame itself for tasks on
    this process (threads), and only (lake, config, ``bars`` version) when pickled to a Dask
    worker, which then reads the bars from the lake once per process and keeps them for the
    next task (a frame of a million rows shipped with every task would dominate a study).
    Like :class:`Opaque`, Prefect does not walk it; tasks read ``.value``."""

    __slots__ = ("_frame", "lake_uri", "cfg", "version")

    def __init__(self, frame, lake_uri: str | None, cfg, version: int) -> None:
        self._frame, self.lake_uri, self.cfg, self.version = frame, lake_uri, cfg, version

    @property
    def value(self):
        if self._frame is None:  # on a worker: the process-wide copy of the pinned bars
            self._frame = cached_bars(open_lake(self.lake_uri), self.cfg, self.version)
        return self._frame

    def __getstate__(self):
        return (self.lake_uri, self.cfg, self.version)

    def __setstate__(self, state) -> None:
        self._frame = None
        self.lake_uri, self.cfg, self.version = state


class Opaque:
    """Hands a large object (a plan with thousands of combinations, bars, result frames) to a
    task without Prefect walking it for futures. Unlike ``prefect...quote`` it survives
    pickling to Dask workers. Tasks read ``.value``."""

    __slots__ = ("value",)

    def __init__(self, value) -> None:
        self.value = value

    def __getstate__(self):
        return self.value

    def __setstate__(self, value) -> None:
        self.value = value


def flow_run_tag(flow_run_id=None, root_flow_run_id=None) -> str:
    """The message of the ``running`` events a flow records, tying its lake runs to its Prefect
    flow run: ``"prefect flow run <id>"``, plus ``" (in <root id>)"`` for a subflow (the demo's
    sweep, say), so the hook of the flow run that was cancelled, the root, finds them too.
    Without arguments: the flow run in progress; ``""`` outside a flow run."""
    if flow_run_id is None:
        from prefect.runtime import flow_run

        flow_run_id = flow_run.id
        if not flow_run_id:
            return ""
        root_flow_run_id = flow_run.root_flow_run_id
    tag = f"prefect flow run {flow_run_id}"
    if root_flow_run_id and str(root_flow_run_id) != str(flow_run_id):
        tag += f" (in {root_flow_run_id})"
    return tag


def current_attempt() -> Attempt:
    """This flow run as an attempt: its id, and its tag (:func:`flow_run_tag`) on the events."""
    from prefect.runtime import flow_run

    return Attempt.new(flow_run.id or None, flow_run_tag())


def prefect_alive(attempt_id: str) -> bool | None:
    """Whether the Prefect flow run ``attempt_id`` is still going (None: not a flow run this
    Prefect server knows, so the caller judges by host, pid and age)."""
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            state = client.read_flow_run(uuid.UUID(attempt_id)).state
    except Exception:
        return None
    return None if state is None else not state.is_final()


def progress_job(kind: str, run_id: str) -> str:
    """The name a flow reports a run's progress under (``backlake.progress``): ``sweep
    3f2a1b0c9d8e``, ``walk-forward 3f2a1b0c9d8e``..."""
    return f"{RUN_LABELS.get(kind, kind)} {run_id[:12]}"


@contextlib.contextmanager
def lake_progress(lake: Lake, kind: str, run_id: str):
    """While the block runs, write the run's progress reports (:func:`progress_job`) to the
    lake's ``run_progress`` table for the runs page, throttled; a failed write is logged, never
    raised (``backlake.runs.progress``)."""
    from backlake.runs.progress import recording

    with recording(lake, run_id, current_attempt().id, job=progress_job(kind, run_id)) as writer:
        yield writer


def start_runs(lake: Lake, run_ids) -> Claimed:
    """Claim ``run_ids`` for this flow run: ``pending`` and ``running`` in one commit, tagged
    with the flow run; runs another live attempt holds are left to it (``.busy``)."""
    started = claim(lake, run_ids, current_attempt(), is_alive=prefect_alive)
    if started.busy:
        logging.getLogger("backlake.flows").warning(
            "%d run(s) are being run by another attempt and are left to it: %s", len(started.busy),
            ", ".join(f"{r} ({a})" for r, a in started.busy.items()))
    return started


def mark_stopped(status: str):
    """A Prefect state hook (``on_cancellation``, ``on_crashed``, ``on_failure``) ending with
    ``status`` every lake run the flow run (or a subflow of it) started and did not end.

    The runs are found by their ``running`` events' message (:func:`flow_run_tag`), not by
    recomputing run ids. Only a run whose open claim is this flow run's is ended (a rerun by
    another attempt since is left alone), once per claim. The hook runs in the flow's process
    or in its runner's (cancellation kills the flow's process first); it never raises, so it
    cannot mask the state Prefect records."""

    def hook(flow, flow_run, state) -> None:
        log = logging.getLogger("backlake.flows")
        try:
            import polars as pl

            lake = open_lake((flow_run.parameters or {}).get("lake_uri"))
            gens = open_generations(lake)
            if not gens:
                return
            held = holders(lake, list(gens))
            mine = held.filter(pl.col("message").str.contains(str(flow_run.id), literal=True)).sort("run_id")
            done = []
            for (attempt_id, host, pid, tag), rows in mine.group_by("attempt", "host", "pid", "message"):
                ends = [End(r, gens[r], status, state.message or status) for r in rows["run_id"].to_list()]
                done += finish(lake, ends, Attempt(str(attempt_id), str(host), int(pid or 0), str(tag)))
            log.info("flow run %s %s: recorded %s for %d run(s)", flow_run.id, state.type.value, status, len(done))
        except Exception:
            log.warning("could not record %s for flow run %s", status, flow_run.id, exc_info=True)

    return hook


#: The hooks of every flow that writes runs: ``@flow(name=..., **STOP_HOOKS)``.
STOP_HOOKS = {
    "on_cancellation": [mark_stopped("cancelled")],
    "on_crashed": [mark_stopped("failed")],
    "on_failure": [mark_stopped("failed")],
}


# -- findable in the Prefect UI: run names, tags, a markdown artifact ---------------------------
#: What the flow runs of each kind are called in names (the CLI's command names).
RUN_LABELS = {"walk_forward": "walk-forward", "monte_carlo": "monte-carlo"}
#: The longest flow run name; longer ones end with "…".
MAX_NAME = 100


def shorten(items: Iterable[Any], keep: int = 2, full: int = 3) -> str:
    """``items`` joined with ", ": all of them up to ``full``, else the first ``keep`` and
    ``+<rest>`` (``"SPY, QQQ +18"``)."""
    xs = [str(x) for x in items]
    if len(xs) <= full:
        return ", ".join(xs)
    return f"{', '.join(xs[:keep])} +{len(xs) - keep}"


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list | tuple):
        return ",".join(_value(x) for x in v)
    return str(v)


def _params_text(strategy: Any, params: Any) -> str:
    """``fast=10 slow=30``: the strategy's parameters with its defaults filled in when they
    validate, else as given."""
    from backlake.strategies import get_strategy

    params = dict(params or {})
    with contextlib.suppress(Exception):
        params = get_strategy(str(strategy)).params_model.model_validate(params).model_dump(mode="json")
    return " ".join(f"{k}={_value(v)}" for k, v in params.items())


def _universe(config: Mapping[str, Any]) -> list[str]:
    """The universe as given: a named universe stays its name (``sp500_stocks``)."""
    u = config["universe"]
    return [u] if isinstance(u, str) else [str(s) for s in u]


def _subject(config: Mapping[str, Any]) -> str:
    """``sma_crossover SPY, QQQ +18``: a config's strategy and (shortened) universe."""
    return f"{config['strategy']} {shorten(_universe(config))}"


def _describe(kind: str, p: Mapping[str, Any]) -> str:
    label = RUN_LABELS.get(kind, kind)
    if kind == "backtest":
        configs = p["configs"]
        if isinstance(configs, list) and len(configs) == 1:
            configs = configs[0]
        if not configs:
            return label
        if isinstance(configs, Mapping):
            return f"{label} {_subject(configs)} {_params_text(configs['strategy'], configs.get('params'))}"
        strategies = list(dict.fromkeys(str(c["strategy"]) for c in configs))
        symbols = list(dict.fromkeys(s for c in configs for s in _universe(c)))
        return f"{label} {len(configs)} configs: {shorten(strategies)} on {shorten(symbols)}"
    if kind == "sweep":
        combos = math.prod(len(v) for v in p["grid"].values())
        objective = p.get("objective") or "sharpe"
        by = f" by {objective}" if objective != "sharpe" else ""
        return f"{label} {_subject(p['config'])} {combos} combo{'s' * (combos != 1)}{by}"
    if kind == "optimize":
        return f"{label} {_subject(p['config'])} {p['n_trials']} trials {p['objective']}"
    if kind == "walk_forward":
        step = f" step={p['step']}" if p.get("step") is not None else ""
        return f"{label} {_subject(p['config'])} {p['mode']} train={p['train']} test={p['test']}{step}"
    if kind == "monte_carlo":
        seeds = p.get("seeds")
        n_seeds = 4 if seeds is None else len(seeds)  # the flow's default: seeds 0..3
        return f"{label} {_subject(p['config'])} {p['method']} {int(p['n_paths']) * n_seeds} paths"
    if kind == "ingest":
        source = p.get("source") or "samples"
        what = ""
        if source == "file":
            what = p.get("symbol") or (PurePath(str(p["path"])).name if p.get("path") else "")
        elif p.get("symbols"):
            what = shorten(p["symbols"])
        return " ".join(x for x in (label, source, what, "(revise)" if p.get("revise") else "") if x)
    if kind == "maintenance":
        return f"{label} (dry run)" if p.get("dry_run") else label
    if kind == "alpha":
        names = [a if isinstance(a, str) else a["name"] for a in p["alphas"]] if p.get("alphas") else ["defaults"]
        universe = p.get("universe") or "sp500_stocks"
        return f"{label} {shorten(names)} on {shorten([universe] if isinstance(universe, str) else universe)}"
    if kind == "regression":
        goldens = p["goldens"]
        if isinstance(goldens, str):
            return f"{label} {PurePath(goldens).name}"
        return f"{label} {len(goldens)} golden run{'s' * (len(goldens) != 1)}"
    return label


def run_name(kind: str, parameters: Mapping[str, Any] | None) -> str:
    """A flow run's readable name from its parameters: ``backtest sma_crossover SPY fast=10
    slow=30``, ``sweep sma_crossover SPY, QQQ +18 24 combos``, ``optimize ... 50 trials sharpe``...
    Never raises: odd or invalid parameters give the plain flow name ``kind`` (the flow body
    then reports them)."""
    try:
        name = " ".join(_describe(kind, parameters or {}).split())
    except Exception:
        return kind
    return name if len(name) <= MAX_NAME else name[: MAX_NAME - 1].rstrip() + "…"


def flow_run_namer(kind: str) -> Callable[[], str]:
    """The ``flow_run_name`` callable of a ``kind`` flow: :func:`run_name` of the flow run's
    parameters (``@flow(name=kind, flow_run_name=flow_run_namer(kind))``)."""

    def name() -> str:
        try:
            from prefect.runtime import flow_run

            parameters = flow_run.parameters
        except Exception:
            return kind
        return run_name(kind, parameters)

    name.__name__ = f"{kind}_run_name"
    return name


def flow_run_tags(kind: str, strategies: str | Iterable[Any] | None = None, user: str | None = None) -> list[str]:
    """``kind:<kind>``, ``strategy:<name>`` per registered strategy among ``strategies`` (an
    unknown name from a bad config tags nothing), ``user:<user>``."""
    from backlake.strategies import list_strategies

    known = set(list_strategies())
    names = [strategies] if isinstance(strategies, str) else list(strategies or [])
    tags = [f"kind:{kind}"]
    tags += [f"strategy:{s}" for s in dict.fromkeys(names) if isinstance(s, str) and s in known]
    if user:
        tags.append(f"user:{user}")
    return tags


def config_strategies(configs: Any) -> list[Any]:
    """The ``strategy`` of each config in a flow's ``config`` / ``configs`` parameter (a dict
    or a list of them; anything else gives none)."""
    items = [configs] if isinstance(configs, Mapping) else configs if isinstance(configs, list) else []
    return [c.get("strategy") for c in items if isinstance(c, Mapping)]


def label_flow_run(kind: str, strategies: str | Iterable[Any] | None = None, user: str | None = None) -> list[str]:
    """Tag the flow run in progress with :func:`flow_run_tags` (``user``, else the user from
    settings: a dashboard job passes the signed-in user who submitted it), keeping
    its tags (a deployment's, ``prefect.tags(...)``): one API call, made at the start of the
    flow, so runs started by the CLI, a deployment or a schedule are all tagged. Returns the
    flow run's tags; ``[]`` outside a flow run. Never raises (a warning instead)."""
    try:
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        if ctx is None or ctx.flow_run is None:
            return []
        run = ctx.flow_run
        if user is None:
            try:
                user = get_settings().user
            except Exception:  # a bad BACKLAKE_* setting is the flow body's error to report
                user = None
        existing = list(run.tags or [])
        tags = list(dict.fromkeys([*existing, *flow_run_tags(kind, strategies, user)]))
        if tags != existing:
            from prefect.client.orchestration import SyncPrefectClient, get_client

            if isinstance(ctx.client, SyncPrefectClient):
                ctx.client.update_flow_run(run.id, tags=tags)
            else:
                with get_client(sync_client=True) as client:
                    client.update_flow_run(run.id, tags=tags)
            run.tags = tags
        return tags
    except Exception:
        logging.getLogger("backlake.flows").warning("could not tag the flow run", exc_info=True)
        return []


#: Headline figures of a ``runs`` row: column -> (label, format).
FIGURES = {
    "total_return": ("total return", "pct"), "cagr": ("CAGR", "pct"), "sharpe": ("Sharpe", "num"),
    "sortino": ("Sortino", "num"), "max_drawdown": ("max drawdown", "pct"), "n_trades": ("trades", "int"),
}


#: The ``runs`` columns the report reads.
REPORT_COLUMNS = ("run_id", "kind", "status", "error", "strategy", "symbols", "params", *FIGURES)


def _fmt(v: Any, how: str = "") -> str:
    """A cell: ``12.34%``, ``1.23``, ``14``, ``fast=10 slow=30``; ``–`` for none."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, str) and v[:1] == "{":
        with contextlib.suppress(ValueError):
            v = json.loads(v)
    if isinstance(v, Mapping):
        return " ".join(f"{k}={_value(x)}" for k, x in v.items()) or "–"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v).splitlines()[0].replace("|", "\\|") if str(v) else "–"
    if how == "pct":
        return f"{v:.2%}"
    if how == "int" or isinstance(v, int):
        return str(int(v))
    return f"{v:.2f}"


def _detail_format(label: str) -> str:
    """A detail whose label names a return, drawdown or probability is a percentage."""
    return "pct" if any(w in label.lower() for w in ("return", "drawdown", "ruin", "cagr", "probability")) else ""


def sql_command(query: str) -> str:
    """The ``backlake sql`` line that runs ``query``."""
    return f'backlake sql "{query}"'


def run_queries(kind: str, run_ids: Sequence[str]) -> list[str]:
    """The queries that show ``run_ids``: their metrics (one run) or rows (several), and a
    research run's trials or windows."""
    if len(run_ids) != 1:
        ids = ", ".join(f"'{r}'" for r in run_ids)
        return [f"SELECT * FROM runs WHERE run_id IN ({ids})"]
    rid = run_ids[0]
    queries = {
        "sweep": [f"SELECT * FROM runs WHERE run_id = '{rid}'",
                  f"SELECT * FROM trials WHERE parent_id = '{rid}' ORDER BY objective DESC LIMIT 10"],
        "optimize": [f"SELECT * FROM metrics WHERE run_id = '{rid}'",
                     f"SELECT * FROM trials WHERE parent_id = '{rid}' ORDER BY is_score DESC LIMIT 10"],
        "walk_forward": [f"SELECT * FROM metrics WHERE run_id = '{rid}'",
                         f"SELECT * FROM windows WHERE parent_id = '{rid}' ORDER BY window"],
        "alpha": [f"SELECT segment, name, value FROM metrics WHERE run_id = '{rid}' AND segment LIKE 'ic:%'",
                  f"SELECT horizon, avg(ic) AS mean_ic, avg(rank_ic) AS mean_rank_ic FROM ic WHERE run_id = '{rid}' "
                  "GROUP BY horizon ORDER BY horizon"],
    }
    return queries.get(kind, [f"SELECT * FROM metrics WHERE run_id = '{rid}'"])


def runs_markdown(title: str, rows: Sequence[Mapping[str, Any]], *, details: Mapping[str, Any] | None = None,
                  queries: Sequence[str] = (), max_rows: int = 50) -> str:
    """The markdown report of a flow run's lake runs (``runs`` rows as dicts): one run as a list
    of its figures (plus ``details``, e.g. a sweep's best parameters), several as a table of
    runs (at most ``max_rows``), then the ``backlake sql`` line of each query. Percentages and
    two decimals; figures a row lacks are left out (one run) or ``–``."""
    rows = [{**r, "symbols": shorten(r["symbols"].split(","))} if isinstance(r.get("symbols"), str) else r
            for r in rows]
    out = [f"# {title}", ""]
    if len(rows) == 1:
        r = rows[0]
        out += [f"Lake run `{r['run_id']}`" + (f" ({r['kind']})" if r.get("kind") else ""), "",
                "| | |", "|---|---|"]
        items: list[tuple[str, str]] = [(k, _fmt(r.get(k))) for k in ("status", "strategy", "symbols", "params")
                                         if r.get(k) is not None]
        items += [(label, _fmt(r[k], how)) for k, (label, how) in FIGURES.items() if r.get(k) is not None]
        if r.get("error"):
            items.append(("error", _fmt(r["error"])))
        items += [(k, _fmt(v, _detail_format(k))) for k, v in (details or {}).items() if v is not None]
        out += [f"| {k} | {v} |" for k, v in items]
    else:
        cols = ["run_id", "status", "strategy", "symbols", "params", *(k for k in FIGURES if any(
            r.get(k) is not None for r in rows)), *(["error"] if any(r.get("error") for r in rows) else [])]
        heads = [FIGURES[c][0] if c in FIGURES else c.replace("_", " ") for c in cols]
        n_failed = sum(r.get("status") == "failed" for r in rows)
        out += [f"{len(rows)} lake runs" + (f", {n_failed} failed" if n_failed else ""), "",
                "| " + " | ".join(heads) + " |", "|" + "---|" * len(cols)]
        for r in rows[:max_rows]:
            cells = [f"`{r['run_id']}`" if c == "run_id" else _fmt(r.get(c), FIGURES[c][1] if c in FIGURES else "")
                     for c in cols]
            out.append("| " + " | ".join(cells) + " |")
        if len(rows) > max_rows:
            out.append(f"\n… and {len(rows) - max_rows} more (the query below lists them all)")
        out += ["", *(f"- {k}: {_fmt(v, _detail_format(k))}" for k, v in (details or {}).items() if v is not None)]
    if queries:
        out += ["", "Query it:", "", "```", *(sql_command(q) for q in queries), "```"]
    return "\n".join(out).rstrip() + "\n"


def artifact_key(kind: str, run_ids: Sequence[str]) -> str:
    """``backtest-<run id>`` for one run; ``backtest-<n>-runs-<hash of the ids>`` for a batch
    (lowercase letters, digits and dashes, as Prefect wants)."""
    from backlake.config import canonical_hash

    stem = RUN_LABELS.get(kind, kind)
    if len(run_ids) == 1:
        key = f"{stem}-{run_ids[0]}"
    else:
        key = f"{stem}-{len(run_ids)}-runs-{canonical_hash(sorted(run_ids), 12)}"
    return re.sub(r"[^a-z0-9-]+", "-", key.lower()).strip("-")


def publish_runs(lake: Lake, kind: str, run_ids: Sequence[str], *, details: Mapping[str, Any] | None = None,
                 queries: Sequence[str] | None = None) -> str | None:
    """Publish the flow run's markdown artifact (:func:`runs_markdown`) for the lake runs
    ``run_ids`` (their ``runs`` rows, read back: what was committed, or was there already),
    titled with the flow run's name. Returns the artifact key; None outside a flow run, when no
    run is in the lake, or when publishing failed (a warning: it never fails the flow)."""
    try:
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        ids = list(dict.fromkeys(run_ids))
        if ctx is None or ctx.flow_run is None or not ids:
            return None
        from prefect.artifacts import create_markdown_artifact

        rows = lake.read("runs", columns=REPORT_COLUMNS, where={"run_id": ids}).to_dicts()
        order = {r: i for i, r in enumerate(ids)}
        rows.sort(key=lambda r: order[r["run_id"]])
        if not rows:
            return None
        found = [r["run_id"] for r in rows]
        key = artifact_key(kind, found)
        title = ctx.flow_run.name or RUN_LABELS.get(kind, kind)
        markdown = runs_markdown(title, rows, details=details,
                                 queries=run_queries(kind, found) if queries is None else queries)
        create_markdown_artifact(markdown, key=key, description=f"{title}: lake run(s) {shorten(found)}")
        return key
    except Exception:
        logging.getLogger("backlake.flows").warning("could not publish the runs artifact", exc_info=True)
        return None
