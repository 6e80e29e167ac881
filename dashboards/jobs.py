"""Backtests submitted from the dashboard: one queue per server, shared by every session.

A job runs as a Prefect flow run (``flows.backtest.submitted_backtest_flow``: named after
the backtest, tagged with its strategy and ``user:<owner>``, with a markdown artifact) through
the library's run protocol (plan, execute, commit) in a worker thread, one job at a time, and
is recorded with ``created_by`` = the signed-in user who submitted it. The first job picks
the Prefect API like any flow command (``PREFECT_API_URL``, else the local server, started
when none runs and left running); a dashboard nobody submits from never needs Prefect.
Submitting needs :func:`backlake.auth.can_submit`;
cancelling needs :func:`backlake.auth.can_cancel` (your own jobs, or anyone's as an admin).
A queued job is dropped; a running one stops before its commit, so nothing of it lands in
the lake. A job whose run is already in the lake (same config on the same data) commits
nothing and points at the stored run.

    queue = shared_queue()
    job = queue.submit(identity, cfg)    # PermissionDenied for a viewer
    queue.cancel(identity, job.id)       # PermissionDenied unless it is yours (or you are admin)
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from backlake.config import BacktestConfig
from backlake.errors import BacklakeError
from backlake.settings import Settings, get_settings
from dashboards.identity import Identity, PermissionDenied, cancel_gate, require, submit_gate

__all__ = ["Job", "JobQueue", "shared_queue", "ACTIVE"]

ACTIVE = ("queued", "running")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Job:
    """One submission; ``status``: queued, running, completed, failed or cancelled."""

    id: int
    owner: str
    config: BacktestConfig
    status: str = "queued"
    run_id: str | None = None
    message: str = ""
    submitted_at: dt.datetime = field(default_factory=_now)
    finished_at: dt.datetime | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


#: What a worker does with a job: returns (status, run_id, message); ``cancelled()`` says
#: whether the job was cancelled meanwhile (checked before anything is committed).
Runner = Callable[[Job, Settings, Callable[[], bool]], tuple[str, str | None, str]]


def run_backtest_job(job: Job, settings: Settings, cancelled: Callable[[], bool]) -> tuple[str, str | None, str]:
    """Run one backtest as ``job.owner``: the ``backtest`` Prefect flow (named after the
    backtest, tagged ``user:<owner>``, with its markdown artifact) in this thread, through the
    run protocol (``backlake.runs.backtest.run_submitted``: plan, execute, commit)."""
    from flows.backtest import submitted_backtest_flow
    from flows.cli.server import use_prefect_api

    use_prefect_api()  # PREFECT_API_URL, else the local server (started on the first job, then kept)
    config = job.config.model_dump(mode="json", exclude_unset=True)
    out = submitted_backtest_flow(config, job.owner, cancelled, lake_uri=settings.lake_uri)
    return str(out["status"]), out["run_id"], str(out["message"])


class JobQueue:
    """Submissions of every session of this server, run one at a time in a worker thread."""

    def __init__(self, runner: Runner = run_backtest_job, settings: Settings | None = None) -> None:
        self._runner = runner
        self._settings = settings
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backlake-job")
        self._lock = threading.Lock()
        self._jobs: dict[int, Job] = {}
        self._futures: dict[int, Future[None]] = {}
        self._cancel: dict[int, str] = {}  # job id -> who cancelled it
        self._ids = itertools.count(1)
        self.version = 0  # bumped on every change: sessions redraw when it moves

    def jobs(self) -> list[Job]:
        """Every job, newest first."""
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.id, reverse=True)

    def get(self, job_id: int) -> Job:
        with self._lock:
            return self._jobs[job_id]

    def submit(self, identity: Identity, config: BacktestConfig) -> Job:
        """Queue a backtest as the session's user (PermissionDenied for a viewer)."""
        require(submit_gate(identity))
        with self._lock:
            job = Job(next(self._ids), identity.name, config)
            self._jobs[job.id] = job
            self.version += 1
            self._futures[job.id] = self._pool.submit(self._work, job.id)
        return job

    def cancel(self, identity: Identity, job_id: int) -> Job:
        """Cancel a queued or running job (PermissionDenied unless it is the user's own, or the
        user is an admin)."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise PermissionDenied(f"there is no job #{job_id}")
        require(cancel_gate(identity, job.owner))
        with self._lock:
            job = self._jobs[job_id]
            if not job.active:
                return job
            self._cancel[job_id] = identity.name
            if self._futures[job_id].cancel():  # still queued: it never starts
                job = self._set(job_id, status="cancelled", finished_at=_now(),
                                message=f"cancelled by {identity.name} before it started")
            else:
                job = self._set(job_id, message=f"cancelling, asked by {identity.name}")
        return job

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -- worker --------------------------------------------------------------------------------
    def _set(self, job_id: int, **changes: object) -> Job:
        job = replace(self._jobs[job_id], **changes)  # type: ignore[arg-type]
        self._jobs[job_id] = job
        self.version += 1
        return job

    def _work(self, job_id: int) -> None:
        with self._lock:
            if job_id in self._cancel:  # cancelled between being picked up and starting
                self._set(job_id, status="cancelled", finished_at=_now(),
                          message=f"cancelled by {self._cancel[job_id]} before it started")
                return
            job = self._set(job_id, status="running")
        try:
            status, run_id, message = self._runner(
                job, self._settings or get_settings(), lambda: job_id in self._cancel)
        except BacklakeError as e:
            status, run_id, message = "failed", None, str(e)
        except Exception as e:  # a bug must not kill the worker thread
            status, run_id, message = "failed", None, f"{type(e).__name__}: {e}"
        with self._lock:
            if status == "cancelled":
                message = f"cancelled by {self._cancel.get(job_id, '?')}: {message}"
            self._set(job_id, status=status, run_id=run_id, message=message, finished_at=_now())


_SHARED: JobQueue | None = None
_SHARED_LOCK = threading.Lock()


def shared_queue() -> JobQueue:
    """The queue of this server process (every session sees the same jobs)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = JobQueue()
        return _SHARED
