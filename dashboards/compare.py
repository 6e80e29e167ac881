"""The compare page (``/compare?runs=a,b,c&baseline=a&basis=net``): 2-10 completed runs side by
side — equity overlay normalised to 1 at the start of their overlap, metrics diff coloured best
(green) / worst (red) per metric, tracking error of each run against the baseline, correlation
heatmap of returns, and the comparison's warnings.

Every figure comes from ``backlake.analytics.compare`` (through ``LakeStore.comparison``); the
page only lays it out. The URL follows the pickers, so a comparison can be shared by link.
"""

from __future__ import annotations

import html
import math
from typing import Any

import hvplot.pandas  # noqa: F401  (registers DataFrame.hvplot)
import pandas as pd
import panel as pn
import param
from bokeh.models import NumeralTickFormatter

from backlake.analytics.compare import COST_METRICS, MAX_RUNS, MIN_RUNS, Comparison
from backlake.errors import BacklakeError, ConfigError
from backlake.metrics import METRIC_UNITS
from dashboards.layout import page, watch_versions
from dashboards.runs import format_params
from dashboards.store import LakeStore

__all__ = ["ComparePage", "parse_query", "format_value", "metrics_html", "te_html", "correlation_html",
           "query_string"]

#: Line colours of the runs, in selection order (colour-blind safe, Tableau 10).
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac")
BEST, WORST = "#d4f4dd", "#fadbd8"
PICK_HINT = (f"Pick {MIN_RUNS} to {MAX_RUNS} completed runs to compare (or select them in the runs table and "
             "press **Compare selected**).")

CSS = """
.bl-cmp { border-collapse: collapse; width: 100%; font-size: 0.85rem; }
.bl-cmp th, .bl-cmp td { border-bottom: 1px solid #e3e6ea; padding: 4px 8px; text-align: right; white-space: nowrap; }
.bl-cmp th:first-child, .bl-cmp td:first-child { text-align: left; }
.bl-cmp thead th { background: #f4f6f8; color: #334; font-weight: 600; position: sticky; top: 0; }
.bl-cmp td.best { background: #d4f4dd; color: #14532d; font-weight: 600; }
.bl-cmp td.worst { background: #fadbd8; color: #7f1d1d; }
.bl-cmp .bl-dir { color: #8a94a3; font-size: 0.75rem; }
.bl-cmp .bl-swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
.bl-foot { color: #5f6b7a; font-size: 0.8rem; margin-top: 6px; }
.bl-corr td { text-align: center; min-width: 70px; }
.bl-sub { color: #5f6b7a; font-size: 0.9rem; }
"""


# -- formatting ---------------------------------------------------------------------------------
def format_value(name: str, value: float | None) -> str:
    """A metric as the table shows it: fractions as percentages, money and counts with
    thousands separators, ratios with 3 decimals; undefined as an en dash."""
    if value is None or not math.isfinite(value):
        return "–"
    unit = METRIC_UNITS.get(name, "currency" if name in COST_METRICS else "")
    if unit.startswith("fraction"):
        return f"{value:.2%}"
    if unit.startswith(("count", "bars")):
        return f"{value:,.0f}"
    if unit.startswith("currency"):
        return f"{value:,.2f}"
    if unit.startswith("days"):
        return f"{value:,.1f}"
    return f"{value:,.3f}"  # as the runs table and the run pages show ratios


#: Metric labels where the plain name reads badly; others: "max_drawdown" -> "Max drawdown".
LABELS = {
    "cagr": "CAGR", "n_trades": "Trades", "n_closed_trades": "Closed trades", "pnl": "P&L",
    "avg_trade_pnl": "Avg trade P&L", "avg_mae": "Avg MAE", "avg_mfe": "Avg MFE", "r_squared": "R²",
    "max_drawdown_duration_bars": "Max drawdown duration (bars)",
    "max_drawdown_duration_days": "Max drawdown duration (days)", "total_costs": "Total costs",
    "cost_commission": "Costs: commission", "cost_fees": "Costs: market fees", "cost_slippage": "Costs: slippage",
    "cost_impact": "Costs: market impact",
}


def _label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " ").capitalize())


def _swatch(i: int) -> str:
    return f"<span class='bl-swatch' style='background:{PALETTE[i % len(PALETTE)]}'></span>"


def _run_head(cmp: Comparison) -> str:
    cells = "".join(
        f"<th data-run='{html.escape(r.run_id)}' title='{html.escape(r.kind)} · {html.escape(r.timeframe)}'>"
        f"{_swatch(i)}{html.escape(r.label)}</th>" for i, r in enumerate(cmp.runs))
    return cells


