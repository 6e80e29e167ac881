"""The detail view of an ``alpha`` run (registered with :func:`dashboards.details.register`):
the alpha's IC summary per horizon (stored segments ``ic:h{h}``, ``decay``) with a link to the
run on the Alpha page, then the backtest tear sheet of its weights (``details.backtest``)."""

from __future__ import annotations

import html
from typing import Any

import panel as pn

from backlake.errors import BacklakeError
from dashboards.alpha import CSS, card_html, ic_text, summary_table
from dashboards.alpha_store import AlphaStore
from dashboards.details import register
from dashboards.details.backtest import backtest_detail
from dashboards.fmt import DASH

__all__ = ["alpha_detail"]


@register("alpha")
def alpha_detail(store: Any, run: dict[str, Any]) -> pn.viewable.Viewable:
    """IC summary, half-life and a link to ``/alpha?run=ID``, then the backtest tear sheet."""
    run_id = str(run["run_id"])
    alpha = AlphaStore(store)
    try:
        summary = alpha.summary(run_id)
        _, half_life = alpha.decay(run_id)
        named = next((r for r in alpha.alpha_runs() if r.run_id == run_id), None)
    except BacklakeError as e:
        return pn.Column(pn.pane.Alert(f"Cannot read the IC summary of `{run_id}`: {html.escape(str(e))}",
                                       alert_type="danger"), backtest_detail(store, run), sizing_mode="stretch_width")
    title = named.title if named is not None else f"alpha run {run_id}"
    h = 5 if 5 in summary else next(iter(summary), None)
    s = summary.get(h, {}) if h is not None else {}
    cards = "".join([
        card_html(f"Mean IC · {h} d" if h else "Mean IC", ic_text("mean_ic", s.get("mean_ic")),
              f"Rank IC {ic_text('mean_rank_ic', s.get('mean_rank_ic'))}", key="mean_ic", exact=s.get("mean_ic")),
        card_html("ICIR", ic_text("icir", s.get("icir")), "annualised", key="icir", exact=s.get("icir")),
        card_html("t-stat", ic_text("t_stat", s.get("t_stat")), f"p {ic_text('p_value', s.get('p_value'))}",
              key="t_stat", exact=s.get("t_stat")),
        card_html("Hit rate", ic_text("hit_rate", s.get("hit_rate")), "dates with IC > 0", key="hit_rate",
              exact=s.get("hit_rate")),
        card_html("Half-life", DASH if half_life is None else f"{half_life:,.1f} d",
              "IC decay" if half_life is not None else "IC does not decay", key="half_life", exact=half_life),
    ])
    sub = (f"{html.escape(named.weights_text)} · {html.escape(named.dates_text)} · " if named is not None else "")
    head = pn.pane.HTML(
        f"<div class='bl-alpha'><h2>{html.escape(title)}</h2><div class='bl-sub'>{sub}"
        f"<a class='alpha-page-link' href='./alpha?run={html.escape(run_id)}'>IC over time, decay, quantiles, "
        "turnover, coverage and attribution on the Alpha page →</a></div></div>"
        f"<div class='bl-cards'>{cards}</div>", stylesheets=[CSS], sizing_mode="stretch_width",
        css_classes=["alpha-detail-header"])
    return pn.Column(head, summary_table(summary, h), backtest_detail(store, run), sizing_mode="stretch_width",
                     css_classes=["alpha-detail"])
