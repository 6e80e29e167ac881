"""Small helpers shared by the flows (no business logic here)."""

from __future__ import annotations

from backlake.errors import ConfigError
from backlake.lake import Lake
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