def metrics_html(cmp: Comparison) -> str:
    """The metrics diff: one row per metric, one column per run; best green, worst red.
    Every value cell carries its exact value (``data-value``) for checks."""
    rows = []
    for m in cmp.metrics:
        arrow = {"higher": "↑ higher is better", "lower": "↓ lower is better"}.get(m.direction, "")
        cells = []
        for r in cmp.run_ids:
            v = m.values.get(r)
            cls = "best" if r in m.best else ("worst" if r in m.worst else "")
            exact = "" if v is None else repr(float(v))
            cells.append(f"<td class='{cls}' data-run='{html.escape(r)}' data-metric='{html.escape(m.name)}' "
                         f"data-value='{exact}'>{html.escape(format_value(m.name, v))}</td>")
        rows.append(f"<tr><td>{html.escape(_label(m.name))} <span class='bl-dir' title='{arrow}'>"
                    f"{arrow.split(' ')[0] if arrow else ''}</span></td>{''.join(cells)}</tr>")
    foot = (f"{html.escape(cmp.FOOTNOTE)} <span style='background:{BEST}'>&nbsp;green&nbsp;</span> best, "
            f"<span style='background:{WORST}'>&nbsp;red&nbsp;</span> worst per metric (↑ higher is better, "
            "↓ lower is better, unmarked: not ranked). Costs are money over each run's period.")
    return (f"<table class='bl-cmp bl-metrics-diff'><thead><tr><th>Metric</th>{_run_head(cmp)}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table><div class='bl-foot metrics-footnote'>{foot}</div>")


def te_html(cmp: Comparison) -> str:
    """Tracking error of each run against the baseline."""
    rows = []
    for i, r in enumerate(cmp.runs):
        te = cmp.tracking_error.get(r.run_id)
        text = "baseline" if r.run_id == cmp.baseline else ("insufficient data" if te is None else f"{te:.2%}")
        exact = "" if te is None else repr(float(te))
        rows.append(f"<tr><td>{_swatch(i)}{html.escape(r.label)}</td><td>{html.escape(r.kind)}</td>"
                    f"<td class='te' data-run='{html.escape(r.run_id)}' data-value='{exact}'>{text}</td></tr>")
    return ("<table class='bl-cmp bl-te'><thead><tr><th>Run</th><th>Kind</th><th>Tracking error (annualised)</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            "<div class='bl-foot'>std(r &minus; r<sub>baseline</sub>, ddof=1) &times; &radic;periods per year, "
            "on the dates the run shares with the baseline; fewer than 2 such dates: insufficient data.</div>")


def _corr_colour(c: float | None) -> str:
    if c is None:
        return "#f4f6f8"
    c = max(-1.0, min(1.0, c))
    # diverging: blue (-1) - white (0) - red (+1)
    if c >= 0:
        r, g, b = 255, int(255 - 150 * c), int(255 - 170 * c)
    else:
        r, g, b = int(255 + 170 * c), int(255 + 120 * c), 255
    return f"rgb({r},{g},{b})"


def correlation_html(cmp: Comparison) -> str:
    """The correlation matrix as a heatmap (cell colour = correlation, -1 blue to +1 red)."""
    if cmp.correlation is None:
        return "<div class='bl-sub'>Correlation needs at least two runs with returns.</div>"
    ids = [c for c in cmp.correlation.columns if c != "run_id"]
    labels = {r.run_id: r.label for r in cmp.runs}
    head = "".join(f"<th>{html.escape(r[:8])}</th>" for r in ids)
    rows = []
    for row in cmp.correlation.iter_rows(named=True):
        cells = "".join(
            f"<td class='corr' data-a='{html.escape(row['run_id'])}' data-b='{html.escape(r)}' "
            f"data-value='{'' if row[r] is None else repr(float(row[r]))}' style='background:{_corr_colour(row[r])}'>"
            f"{'–' if row[r] is None else f'{row[r]:.2f}'}</td>" for r in ids)
        rows.append(f"<tr><td>{html.escape(labels.get(row['run_id'], row['run_id']))}</td>{cells}</tr>")
    return (f"<table class='bl-cmp bl-corr'><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(rows)}"
            "</tbody></table><div class='bl-foot'>Pearson correlation of per-bar returns, each pair on the dates "
            "both have.</div>")


