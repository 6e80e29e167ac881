"""The Alpha page (``/alpha?run=ID&h=5&window=63``): one alpha run's research tear sheet and the
factor attribution of any run.

- **Run selector**: the lake's completed alpha runs (alpha, parameters, universe and its size,
  weights, dates); ``?run=`` picks one, the URL follows the selectors.
- **IC time series** at the chosen horizon: the daily IC (or Rank IC) and the rolling means of
  both over a selectable window.
- **IC by horizon** (decay curve, stored segment ``decay``) with the half-life; **quantile mean
  forward returns** at the chosen horizon (segment ``quantiles:h{h}``).
- **Turnover** per rebalance (from ``weights``) with its mean; **coverage** per date (from
  ``signals``: scored names / universe size).
- **IC summary** of every horizon (segments ``ic:h{h}``: mean IC, ICIR, t-stat, hit rate,
  p-values adjusted across the alphas evaluated together when stored).
- **Signal correlation** between the alphas in ``signals`` (mean cross-sectional rank
  correlation over their latest dates, ``backlake.alpha.ic.signal_correlation``).
- **Attribution** of any completed run (default: the chosen alpha run): Fama-French betas with
  t-stats, alpha per month and annualised with its t-stat, R², the rolling exposures and the
  up / down market split, as stored by ``backlake alpha attribution RUN`` (the page only reads).

Every figure is a stored value read through ``dashboards.alpha_store`` (DuckDB over the lake),
so the page shows what ``backlake sql`` shows for the same run.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import panel as pn
from bokeh.models import (
    BasicTicker,
    ColorBar,
    ColumnDataSource,
    HoverTool,
    LinearColorMapper,
    NumeralTickFormatter,
    Range1d,
    Span,
)
from bokeh.palettes import RdBu11
from bokeh.plotting import figure

from backlake.errors import BacklakeError
from dashboards.alpha_store import AlphaRun, AlphaStore, run_label
from dashboards.fmt import DASH, value_text
from dashboards.layout import page, watch_versions
from dashboards.store import LakeStore

__all__ = ["AlphaPage", "EMPTY", "ic_text", "attribution_parts", "parse_query", "summary_table", "card_html", "WINDOWS",
           "IC_KINDS", "IC_LABELS"]

BLUE, ORANGE, GREEN, RED, GREY, PURPLE = "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#8a94a3", "#b07aa1"
FACTOR_COLOURS = (BLUE, ORANGE, GREEN, RED, PURPLE, "#76b7b2", "#edc948", "#9c755f")
#: Rolling-mean windows offered (trading days).
WINDOWS: dict[str, int] = {"21 d (1 month)": 21, "63 d (3 months)": 63, "126 d (6 months)": 126,
                           "252 d (1 year)": 252}
DEFAULT_WINDOW = 63

EVALUATE = "backlake alpha evaluate momentum_12_1"
EMPTY = ("**No alpha runs in the lake yet.** Evaluate an alpha on the 20-stock S&P 500 panel with "
         f"`{EVALUATE}` (or `backlake demo`, which evaluates two alphas): its IC, decay, quantile returns, "
         "turnover and coverage then show here. `backlake alpha list` lists the alphas.")

#: How each IC summary metric is shown: ic (4 decimals), t (2 decimals), p (p-value), or a
#: ``dashboards.fmt`` kind.
IC_KINDS: dict[str, str] = {
    "mean_ic": "ic", "ic_std": "ic", "icir": "ratio", "t_stat": "t", "hit_rate": "pct", "mean_rank_ic": "ic",
    "rank_ic_std": "ic", "rank_icir": "ratio", "rank_t_stat": "t", "coverage": "pct", "turnover": "pct",
    "spread": "pct", "n_dates": "count", "p_value": "p", "p_bonferroni": "p", "p_bh": "p",
}
IC_LABELS: dict[str, str] = {
    "mean_ic": "Mean IC", "ic_std": "IC std", "icir": "ICIR", "t_stat": "t-stat", "p_value": "p",
    "p_bonferroni": "p Bonferroni", "p_bh": "p BH", "hit_rate": "Hit rate", "mean_rank_ic": "Mean Rank IC",
    "rank_ic_std": "Rank IC std", "rank_icir": "Rank ICIR", "rank_t_stat": "Rank t-stat", "coverage": "Coverage",
    "turnover": "Turnover", "spread": "Q spread", "n_dates": "Dates",
}
IC_TIPS: dict[str, str] = {
    "mean_ic": "mean of the daily Pearson IC of the score at t with the forward return close(t+h)/close(t)-1",
    "icir": "mean / std of the daily IC, annualised: x sqrt(252 / h)",
    "t_stat": "t-stat of the mean IC, Newey-West standard error with h - 1 lags (overlapping returns)",
    "p_value": "two-sided p-value of the t-stat",
    "p_bonferroni": "p-value adjusted for the alphas evaluated together (Bonferroni)",
    "p_bh": "p-value adjusted for the alphas evaluated together (Benjamini-Hochberg)",
    "hit_rate": "share of dates with IC > 0", "coverage": "mean share of the universe with a score",
    "turnover": "mean turnover of the weights per rebalance",
    "spread": "top minus bottom quantile mean forward return",
}

CSS = """
.bl-alpha h2 { margin: 2px 0 2px 0; font-size: 1.45rem; color: #1f2933; }
.bl-alpha .bl-sub { color: #5f6b7a; font-size: 0.9rem; }
.bl-alpha code { font-size: 0.8rem; color: #52606d; }
.bl-cards { display: flex; gap: 10px; flex-wrap: wrap; margin: 6px 0; }
.bl-card { border: 1px solid #d0d7de; border-radius: 8px; padding: 8px 14px; min-width: 128px; background: #fff; }
.bl-card .n { font-size: 1.35rem; font-weight: 700; color: #1f2933; font-variant-numeric: tabular-nums; }
.bl-card .l { color: #52606d; font-size: 0.72rem; text-transform: uppercase; letter-spacing: 0.04em; }
.bl-card .s { color: #5f6b7a; font-size: 0.75rem; }
.bl-card.good { border-color: #59a14f; background: #f0f9ef; } .bl-card.good .n { color: #1a7f37; }
.bl-card.bad { border-color: #e15759; background: #fdf1f1; } .bl-card.bad .n { color: #b3261e; }
.bl-tbl { border-collapse: collapse; font-size: 0.85rem; width: 100%; }
.bl-tbl th, .bl-tbl td { border-bottom: 1px solid #e3e6ea; padding: 4px 9px; text-align: right; white-space: nowrap;
  font-variant-numeric: tabular-nums; }
.bl-tbl th { background: #f4f6f8; color: #334; font-weight: 600; }
.bl-tbl th.l, .bl-tbl td.l { text-align: left; }
.bl-tbl tr.sel td { background: #eef4fb; font-weight: 600; }
.bl-tbl td.sig { color: #1a7f37; } .bl-tbl td.neg { color: #b3261e; }
.bl-note { color: #5f6b7a; font-size: 0.8rem; margin-top: 4px; }
.bl-section { font-size: 1.05rem; font-weight: 600; color: #1f2933; margin: 14px 0 2px 0;
  border-bottom: 2px solid #e3e6ea; padding-bottom: 3px; }
"""


# -- formatting -------------------------------------------------------------------------------------
def ic_text(name: str, value: float | None) -> str:
    """An IC summary metric in its unit: ICs with 4 decimals, t-stats with 2, p-values with 4
    (``< 0.0001`` below), the rest by ``dashboards.fmt``."""
    kind = IC_KINDS.get(name, "num")
    if value is None or not math.isfinite(float(value)):
        return DASH
    v = float(value)
    if kind == "ic":
        return f"{v:.4f}"
    if kind == "t":
        return f"{v:.2f}"
    if kind == "p":
        return "< 0.0001" if 0 <= v < 1e-4 else f"{v:.4f}"
    return value_text(kind, v)


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _fig(title: str, *, height: int = 300, x_axis_type: str = "auto", tools: str = "pan,wheel_zoom,box_zoom,reset,save",
         **kw: Any) -> Any:
    f = figure(title=title, height=height, sizing_mode="stretch_width", x_axis_type=x_axis_type, tools=tools,
               toolbar_location="above", **kw)
    f.title.text_font_size = "11.5pt"
    f.grid.grid_line_alpha = 0.4
    f.outline_line_color = None
    f.toolbar.logo = None
    f.toolbar.autohide = True  # shown on hover: a long title never runs under it
    return f


def _zero(f: Any, dimension: str = "width") -> None:
    f.add_layout(Span(location=0, dimension=dimension, line_color="#52606d", line_width=1, line_alpha=0.6))


def _legend(f: Any, where: str = "top_left") -> None:
    f.legend.location = where
    f.legend.background_fill_alpha = 0.7
    f.legend.label_text_font_size = "9pt"
    f.legend.click_policy = "hide"


def _html(text: str, css_class: str) -> pn.pane.HTML:
    return pn.pane.HTML(text, stylesheets=[CSS], sizing_mode="stretch_width", css_classes=[css_class])


def _section(title: str, css_class: str) -> pn.pane.HTML:
    return pn.pane.HTML(f"<div class='bl-section'>{html.escape(title)}</div>", stylesheets=[CSS],
                        sizing_mode="stretch_width", css_classes=[css_class], margin=(10, 10, 0, 10))


def _alert(text: str, kind: str = "info", css_class: str = "alpha-note") -> pn.pane.Alert:
    return pn.pane.Alert(text, alert_type=kind, sizing_mode="stretch_width", css_classes=[css_class])


def card_html(label: str, value: str, sub: str = "", cls: str = "", *, key: str = "",
              exact: float | None = None) -> str:
    """A headline card; with ``key`` it carries the metric name and its exact value."""
    s = f"<div class='s'>{html.escape(sub)}</div>" if sub else ""
    shown = "" if exact is None else repr(float(exact))
    data = f" data-metric='{html.escape(key)}' data-value='{shown}'" if key else ""
    return (f"<div class='bl-card {cls}'{data}><div class='l'>{html.escape(label)}</div>"
            f"<div class='n'>{html.escape(value)}</div>{s}</div>")


def _bokeh(fig: Any, css_class: str) -> pn.pane.Bokeh:
    return pn.pane.Bokeh(fig, sizing_mode="stretch_width", css_classes=[css_class])


def _params_json(text: Any) -> str:
    """``lookback=252, skip=21`` from a signals row's params JSON."""
    import json

    try:
        v = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        return str(text)
    return ", ".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else str(v)


# -- URL ------------------------------------------------------------------------------------------
def parse_query(params: dict[str, Any]) -> dict[str, str]:
    """The page's query parameters as plain strings (run, h, window, attr, model)."""
    out = {}
    for key in ("run", "h", "window", "attr", "model"):
        v = params.get(key)
        if isinstance(v, list):
            v = v[0] if v else ""
        if isinstance(v, bytes):
            v = v.decode()
        out[key] = str(v or "").strip()
    return out


# -- attribution -----------------------------------------------------------------------------------
def attribution_parts(m: dict[str, float | None]) -> dict[str, Any]:
    """The stored ``attribution:<model>`` metrics split for display: factors (in order) with
    beta and t-stat, up / down market betas and alphas, and the headline numbers."""
    factors: list[str] = []
    for name in m:
        if name.startswith("beta_") and not name.startswith(("beta_t_", "beta_up_", "beta_down_")):
            factors.append(name[len("beta_"):])
    order = ["MktRF", "SMB", "HML", "RMW", "CMA", "Mom"]
    factors.sort(key=lambda f: (order.index(f) if f in order else len(order), f))

    def first(*names: str) -> float | None:
        for n in names:
            if n in m and m[n] is not None:
                return m[n]
        return None

    rows = []
    for f in factors:
        rows.append({
            "factor": f, "beta": first(f"beta_{f}"), "t": first(f"t_{f}", f"beta_t_{f}", f"t_beta_{f}"),
            "up": first(f"up_beta_{f}", f"beta_up_{f}"), "down": first(f"down_beta_{f}", f"beta_down_{f}"),
        })
    return {
        "factors": rows,
        "alpha": first("alpha", "alpha_monthly"), "alpha_annual": first("alpha_annual", "alpha_annualised"),
        "alpha_t": first("alpha_t", "t_alpha"), "alpha_p": first("alpha_p"),
        "r2": first("r2", "r_squared"), "adj_r2": first("adj_r2"),
        "n_obs": first("n_obs"), "up_alpha": first("up_alpha", "alpha_up"),
        "down_alpha": first("down_alpha", "alpha_down"), "n_up": first("up_n", "n_up"),
        "n_down": first("down_n", "n_down"), "window": first("window"),
        "up_alpha_t": first("up_alpha_t", "alpha_t_up"), "down_alpha_t": first("down_alpha_t", "alpha_t_down"),
    }


def summary_table(summary: dict[int, dict[str, float | None]], chosen: int | None = None) -> pn.viewable.Viewable:
    """The IC summary of every horizon (stored segments ``ic:h{h}``), each value in its unit and
    carrying its exact value (``data-value``); the ``chosen`` horizon highlighted."""
    if not summary:
        return _alert("No IC summary stored for this run.", "secondary", "alpha-no-summary")
    present = {n for m in summary.values() for n in m}
    cols = [c for c in ("mean_ic", "ic_std", "icir", "t_stat", "p_value", "p_bonferroni", "p_bh", "hit_rate",
                        "mean_rank_ic", "rank_icir", "rank_t_stat", "spread", "turnover", "coverage", "n_dates")
            if c in present]
    head = "<th class='l'>Horizon</th>" + "".join(
        f"<th title='{html.escape(IC_TIPS.get(c, ''))}'>{html.escape(IC_LABELS.get(c, c))}</th>" for c in cols)
    rows = []
    for h, m in summary.items():
        cells = []
        for c in cols:
            v = m.get(c)
            cls = ""
            if c in ("p_value", "p_bonferroni", "p_bh") and v is not None and v < 0.05:
                cls = "sig"
            elif c in ("mean_ic", "mean_rank_ic", "t_stat", "spread") and v is not None and v < 0:
                cls = "neg"
            exact = "" if v is None else repr(float(v))
            cells.append(f"<td class='{cls}' data-h='{h}' data-metric='{c}' data-value='{exact}'>"
                         f"{html.escape(ic_text(c, v))}</td>")
        rows.append(f"<tr class='{'sel' if h == chosen else ''}'><td class='l'>{h} d</td>{''.join(cells)}</tr>")
    adjusted = "p_bonferroni" in present or "p_bh" in present
    foot = ("p: two-sided p-value of the mean IC's t-stat"
            + ("; p Bonferroni / p BH: adjusted across the alphas evaluated together with this one" if adjusted
               else "; no adjusted p-values: this alpha was evaluated alone")
            + ". ICIR: mean / std of the daily IC x sqrt(252 / h) (annualised). t-stat: Newey-West with h - 1 lags "
              "(overlapping forward returns). Q spread: mean forward return of the top minus the bottom score "
              "quantile." + (" Selected horizon highlighted." if chosen is not None else ""))
    return _html(f"<div style='overflow-x:auto'><table class='bl-tbl alpha-summary'><thead><tr>{head}</tr></thead>"
                 f"<tbody>{''.join(rows)}</tbody></table></div><div class='bl-note'>{html.escape(foot)}</div>",
                 "alpha-summary")


# -- the page -------------------------------------------------------------------------------------
class AlphaPage:
    """Selectors and sections of the Alpha page over one session's store; :meth:`reload`
    re-reads the lake."""

    def __init__(self, store: LakeStore, *, run: str = "", horizon: str = "", window: str = "", attr: str = "",
                 model: str = "") -> None:
        self.store = store
        self.alpha = AlphaStore(store)
        self.warnings: list[str] = []
        self.run_select = pn.widgets.Select(name="Alpha run", options={}, css_classes=["alpha-run-select"],
                                            sizing_mode="stretch_width", min_width=420)
        self.horizon = pn.widgets.RadioButtonGroup(name="Horizon", options={}, button_type="primary",
                                                   button_style="outline", css_classes=["alpha-horizon"],
                                                   sizing_mode="fixed", width=240, align="end")
        self.window = pn.widgets.Select(name="Rolling mean", options=WINDOWS, value=DEFAULT_WINDOW,
                                        css_classes=["alpha-window"], sizing_mode="fixed", width=170)
        self.measure = pn.widgets.RadioButtonGroup(name="Daily series", options=["IC", "Rank IC"], value="IC",
                                                   button_type="primary", button_style="outline",
                                                   css_classes=["alpha-measure"], sizing_mode="fixed", width=150,
                                                   align="end")
        self.attr_select = pn.widgets.Select(name="Run to attribute", options={}, css_classes=["attr-run-select"],
                                             sizing_mode="stretch_width", min_width=420)
        self.model_select = pn.widgets.RadioButtonGroup(name="Model", options=[], button_type="primary",
                                                        button_style="outline", css_classes=["attr-model"],
                                                        sizing_mode="fixed", width=160, align="end")
        self.header = pn.Column(sizing_mode="stretch_width", css_classes=["alpha-header"])
        self.body = pn.Column(sizing_mode="stretch_width", css_classes=["alpha-body"])
        self.ic_chart = pn.Column(sizing_mode="stretch_width", css_classes=["alpha-ic-section"])
        self.correlation = pn.Column(sizing_mode="stretch_width", css_classes=["alpha-corr-section"])
        self.attribution = pn.Column(sizing_mode="stretch_width", css_classes=["alpha-attr-section"])
        self.controls = pn.Row(self.run_select, self.horizon, self.window, self.measure, sizing_mode="stretch_width",
                               css_classes=["alpha-controls"])
        self.attr_controls = pn.Row(self.attr_select, self.model_select, sizing_mode="stretch_width",
                                    css_classes=["attr-controls"])
        self.view = pn.Column(self.header, self.controls, self.body, self.correlation,
                              self.attribution, sizing_mode="stretch_width", css_classes=["alpha-page"])
        self._runs: dict[str, AlphaRun] = {}
        self._syncing = False
        self._wanted = {"run": run, "h": horizon, "window": window, "attr": attr, "model": model}
        self.run_select.param.watch(self._on_run, "value")
        self.horizon.param.watch(self._on_horizon, "value")
        self.window.param.watch(lambda _e: self._draw_ic(), "value")
        self.measure.param.watch(lambda _e: self._draw_ic(), "value")
        self.attr_select.param.watch(self._on_attr_run, "value")
        self.model_select.param.watch(lambda _e: self._draw_attribution(), "value")
        self.reload()

    # -- loading ------------------------------------------------------------------------------
    def reload(self) -> None:
        """Re-read the lake and redraw, keeping the current choices where they still exist."""
        self.alpha.refresh()
        if self._runs:  # a reload after the first keeps what is selected now
            self._wanted.update(run=self.run_select.value or "", attr=self.attr_select.value or "",
                                h=str(self.horizon.value or ""), model=self.model_select.value or "",
                                window=str(self.window.value or ""))
        self.warnings = []
        try:
            runs = self.alpha.alpha_runs()
            equity_runs = self.alpha.runs_with_equity()
        except BacklakeError as e:
            self.header[:] = [_alert(f"**Cannot read the lake** at `{self.store.lake_uri}`: {html.escape(str(e))}",
                                     "danger", "alpha-error")]
            self.controls.visible = False
            return
        self._runs = {r.run_id: r for r in runs}
        self._syncing = True
        try:
            self.run_select.options = {r.option_label: r.run_id for r in runs}
            wanted = self._wanted["run"]
            if wanted and wanted not in self._runs:
                self.warnings.append(f"run={wanted!r} in the URL is not a completed alpha run in this lake: "
                                     "showing the newest one")
            chosen = wanted if wanted in self._runs else (runs[0].run_id if runs else None)
            self.run_select.value = chosen
            attr_opts = {run_label(r): str(r["run_id"]) for r in equity_runs.to_dict("records")}
            self.attr_select.options = attr_opts
            want_attr = self._wanted["attr"]
            if want_attr and want_attr not in attr_opts.values():
                self.warnings.append(f"attr={want_attr!r} in the URL is not a completed run with an equity curve")
            self.attr_select.value = (want_attr if want_attr in attr_opts.values()
                                      else chosen if chosen in attr_opts.values()
                                      else next(iter(attr_opts.values()), None))
        finally:
            self._syncing = False
        self.controls.visible = bool(runs)
        self._draw_run(initial=True)
        self._draw_correlation()
        self._draw_attribution_choices()

    @property
    def run(self) -> AlphaRun | None:
        return self._runs.get(self.run_select.value) if self.run_select.value else None

    # -- events -------------------------------------------------------------------------------
    def _on_run(self, _e: Any) -> None:
        if self._syncing:
            return
        if self.run is not None and self.attr_select.value != self.run.run_id \
                and self.run.run_id in self.attr_select.options.values():
            self.attr_select.value = self.run.run_id  # the attribution follows the chosen alpha run
        self._draw_run()

    def _on_horizon(self, _e: Any) -> None:
        if self._syncing:
            return
        self._draw_run_sections()

    def _on_attr_run(self, _e: Any) -> None:
        if self._syncing:
            return
        self._draw_attribution_choices()

    def _sync_url(self) -> None:
        if pn.state.location is None:
            return
        q = {"run": self.run_select.value or "", "h": str(self.horizon.value or ""),
             "window": str(self.window.value or ""), "attr": self.attr_select.value or ""}
        if self.model_select.value:
            q["model"] = self.model_select.value
        pn.state.location.update_query(**q)

    # -- the alpha run ----------------------------------------------------------------------------
    def _draw_run(self, *, initial: bool = False) -> None:
        run = self.run
        notes = [_alert(html.escape(w), "warning", "url-warning") for w in self.warnings]
        if run is None:
            self.header[:] = [*notes, _alert(EMPTY, "info", "alpha-empty")]
            self.body[:] = []
            self.ic_chart[:] = []
            return
        try:
            hs = self.alpha.horizons(run.run_id) or list(run.horizons)
        except BacklakeError as e:
            self.header[:] = [*notes, _alert(f"Cannot read run {run.title}: {html.escape(str(e))}", "danger")]
            return
        self._syncing = True
        try:
            self.horizon.options = {f"{h} d": h for h in hs}
            self.horizon.width = max(120, 60 * len(hs))
            want = self._wanted["h"] if initial else str(self.horizon.value or "")
            if initial and want and (not want.isdigit() or int(want) not in hs):
                notes.append(_alert(f"h={html.escape(want)} in the URL is not a horizon of this run "
                                    f"({', '.join(map(str, hs))}): showing {5 if 5 in hs else hs[0]} d",
                                    "warning", "url-warning"))
            self.horizon.value = (int(want) if want.isdigit() and int(want) in hs
                                  else (5 if 5 in hs else (hs[0] if hs else None)))
            if initial and self._wanted["window"]:
                w = self._wanted["window"]
                if w.isdigit() and int(w) in WINDOWS.values():
                    self.window.value = int(w)
                else:
                    notes.append(_alert(f"window={html.escape(w)} in the URL is not one of "
                                        f"{', '.join(map(str, WINDOWS.values()))}: showing {DEFAULT_WINDOW}",
                                        "warning", "url-warning"))
        finally:
            self._syncing = False
        head = (f"<div class='bl-alpha'><h2 class='alpha-title'>{html.escape(run.title)}</h2>"
                f"<div class='bl-sub'>{html.escape(run.weights_text)} · {html.escape(run.dates_text)} · "
                f"horizons {', '.join(f'{h} d' for h in hs)}"
                + (f" · {run.n_quantiles} quantiles" if run.n_quantiles else "")
                + f" · run <code>{html.escape(run.run_id)}</code></div></div>")
        self.header[:] = [*notes, _html(head, "alpha-run-header")]
        self._draw_run_sections()

    def _draw_run_sections(self) -> None:
        run, h = self.run, self.horizon.value
        if run is None or h is None:
            self.body[:] = [_alert("This run has no IC rows.", "warning", "alpha-no-ic")] if run else []
            self.ic_chart[:] = []
            return
        try:
            summary = self.alpha.summary(run.run_id)
            decay, half_life = self.alpha.decay(run.run_id)
            quantiles = self.alpha.quantiles(run.run_id)
            turnover = self.alpha.turnover(run.run_id)
            symbols = self.alpha.symbols(run.run_id)
            coverage = self.alpha.coverage(run, symbols)
        except BacklakeError as e:
            self.body[:] = [_alert(f"Cannot read run {html.escape(run.title)}: {html.escape(str(e))}", "danger")]
            return
        s = summary.get(int(h), {})
        self.body[:] = [
            self._cards(run, int(h), s, half_life, turnover, coverage),
            self.ic_chart,
            _section("Decay, quantiles, turnover and coverage", "alpha-profile-title"),
            pn.Row(self._decay(run, decay, half_life), self._quantiles(run, int(h), quantiles.get(int(h), {})),
                   sizing_mode="stretch_width", css_classes=["alpha-row-1"]),
            pn.Row(self._turnover(run, turnover, s), self._coverage(run, coverage, symbols, s),
                   sizing_mode="stretch_width", css_classes=["alpha-row-2"]),
            _section("IC summary by horizon", "alpha-summary-title"),
            summary_table(summary, int(h)),
        ]
        self._draw_ic()

    def _cards(self, run: AlphaRun, h: int, s: dict[str, float | None], half_life: float | None,
               turnover: pd.DataFrame, coverage: pd.DataFrame | None) -> pn.pane.HTML:
        t = s.get("t_stat")
        p = s.get("p_bh") if s.get("p_bh") is not None else s.get("p_value")
        sig = "good" if p is not None and p < 0.05 and (s.get("mean_ic") or 0) > 0 else ""
        mean_turn = float(turnover["turnover"].mean()) if len(turnover) else s.get("turnover")
        mean_cov = float(coverage["coverage"].mean()) if coverage is not None and len(coverage) else s.get("coverage")
        cards = [
            card_html(f"Mean IC · {h} d", ic_text("mean_ic", s.get("mean_ic")),
                  f"Rank IC {ic_text('mean_rank_ic', s.get('mean_rank_ic'))}", sig, key="mean_ic",
                  exact=s.get("mean_ic")),
            card_html("ICIR", ic_text("icir", s.get("icir")), f"Rank ICIR {ic_text('rank_icir', s.get('rank_icir'))}",
                  key="icir", exact=s.get("icir")),
            card_html("t-stat", ic_text("t_stat", t),
                  ("p " + ic_text("p_value", s.get("p_value"))
                   + (f" · BH {ic_text('p_bh', s.get('p_bh'))}" if s.get("p_bh") is not None else "")),
                  sig, key="t_stat", exact=t),
            card_html("Hit rate", ic_text("hit_rate", s.get("hit_rate")), "dates with IC > 0", key="hit_rate",
                  exact=s.get("hit_rate")),
            card_html("Half-life", DASH if half_life is None else f"{half_life:,.1f} d",
                  "IC decay" if half_life is not None else "IC does not decay", key="half_life", exact=half_life),
            card_html("Turnover", value_text("pct", mean_turn), "mean per rebalance", key="turnover",
                      exact=mean_turn),
            card_html("Coverage", value_text("pct", mean_cov), "mean scored / universe", key="coverage",
                      exact=mean_cov),
            card_html("Q spread", ic_text("spread", s.get("spread")), f"top minus bottom, {h} d", key="spread",
                  exact=s.get("spread")),
        ]
        return _html(f"<div class='bl-cards'>{''.join(cards)}</div>", "alpha-cards")

    def _draw_ic(self) -> None:
        run, h = self.run, self.horizon.value
        self._sync_url()
        if run is None or h is None:
            self.ic_chart[:] = []
            return
        try:
            df = self.alpha.ic_series(run.run_id, int(h))
        except BacklakeError as e:
            self.ic_chart[:] = [_alert(f"Cannot read the IC rows: {html.escape(str(e))}", "danger")]
            return
        if df.empty:
            self.ic_chart[:] = [_alert(f"No IC rows at the {h}-day horizon.", "warning", "alpha-no-ic")]
            return
        window = int(self.window.value)
        measure = self.measure.value
        col = "ic" if measure == "IC" else "rank_ic"
        minp = max(5, window // 3)
        roll_ic = df["ic"].rolling(window, min_periods=minp).mean()
        roll_rank = df["rank_ic"].rolling(window, min_periods=minp).mean()
        src = ColumnDataSource({"date": df["date"], "daily": df[col], "roll_ic": roll_ic, "roll_rank": roll_rank})
        title = f"{measure} at the {h}-day horizon, {window}-day rolling means · {run.short}"
        f = _fig(title, height=340, x_axis_type="datetime")
        f.vbar(x="date", top="daily", source=src, width=24 * 3600 * 1000 * 0.9, color="#b8c2cc", alpha=0.45,
               legend_label=f"daily {measure}")
        f.line("date", "roll_ic", source=src, color=BLUE, line_width=2, legend_label=f"IC, {window} d mean")
        f.line("date", "roll_rank", source=src, color=ORANGE, line_width=2, legend_label=f"Rank IC, {window} d mean")
        _zero(f)
        f.yaxis.formatter = NumeralTickFormatter(format="0.00")
        f.yaxis.axis_label = "correlation"
        f.add_tools(HoverTool(tooltips=[("date", "@date{%F}"), (f"daily {measure}", "@daily{0.0000}"),
                                        ("IC mean", "@roll_ic{0.0000}"), ("Rank IC mean", "@roll_rank{0.0000}")],
                              formatters={"@date": "datetime"}, mode="vline"))
        _legend(f)
        mean_ic, mean_rank = float(df["ic"].mean()), float(df["rank_ic"].mean())
        note = (f"<div class='bl-note'>{len(df):,} dates · mean IC {mean_ic:.4f} · mean Rank IC {mean_rank:.4f} · "
                "IC: Pearson, Rank IC: Spearman correlation of the score at t with the forward return "
                f"close(t+{h}) / close(t) &minus; 1 across the universe.</div>")
        self.ic_chart[:] = [_bokeh(f, "alpha-ic-chart"), _html(note, "alpha-ic-note")]

    def _decay(self, run: AlphaRun, decay: pd.DataFrame, half_life: float | None) -> pn.viewable.Viewable:
        if decay.empty:
            return _alert("No decay segment stored for this run.", "secondary", "alpha-no-decay")
        hl = f"half-life {half_life:,.1f} d" if half_life is not None else "no decay (no half-life)"
        f = _fig(f"IC by horizon, {hl} · {run.short}", height=300,
                 x_range=Range1d(start=0, end=float(decay["horizon"].max()) * 1.05 + 1))
        src = ColumnDataSource(decay)
        f.line("horizon", "mean_ic", source=src, color=BLUE, line_width=2, legend_label="mean IC")
        f.scatter("horizon", "mean_ic", source=src, color=BLUE, size=8)
        f.line("horizon", "mean_rank_ic", source=src, color=ORANGE, line_width=2, line_dash="dashed",
               legend_label="mean Rank IC")
        f.scatter("horizon", "mean_rank_ic", source=src, color=ORANGE, size=7, marker="square")
        if half_life is not None:
            f.add_layout(Span(location=half_life, dimension="height", line_color=GREEN, line_dash="dotted",
                              line_width=2))
        _zero(f)
        f.xaxis.axis_label = "forward horizon (trading days)"
        f.xaxis.ticker = [int(h) for h in decay["horizon"]]
        f.yaxis.formatter = NumeralTickFormatter(format="0.000")
        f.add_tools(HoverTool(tooltips=[("horizon", "@horizon d"), ("mean IC", "@mean_ic{0.0000}"),
                                        ("mean Rank IC", "@mean_rank_ic{0.0000}")]))
        _legend(f, "top_right")
        return _bokeh(f, "alpha-decay-chart")

    def _quantiles(self, run: AlphaRun, h: int, qs: dict[int, float | None]) -> pn.viewable.Viewable:
        if not qs:
            return _alert(f"No quantile returns stored at {h} d.", "secondary", "alpha-no-quantiles")
        labels = [f"Q{q}" for q in qs]
        vals = [np.nan if v is None else v for v in qs.values()]
        colours = [GREEN if (v or 0) >= 0 else RED for v in vals]
        src = ColumnDataSource({"q": labels, "ret": vals, "colour": colours,
                                "text": [value_text("pct", None if np.isnan(v) else v) for v in vals]})
        f = _fig(f"Mean {h}-day forward return by score quantile · {run.short}", height=300, x_range=labels,
                 tools="save")
        f.vbar(x="q", top="ret", source=src, width=0.7, color="colour", alpha=0.85)
        _zero(f)
        f.yaxis.formatter = NumeralTickFormatter(format="0.[00]%")
        f.xaxis.axis_label = "score quantile (Q1 lowest scores)"
        f.add_tools(HoverTool(tooltips=[("quantile", "@q"), ("mean return", "@text")]))
        f.xgrid.grid_line_color = None
        return _bokeh(f, "alpha-quantile-chart")

    def _turnover(self, run: AlphaRun, df: pd.DataFrame, s: dict[str, float | None]) -> pn.viewable.Viewable:
        if df.empty:
            return _alert("No weights stored for this run (or a single rebalance): no turnover to show.",
                          "secondary", "alpha-no-turnover")
        mean = float(df["turnover"].mean())
        f = _fig(f"Turnover per rebalance, mean {value_text('pct', mean)} · {run.short}", height=280,
                 x_axis_type="datetime")
        src = ColumnDataSource({"date": df["date"], "turnover": df["turnover"], "gross": df["gross"]})
        f.line("date", "turnover", source=src, color=PURPLE, line_width=1.4)
        f.scatter("date", "turnover", source=src, color=PURPLE, size=3)
        f.add_layout(Span(location=mean, dimension="width", line_color=PURPLE, line_dash="dashed", line_alpha=0.7))
        f.yaxis.formatter = NumeralTickFormatter(format="0%")
        f.add_tools(HoverTool(tooltips=[("rebalance", "@date{%F}"), ("turnover", "@turnover{0.0%}"),
                                        ("gross", "@gross{0.00}")], formatters={"@date": "datetime"}, mode="vline"))
        return pn.Column(_bokeh(f, "alpha-turnover-chart"), _html(
            f"<div class='bl-note'>{len(df) + 1:,} rebalances · turnover = ½ Σ |w<sub>t</sub> &minus; "
            "w<sub>prev</sub>| over the names of both rebalances (dashed: the mean).</div>", "alpha-turnover-note"),
            sizing_mode="stretch_width")

    def _coverage(self, run: AlphaRun, df: pd.DataFrame | None, symbols: Sequence[str],
                  s: dict[str, float | None]) -> pn.viewable.Viewable:
        if df is None or df.empty:
            cmd = f"backlake alpha refresh {run.alpha}"
            return _alert(f"No signals of {html.escape(run.alpha)} with these parameters in the lake, so no "
                          f"coverage per date (the IC summary's coverage is {ic_text('coverage', s.get('coverage'))}"
                          f"). Store them with `{cmd}`.", "secondary", "alpha-no-coverage")
        mean = float(df["coverage"].mean())
        f = _fig(f"Coverage of {len(set(symbols))} names, mean {value_text('pct', mean)} · {run.short}", height=280,
                 x_axis_type="datetime", y_range=Range1d(start=0, end=1.05))
        src = ColumnDataSource({"date": df["date"], "coverage": df["coverage"], "n": df["n_scored"]})
        f.varea(x="date", y1=0, y2="coverage", source=src, color=GREEN, alpha=0.18)
        f.line("date", "coverage", source=src, color=GREEN, line_width=1.6)
        f.yaxis.formatter = NumeralTickFormatter(format="0%")
        f.add_tools(HoverTool(tooltips=[("date", "@date{%F}"), ("coverage", "@coverage{0.0%}"),
                                        ("scored", "@n")], formatters={"@date": "datetime"}, mode="vline"))
        return _bokeh(f, "alpha-coverage-chart")

    # -- signal correlation -----------------------------------------------------------------------
    def _draw_correlation(self) -> None:
        title = _section("Signal correlation between alphas", "alpha-corr-title")
        try:
            frame, labels, span = self.alpha.signal_correlation()
        except BacklakeError as e:
            self.correlation[:] = [title, _alert(f"Cannot read the signals: {html.escape(str(e))}", "danger")]
            return
        except ImportError:
            self.correlation[:] = [title, _alert("The signal correlation needs `backlake.alpha.ic` "
                                                 "(not installed in this checkout).", "warning")]
            return
        if not labels:  # no signals at all (an empty lake): nothing to say here
            self.correlation[:] = []
            return
        if len(labels) < 2 or frame.empty:
            have = f"only {labels[0]}"
            self.correlation[:] = [title, _alert(
                f"The correlation needs the signals of at least two alphas in the lake ({html.escape(have)} so far). "
                "Store another with `backlake alpha refresh reversal_5d`.", "secondary", "alpha-no-corr")]
            return
        value = {(a, b): c for a, b, c in zip(frame["alpha_a"], frame["alpha_b"], frame["corr"])}
        data: dict[str, list[Any]] = {"a": [], "b": [], "v": [], "text": [], "tc": []}
        for a in labels:
            for b in labels:
                v = value.get((a, b), value.get((b, a), 1.0 if a == b else None))
                f_v = _num(v)
                data["a"].append(a)
                data["b"].append(b)
                data["v"].append(np.nan if f_v is None else f_v)
                data["text"].append(DASH if f_v is None else f"{f_v:.2f}")
                data["tc"].append("#ffffff" if f_v is not None and abs(f_v) > 0.6 else "#1f2933")
        mapper = LinearColorMapper(palette=list(RdBu11), low=-1, high=1, nan_color="#eeeeee")
        size = max(320, 80 * len(labels) + 160)
        f = _fig(f"Rank correlation of scores, {len(labels)} alphas", height=size,
                 x_range=labels, y_range=list(reversed(labels)), tools="hover,save")
        f.sizing_mode = "fixed"
        f.width = size + 160
        f.rect("a", "b", 1, 1, source=ColumnDataSource(data), fill_color={"field": "v", "transform": mapper},
               line_color="white")
        f.text("a", "b", text="text", source=ColumnDataSource(data), text_align="center", text_baseline="middle",
               text_font_size="10pt", text_color="tc")
        f.grid.grid_line_color = None
        f.xaxis.major_label_orientation = 0.6
        f.select_one(HoverTool).tooltips = [("alphas", "@a / @b"), ("correlation", "@text")]
        f.add_layout(ColorBar(color_mapper=mapper, ticker=BasicTicker(desired_num_ticks=5), width=12,
                              formatter=NumeralTickFormatter(format="0.0")), "right")
        cells = "".join(f"<span data-a='{html.escape(a)}' data-b='{html.escape(b)}' data-value='{float(c)!r}'>"
                        "</span>" for a, b, c in zip(frame["alpha_a"], frame["alpha_b"], frame["corr"])
                        if _num(c) is not None)
        note = (f"<div class='bl-note'>Spearman correlation of two alphas' scores across the symbols both score, "
                f"averaged over dates ({html.escape(span)}: the latest dates in <code>signals</code>).</div>"
                f"<div class='alpha-corr-values' hidden>{cells}</div>")
        chart = pn.pane.Bokeh(f, css_classes=["alpha-corr-chart"], sizing_mode="fixed", width=size + 160,
                              height=size)
        self.correlation[:] = [title, pn.Row(chart, self._signal_table(), sizing_mode="stretch_width"),
                               _html(note, "alpha-corr-note")]

    def _signal_table(self) -> pn.viewable.Viewable:
        """The alphas whose signals the lake holds: parameters, dates, rows."""
        try:
            df = self.alpha.signal_alphas()
        except BacklakeError:
            return pn.Spacer()
        rows = "".join(
            f"<tr><td class='l'>{html.escape(str(a))}</td><td class='l'>{html.escape(_params_json(p))}</td>"
            f"<td>{pd.Timestamp(f):%Y-%m-%d}</td><td>{pd.Timestamp(t):%Y-%m-%d}</td>"
            f"<td>{value_text('count', n)}</td></tr>"
            for a, p, f, t, n in zip(df["alpha"], df["params"], df["first"], df["last"], df["n_rows"]))
        return _html("<table class='bl-tbl alpha-signals'><thead><tr><th class='l'>Alpha</th><th class='l'>Parameters"
                     "</th><th>First date</th><th>Last date</th><th>Scores</th></tr></thead>"
                     f"<tbody>{rows}</tbody></table><div class='bl-note'>The alphas whose signals are stored in the "
                     "lake (<code>backlake alpha refresh NAME</code> adds and updates them).</div>", "alpha-signals")

    # -- attribution ------------------------------------------------------------------------------
    def _draw_attribution_choices(self) -> None:
        rid = self.attr_select.value
        models: list[str] = []
        if rid:
            try:
                models = list(self.alpha.attribution(rid))
            except BacklakeError:
                models = []
        self._syncing = True
        try:
            self.model_select.options = models
            want = self._wanted.get("model") or self.model_select.value
            self.model_select.value = want if want in models else (models[0] if models else None)
            self._wanted["model"] = ""
        finally:
            self._syncing = False
        self.model_select.visible = bool(models)
        self._draw_attribution()

    def _draw_attribution(self) -> None:
        title = _section("Factor attribution", "alpha-attr-title")
        rid = self.attr_select.value
        self._sync_url()
        if not rid:  # no completed run with an equity curve: nothing to attribute
            self.attribution[:] = []
            return
        label = next((k for k, v in self.attr_select.options.items() if v == rid), rid)
        model = self.model_select.value
        if not model:
            self.attribution[:] = [title, self.attr_controls, _alert(
                f"No attribution stored for this run yet. Compute it with `backlake alpha attribution {rid}` "
                f"(Fama-French 3 factors; add `--model carhart4` for momentum), then reload this page.",
                "info", "attr-missing")]
            return
        try:
            m = self.alpha.attribution(rid).get(model, {})
            exposures = self.alpha.exposures(rid, model)
        except BacklakeError as e:
            self.attribution[:] = [title, self.attr_controls,
                                   _alert(f"Cannot read the attribution: {html.escape(str(e))}", "danger")]
            return
        parts = attribution_parts(m)
        what = label.split(" · ")[1] if " · " in label else label
        self.attribution[:] = [title, self.attr_controls, self._attr_cards(parts, model),
                               pn.Row(self._attr_table(parts, model), self._exposures(exposures, model, what, parts),
                                      sizing_mode="stretch_width", css_classes=["attr-row"])]

    @staticmethod
    def _attr_cards(p: dict[str, Any], model: str) -> pn.pane.HTML:
        t = p["alpha_t"]
        cls = "good" if t is not None and abs(t) >= 2 and (p["alpha"] or 0) > 0 else (
            "bad" if t is not None and abs(t) >= 2 else "")
        n = p["n_obs"]
        cards = [
            card_html("Alpha / month", value_text("pct", p["alpha"]), f"p {ic_text('p_value', p['alpha_p'])}",
                      cls, key="alpha", exact=p["alpha"]),
            card_html("Alpha, annualised", value_text("pct", p["alpha_annual"]), "", cls, key="alpha_annual",
                  exact=p["alpha_annual"]),
            card_html("Alpha t-stat", ic_text("t_stat", t), "|t| ≥ 2: significant at ~5 %", cls, key="alpha_t",
                      exact=t),
            card_html("R²", value_text("ratio", p["r2"]), f"adjusted {value_text('ratio', p['adj_r2'])}", key="r2",
                  exact=p["r2"]),
            card_html("Observations", value_text("count", n), "months", key="n_obs", exact=n),
            card_html("Model", {"ff3": "Fama-French 3", "carhart4": "Carhart 4", "ff5": "Fama-French 5",
                            "capm": "CAPM"}.get(model, model), ", ".join(r["factor"] for r in p["factors"]),
                  key="model"),
        ]
        return _html(f"<div class='bl-cards'>{''.join(cards)}</div>", "attr-cards")

    @staticmethod
    def _attr_table(p: dict[str, Any], model: str) -> pn.viewable.Viewable:
        rows = []
        for r in p["factors"]:
            t = r["t"]
            cls = "sig" if t is not None and abs(t) >= 2 else ""
            rows.append(
                f"<tr data-factor='{html.escape(r['factor'])}'><td class='l'>{html.escape(r['factor'])}</td>"
                f"<td data-metric='beta' data-value='{'' if r['beta'] is None else repr(r['beta'])}'>"
                f"{value_text('ratio', r['beta'])}</td>"
                f"<td class='{cls}' data-metric='t' data-value='{'' if t is None else repr(t)}'>"
                f"{ic_text('t_stat', t)}</td>"
                f"<td>{value_text('ratio', r['up'])}</td><td>{value_text('ratio', r['down'])}</td></tr>")
        alpha_row = (f"<tr><td class='l'>Alpha / month</td><td>{value_text('pct', p['alpha'])}</td>"
                     f"<td>{ic_text('t_stat', p['alpha_t'])}</td><td>{value_text('pct', p['up_alpha'])}</td>"
                     f"<td>{value_text('pct', p['down_alpha'])}</td></tr>")
        n_split = ""
        if p["n_up"] is not None or p["n_down"] is not None:
            n_split = (f"<tr><td class='l'>Months</td><td>{value_text('count', p['n_obs'])}</td><td></td>"
                       f"<td>{value_text('count', p['n_up'])}</td><td>{value_text('count', p['n_down'])}</td></tr>")
        table = ("<table class='bl-tbl attr-table'><thead><tr><th class='l'>Factor</th><th>Beta</th><th>t-stat</th>"
                 "<th title='regression on the months the market excess return was positive'>Up market</th>"
                 "<th title='regression on the months the market excess return was negative'>Down market</th>"
                 f"</tr></thead><tbody>{''.join(rows)}{alpha_row}{n_split}</tbody></table>"
                 "<div class='bl-note'>OLS of the run's monthly excess returns on the factors (t-stats in green: "
                 "|t| ≥ 2). Up / down market: the same regression on the months with a positive / negative "
                 "market excess return.</div>")
        return _html(table, "attr-table-pane")

    @staticmethod
    def _exposures(df: pd.DataFrame, model: str, what: str, p: dict[str, Any]) -> pn.viewable.Viewable:
        if df.empty:
            return _alert("No rolling exposures stored for this run and model.", "secondary", "attr-no-exposures")
        window = p.get("window")
        wtxt = f"{int(window)}-month" if window else "rolling"
        f = _fig(f"Rolling {wtxt} factor betas ({model}) · {what}", height=320, x_axis_type="datetime")
        wide = df.pivot_table(index="date", columns="factor", values="beta").sort_index()
        order = [r["factor"] for r in p["factors"] if r["factor"] in wide.columns]
        order += [c for c in wide.columns if c not in order]
        for i, fac in enumerate(order):
            f.line(wide.index, wide[fac].to_numpy(), color=FACTOR_COLOURS[i % len(FACTOR_COLOURS)], line_width=1.8,
                   legend_label=str(fac))
        _zero(f)
        f.yaxis.formatter = NumeralTickFormatter(format="0.00")
        f.yaxis.axis_label = "beta"
        _legend(f)
        return _bokeh(f, "attr-exposures-chart")

    def __panel__(self) -> pn.viewable.Viewable:
        return self.view


def main() -> None:
    pn.extension(sizing_mode="stretch_width")
    template, identity = page("alpha", "Alpha research")
    if identity is not None:
        store = LakeStore()
        pn.state.on_session_destroyed(lambda _context: store.close())
        query = parse_query(dict(pn.state.location.query_params) if pn.state.location is not None else {})
        view = AlphaPage(store, run=query["run"], horizon=query["h"], window=query["window"], attr=query["attr"],
                         model=query["model"])
        template.main.append(view.view)
        watch_versions(template, store, ("runs", "ic", "metrics", "weights", "signals", "factor_exposures"),
                       on_refresh=view.reload)
    template.servable(title="backlake — alpha")


if __name__.startswith("bokeh_app") or __name__ == "__main__":
    main()
