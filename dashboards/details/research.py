"""Detail views of the research run kinds: ``sweep``, ``optimize``, ``walk_forward`` and
``monte_carlo`` (registered with :func:`dashboards.details.register`, shown by
``render(store, run)`` on the runs page and in reports).

Each view reads what its flow stored (README "Research at scale"):

- sweep: ``trials`` (params, metrics JSON) -> heatmap of any metric over two chosen parameters
  (the others fixed at a value or aggregated mean / max / min), the top-N table, the best run;
- optimize: ``trials`` (IS / OOS scores, overfit score, flag), ``metrics`` segments
  full / is / oos / study -> objective by trial with the best so far, parameter importance,
  IS vs OOS scatter, the overfitting panel, the best parameters' equity with its OOS period;
- walk_forward: ``windows`` and the stitched OOS ``equity`` -> timeline, IS vs OOS per window
  with the degradation, the parameters chosen per window, the equity with window boundaries;
- monte_carlo: ``trials`` (one row per path), ``metrics`` segment ``mc`` and the base equity ->
  fan chart, distributions with their confidence intervals, probability of ruin.

Computation lives in ``backlake.analytics.research_views``; numbers go through
``dashboards.fmt``.
"""

from __future__ import annotations

import html
import json
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
    Span,
)
from bokeh.palettes import RdYlGn11
from bokeh.plotting import figure

from backlake.analytics import research_views as rv
from backlake.analytics.compare import walk_forward_trades_note
from backlake.errors import BacklakeError
from backlake.strategies import display_name
from dashboards.details import FULL_TABLES, register
from dashboards.fmt import BOKEH_FORMATS, DASH, metric_text, unit_kind, value_text

__all__ = ["sweep_detail", "optimize_detail", "walk_forward_detail", "monte_carlo_detail", "run_title",
           "parse_json", "trial_frame"]

BLUE, ORANGE, GREEN, RED, GREY = "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#8a94a3"
FAN_MAX_PATHS = 1000  # paths regenerated for the fan chart (of the first seeds)
OVERFIT_FLAG = 0.3
HEADLINE = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "n_trades")
KIND_LABELS = {"sweep": "Parameter sweep", "optimize": "Optimisation", "walk_forward": "Walk-forward",
               "monte_carlo": "Monte Carlo"}

CSS = """
.bl-rv h3 { margin: 4px 0 2px 0; }
.bl-rv .bl-sub { color: #5f6b7a; font-size: 0.9rem; }
.bl-cards { display: flex; gap: 10px; flex-wrap: wrap; margin: 6px 0; }
.bl-card { border: 1px solid #d0d7de; border-radius: 8px; padding: 8px 14px; min-width: 130px; background: #fff; }
.bl-card .n { font-size: 1.35rem; font-weight: 700; color: #1f2933; }
.bl-card .l { color: #52606d; font-size: 0.75rem; text-transform: uppercase; letter-spacing: 0.04em; }
.bl-card .s { color: #5f6b7a; font-size: 0.75rem; }
.bl-card.bad { border-color: #e15759; background: #fdf1f1; } .bl-card.bad .n { color: #b3261e; }
.bl-card.good { border-color: #59a14f; background: #f0f9ef; } .bl-card.good .n { color: #1a7f37; }
.wf-trades-note { color: #5f6b7a; font-size: 0.85rem; }
.bl-tbl { border-collapse: collapse; font-size: 0.85rem; width: 100%; }
.bl-tbl th, .bl-tbl td { border-bottom: 1px solid #e3e6ea; padding: 3px 8px; text-align: right; white-space: nowrap; }
.bl-tbl th { background: #f4f6f8; color: #334; font-weight: 600; }
.bl-tbl th.l, .bl-tbl td.l { text-align: left; }
.bl-tbl tr.best td { background: #eaf5ea; font-weight: 600; }
.bl-tbl td.bad { background: #fadbd8; color: #7f1d1d; font-weight: 600; }
.bl-note { color: #5f6b7a; font-size: 0.8rem; }
"""


# -- small helpers --------------------------------------------------------------------------------
def parse_json(text: Any) -> dict[str, Any]:
    """A JSON object column as a dict ({} when null or not an object)."""
    if not isinstance(text, str) or not text:
        return {}
    try:
        v = json.loads(text)
    except ValueError:
        return {}
    return v if isinstance(v, dict) else {}


def run_title(run: dict[str, Any]) -> str:
    """'<Kind> · <strategy> on <symbols>' (a long universe collapsed to its size)."""
    syms = [s for s in str(run.get("symbols") or "").split(",") if s]
    where = ", ".join(syms) if len(syms) <= 5 else f"{', '.join(syms[:3])} and {len(syms) - 3} more"
    kind = KIND_LABELS.get(str(run.get("kind")), str(run.get("kind")))
    return f"{kind} · {display_name(run.get('strategy'), run.get('params')) or '?'} on {where or '?'}"


def _short(run: dict[str, Any]) -> str:
    syms = [s for s in str(run.get("symbols") or "").split(",") if s]
    return f"{run.get('strategy')} {syms[0] if len(syms) == 1 else f'{len(syms)} symbols'}"


def _header(run: dict[str, Any], subtitle: str) -> pn.pane.HTML:
    created = run.get("created_at")
    ok = created is not None and not pd.isna(created)
    when = pd.Timestamp(created).strftime("%Y-%m-%d %H:%M UTC") if ok else DASH
    return pn.pane.HTML(
        f"<div class='bl-rv'><h3>{html.escape(run_title(run))}</h3><div class='bl-sub'>{html.escape(subtitle)} · "
        f"run <code>{html.escape(str(run['run_id']))}</code> · {html.escape(str(run.get('timeframe') or ''))} · "
        f"{when} by {html.escape(str(run.get('created_by') or DASH))}</div></div>",
        stylesheets=[CSS], sizing_mode="stretch_width", css_classes=["rv-header"])


def _card(label: str, value: str, sub: str = "", cls: str = "") -> str:
    s = f"<div class='s'>{html.escape(sub)}</div>" if sub else ""
    return (f"<div class='bl-card {cls}'><div class='l'>{html.escape(label)}</div>"
            f"<div class='n'>{html.escape(value)}</div>{s}</div>")