# -- URL ------------------------------------------------------------------------------------------
def parse_query(params: dict[str, Any]) -> tuple[list[str], str | None, str]:
    """(runs, baseline, basis) from the page's query parameters."""
    def one(key: str) -> str:
        v = params.get(key)
        if isinstance(v, list):
            v = v[0] if v else ""
        if isinstance(v, bytes):
            v = v.decode()
        return str(v or "")

    runs = [r.strip() for r in one("runs").split(",") if r.strip()]
    basis = one("basis") or "net"
    return runs, one("baseline") or None, basis


def query_string(runs: list[str], baseline: str | None, basis: str) -> str:
    q = f"?runs={','.join(runs)}"
    if baseline:
        q += f"&baseline={baseline}"
    return q + f"&basis={basis}"


# -- the page ------------------------------------------------------------------------------------
class ComparePage(pn.viewable.Viewer):
    """Pickers (runs, baseline, basis) and the comparison of the picked runs."""

    runs = param.List(default=[], item_type=str)
    baseline = param.String(default=None, allow_None=True)
    basis = param.Selector(default="net", objects=["net", "gross"])

    def __init__(self, store: LakeStore, **params: Any) -> None:
        super().__init__(**params)
        self.store = store
        self.problem: str | None = None
        options = self._options()
        unknown = [r for r in self.runs if r not in options.values()]
        # the picked runs first, in their order (the picker lists them so), then the others; an
        # unknown id stays visible too: the error below names it
        by_id = {v: k for k, v in options.items()}
        opts = {**{by_id.get(r, r): r for r in self.runs}, **options, **{r: r for r in unknown}}
        self.picker = pn.widgets.MultiChoice(
            name="Runs", options=opts, value=list(self.runs), max_items=MAX_RUNS, solid=False,
            placeholder="type a run id, strategy or symbol", css_classes=["run-picker"], sizing_mode="stretch_width")
        self.base_picker = pn.widgets.Select(name="Baseline (tracking error)", options=self._base_options(),
                                             value=self.baseline or (self.runs[0] if self.runs else None),
                                             css_classes=["baseline-picker"], width=260, sizing_mode="fixed")
        self.basis_picker = pn.widgets.RadioButtonGroup(name="Basis", options=["net", "gross"], value=self.basis,
                                                        button_type="primary", button_style="outline",
                                                        css_classes=["basis-picker"], width=160, sizing_mode="fixed")
        self.picker.param.watch(self._on_runs, "value")
        self.base_picker.param.watch(lambda e: setattr(self, "baseline", e.new), "value")
        self.basis_picker.param.watch(lambda e: setattr(self, "basis", e.new), "value")

    def _options(self) -> dict[str, str]:
        try:
            runs = self.store.runs()
        except BacklakeError as e:
            self.problem = f"**Cannot read the lake** at `{self.store.lake_uri}`: {e}"
            return {}
        return {f"{r.run_id} · {r.strategy} · {r.symbols} · {format_params(r.params)}": str(r.run_id)
                for r in runs.itertuples(index=False)}

    def _base_options(self) -> list[str]:
        return list(self.runs)

    def _on_runs(self, event: param.parameterized.Event) -> None:
        new = list(event.new)
        base = self.baseline if self.baseline in new else (new[0] if new else None)
        with param.parameterized.batch_call_watchers(self):
            self.runs = new
            self.baseline = base
        self.base_picker.options = new
        self.base_picker.value = base

    @param.depends("runs", "baseline", "basis")
    def _sync_url(self) -> pn.pane.HTML:
        if pn.state.location is not None and self.runs:
            pn.state.location.update_query(runs=",".join(self.runs), baseline=self.baseline or "", basis=self.basis)
        link = "./compare" + query_string(self.runs, self.baseline, self.basis) if self.runs else ""
        text = f"Share: <a class='share-link' href='{html.escape(link)}'>{html.escape(link)}</a>" if link else ""
        return pn.pane.HTML(f"<div class='bl-sub'>{text}</div>", stylesheets=[CSS], sizing_mode="stretch_width")

    @param.depends("runs", "baseline", "basis")
    def _view(self) -> pn.viewable.Viewable:
        if self.problem:
            return pn.pane.Alert(self.problem, alert_type="danger")
        if len(self.runs) < MIN_RUNS:
            return pn.pane.Alert(PICK_HINT, alert_type="secondary", css_classes=["compare-hint"])
        try:
            cmp = self.store.comparison(list(self.runs), self.baseline, self.basis)
        except ConfigError as e:
            return pn.pane.Alert(f"**Cannot compare**: {html.escape(str(e))}", alert_type="danger",
                                 css_classes=["compare-error"])
        except BacklakeError as e:
            return pn.pane.Alert(f"**Cannot read the lake**: {html.escape(str(e))}", alert_type="danger")
        warnings = [pn.pane.Alert(f"⚠ {html.escape(w)}", alert_type="warning", css_classes=["compare-warning"],
                                  sizing_mode="stretch_width") for w in cmp.warnings]
        return pn.Column(
            *warnings,
            self._chart(cmp),
            pn.pane.Markdown("#### Metrics", margin=(10, 5, 0, 5)),
            pn.pane.HTML(metrics_html(cmp), stylesheets=[CSS], sizing_mode="stretch_width",
                         css_classes=["metrics-diff"]),
            pn.Row(
                pn.Column(pn.pane.Markdown(f"#### Tracking error vs `{cmp.baseline or '–'}`"),
                          pn.pane.HTML(te_html(cmp), stylesheets=[CSS], sizing_mode="stretch_width",
                                       css_classes=["tracking-error"]), sizing_mode="stretch_width"),
                pn.Column(pn.pane.Markdown("#### Correlation of returns"),
                          pn.pane.HTML(correlation_html(cmp), stylesheets=[CSS], sizing_mode="stretch_width",
                                       css_classes=["correlation"]), sizing_mode="stretch_width"),
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width", css_classes=["comparison"],
        )

    @staticmethod
    def _chart(cmp: Comparison) -> pn.viewable.Viewable:
        sub = pn.pane.HTML(f"<div class='bl-sub overlay-subtitle'>{html.escape(cmp.subtitle)}</div>",
                           stylesheets=[CSS], sizing_mode="stretch_width")
        if cmp.curves.is_empty():
            return pn.Column(pn.pane.Markdown("#### Equity overlay"), sub, pn.pane.Alert(
                "No overlapping dates: the runs' periods do not intersect, so there is no common start to "
                "normalise to. The metrics below still compare each run's full period.", alert_type="warning",
                css_classes=["no-overlap"]), sizing_mode="stretch_width")
        labels = {r.run_id: r.label for r in cmp.runs}
        df = cmp.curves.to_pandas()
        df["ts"] = pd.to_datetime(df["ts"]).dt.tz_localize(None)
        cols = [c for c in df.columns if c != "ts"]
        df = df.rename(columns={"ts": "Date", **{c: labels[c] for c in cols}})
        colours = [PALETTE[cmp.run_ids.index(c) % len(PALETTE)] for c in cols]
        title = f"Equity, normalised ({cmp.basis} of costs)"
        plot = df.hvplot.line(
            x="Date", y=[labels[c] for c in cols], color=colours, title=title, ylabel="Growth of 1", xlabel="",
            legend="top_left", responsive=True, height=380, group_label="Run", value_label="Growth of 1",
            yformatter=NumeralTickFormatter(format="0.00"),
        )
        return pn.Column(pn.pane.Markdown("#### Equity overlay"), sub,
                         pn.pane.HoloViews(plot, sizing_mode="stretch_width", css_classes=["overlay-chart"]),
                         sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        controls = pn.Row(self.picker, self.base_picker, self.basis_picker, sizing_mode="stretch_width",
                          css_classes=["compare-controls"])
        return pn.Column(controls, self._sync_url, pn.panel(self._view, loading_indicator=True),
                         sizing_mode="stretch_width", css_classes=["compare-page"])


def _serve() -> None:
    pn.extension(sizing_mode="stretch_width")
    template, identity = page("compare", "Compare runs")
    if identity is not None:
        store = LakeStore()
        pn.state.on_session_destroyed(lambda _context: store.close())
        query = pn.state.location.query_params if pn.state.location is not None else {}
        runs, baseline, basis = parse_query(dict(query))
        problems = []
        if basis not in ("net", "gross"):
            problems.append(f"basis={basis!r} in the URL is not a basis: use net or gross (showing net)")
            basis = "net"
        if baseline is not None and baseline not in runs:
            problems.append(f"baseline={baseline!r} in the URL is not one of the runs: using the first run")
            baseline = None
        for p in problems:
            template.main.append(pn.pane.Alert(html.escape(p), alert_type="warning", css_classes=["url-warning"]))
        template.main.append(ComparePage(store, runs=runs, baseline=baseline or (runs[0] if runs else None),
                                         basis=basis))
        # the lake moved on (a new run, a maintenance rewrite): a banner; Load latest reloads the
        # page, whose URL holds the comparison
        watch_versions(template, store, ("runs", "equity", "metrics"))
    template.servable(title="backlake — compare")


if __name__.startswith("bokeh_app") or __name__ == "__main__":
    _serve()
