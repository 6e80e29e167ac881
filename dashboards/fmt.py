"""One number format for every page: a metric in its unit (``backlake.metrics.METRIC_UNITS``).

    metric_text("total_return", 4.41)   # '441.01 %'
    metric_text("sharpe", 0.999)        # '0.999'
    metric_text("n_trades", 33)         # '33'
    metric_text("total_costs", 2205.9)  # '2,205.88'
    unit_kind("max_drawdown")           # 'pct'

Kinds: ``pct`` (fractions), ``ratio``, ``count`` (trades, bars), ``days``, ``money`` (currency of
the initial cash, and every cost column), ``num`` (anything else). Undefined values show as an
en dash. :data:`BOKEH_FORMATS` gives the matching Bokeh/Tabulator number formats.
"""

from __future__ import annotations

import math

from backlake.metrics import unit_kind

__all__ = ["unit_kind", "metric_text", "value_text", "BOKEH_FORMATS", "DASH"]

DASH = "–"

#: NumeralJS formats (Tabulator's NumberFormatter, Bokeh tick formatters) per kind
BOKEH_FORMATS = {"pct": "0.00%", "ratio": "0.000", "count": "0,0", "days": "0,0.0", "money": "0,0.00",
                 "num": "0,0.[0000]"}


def value_text(kind: str, value: float | None) -> str:
    """``value`` formatted as ``kind``."""
    if value is None:
        return DASH
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return DASH
    if kind == "pct":
        return f"{v:.2%}".replace("%", " %")
    if kind == "ratio":
        return f"{v:.3f}"
    if kind == "count":
        return f"{v:,.0f}"
    if kind == "days":
        return f"{v:,.1f}"
    if kind == "money":
        return f"{v:,.2f}"
    return f"{v:.4g}"


def metric_text(name: str, value: float | None) -> str:
    """Metric ``name``'s ``value`` in its unit."""
    return value_text(unit_kind(name), value)