def _cards(cards: Sequence[str], css_class: str) -> pn.pane.HTML:
    return pn.pane.HTML(f"<div class='bl-cards'>{''.join(cards)}</div>", stylesheets=[CSS],
                        sizing_mode="stretch_width", css_classes=[css_class])


def _html_table(df: pd.DataFrame, kinds: dict[str, str], *, left: Sequence[str] = (), css_class: str,
                row_class: Sequence[str] | None = None, cell_class: dict[str, Sequence[str]] | None = None,
                max_height: int = 360) -> pn.pane.HTML:
    """A read-only HTML table, each column formatted by its fmt kind ('text' as is), scrolling
    beyond ``max_height`` px (in a report every row shows: :data:`FULL_TABLES`)."""
    head = "".join(f"<th class='{'l' if c in left else ''}'>{html.escape(c.replace('_', ' '))}</th>"
                   for c in df.columns)
    body = []
    for i, row in enumerate(df.itertuples(index=False)):
        tds = []
        for c, v in zip(df.columns, row):
            k = kinds.get(c, "text")
            missing = v is None or (isinstance(v, float) and math.isnan(v))
            txt = str(v) if k == "text" else value_text(k, None if missing else v)
            cls = ("l " if c in left else "") + ((cell_class or {}).get(c, [""] * len(df))[i] or "")
            tds.append(f"<td class='{cls.strip()}'>{html.escape(txt)}</td>")
        rc = row_class[i] if row_class else ""
        body.append(f"<tr class='{rc}'>{''.join(tds)}</tr>")
    box = "overflow-x:auto" if FULL_TABLES.get() else f"max-height:{max_height}px;overflow:auto"
    return pn.pane.HTML(
        f"<div style='{box}'><table class='bl-tbl'><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>", stylesheets=[CSS], sizing_mode="stretch_width",
        css_classes=[css_class])


def _fig(title: str, *, height: int = 300, x_axis_type: str = "auto",
         tools: str = "pan,wheel_zoom,box_zoom,reset,save", **kw: Any) -> Any:
    f = figure(title=title, height=height, sizing_mode="stretch_width", x_axis_type=x_axis_type,
               tools=tools, toolbar_location="above", **kw)
    f.title.text_font_size = "12pt"
    f.grid.grid_line_alpha = 0.4
    f.outline_line_color = None
    return f


#: axis tick formats: like the numbers' (BOKEH_FORMATS) without the decimals ticks do not need
AXIS_FORMATS = {**BOKEH_FORMATS, "pct": "0.[0]%", "ratio": "0.[00]"}


def _fmt_axis(axis: Any, name: str) -> None:
    axis.formatter = NumeralTickFormatter(format=AXIS_FORMATS[unit_kind(name)])


def _empty(text: str, css_class: str = "rv-empty") -> pn.pane.Alert:
    return pn.pane.Alert(text, alert_type="info", sizing_mode="stretch_width", css_classes=[css_class])


def trial_frame(store: Any, run_id: str) -> pd.DataFrame:
    """The run's trials with their params and metrics JSON expanded into columns (parameters
    first, as ``p:<name>``), ordered by trial."""
    raw = store.query(
        "SELECT trial, params, objective, is_score, oos_score, overfit_score, flagged, total_return, sharpe, "
        "max_drawdown, n_trades, metrics FROM trials WHERE parent_id = ? ORDER BY trial", [run_id],
        key=("research.trials", run_id))
    rows = []
    for r in raw.to_dict("records"):
        row = {f"p:{k}": v for k, v in parse_json(r["params"]).items()}
        row.update({k: r[k] for k in raw.columns if k not in ("params", "metrics")})
        for k, v in parse_json(r["metrics"]).items():
            row.setdefault(k, v)
            if row[k] is None or (isinstance(row[k], float) and math.isnan(row[k])):
                row[k] = v
        rows.append(row)
    return pd.DataFrame(rows)


def _params_of(df: pd.DataFrame) -> list[str]:
    return [c[2:] for c in df.columns if c.startswith("p:")]


def _metric_columns(df: pd.DataFrame) -> list[str]:
    skip = {"trial", "flagged"}
    cols = [c for c in df.columns if not c.startswith("p:") and c not in skip
            and pd.api.types.is_numeric_dtype(df[c]) and df[c].notna().any()]
    first = [m for m in ("sharpe", "total_return", "cagr", "sortino", "calmar", "max_drawdown") if m in cols]
    return first + [c for c in cols if c not in first]


def _segment(store: Any, run_id: str, segment: str) -> dict[str, float | None]:
    m: dict[str, float | None] = store.metrics(run_id, segment)
    return m


def _equity_figure(store: Any, run: dict[str, Any], title: str, *, boundaries: Sequence[Any] = (),
                   oos_start: Any = None) -> Any:
    eq = store.equity(run["run_id"])
    if eq.empty:
        return None
    f = _fig(title, height=300, x_axis_type="datetime")
    src = ColumnDataSource({"ts": eq["ts"], "equity": eq["equity"]})
    f.line("ts", "equity", source=src, color=BLUE, line_width=1.6, legend_label="equity")
    if "benchmark_equity" in eq and eq["benchmark_equity"].notna().any():
        f.line(eq["ts"], eq["benchmark_equity"], color=GREY, line_width=1.2, line_dash="dashed",
               legend_label="benchmark")
    for b in boundaries:
        f.add_layout(Span(location=pd.Timestamp(b), dimension="height", line_color=ORANGE, line_alpha=0.5,
                          line_dash="dotted"))
    if oos_start is not None:
        from bokeh.models import BoxAnnotation

        f.add_layout(BoxAnnotation(left=pd.Timestamp(oos_start), fill_color=ORANGE, fill_alpha=0.08))
        f.add_layout(Span(location=pd.Timestamp(oos_start), dimension="height", line_color=ORANGE, line_width=2))
    f.yaxis.formatter = NumeralTickFormatter(format="0,0")
    f.add_tools(HoverTool(tooltips=[("date", "@ts{%F}"), ("equity", "@equity{0,0.00}")],
                          formatters={"@ts": "datetime"}, mode="vline"))
    f.legend.location = "top_left"
    f.legend.background_fill_alpha = 0.6
    return f


