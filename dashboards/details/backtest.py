"""The detail view of a backtest (and an alpha run): a tear sheet of what the lake stores.

Sections, each read from the lake through ``store`` (``LakeStore``) and computed in
``backlake.analytics.tearsheet`` / ``backlake.metrics``:

- **Equity vs benchmark**, linear or log scale (tabs), with the in-sample / out-of-sample parts
  shaded when the run has ``is`` / ``oos`` metric segments (split from its config's
  ``oos_start`` / ``oos_fraction``) and the test windows when it has ``windows`` rows.
- **Drawdown** with the 5 worst drawdown periods marked (peak to recovery shaded, trough
  numbered) and listed (peak, trough, recovery, depth, length).
- **Returns**: monthly returns heatmap (year x month) and yearly returns.
- **Metrics** in groups (returns, risk, risk-adjusted, benchmark-relative, trades, costs, other),
  each value in its unit (``dashboards.fmt``), with IS / OOS columns when the run has them; the
  costs group holds the run's cost summary (``runs.total_costs``, ``cost_*``) and the cumulative
  per-bar costs (``equity.costs``) are charted.
- **Trade analysis**: P&L distribution, exit reasons, holding time, MAE vs MFE.
- **Per asset** (universes of 2 or more symbols): P&L, contribution, win rate, exposure per
  symbol (from the trades and the equity bars) and the correlation of the assets' close-to-close
  returns, read from ``bars`` at the run's pinned version over the run's period.
- **Config** as the user set it (defaults folded away; no fee schedule of another market) and
  the **trades** table.
"""

from __future__ import annotations

import calendar
import datetime as dt
import html
import json
from typing import Any

import holoviews as hv
import hvplot.pandas  # noqa: F401  (registers DataFrame.hvplot)
import numpy as np
import pandas as pd
import panel as pn
import polars as pl
from bokeh.models import NumeralTickFormatter
from bokeh.models.widgets.tables import DateFormatter, NumberFormatter

from backlake.analytics.tearsheet import (
    asset_correlation,
    asset_rollup,
    drawdown_periods,
    oos_split,
    yearly_returns,
)
from backlake.config_check import fold
from backlake.errors import BacklakeError
from backlake.metrics import monthly_returns
from backlake.strategies import display_name
from dashboards.details import register
from dashboards.fmt import BOKEH_FORMATS, metric_text, unit_kind, value_text

__all__ = ["backtest_detail", "METRIC_GROUPS", "COST_COLUMNS", "run_title", "shown_config", "benchmark_label"]

STRATEGY_COLOR, BENCHMARK_COLOR, DRAWDOWN_COLOR = "#1f6fb2", "#9a9a9a", "#c0392b"
WIN_COLOR, LOSS_COLOR, IS_COLOR, OOS_COLOR = "#2e8b57", "#c0392b", "#dfe9f5", "#fbe6c8"
TOP_DRAWDOWNS = 5
COST_COLUMNS = ("total_costs", "cost_commission", "cost_fees", "cost_slippage", "cost_impact")

#: Metric groups in display order; a metric in none of them goes to "Other".
METRIC_GROUPS: dict[str, tuple[str, ...]] = {
    "Returns": ("total_return", "cagr", "annual_return"),
    "Risk": ("annual_volatility", "max_drawdown", "max_drawdown_duration_bars", "max_drawdown_duration_days",
             "ulcer_index", "tail_ratio"),
    "Risk-adjusted": ("sharpe", "sortino", "calmar", "omega"),
    "Benchmark-relative": ("benchmark_return", "benchmark_sharpe", "excess_return", "alpha", "beta", "r_squared",
                           "information_ratio", "tracking_error"),
    "Trades": ("n_trades", "n_closed_trades", "win_rate", "profit_factor", "avg_trade_return", "avg_trade_pnl",
               "avg_winner", "avg_loser", "best_trade", "worst_trade", "avg_bars_held", "max_consecutive_wins",
               "max_consecutive_losses", "avg_mae", "avg_mfe", "exposure_time"),
    "Costs": COST_COLUMNS,
}
LABELS = {
    "total_return": "Total return", "cagr": "CAGR", "annual_return": "Annual return",
    "annual_volatility": "Annual volatility", "max_drawdown": "Max drawdown",
    "max_drawdown_duration_bars": "Max DD duration (bars)", "max_drawdown_duration_days": "Max DD duration (days)",
    "ulcer_index": "Ulcer index", "tail_ratio": "Tail ratio", "sharpe": "Sharpe", "sortino": "Sortino",
    "calmar": "Calmar", "omega": "Omega", "benchmark_return": "Benchmark return",
    "benchmark_sharpe": "Benchmark Sharpe", "excess_return": "Excess return", "alpha": "Alpha (annual)",
    "beta": "Beta", "r_squared": "R²", "information_ratio": "Information ratio", "tracking_error": "Tracking error",
    "n_trades": "Trades", "n_closed_trades": "Closed trades", "win_rate": "Win rate", "profit_factor": "Profit factor",
    "avg_trade_return": "Avg trade return", "avg_trade_pnl": "Avg trade P&L", "avg_winner": "Avg winner",
    "avg_loser": "Avg loser", "best_trade": "Best trade", "worst_trade": "Worst trade",
    "avg_bars_held": "Avg bars held", "max_consecutive_wins": "Max consecutive wins",
    "max_consecutive_losses": "Max consecutive losses", "avg_mae": "Avg MAE", "avg_mfe": "Avg MFE",
    "exposure_time": "Exposure time", "total_costs": "Total costs", "cost_commission": "Commission",
    "cost_fees": "Fees", "cost_slippage": "Slippage", "cost_impact": "Market impact",
}
SEGMENT_TITLES = {"full": "Full period", "is": "In-sample", "oos": "Out-of-sample"}

