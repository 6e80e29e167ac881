"""Small helpers shared by the flows (no business logic here)."""

from __future__ import annotations

import logging
import uuid

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