def _metrics_table(segments: dict[str, dict[str, float | None]], names: Sequence[str], css_class: str) -> pn.pane.HTML:
    cols = [s for s, m in segments.items() if m]
    rows = [f"<tr><td class='l'>{html.escape(n.replace('_', ' '))}</td>"
            + "".join(f"<td>{html.escape(metric_text(n, segments[s].get(n)))}</td>" for s in cols) + "</tr>"
            for n in names if any(n in segments[s] for s in cols)]
    head = "<th class='l'>metric</th>" + "".join(f"<th>{html.escape(s.upper() if len(s) <= 3 else s)}</th>"
                                                 for s in cols)
    return pn.pane.HTML(f"<table class='bl-tbl'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>",
                        stylesheets=[CSS], sizing_mode="stretch_width", css_classes=[css_class])


# -- sweep ---------------------------------------------------------------------------------------
def _axis_label(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


class SweepView:
    """Heatmap with parameter / metric / other-parameters pickers, top-N table, best run."""

    def __init__(self, store: Any, run: dict[str, Any]) -> None:
        self.store, self.run = store, run
        self.df = trial_frame(store, run["run_id"])
        self.params = _params_of(self.df)
        self.metrics = _metric_columns(self.df)
        self.objective = str(parse_json(run.get("config")).get("objective") or "sharpe")
        default_metric = self.objective if self.objective in self.metrics else (self.metrics or ["sharpe"])[0]
        p = self.params
        self.x = pn.widgets.Select(name="X parameter", options=p, value=p[0] if p else None, width=150)
        self.y = pn.widgets.Select(name="Y parameter", options=p, value=p[1] if len(p) > 1 else None, width=150)
        self.metric = pn.widgets.Select(name="Metric", options=self.metrics, value=default_metric, width=170)
        self.mode = pn.widgets.Select(name="Other parameters", options=["fixed", *rv.AGGREGATES], value="max",
                                      width=150)
        self.fixed: dict[str, pn.widgets.Select] = {}
        for name in p:
            vals = sorted({v for v in self.df[f"p:{name}"].tolist()}, key=rv._sort_key)
            self.fixed[name] = pn.widgets.Select(name=f"{name} =", options={_axis_label(v): v for v in vals},
                                                 value=vals[0] if vals else None, width=110)
        self.top_n = pn.widgets.Select(name="Top", options=[10, 20, 50, 100], value=10, width=80)
        self.fixed_row = pn.Row(sizing_mode="stretch_width", css_classes=["sweep-fixed"])
        self.heat = pn.pane.Bokeh(sizing_mode="stretch_width", css_classes=["sweep-heatmap"])
        self.note = pn.pane.HTML("", stylesheets=[CSS], sizing_mode="stretch_width", css_classes=["sweep-heat-note"])
        self.top = pn.Column(sizing_mode="stretch_width")
        for w in (self.x, self.y, self.metric, self.mode, *self.fixed.values()):
            w.param.watch(self._draw, "value")
        for w in (self.top_n, self.metric):
            w.param.watch(self._draw_top, "value")
        self._draw()
        self._draw_top()

    def _draw(self, *_: Any) -> None:
        x, y, metric = self.x.value, self.y.value, self.metric.value
        others = [p for p in self.params if p not in (x, y)]
        self.fixed_row[:] = [self.fixed[p] for p in others] if self.mode.value == "fixed" else []
        self.mode.disabled = not others
        if x is None or y is None or x == y:
            self.heat.object = None
            self.note.object = "<span class='bl-note'>Pick two different parameters.</span>"
            return
        fixed = {p: self.fixed[p].value for p in others} if self.mode.value == "fixed" else {}
        rows = [{**{p: r[f"p:{p}"] for p in self.params}, metric: r.get(metric)} for r in self.df.to_dict("records")]
        xs, ys, z = rv.heatmap_grid(rows, x, y, metric, fixed=fixed,
                                    agg=self.mode.value if self.mode.value != "fixed" else "mean")
        xl, yl = [_axis_label(v) for v in xs], [_axis_label(v) for v in ys]
        kind = unit_kind(metric)
        data: dict[str, list[Any]] = {"x": [], "y": [], "v": [], "text": []}
        for j, b in enumerate(yl):
            for i, a in enumerate(xl):
                data["x"].append(a)
                data["y"].append(b)
                data["v"].append(np.nan if z[j][i] is None else z[j][i])
                data["text"].append(value_text(kind, z[j][i]))
        vals = [v for v in data["v"] if not math.isnan(v)]
        lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
        if lo == hi:
            lo, hi = lo - 1e-9, hi + 1e-9
        data["tc"] = ["#1f2933" if math.isnan(v) or 0.2 <= (v - lo) / (hi - lo) <= 0.8 else "#ffffff"
                      for v in data["v"]]
        mapper = LinearColorMapper(palette=list(reversed(RdYlGn11)), low=lo, high=hi, nan_color="#eeeeee")
        how = (", ".join(f"{p} = {_axis_label(v)}" for p, v in fixed.items()) if fixed
               else (f"{self.mode.value} over {', '.join(others)}" if others else "every combination"))
        title = f"{metric.replace('_', ' ')} by {x} x {y} · {_short(self.run)} ({how})"
        f = _fig(title, height=max(260, 44 * len(yl) + 110), x_range=xl, y_range=yl, tools="hover,save")
        f.rect("x", "y", 1, 1, source=ColumnDataSource(data), fill_color={"field": "v", "transform": mapper},
               line_color="white")
        f.text("x", "y", text="text", source=ColumnDataSource(data), text_align="center", text_baseline="middle",
               text_font_size="9pt", text_color="tc")
        f.xaxis.axis_label, f.yaxis.axis_label = x, y
        f.grid.grid_line_color = None
        f.select_one(HoverTool).tooltips = [(x, "@x"), (y, "@y"), (metric, "@text")]
        bar = ColorBar(color_mapper=mapper, ticker=BasicTicker(desired_num_ticks=6), width=12,
                       formatter=NumeralTickFormatter(format=BOKEH_FORMATS[kind]))
        f.add_layout(bar, "right")
        self.heat.object = f
        n_cells = sum(v is not None for row in z for v in row)
        self.note.object = (f"<span class='bl-note'>{n_cells} of {len(xs) * len(ys)} cells have a value; grey = no "
                            "valid combination" + ("" if not fixed else " at these fixed values") + ".</span>")

    def _draw_top(self, *_: Any) -> None:
        metric = self.metric.value or self.objective
        df = self.df
        if metric in df:
            df = df.sort_values([metric, "trial"], ascending=[False, True], na_position="last")
        shown = [m for m in dict.fromkeys([metric, *HEADLINE]) if m in df.columns]
        out = pd.DataFrame({"rank": range(1, min(self.top_n.value, len(df)) + 1)})
        head = df.head(self.top_n.value).reset_index(drop=True)
        for p in self.params:
            out[p] = [_axis_label(v) for v in head[f"p:{p}"]]
        for m in shown:
            out[m] = head[m].to_numpy()
        kinds = {m: unit_kind(m) for m in shown}
        kinds["rank"] = "count"
        self.top[:] = [pn.pane.Markdown(f"#### Top {len(out)} combinations by {metric.replace('_', ' ')}"),
                       _html_table(out, kinds, left=self.params, css_class="sweep-top",
                                   row_class=["best" if i == 0 else "" for i in range(len(out))])]

    def best_panel(self) -> pn.viewable.Viewable:
        best = parse_json(self.run.get("params"))
        grid_keys = set(self.params)
        best_combo = {k: v for k, v in best.items() if k in grid_keys}
        combo_text = ", ".join(f"{k} = {_axis_label(v)}" for k, v in best_combo.items())
        match = self.df
        for k, v in best_combo.items():
            match = match[match[f"p:{k}"] == v]
        twin = self.store.query(
            "SELECT run_id, params FROM runs WHERE status = 'completed' AND kind = 'backtest' AND strategy = ? "
            "AND symbols = ? AND timeframe = ? ORDER BY created_at DESC",
            [self.run.get("strategy"), self.run.get("symbols"), self.run.get("timeframe")],
            key=("research.sweep.twins", self.run["run_id"]))
        link = next((r for r, p in zip(twin["run_id"], twin["params"]) if parse_json(p) == best), None)
        items = []
        if len(match):
            row = match.iloc[0]
            items = [_card(m.replace("_", " "), metric_text(m, row.get(m))) for m in HEADLINE if m in row]
        where = (f"<a class='best-run-link' href='./app?run={html.escape(link)}'>open its backtest run "
                 f"<code>{html.escape(link)}</code></a>" if link else
                 "no separate backtest run of these parameters in the lake; metrics from the sweep's trial")
        return pn.Column(
            pn.pane.HTML("<div class='bl-rv'><h4 style='margin:6px 0'>Best parameters "
                         f"({html.escape(self.objective)}): "
                         f"{html.escape(combo_text or DASH)}</h4><div class='bl-sub'>{where}</div></div>",
                         stylesheets=[CSS], sizing_mode="stretch_width", css_classes=["sweep-best"]),
            _cards(items, "sweep-best-cards"), sizing_mode="stretch_width")

    def view(self) -> pn.viewable.Viewable:
        n = len(self.df)
        grid = parse_json(self.run.get("config")).get("grid") or {}
        size = math.prod(len(v) for v in grid.values()) if grid else n
        sub = f"{n} valid combinations of {size} · objective {self.objective}"
        pickers = pn.Row(self.x, self.y, self.metric, self.mode, sizing_mode="stretch_width",
                         css_classes=["sweep-pickers"])
        return pn.Column(_header(self.run, sub), self.best_panel(), pickers, self.fixed_row, self.heat, self.note,
                         pn.Row(self.top_n), self.top, sizing_mode="stretch_width", css_classes=["research-detail"])


@register("sweep")
def sweep_detail(store: Any, run: dict[str, Any]) -> pn.viewable.Viewable:
    try:
        view = SweepView(store, run)
    except BacklakeError as e:
        return _empty(f"Could not read the sweep's trials: {e}")
    if view.df.empty:
        return pn.Column(_header(run, "parameter sweep"), _empty(
            "This sweep has no trials in the lake (every combination was invalid?). Run "
            "`backlake sweep cfg.json --grid grid.json` to make one."), sizing_mode="stretch_width")
    return view.view()


# -- optimize ------------------------------------------------------------------------------------
@register("optimize")
def optimize_detail(store: Any, run: dict[str, Any]) -> pn.viewable.Viewable:
    rid = run["run_id"]
    cfg = parse_json(run.get("config"))
    objective = str(cfg.get("objective") or "sharpe")
    df = trial_frame(store, rid)
    study = _segment(store, rid, "study")
    segs = {s: _segment(store, rid, s) for s in ("full", "is", "oos")}
    sub = (f"{cfg.get('sampler', '?')} study · {len(df)} trials · objective {objective} · "
           f"OOS fraction {value_text('pct', cfg.get('oos_fraction'))}")
    if df.empty:
        return pn.Column(_header(run, sub), _empty("This optimisation stored no trials."), sizing_mode="stretch_width")
    params = _params_of(df)
    okind = unit_kind(objective)

    # objective by trial, best so far
    f1 = _fig(f"{objective} by trial · {_short(run)}", height=280)
    src = ColumnDataSource({"trial": df["trial"], "objective": df["objective"],
                            "best": rv.best_so_far(df["objective"].tolist()),
                            "params": [", ".join(f"{p}={_axis_label(v)}" for p in params
                                                 if (v := r.get(f"p:{p}")) is not None)
                                       for r in df.to_dict("records")]})
    f1.scatter("trial", "objective", source=src, size=6, color=BLUE, alpha=0.7, legend_label="trial (IS)")
    f1.step("trial", "best", source=src, mode="after", color=ORANGE, line_width=2, legend_label="best so far")
    f1.add_tools(HoverTool(tooltips=[("trial", "@trial"), (objective, "@objective{0.000}"), ("params", "@params")]))
    f1.xaxis.axis_label, f1.yaxis.axis_label = "trial", f"{objective} (in-sample)"
    _fmt_axis(f1.yaxis, objective)
    f1.legend.location = "bottom_right"

    # parameter importance
    imp = rv.param_importance([{p: r.get(f"p:{p}") for p in params if r.get(f"p:{p}") is not None}
                               for r in df.to_dict("records")], df["objective"].tolist())
    names = [i.name for i in imp][::-1]
    f2 = _fig(f"Parameter importance for {objective} · {_short(run)}", height=max(180, 40 * len(imp) + 90),
              y_range=names, x_range=(0, 1))
    f2.hbar(y=names, right=[i.eta2 for i in imp][::-1], height=0.6, color=BLUE)
    f2.xaxis.formatter = NumeralTickFormatter(format="0%")
    f2.xaxis.axis_label = "share of the objective's variance explained (η²)"
    imp_df = pd.DataFrame({"parameter": [i.name for i in imp], "variance_explained": [i.eta2 for i in imp],
                           "rank_correlation": [i.spearman for i in imp], "levels": [i.n_levels for i in imp]})
    imp_tbl = _html_table(imp_df, {"variance_explained": "pct", "rank_correlation": "ratio", "levels": "count"},
                          left=["parameter"], css_class="opt-importance")

    # IS vs OOS
    flagged = df["flagged"].fillna(False).astype(bool)
    f3 = _fig(f"In-sample vs out-of-sample {objective} · {_short(run)}", height=320)
    for mask, colour, label in ((~flagged, BLUE, "trial"), (flagged, RED, f"flagged (overfit > {OVERFIT_FLAG:g})")):
        if mask.any():
            f3.scatter(df.loc[mask, "is_score"], df.loc[mask, "oos_score"], size=7, color=colour, alpha=0.75,
                       legend_label=label)
    both = pd.concat([df["is_score"], df["oos_score"]]).dropna()
    if len(both):
        lo, hi = float(both.min()), float(both.max())
        f3.line([lo, hi], [lo, hi], color=GREY, line_dash="dashed", legend_label="OOS = IS")
    f3.xaxis.axis_label, f3.yaxis.axis_label = f"IS {objective}", f"OOS {objective}"
    _fmt_axis(f3.xaxis, objective)
    _fmt_axis(f3.yaxis, objective)
    f3.legend.location = "top_left"

    # overfitting panel
    best_i = df["objective"].idxmax() if df["objective"].notna().any() else None
    best_row = df.loc[best_i] if best_i is not None else None
    ov = None if best_row is None else best_row.get("overfit_score")
    ov_bad = ov is not None and not pd.isna(ov) and ov > OVERFIT_FLAG
    n_trials = study.get("n_trials")
    pbo, dsr = study.get("pbo"), study.get("deflated_sharpe")
    n_flag = int(flagged.sum())
    cards = [
        _card("overfit score (best)", value_text("pct", ov), f"flag above {OVERFIT_FLAG:.0%}; (IS - OOS) / |IS|",
              "bad" if ov_bad else "good"),
        _card("flagged trials", f"{n_flag} of {len(df)}",
              f"{value_text('pct', n_flag / len(df))} overfit > {OVERFIT_FLAG:g}"),
        _card("PBO", value_text("pct", pbo), "probability of backtest overfitting (CSCV)",
              "bad" if pbo is not None and pbo > 0.5 else ("good" if pbo is not None else "")),
        _card("deflated Sharpe", value_text("pct", dsr),
              f"P(true Sharpe > 0) given {value_text('count', n_trials)} trials",
              "good" if dsr is not None and dsr >= 0.95 else ("bad" if dsr is not None and dsr < 0.5 else "")),
        _card(f"best IS {objective}", value_text(okind, None if best_row is None else best_row["is_score"])),
        _card(f"best OOS {objective}", value_text(okind, None if best_row is None else best_row["oos_score"])),
    ]
    logits = _segment(store, rid, "pbo_logits")  # logit -> share of the CSCV splits (runs since the segment)
    pbo_fig = _pbo_figure(logits, pbo, run) if logits else None
    pbo_note = pn.pane.HTML(
        "<span class='bl-note'>PBO (CSCV): for each split of the bars into in- and out-of-sample halves, the "
        "trial best in-sample is ranked out-of-sample; logit = ln(w / (1 - w)) of its relative rank w. PBO = "
        "share of splits with logit ≤ 0 (the in-sample best at or below the out-of-sample median)"
        + ("" if logits else "; this run was stored before the logit distribution was (segment "
           "<code>pbo_logits</code>), so only the PBO is shown")
        + ". Deflated Sharpe accounts for every completed trial of the study.</span>",
        stylesheets=[CSS], sizing_mode="stretch_width")

    best_params = {k: v for k, v in parse_json(run.get("params")).items() if k in params}
    eq_rows = store.equity(rid)
    frac = cfg.get("oos_fraction")
    oos_start = None
    if isinstance(frac, (int, float)) and 0 < frac < 1 and len(eq_rows):
        k = len(eq_rows) - round(len(eq_rows) * frac)  # the flow's split (optimize._split) on the same bars
        oos_start = eq_rows["ts"].iloc[min(k, len(eq_rows) - 1)]
    eq = _equity_figure(store, run, f"Best parameters' equity · {_short(run)} "
                                    f"({', '.join(f'{k}={_axis_label(v)}' for k, v in best_params.items())})",
                        oos_start=oos_start)
    return pn.Column(
        _header(run, sub),
        pn.pane.Markdown("#### Overfitting"), _cards(cards, "opt-overfit"), pbo_note,
        *([pn.pane.Bokeh(pbo_fig, sizing_mode="stretch_width")] if pbo_fig is not None else []),
        pn.Row(pn.pane.Bokeh(f1, sizing_mode="stretch_width"), pn.pane.Bokeh(f3, sizing_mode="stretch_width"),
               sizing_mode="stretch_width"),
        pn.Row(pn.Column(pn.pane.Bokeh(f2, sizing_mode="stretch_width"), sizing_mode="stretch_width"),
               pn.Column(pn.pane.Markdown("#### Parameter importance"), imp_tbl, pn.pane.HTML(
                   "<span class='bl-note'>η²: share of the objective's variance between the trials explained by "
                   "grouping them by the parameter (numeric parameters in up to 5 equal-count bins); rank "
                   "correlation: Spearman's, the parameter's ranks against the objective's. One parameter at a time: "
                   "interactions are not attributed.</span>", stylesheets=[CSS], sizing_mode="stretch_width"),
                         sizing_mode="stretch_width"), sizing_mode="stretch_width"),
        pn.pane.Markdown("#### Best parameters over the whole period (IS / OOS)"),
        *([pn.pane.Bokeh(eq, sizing_mode="stretch_width")] if eq is not None else []),
        _metrics_table(segs, [*HEADLINE, "annual_volatility", "win_rate", "calmar"], "opt-segments"),
        sizing_mode="stretch_width", css_classes=["research-detail"])


def _pbo_figure(logits: dict[str, Any], pbo: Any, run: dict[str, Any]) -> Any:
    """The CSCV logit distribution: a bar per distinct logit (share of the splits), the bars at
    or below 0 (overfit: their total is the PBO) in red."""
    points = sorted((float(k), float(v or 0.0)) for k, v in logits.items())
    xs, shares = [p[0] for p in points], [p[1] for p in points]
    gaps = np.diff(xs) if len(xs) > 1 else np.array([1.0])
    width = float(np.min(gaps)) * 0.8 if len(gaps) else 0.8
    fig = _fig(f"PBO logit distribution · {_short(run)} (PBO {value_text('pct', pbo)})", height=240)
    colours = [RED if x <= 0 else BLUE for x in xs]
    fig.vbar(x=xs, top=shares, width=width, color=colours, alpha=0.8)
    fig.add_layout(Span(location=0, dimension="height", line_color=GREY, line_dash="dashed"))
    fig.xaxis.axis_label = "logit of the in-sample best trial's out-of-sample rank (≤ 0: overfit)"
    fig.yaxis.axis_label = "share of splits"
    fig.yaxis.formatter = NumeralTickFormatter(format="0%")
    return fig


# -- walk-forward --------------------------------------------------------------------------------
@register("walk_forward")
def walk_forward_detail(store: Any, run: dict[str, Any]) -> pn.viewable.Viewable:
    rid = run["run_id"]
    cfg = parse_json(run.get("config"))
    w = store.query(
        "SELECT \"window\", timezone('UTC', train_start) AS train_start, timezone('UTC', train_end) AS train_end, "
        "timezone('UTC', test_start) AS test_start, timezone('UTC', test_end) AS test_end, best_params, is_sharpe, "
        "oos_sharpe, degradation FROM windows WHERE parent_id = ? ORDER BY \"window\"", [rid],
        key=("research.windows", rid))
    sub = (f"{cfg.get('mode', 'rolling')} · train {cfg.get('train')} · test {cfg.get('test')}"
           + (f" · step {cfg.get('step')}" if cfg.get("step") else "") + f" · {len(w)} windows · objective "
           f"{cfg.get('objective', 'sharpe')}")
    if w.empty:
        return pn.Column(_header(run, sub), _empty("This walk-forward stored no windows."), sizing_mode="stretch_width")
    oos = _segment(store, rid, "oos")
    cards = [_card(f"OOS {m.replace('_', ' ')}", metric_text(m, oos.get(m))) for m in HEADLINE if m in oos]
    cards += [_card("mean IS Sharpe", value_text("ratio", w["is_sharpe"].mean())),
              _card("mean OOS Sharpe", value_text("ratio", w["oos_sharpe"].mean())),
              _card("median degradation", value_text("pct", w["degradation"].median()), "(IS - OOS) / |IS|",
                    "bad" if w["degradation"].median() > OVERFIT_FLAG else "")]

    labels = [f"window {i}" for i in w["window"]][::-1]
    tl = _fig(f"Windows · {_short(run)}", height=max(200, 24 * len(w) + 90), x_axis_type="datetime", y_range=labels)
    ys = [f"window {i}" for i in w["window"]]
    tl.hbar(y=ys, left=w["train_start"], right=w["train_end"], height=0.6, color=BLUE, alpha=0.75, legend_label="train")
    tl.hbar(y=ys, left=w["test_start"], right=w["test_end"], height=0.6, color=ORANGE, legend_label="test")
    tl.legend.location = "top_right"
    tl.legend.orientation = "horizontal"

    idx = [str(i) for i in w["window"]]
    f2 = _fig(f"In-sample vs out-of-sample Sharpe per window · {_short(run)}", height=300, x_range=idx)
    src = ColumnDataSource({"w": idx, "is": w["is_sharpe"], "oos": w["oos_sharpe"], "deg": w["degradation"],
                            "deg_text": [value_text("pct", v) for v in w["degradation"]]})
    from bokeh.transform import dodge

    f2.vbar(x=dodge("w", -0.18, range=f2.x_range), top="is", width=0.34, source=src, color=BLUE, legend_label="IS")
    f2.vbar(x=dodge("w", 0.18, range=f2.x_range), top="oos", width=0.34, source=src, color=ORANGE, legend_label="OOS")
    f2.add_tools(HoverTool(tooltips=[("window", "@w"), ("IS Sharpe", "@is{0.000}"), ("OOS Sharpe", "@oos{0.000}"),
                                     ("degradation", "@deg_text")]))
    f2.xaxis.axis_label, f2.yaxis.axis_label = "window", "Sharpe"
    f2.legend.location = "top_left"
    f2.legend.orientation = "horizontal"

    chosen = [parse_json(p) for p in w["best_params"]]
    pnames = sorted({k for c in chosen for k in c})
    stab = rv.param_stability(chosen)
    f3 = _fig(f"Parameters chosen per window · {_short(run)}", height=260)
    for k, colour in zip(pnames, (BLUE, ORANGE, GREEN, RED, GREY)):
        vals = [c.get(k) for c in chosen]
        if all(isinstance(v, (int, float)) for v in vals):
            f3.step(list(w["window"]), vals, mode="center", color=colour, line_width=2, legend_label=k)
            f3.scatter(list(w["window"]), vals, color=colour, size=6)
    f3.xaxis.axis_label = "window"
    if f3.legend:
        f3.legend.location = "top_left"
    stab_df = pd.DataFrame({"parameter": pnames, "most_chosen": [_axis_label(stab[k]["mode"]) for k in pnames],
                            "share_of_windows": [stab[k]["mode_share"] for k in pnames],
                            "distinct_values": [stab[k]["distinct"] for k in pnames],
                            "changes": [stab[k]["changes"] for k in pnames]})

    table = pd.DataFrame({
        "window": w["window"],
        "train": [f"{a:%Y-%m-%d} → {b:%Y-%m-%d}" for a, b in zip(w["train_start"], w["train_end"])],
        "test": [f"{a:%Y-%m-%d} → {b:%Y-%m-%d}" for a, b in zip(w["test_start"], w["test_end"])],
        "params": [", ".join(f"{k}={_axis_label(v)}" for k, v in c.items()) for c in chosen],
        "IS_sharpe": w["is_sharpe"], "OOS_sharpe": w["oos_sharpe"], "degradation": w["degradation"]})
    deg_cls = ["bad" if v is not None and not pd.isna(v) and v > OVERFIT_FLAG else "" for v in w["degradation"]]
    eq = _equity_figure(store, run, f"Stitched out-of-sample equity · {_short(run)} (dotted: window starts)",
                        boundaries=list(w["test_start"]))
    return pn.Column(
        _header(run, sub), _cards(cards, "wf-cards"),
        *([pn.pane.HTML(f"<div class='wf-trades-note'>Out of sample, {html.escape(walk_forward_trades_note(oos))}."
                        "</div>", stylesheets=[CSS], sizing_mode="stretch_width")] if oos.get("n_trades") is not None
          else []),
        *([pn.pane.Bokeh(eq, sizing_mode="stretch_width")] if eq is not None else
          [_empty("The stitched out-of-sample equity is not in the lake.")]),
        pn.pane.Bokeh(tl, sizing_mode="stretch_width"), pn.pane.Bokeh(f2, sizing_mode="stretch_width"),
        pn.Row(pn.pane.Bokeh(f3, sizing_mode="stretch_width"),
               pn.Column(pn.pane.Markdown("#### Parameter stability"),
                         _html_table(stab_df, {"share_of_windows": "pct", "distinct_values": "count",
                                               "changes": "count"}, left=["parameter", "most_chosen"],
                                     css_class="wf-stability"), sizing_mode="stretch_width"),
               sizing_mode="stretch_width"),
        pn.pane.Markdown(f"#### Windows (degradation above {OVERFIT_FLAG:.0%} highlighted)"),
        _html_table(table, {"window": "count", "IS_sharpe": "ratio", "OOS_sharpe": "ratio", "degradation": "pct"},
                    left=["train", "test", "params"], css_class="wf-windows", cell_class={"degradation": deg_cls}),
        sizing_mode="stretch_width", css_classes=["research-detail"])


# -- Monte Carlo ---------------------------------------------------------------------------------
def _fan_figure(store: Any, run: dict[str, Any], cfg: dict[str, Any]) -> Any:
    method = str(cfg.get("method"))
    n_paths, seeds = int(cfg.get("n_paths") or 0), list(cfg.get("seeds") or [0])
    eq = store.equity(run["run_id"])
    trade_r = None
    if method == "trade_bootstrap":
        trade_r = store.query("SELECT return_pct FROM trades WHERE run_id = ? AND exit_reason <> 'end_of_data' "
                              "ORDER BY trade_id", [run["run_id"]], key=("research.mc.trades", run["run_id"]))
        trade_r = trade_r["return_pct"].to_numpy(dtype=float)
    entries = _entries(store, run, cfg, eq) if method == "random_entry" else None
    parts, used = [], 0
    for s in seeds:
        k = min(n_paths, FAN_MAX_PATHS - used)
        if k <= 0:
            break
        parts.append(rv.mc_equity_paths(method=method, n_paths=k, seed=int(s),
                                        block_size=int(cfg.get("block_size") or 20),
                                        equity=eq["equity"].to_numpy(dtype=float), trade_returns=trade_r,
                                        initial_cash=float(cfg.get("initial_cash") or eq["equity"].iloc[0]),
                                        entries=entries))
        used += k
    paths = np.vstack(parts)
    bands = rv.fan_percentiles(paths)
    if method == "trade_bootstrap":
        x: Any = np.arange(paths.shape[1])
        original = float(cfg.get("initial_cash") or 1.0) * np.concatenate([[1.0], np.cumprod(1.0 + trade_r)])
        f = _fig(f"Monte Carlo fan ({used} paths, {method}) · {_short(run)}", height=340)
        f.xaxis.axis_label = "closed trade"
    else:
        x = eq["ts"]
        original = eq["equity"].to_numpy()
        f = _fig(f"Monte Carlo fan ({used} paths, {method}) · {_short(run)}", height=340, x_axis_type="datetime")
    f.varea(x=x, y1=bands[0], y2=bands[4], fill_color=BLUE, fill_alpha=0.15, legend_label="5–95 %")
    f.varea(x=x, y1=bands[1], y2=bands[3], fill_color=BLUE, fill_alpha=0.3, legend_label="25–75 %")
    f.line(x, bands[2], color=BLUE, line_width=1.5, line_dash="dashed", legend_label="median")
    f.line(x, original, color="#1f2933", line_width=2, legend_label="original")
    f.yaxis.formatter = NumeralTickFormatter(format="0,0")
    f.legend.location = "top_left"
    return f


def _entries(store: Any, run: dict[str, Any], cfg: dict[str, Any], eq: pd.DataFrame) -> dict[str, Any]:
    """What ``random_entry`` paths need per trade (``rv.ENTRY_FIELDS``): the run's trades in
    order with their entry bars' low / high from the bars at the version the run pinned."""
    version = parse_json(run.get("data_versions")).get("bars")
    if version is None:
        raise BacklakeError("the run records no bars version, so its entry bars cannot be read")
    df = store.query(
        "WITH t AS (SELECT trade_id, symbol, direction, qty, entry_price, entry_ts FROM trades WHERE run_id = ?), "
        "b AS (SELECT symbol, ts, first(low) AS low, first(high) AS high FROM bars_at(?) "
        "      WHERE timeframe = ? AND symbol IN (SELECT DISTINCT symbol FROM t) GROUP BY symbol, ts) "
        "SELECT t.*, b.low, b.high, epoch_us(t.entry_ts) AS entry_us FROM t "
        "LEFT JOIN b ON b.symbol = t.symbol AND b.ts = t.entry_ts ORDER BY t.trade_id",
        [run["run_id"], int(version), str(cfg.get("timeframe") or "1d")], key=("research.mc.entries", run["run_id"]))
    ts_us = eq["ts"].to_numpy(dtype="datetime64[us]").astype(np.int64)
    sign = np.where(df["direction"].to_numpy() == "long", 1.0, -1.0)
    return {"low": df["low"].to_numpy(dtype=float), "high": df["high"].to_numpy(dtype=float),
            "entry_price": df["entry_price"].to_numpy(dtype=float),
            "signed_qty": sign * df["qty"].to_numpy(dtype=float),
            "bar_index": np.searchsorted(ts_us, df["entry_us"].to_numpy(dtype=np.int64))}


def _dist_figure(values: pd.Series, name: str, ci: tuple[Any, Any, Any], original: Any, confidence: float,
                 run: dict[str, Any]) -> Any:
    v = values.dropna().to_numpy(dtype=float)
    f = _fig(f"{name.replace('_', ' ')} over paths · {_short(run)}", height=260)
    if v.size:
        hist, edges = np.histogram(v, bins=40)
        lo, med, hi = ci
        if lo is not None and hi is not None:
            from bokeh.models import BoxAnnotation

            f.add_layout(BoxAnnotation(left=lo, right=hi, fill_color=BLUE, fill_alpha=0.08))
        f.quad(top=hist, bottom=0, left=edges[:-1], right=edges[1:], fill_color=BLUE, line_color="white", alpha=0.75)
        for loc, colour, dash in ((lo, BLUE, "dashed"), (hi, BLUE, "dashed"), (med, BLUE, "solid"),
                                  (original, RED, "solid")):
            if loc is not None and not pd.isna(loc):
                f.add_layout(Span(location=float(loc), dimension="height", line_color=colour, line_dash=dash,
                                  line_width=2 if colour == RED else 1.5))
    _fmt_axis(f.xaxis, name)
    f.yaxis.axis_label = "paths"
    f.xaxis.axis_label = (f"{name.replace('_', ' ')} · {confidence:.0%} interval shaded, median solid blue, "
                          "original red")
    return f


@register("monte_carlo")
def monte_carlo_detail(store: Any, run: dict[str, Any]) -> pn.viewable.Viewable:
    rid = run["run_id"]
    cfg = parse_json(run.get("config"))
    paths = store.query("SELECT trial, params, total_return, sharpe, max_drawdown FROM trials WHERE parent_id = ? "
                        "ORDER BY trial", [rid], key=("research.mc.paths", rid))
    mcm = _segment(store, rid, "mc")
    full = _segment(store, rid, "full")
    confidence = float(cfg.get("confidence") or 0.95)
    ruin0 = float(cfg.get("ruin_drawdown") or 0.5)
    sub = (f"{cfg.get('method', '?')} · {len(paths):,} paths ({cfg.get('n_paths')} per seed, "
           f"seeds {cfg.get('seeds')}) · "
           f"{confidence:.0%} intervals")
    if paths.empty:
        return pn.Column(_header(run, sub), _empty("This Monte Carlo run stored no paths."),
                         sizing_mode="stretch_width")
    cards = []
    for m in rv.mc.PATH_METRICS:
        lo, med, hi = (mcm.get(f"{m}_{q}") for q in ("low", "median", "high"))
        cards.append(_card(f"{m.replace('_', ' ')} {confidence:.0%} CI",
                           f"{metric_text(m, lo)} … {metric_text(m, hi)}",
                           f"median {metric_text(m, med)} · original {metric_text(m, full.get(m))}"))
    cards.append(_card(f"P(ruin) at {ruin0:.0%} drawdown", value_text("pct", mcm.get("prob_ruin")),
                       "share of paths reaching it", "bad" if (mcm.get("prob_ruin") or 0) > 0.05 else "good"))
    try:
        fan: Any = pn.pane.Bokeh(_fan_figure(store, run, cfg), sizing_mode="stretch_width", css_classes=["mc-fan"])
    except BacklakeError as e:
        fan = _empty(f"No fan chart for this run: {e}", "mc-fan-missing")
    dists = [pn.pane.Bokeh(_dist_figure(paths[m], m, tuple(mcm.get(f"{m}_{q}") for q in ("low", "median", "high")),
                                        full.get(m), confidence, run), sizing_mode="stretch_width")
             for m in rv.mc.PATH_METRICS]
    slider = pn.widgets.FloatSlider(name="Ruin at a drawdown of", start=0.05, end=1.0, step=0.05, value=ruin0,
                                    format=NumeralTickFormatter(format="0%"), width=320, css_classes=["mc-ruin-slider"])
    dd = paths["max_drawdown"].tolist()

    def ruin_text(level: float) -> str:
        p = rv.prob_ruin(dd, float(level))
        n = sum(1 for v in dd if v is not None and not pd.isna(v) and v <= -float(level))
        card = _card(f"P(ruin) at {float(level):.0%} drawdown", value_text("pct", p), f"{n:,} of {len(dd):,} paths",
                     "bad" if p > 0.05 else "good")
        return f"<div class='bl-cards'>{card}</div>"

    ruin = pn.pane.HTML(pn.bind(ruin_text, slider), stylesheets=[CSS], sizing_mode="stretch_width",
                        css_classes=["mc-ruin"])
    return pn.Column(
        _header(run, sub), _cards(cards, "mc-cards"), fan,
        pn.Row(*dists, sizing_mode="stretch_width"),
        pn.pane.Markdown("#### Probability of ruin"), pn.Row(slider, ruin, sizing_mode="stretch_width"),
        pn.pane.HTML("<span class='bl-note'>The fan regenerates the first paths from the stored base equity (or "
                     "trades; for random_entry its trades' entry bars at the bars version it pinned) with the "
                     "run's method and seeds, exactly as the flow drew them; the distributions, "
                     "intervals and ruin use every stored path.</span>", stylesheets=[CSS],
                     sizing_mode="stretch_width"),
        sizing_mode="stretch_width", css_classes=["research-detail"])