TABLE_CSS = ":host .tabulator { font-size: 0.875rem; }"
DETAIL_CSS = """
.bl-groups { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 12px; }
.bl-group { border: 1px solid #e3e6ea; border-radius: 6px; background: #fafbfc; padding: 6px 10px 8px; }
.bl-group h5 { margin: 2px 0 6px; font-size: 0.8em; color: #5f6b7a; text-transform: uppercase;
  letter-spacing: 0.04em; }
.bl-group table { width: 100%; border-collapse: collapse; font-size: 0.88em; }
.bl-group th { text-align: right; font-weight: 600; color: #5f6b7a; font-size: 0.85em; padding: 1px 4px; }
.bl-group th:first-child, .bl-group td:first-child { text-align: left; }
.bl-group td { padding: 2px 4px; border-top: 1px solid #eef0f2; text-align: right;
  font-variant-numeric: tabular-nums; }
.bl-group td.bl-neg { color: #c0392b; }
"""
CONFIG_CSS = """
.bl-config { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.82rem; margin: 0;
  padding: 8px 10px; background: #fafbfc; border-radius: 4px; }
"""
TRADE_TITLES = {
    "trade_id": "#", "symbol": "Symbol", "direction": "Side", "qty": "Qty", "entry_ts": "Entry",
    "entry_price": "Entry price", "exit_ts": "Exit", "exit_price": "Exit price", "pnl": "P&L",
    "return_pct": "Return", "fees": "Fees", "bars_held": "Bars", "mae": "MAE", "mfe": "MFE",
    "exit_reason": "Exit reason",
}


def _num(kind: str) -> NumberFormatter:
    return NumberFormatter(format=BOKEH_FORMATS[kind], text_align="right")


_DATE = DateFormatter(format="%Y-%m-%d")
TRADE_FORMATTERS = {
    "qty": _num("num"), "entry_price": _num("money"), "exit_price": _num("money"), "pnl": _num("money"),
    "fees": _num("money"), "return_pct": _num("pct"), "mae": _num("pct"), "mfe": _num("pct"),
    "entry_ts": _DATE, "exit_ts": _DATE,
}


def _alert(text: str, kind: str = "info") -> pn.pane.Alert:
    return pn.pane.Alert(text, alert_type=kind, sizing_mode="stretch_width")


def _heading(text: str, css: str) -> pn.pane.Markdown:
    return pn.pane.Markdown(f"#### {text}", css_classes=[css], margin=(14, 10, 0, 10))


def _symbols(run: dict[str, Any]) -> list[str]:
    raw = run.get("symbols") or ""
    return [s.strip() for s in str(raw).split(",") if s.strip()]


def run_title(run: dict[str, Any]) -> str:
    """"sma_crossover on GOOG", "sma_crossover on AAPL, MSFT, XOM", "... on 20 symbols"."""
    syms = _symbols(run)
    on = ", ".join(syms) if len(syms) <= 5 else f"{len(syms)} symbols"
    return f"{display_name(run.get('strategy'), run.get('params')) or run.get('kind')} on {on or '?'}"


def benchmark_label(cfg: dict[str, Any], symbols: list[str]) -> str:
    """What the run's ``benchmark_equity`` is (``BacktestConfig.benchmark``)."""
    bench = cfg.get("benchmark")
    if bench in (None, "asset"):
        return f"Buy & hold ({', '.join(symbols)})" if len(symbols) <= 3 else "Buy & hold (equal weight)"
    if bench == "equal_weight":
        return "Equal-weight buy & hold"
    return f"Benchmark ({bench})"


