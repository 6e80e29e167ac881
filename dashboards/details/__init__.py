"""Run detail views, one per run kind: ``render(store, run)`` picks the view registered for
``run["kind"]`` (the runs row as a dict, see ``LakeStore.run``) and returns a Panel viewable.

A view module registers itself::

    @register("sweep")
    def sweep_detail(store: LakeStore, run: dict) -> pn.viewable.Viewable: ...

The runs page and the report renderer both call :func:`render`, so a view is written once and
shown in both places. Kinds without a view get :func:`generic_detail` (header and metrics).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import panel as pn

__all__ = ["register", "render", "views", "VIEW_MODULES", "FULL_TABLES"]

View = Callable[[Any, dict[str, Any]], pn.viewable.Viewable]

_VIEWS: dict[str, View] = {}

#: Modules of this package that register views (imported on first use; a missing one is skipped).
VIEW_MODULES = ("backtest", "research", "alpha")


def register(*kinds: str) -> Callable[[View], View]:
    """Register the decorated function as the detail view of ``kinds``."""
    def deco(fn: View) -> View:
        for kind in kinds:
            _VIEWS[kind] = fn
        return fn
    return deco


def views() -> dict[str, View]:
    """kind -> view, after importing the view modules."""
    for name in VIEW_MODULES:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
    return dict(_VIEWS)


#: True while a view is built for a report (tear sheet): its tables show every row instead of
#: scrolling inside a box, so they read and print whole.
FULL_TABLES: ContextVar[bool] = ContextVar("FULL_TABLES", default=False)


def render(store: Any, run: dict[str, Any], *, full_tables: bool = False) -> pn.viewable.Viewable:
    """The detail of ``run`` (a runs row) by its kind; ``full_tables`` for a report (see
    :data:`FULL_TABLES`)."""
    view = views().get(str(run.get("kind")), generic_detail)
    token = FULL_TABLES.set(full_tables)
    try:
        return view(store, run)
    finally:
        FULL_TABLES.reset(token)


def generic_detail(store: Any, run: dict[str, Any]) -> pn.viewable.Viewable:
    """Header and full-period metrics: the view of kinds without their own."""
    from dashboards.fmt import metric_text

    metrics = store.metrics(run["run_id"])
    rows = "\n".join(f"| {k} | {metric_text(k, v)} |" for k, v in sorted(metrics.items()))
    body = f"| metric | value |\n|---|---|\n{rows}" if rows else "_No metrics recorded._"
    return pn.Column(pn.pane.Markdown(f"### {run.get('kind')} run `{run['run_id']}`\n\n{body}"),
                     sizing_mode="stretch_width")
