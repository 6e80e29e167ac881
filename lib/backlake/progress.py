"""Progress of long jobs, reported by the flows and shown by whoever listens (the CLI's
progress bars).

A job calls :func:`report` as units of work finish (chunks of a sweep, Optuna trials,
walk-forward windows, Monte Carlo seeds). Nothing listens by default, so a report costs one
lock and a list check; the CLI installs a listener with :func:`listening` around the flow
call. The flow's own body runs in the caller's process whatever the task runner (threads or
Dask), so reports made there reach a listener installed there.

Example::

    from backlake import progress

    seen = []
    with progress.listening(seen.append):
        progress.report("sweep ab12", done=3, total=8, unit="chunks")
    seen[0].fraction   # 0.375
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["Progress", "report", "listening"]


@dataclass(frozen=True)
class Progress:
    """One report: ``job`` names the work (e.g. ``"sweep 3f2a..."``), ``done`` of ``total``
    ``unit`` (``"chunks"``, ``"trials"``, ``"windows"``, ``"seeds"``) are finished."""

    job: str
    done: int
    total: int
    unit: str

    @property
    def fraction(self) -> float:
        return 1.0 if self.total <= 0 else min(1.0, self.done / self.total)


Listener = Callable[[Progress], None]
_lock = threading.Lock()
_listeners: list[Listener] = []


def report(job: str, done: int, total: int, unit: str) -> None:
    """Tell every listener that ``done`` of ``total`` ``unit`` of ``job`` are finished.
    A listener that raises is dropped from this call's delivery, never the job."""
    with _lock:
        targets = list(_listeners)
    if not targets:
        return
    event = Progress(job, int(done), int(total), unit)
    for fn in targets:
        with contextlib.suppress(Exception):  # a display problem must not fail a backtest
            fn(event)


@contextlib.contextmanager
def listening(fn: Listener) -> Iterator[Listener]:
    """Deliver every :func:`report` made while the block runs (from any thread) to ``fn``."""
    with _lock:
        _listeners.append(fn)
    try:
        yield fn
    finally:
        with _lock:
            _listeners.remove(fn)