def _config(run: dict[str, Any]) -> dict[str, Any]:
    try:
        cfg = json.loads(run.get("config") or "{}")
    except ValueError:
        return {}
    return cfg if isinstance(cfg, dict) else {}


def shown_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config as the user set it: defaults folded away (``config_check.fold``), and no fee
    schedule of a market the run does not trade (``costs.india`` unless market is "india",
    ``costs.us`` unless it is "us")."""
    out = fold(config)
    costs = out.get("costs")
    if isinstance(costs, dict):
        market = (config.get("costs") or {}).get("market", "none")
        costs = {k: v for k, v in costs.items() if not (k in ("india", "us") and k != market)}
        if costs:
            out["costs"] = costs
        else:
            out.pop("costs")
    return out


# -- the view -----------------------------------------------------------------------------------
@register("backtest", "alpha")
def backtest_detail(store: Any, run: dict[str, Any]) -> pn.viewable.Viewable:
    """The tear sheet of one backtest run (a ``runs`` row as a dict, see ``LakeStore.run``)."""
    run_id = str(run["run_id"])
    try:
        equity, trades = store.equity(run_id), store.trades(run_id)
        segments = _segments(store, run_id)
        metrics = {s: store.metrics(run_id, s) for s in segments}
        costs = _costs(store, run_id)
        windows = _windows(store, run_id)
    except BacklakeError as e:
        return _alert(f"**Cannot read run `{run_id}`**: {html.escape(str(e))}", "danger")
    cfg = _config(run)
    title = run_title(run)
    parts: list[pn.viewable.Viewable] = [
        _equity_section(run, cfg, equity, segments, windows, title),
        _drawdown_section(equity, title),
        _returns_section(equity, title),
        _heading("Metrics", "bl-metrics-title"),
        _metrics_table(metrics, costs, _split(cfg, equity, segments)),
        _costs_chart(costs, title),
        _trade_analysis(trades, title),
    ]
    if len(_symbols(run)) > 1:
        parts.append(_asset_section(store, run, cfg, equity, trades, title))
    parts += [
        pn.Card(pn.pane.HTML(f'<pre class="bl-config">{html.escape(json.dumps(shown_config(cfg), indent=2))}</pre>',
                             sizing_mode="stretch_width", css_classes=["run-config"], stylesheets=[CONFIG_CSS]),
                title="Config (what the run set; defaults folded away)", sizing_mode="stretch_width",
                collapsible=True, margin=(14, 10, 0, 10)),
        _trades_table(trades),
    ]
    return pn.Column(*parts, sizing_mode="stretch_width", css_classes=["backtest-detail"])


# -- reads --------------------------------------------------------------------------------------
def _segments(store: Any, run_id: str) -> list[str]:
    """The run's metric segments to show: full (or the first there is), then is / oos."""
    df = store.query("SELECT DISTINCT segment FROM metrics WHERE run_id = ?", [run_id],
                     key=("bt-segments", run_id))
    have = set(df["segment"].tolist())
    first = ["full"] if "full" in have or not have else [sorted(have)[0]]
    return first + [s for s in ("is", "oos") if s in have and s not in first]


def _costs(store: Any, run_id: str) -> dict[str, Any]:
    """The run's cost summary (``runs`` columns) and its per-bar costs (``equity.costs``)."""
    summary = store.query(f"SELECT {', '.join(COST_COLUMNS)} FROM runs WHERE run_id = ? AND status = 'completed'",
                          [run_id], key=("bt-costs", run_id))
    per_bar = store.query("SELECT timezone('UTC', ts) AS ts, costs, cost_commission, cost_fees, cost_slippage, "
                          "cost_impact FROM equity WHERE run_id = ? ORDER BY ts", [run_id],
                          key=("bt-bar-costs", run_id))
    row = summary.iloc[0].to_dict() if len(summary) else {}
    return {"summary": {k: (None if pd.isna(v) else float(v)) for k, v in row.items()}, "per_bar": per_bar}


def _windows(store: Any, run_id: str) -> pd.DataFrame:
    return store.query(
        "SELECT \"window\", timezone('UTC', test_start) AS test_start, timezone('UTC', test_end) AS test_end "
        "FROM windows WHERE parent_id = ? ORDER BY \"window\"", [run_id], key=("bt-windows", run_id))


# -- equity and drawdown ------------------------------------------------------------------------
def _spans(run: dict[str, Any], cfg: dict[str, Any], equity: pd.DataFrame, segments: list[str],
           windows: pd.DataFrame) -> tuple[list[hv.Element], str]:
    """Shaded IS / OOS parts (or test windows) and a caption saying what they are."""
    first, last = equity["ts"].iloc[0], equity["ts"].iloc[-1]
    if "is" in segments and "oos" in segments:
        split = oos_split(equity["ts"].to_numpy(), cfg)
        if split is not None:
            return ([hv.VSpan(first, split).opts(color=IS_COLOR, alpha=0.5, line_width=0),
                     hv.VSpan(split, last).opts(color=OOS_COLOR, alpha=0.6, line_width=0)],
                    f"Shaded: in-sample (blue) before {split:%Y-%m-%d}, out-of-sample (orange) from it on.")
    if len(windows):
        spans = [hv.VSpan(r.test_start, r.test_end).opts(color=OOS_COLOR if i % 2 else IS_COLOR, alpha=0.6,
                                                          line_width=0)
                 for i, r in enumerate(windows.itertuples())]
        return spans, f"Shaded: the {len(windows)} walk-forward test windows."
    return [], ""


def _equity_plot(df: pd.DataFrame, series: list[str], spans: list[hv.Element], title: str, log: bool) -> Any:
    curve = df.hvplot.line(
        x="Date", y=series, ylabel="Equity" + (" (log)" if log else ""), xlabel="", logy=log,
        color=[STRATEGY_COLOR, BENCHMARK_COLOR][: len(series)], legend="top_left",
        yformatter=NumeralTickFormatter(format="0,0"), responsive=True, height=360,
        group_label="Series", value_label="Equity",
    )
    head = f"Equity vs benchmark — {title}" if len(series) > 1 else f"Equity — {title}"
    return hv.Overlay([*spans, curve]).opts(title=head + (" (log scale)" if log else ""), responsive=True,
                                            height=360, logy=log)


def _equity_section(run: dict[str, Any], cfg: dict[str, Any], equity: pd.DataFrame, segments: list[str],
                    windows: pd.DataFrame, title: str) -> pn.viewable.Viewable:
    if equity.empty:
        return _alert(f"Run `{run['run_id']}` has no equity rows: nothing to chart. Re-run the backtest "
                      "(`backlake backtest cfg.json`) to record its equity.", "warning")
    bench = benchmark_label(cfg, _symbols(run))
    df = equity.rename(columns={"ts": "Date", "equity": "Strategy", "benchmark_equity": bench})
    series = ["Strategy"] + ([bench] if df[bench].notna().any() else [])
    spans, caption = _spans(run, cfg, equity, segments, windows)
    tabs = pn.Tabs(
        ("Linear", pn.pane.HoloViews(_equity_plot(df, series, spans, title, False), sizing_mode="stretch_width",
                                     css_classes=["equity-linear"])),
        ("Log scale", pn.pane.HoloViews(_equity_plot(df, series, spans, title, True), sizing_mode="stretch_width",
                                        css_classes=["equity-log"])),
        sizing_mode="stretch_width", css_classes=["equity-scale"], dynamic=False,
    )
    note = pn.pane.Markdown(caption, css_classes=["equity-caption"], margin=(0, 10), visible=bool(caption),
                            styles={"color": "#5f6b7a", "font-size": "0.85em"})
    return pn.Column(tabs, note, sizing_mode="stretch_width", css_classes=["run-charts"])


def _drawdown_section(equity: pd.DataFrame, title: str) -> pn.viewable.Viewable:
    if equity.empty:
        return pn.Column()
    periods = drawdown_periods(equity["equity"].to_numpy(), equity["ts"].to_numpy(), top=TOP_DRAWDOWNS).to_pandas()
    last = equity["ts"].iloc[-1]
    area = equity.rename(columns={"ts": "Date", "drawdown": "Drawdown"}).hvplot.area(
        x="Date", y="Drawdown", xlabel="", ylabel="Drawdown", color=DRAWDOWN_COLOR, alpha=0.35, line_width=1,
        yformatter=NumeralTickFormatter(format="0%"), responsive=True, height=230,
    )
    spans = [hv.VSpan(p.peak_ts, p.recovery_ts if p.recovered else last).opts(color="#f5b7b1", alpha=0.35,
                                                                              line_width=0)
             for p in periods.itertuples()]
    marks = pd.DataFrame({"Date": periods["trough_ts"], "Drawdown": periods["depth"],
                          "rank": [str(i + 1) for i in range(len(periods))]})
    troughs = hv.Scatter(marks, "Date", ["Drawdown", "rank"]).opts(color="#7b241c", size=7, marker="triangle",
                                                                  angle=180)
    labels = hv.Labels(marks, ["Date", "Drawdown"], "rank").opts(text_font_size="9pt", yoffset=-0.012,
                                                                text_color="#7b241c")
    low = float(equity["drawdown"].min()) if equity["drawdown"].notna().any() else 0.0
    plot = hv.Overlay([*spans, area, troughs, labels]).opts(ylim=(min(low, -0.01) * 1.15, 0.005),
        title=f"Drawdown — {title} (worst {len(periods)} periods shaded, troughs numbered)", responsive=True,
        height=230)
    day = lambda v: pd.Timestamp(v).strftime("%Y-%m-%d")  # noqa: E731
    shown = pd.DataFrame({
        "rank": range(1, len(periods) + 1), "peak": periods["peak_ts"].map(day),
        "trough": periods["trough_ts"].map(day),
        "recovery": [day(p.recovery_ts) if p.recovered else "not recovered" for p in periods.itertuples()],
        "depth": periods["depth"].map(lambda v: value_text("pct", v)), "length_bars": periods["length_bars"],
        "length_days": periods["length_days"].map(lambda v: value_text("days", v)),
    })
    table = pn.widgets.Tabulator(
        shown, show_index=False, disabled=True, layout="fit_columns", sizing_mode="stretch_width",
        titles={"rank": "#", "peak": "Peak", "trough": "Trough", "recovery": "Recovery", "depth": "Depth",
                "length_bars": "Length (bars)", "length_days": "Length (days)"},
        text_align={"depth": "right", "length_days": "right", "length_bars": "right"}, widths={"rank": 50},
        css_classes=["drawdown-table"], stylesheets=[TABLE_CSS],
    ) if len(shown) else pn.pane.Markdown("_The equity never fell below a previous peak._")
    return pn.Column(pn.pane.HoloViews(plot, sizing_mode="stretch_width", css_classes=["drawdown-chart"]),
                     pn.pane.Markdown(f"**Worst {len(periods)} drawdown periods** (peak to recovery; "
                                      "length to the last bar when not recovered)", margin=(0, 10)),
                     table, sizing_mode="stretch_width")


# -- returns ------------------------------------------------------------------------------------
def _month_text(ret: float) -> str:
    """A month's return for its heatmap cell: one decimal (``-10.9%``), so the label fits the
    cell and never covers a neighbour's sign; none from 100 % (``-123%``); empty when unknown."""
    if ret is None or not np.isfinite(ret):
        return ""
    pct = 100 * ret
    if abs(pct) < 0.05:
        return "0.0%"  # not "-0.0%"
    return f"{pct:.0f}%" if abs(pct) >= 99.95 else f"{pct:.1f}%"


def _returns_section(equity: pd.DataFrame, title: str) -> pn.viewable.Viewable:
    if len(equity) < 2:
        return pn.Column()
    eq, ts = equity["equity"].to_numpy(), equity["ts"].to_numpy()
    months = monthly_returns(eq, ts).to_pandas()
    years = yearly_returns(eq, ts).to_pandas()
    months["Month"] = months["month"].map(lambda m: calendar.month_abbr[int(m)]).astype(object)
    months["Year"] = months["year"].astype(str).astype(object)
    months["text"] = months["ret"].map(_month_text).astype(object)
    lim = float(np.nanmax(np.abs(months["ret"].to_numpy(dtype=float)))) if len(months) else 0.1
    # white on the dark ends of the colour map, dark on its pale middle
    months["text_color"] = np.where(np.abs(months["ret"].fillna(0)) > 0.55 * lim, "#fff", "#222").astype(object)
    heat = hv.HeatMap(months[["Month", "Year", "ret"]], ["Month", "Year"], "ret").opts(
        cmap="RdYlGn", clim=(-lim, lim), colorbar=True, tools=["hover"], responsive=True,
        height=max(220, 26 * months["Year"].nunique() + 90), xlabel="", ylabel="",
        invert_yaxis=True, title=f"Monthly returns — {title}", line_color="white", line_width=1,
        colorbar_opts={"formatter": NumeralTickFormatter(format="0%")},
    )
    heat = heat.redim.values(Month=list(calendar.month_abbr)[1:])
    labels = hv.Labels(months, ["Month", "Year"], ["text", "text_color"]).opts(text_font_size="7.5pt",
                                                                              text_color="text_color")
    years["Year"] = years["year"].astype(str).astype(object)
    years["color"] = np.where(years["ret"].fillna(0) >= 0, WIN_COLOR, LOSS_COLOR)
    bars = hv.Bars(years, "Year", ["ret", "color"]).opts(
        color="color", responsive=True, height=max(220, 26 * len(years) + 90), invert_axes=True,
        invert_yaxis=True, xlabel="", ylabel="", title="Yearly returns", tools=["hover"],
        xformatter=NumeralTickFormatter(format="0%"),
    )
    return pn.Row(pn.pane.HoloViews(heat * labels, sizing_mode="stretch_width", css_classes=["monthly-heatmap"]),
                  pn.pane.HoloViews(bars, sizing_mode="stretch_width", css_classes=["yearly-returns"],
                                    max_width=340),
                  sizing_mode="stretch_width")


# -- metrics ------------------------------------------------------------------------------------
def _split(cfg: dict[str, Any], equity: pd.DataFrame, segments: list[str]) -> dt.datetime | None:
    if equity.empty or not {"is", "oos"} <= set(segments):
        return None
    return oos_split(equity["ts"].to_numpy(), cfg)


def _segment_costs(per_bar: pd.DataFrame, split: dt.datetime | None) -> dict[str, dict[str, float | None]]:
    """The cost summary of the IS bars (``ts < split``) and of the OOS bars (from ``split`` on),
    summed from the per-bar costs (``equity.costs``, ``equity.cost_*``)."""
    if split is None or per_bar.empty:
        return {}
    out: dict[str, dict[str, float | None]] = {}
    for seg, part in (("is", per_bar[per_bar["ts"] < split]), ("oos", per_bar[per_bar["ts"] >= split])):
        sums = {name: part[col].sum(min_count=1) for name, col in zip(COST_COLUMNS, ("costs", *COST_COLUMNS[1:]),
                                                                        strict=True)}
        out[seg] = {k: (None if pd.isna(v) else float(v)) for k, v in sums.items()}
    return out


def _metrics_table(metrics: dict[str, dict[str, float | None]], costs: dict[str, Any],
                   split: dt.datetime | None = None) -> pn.viewable.Viewable:
    segs = list(metrics)
    if not any(metrics.values()):
        return _alert("No metrics recorded for this run: re-run it with `backlake backtest cfg.json`.", "warning")
    seg_costs = {segs[0]: costs["summary"], **_segment_costs(costs["per_bar"], split)}
    values = {s: {**m, **seg_costs.get(s, {})} for s, m in metrics.items()}
    known = {n for names in METRIC_GROUPS.values() for n in names}
    other = tuple(sorted(n for m in metrics.values() for n in m if n not in known))
    groups = {**METRIC_GROUPS, **({"Other": other} if other else {})}
    head = "".join(f"<th>{html.escape(SEGMENT_TITLES.get(s, s))}</th>" for s in segs) if len(segs) > 1 else ""
    cards = []
    for group, names in groups.items():
        rows = []
        for name in names:
            if not any(name in values[s] for s in segs):
                continue
            cells = []
            for s in segs:
                v = values[s].get(name)
                neg = " bl-neg" if isinstance(v, float) and v < 0 else ""
                cells.append(f'<td class="bl-m{neg}" data-metric="{name}" data-segment="{s}" '
                             f'data-kind="{unit_kind(name)}">{html.escape(metric_text(name, v))}</td>')
            label = LABELS.get(name, name.replace("_", " ").capitalize())
            rows.append(f'<tr><td title="{html.escape(name)}">{html.escape(label)}</td>{"".join(cells)}</tr>')
        if group == "Costs" and not rows:
            rows.append(f'<tr><td colspan="{len(segs) + 1}">No cost data recorded for this run.</td></tr>')
        if rows:
            thead = f"<tr><th></th>{head}</tr>" if head else ""
            cards.append(f'<div class="bl-group" data-group="{html.escape(group)}"><h5>{html.escape(group)}</h5>'
                         f'<table>{thead}{"".join(rows)}</table></div>')
    return pn.pane.HTML(f'<div class="bl-groups">{"".join(cards)}</div>', stylesheets=[DETAIL_CSS],
                        sizing_mode="stretch_width", css_classes=["metric-groups"])


def _costs_chart(costs: dict[str, Any], title: str) -> pn.viewable.Viewable:
    per_bar = costs["per_bar"]
    if per_bar.empty or per_bar["costs"].isna().all():
        return pn.Column()
    df = pd.DataFrame({"Date": per_bar["ts"], "Cumulative costs": per_bar["costs"].fillna(0.0).cumsum()})
    plot = df.hvplot.area(x="Date", y="Cumulative costs", xlabel="", ylabel="Costs", color="#8e44ad", alpha=0.3,
                          title=f"Cumulative costs — {title}", responsive=True, height=200,
                          yformatter=NumeralTickFormatter(format=BOKEH_FORMATS["money"]))
    return pn.pane.HoloViews(plot, sizing_mode="stretch_width", css_classes=["costs-chart"])


# -- trades -------------------------------------------------------------------------------------
def _trade_analysis(trades: pd.DataFrame, title: str) -> pn.viewable.Viewable:
    head = _heading(f"Trade analysis — {title}", "bl-trade-analysis")
    if trades.empty:
        return pn.Column(head, _alert("This run made no trades: nothing to analyse.", "secondary"))
    t = trades.assign(outcome=np.where(trades["pnl"] > 0, "winner", np.where(trades["pnl"] < 0, "loser", "flat")))
    edges = np.histogram_bin_edges(t["pnl"].to_numpy(dtype=float), bins=min(40, max(5, len(t) // 2)))
    hists = [hv.Histogram(np.histogram(t.loc[t["outcome"] == o, "pnl"], bins=edges), kdims="P&L", vdims="Trades",
                          label=o).opts(color=c, alpha=0.75, line_color="white")
             for o, c in (("winner", WIN_COLOR), ("loser", LOSS_COLOR)) if (t["outcome"] == o).any()]
    pnl = hv.Overlay(hists).opts(title="P&L per trade", responsive=True, height=260, legend_position="top_right",
                                 xformatter=NumeralTickFormatter(format="0,0"))
    reasons = t["exit_reason"].fillna("?").value_counts().rename_axis("Exit reason").reset_index(name="Trades")
    exits = hv.Bars(reasons, "Exit reason", "Trades").opts(title="Exit reasons", responsive=True, height=260,
                                                          color="#5d6d7e", tools=["hover"])
    held = t["bars_held"].dropna().to_numpy(dtype=float)
    hold = hv.Histogram(np.histogram(held, bins=min(30, max(5, len(held) // 2))) if held.size else ([], []),
                        kdims="Bars held", vdims="Trades").opts(title="Holding time (bars)", responsive=True,
                                                                height=260, color="#5d6d7e", line_color="white")
    ex = t.dropna(subset=["mae", "mfe"])
    scatter = hv.Overlay([
        hv.Scatter(ex[ex["outcome"] == o], "mae", ["mfe", "pnl", "symbol", "trade_id"], label=o).opts(
            color=c, size=6, alpha=0.7, tools=["hover"])
        for o, c in (("winner", WIN_COLOR), ("loser", LOSS_COLOR), ("flat", "#999999")) if (ex["outcome"] == o).any()
    ]).opts(title="MAE vs MFE (fraction of entry price)", responsive=True, height=260, xlabel="MAE",
            ylabel="MFE", legend_position="top_left", xformatter=NumeralTickFormatter(format="0%"),
            yformatter=NumeralTickFormatter(format="0%"))
    grid = pn.GridBox(*(pn.pane.HoloViews(p, sizing_mode="stretch_width", css_classes=[c])
                        for p, c in ((pnl, "pnl-hist"), (exits, "exit-reasons"), (hold, "holding-time"),
                                     (scatter, "mae-mfe"))),
                      ncols=2, sizing_mode="stretch_width")
    return pn.Column(head, grid, sizing_mode="stretch_width", css_classes=["trade-analysis"])


def _trades_table(trades: pd.DataFrame) -> pn.viewable.Viewable:
    title = _heading(f"Trades ({len(trades)})", "bl-trades-title")
    if trades.empty:
        return pn.Column(title, _alert("This run made no trades.", "secondary"))
    table = pn.widgets.Tabulator(
        trades, show_index=False, disabled=True, titles=TRADE_TITLES, formatters=TRADE_FORMATTERS,
        layout="fit_data_stretch", pagination="local", page_size=10, sizing_mode="stretch_width",
        css_classes=["trades-table"], stylesheets=[TABLE_CSS],
    )
    return pn.Column(title, table, sizing_mode="stretch_width")


# -- per asset ----------------------------------------------------------------------------------
def _closes(store: Any, run: dict[str, Any], equity: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The universe's closes over the run's period, at the run's pinned ``bars`` version (the
    latest when the run pinned none), and a note naming the version."""
    try:
        version = int(json.loads(run.get("data_versions") or "{}").get("bars"))
    except (TypeError, ValueError):
        version = -1
    syms = _symbols(run)
    first = dt.datetime.fromisoformat(str(equity["ts"].iloc[0])).replace(tzinfo=dt.UTC)
    last = dt.datetime.fromisoformat(str(equity["ts"].iloc[-1])).replace(tzinfo=dt.UTC)
    source = f"bars_at({version})" if version >= 0 else "bars"
    df = store.query(
        f"SELECT symbol, timezone('UTC', ts) AS ts, close FROM {source} WHERE timeframe = ? "
        "AND list_contains(?, symbol) AND ts BETWEEN ? AND ? ORDER BY symbol, ts",
        [run.get("timeframe"), syms, first, last], key=("bt-closes", run["run_id"]))
    return df, (f"bars version {version}" if version >= 0 else "the latest bars")


def _asset_section(store: Any, run: dict[str, Any], cfg: dict[str, Any], equity: pd.DataFrame,
                   trades: pd.DataFrame, title: str) -> pn.viewable.Viewable:
    head = _heading(f"Per asset — {title}", "bl-assets-title")
    if equity.empty:
        return pn.Column(head, _alert("No equity rows: no per-asset view.", "secondary"))
    cash = float(cfg.get("initial_cash") or equity["equity"].iloc[0])
    roll = asset_rollup(pl.from_pandas(trades) if len(trades) else _empty_trades(), equity["ts"].to_numpy(),
                        initial_cash=cash, symbols=_symbols(run)).to_pandas()
    table = pn.widgets.Tabulator(
        roll, show_index=False, disabled=True, layout="fit_columns", sizing_mode="stretch_width",
        titles={"symbol": "Symbol", "n_trades": "Trades", "n_closed_trades": "Closed", "pnl": "P&L",
                "contribution": "Contribution", "pnl_share": "Share of P&L", "win_rate": "Win rate",
                "exposure": "Exposure", "fees": "Fees"},
        formatters={"pnl": _num("money"), "contribution": _num("pct"), "pnl_share": _num("pct"),
                    "win_rate": _num("pct"), "exposure": _num("pct"), "fees": _num("money"),
                    "n_trades": _num("count"), "n_closed_trades": _num("count")},
        css_classes=["asset-table"], stylesheets=[TABLE_CSS],
        **({"pagination": "local", "page_size": 20} if len(roll) > 20 else {}),
    )
    contrib = hv.Bars(roll.assign(color=np.where(roll["pnl"] >= 0, WIN_COLOR, LOSS_COLOR)), "symbol",
                      ["contribution", "color"]).opts(
        color="color", title="Contribution to total return", responsive=True, height=260, xlabel="", ylabel="",
        yformatter=NumeralTickFormatter(format="0%"), tools=["hover"])
    try:
        closes, source = _closes(store, run, equity)
    except BacklakeError as e:
        corr_view: pn.viewable.Viewable = _alert(f"Cannot read the universe's bars: {html.escape(str(e))}", "warning")
    else:
        corr = asset_correlation(pl.from_pandas(closes)).to_pandas() if len(closes) else pd.DataFrame()
        if corr.empty:
            corr_view = _alert("No bars of the universe over the run's period: no correlation.", "secondary")
        else:
            long = corr.melt(id_vars="symbol", var_name="other", value_name="corr").astype(
                {"symbol": object, "other": object})
            long["text"] = long["corr"].map(lambda v: "–" if pd.isna(v) else f"{v:.2f}").astype(object)
            order = corr["symbol"].tolist()
            heat = hv.HeatMap(long[["symbol", "other", "corr"]], ["symbol", "other"], "corr").redim.values(
                symbol=order, other=order).opts(
                cmap="RdBu_r", clim=(-1, 1), colorbar=True, responsive=True, tools=["hover"], xlabel="", ylabel="",
                height=max(280, 24 * len(corr) + 90), xrotation=45, invert_yaxis=True,
                title=f"Correlation of {run.get('timeframe')} asset returns ({source}, run period)")
            labels = hv.Labels(long, ["symbol", "other"], "text").opts(text_font_size="8pt", text_color="#222")
            corr_view = pn.pane.HoloViews(heat * labels if len(corr) <= 12 else heat, sizing_mode="stretch_width",
                                          css_classes=["asset-correlation"])
    note = pn.pane.Markdown(
        "P&L: every trade's P&L, the open one marked to the last close; contribution: P&L / initial cash "
        "(return points, summing to the total return); exposure: share of the run's bars holding the asset. "
        "The correlation is of the assets' own close-to-close returns (not the strategy's), from the bars "
        "the run read.", styles={"color": "#5f6b7a", "font-size": "0.85em"}, margin=(0, 10))
    return pn.Column(head, table, note,
                     pn.Row(pn.pane.HoloViews(contrib, sizing_mode="stretch_width", css_classes=["asset-contribution"]),
                            corr_view, sizing_mode="stretch_width"),
                     sizing_mode="stretch_width", css_classes=["asset-section"])


def _empty_trades() -> pl.DataFrame:
    return pl.DataFrame(schema={"symbol": pl.String, "entry_ts": pl.Datetime("us"), "exit_ts": pl.Datetime("us"),
                                "pnl": pl.Float64, "fees": pl.Float64, "exit_reason": pl.String})
