"""The live vs backtest page (``/live?strategy=NAME``): a live strategy's cumulative returns over
those of the backtest it is linked to, the divergence between them shaded, the rolling tracking
error against its threshold, the alert level (NONE / YELLOW / RED) with its reasons, the
figures, the thresholds (``OverlayConfig``, overridable here for this view), the alerts the
live monitor recorded, and a form to link a strategy to a run (researcher or admin).

Every figure comes from ``backlake.analytics.live`` (the same functions as ``backlake live
overlay`` and the ``live_monitor`` flow); reads are DuckDB queries over the lake's views.
"""

from __future__ import annotations

import html
import math
import threading
from typing import Any

import holoviews as hv
import holoviews.plotting.bokeh
import pandas as pd
import panel as pn
import polars as pl
from bokeh.models import NumeralTickFormatter
from bokeh.models.widgets.tables import DateFormatter, NumberFormatter

from backlake.analytics.live import (
    Overlay,
    OverlayConfig,
    alerts_history,
    link_strategy,
    live_strategies,
    load_overlay,
)
from backlake.errors import BacklakeError, ConfigError
from backlake.lake import Lake, LakeConnection, connect
from backlake.settings import Settings, get_settings
from dashboards.identity import Identity, PermissionDenied, require, submit_gate
from dashboards.layout import page

__all__ = ["LivePage", "LiveStore", "badge_html", "figures_html"]

LIVE_COLOUR, BT_COLOUR, GAP_COLOUR, TE_COLOUR = "#d9480f", "#1f5f99", "#f4a259", "#6741d9"
LEVEL_STYLE = {  # level -> (text colour, background, border)
    "RED": ("#ffffff", "#c92a2a", "#a61e1e"),
    "YELLOW": ("#3d2c00", "#ffd43b", "#e0b300"),
    "NONE": ("#ffffff", "#2b8a3e", "#237032"),
    "OFF": ("#343a40", "#e9ecef", "#ced4da"),
}
CSS = """
.bl-alert { display: flex; align-items: center; gap: 16px; padding: 12px 16px; border-radius: 8px;
  border: 1px solid #d0d7de; background: #fff; }
.bl-alert .lvl { font-size: 1.25rem; font-weight: 700; padding: 6px 16px; border-radius: 6px; letter-spacing: 0.06em;
  white-space: nowrap; }
.bl-alert .why { font-size: 0.95rem; color: #1f2933; }
.bl-alert .why li { margin: 2px 0; }
.bl-alert .sub { color: #5f6b7a; font-size: 0.82rem; margin-top: 4px; }
.bl-cards { display: flex; gap: 10px; flex-wrap: wrap; }
.bl-card { border: 1px solid #d0d7de; border-radius: 8px; padding: 8px 14px; min-width: 128px; background: #fff; }
.bl-card .n { font-size: 1.25rem; font-weight: 700; color: #1f2933; font-variant-numeric: tabular-nums; }
.bl-card .l { color: #52606d; font-size: 0.72rem; text-transform: uppercase; letter-spacing: 0.04em; }
.bl-card .t { color: #8a94a3; font-size: 0.72rem; }
.bl-card.hot .n { color: #c92a2a; }
.bl-sub { color: #5f6b7a; font-size: 0.88rem; }
"""
TABLE_CSS = ":host .tabulator { font-size: 0.85rem; }"
#: The alerts history's columns and their headings.
ALERT_COLUMNS = {
    "date": "Date", "level": "Level", "run_id": "Run", "tracking_error": "TE (ann.)", "rolling_te": "Rolling TE",
    "divergence": "Divergence", "divergence_start": "Divergence start", "message": "Message",
    "created_at": "Recorded (UTC)",
}
DAY = DateFormatter(format="%Y-%m-%d")
DT = DateFormatter(format="%Y-%m-%d %H:%M")
PCT = NumberFormatter(format="0.00%")


def _pct(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.2%}"


# -- HTML pieces (pure: tested without a browser) ----------------------------------------------------
def badge_html(ov: Overlay) -> str:
    """The alert badge: the level (OFF when the overlay or its alerts are disabled) and why."""
    shown = ov.level if ov.enabled and ov.alerts_enabled else "OFF"
    fg, bg, border = LEVEL_STYLE[shown]
    label = shown if shown != "OFF" else "ALERTS OFF"
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in ov.reasons)
    cfg = ov.config
    sub = (f"Thresholds: tracking error {_pct(cfg.tracking_error_threshold)} for {cfg.consecutive_days_for_yellow} "
           f"consecutive days (rolling {cfg.rolling_window_days} days) → YELLOW; cumulative divergence "
           f"{_pct(cfg.divergence_threshold)} → RED.")
    return (f"<div class='bl-alert' data-level='{html.escape(ov.level)}' data-shown='{shown}'>"
            f"<span class='lvl alert-level' style='color:{fg};background:{bg};border:1px solid {border}'>"
            f"{html.escape(label)}</span><div><ul class='why' style='margin:0;padding-left:18px'>{reasons}</ul>"
            f"<div class='sub'>{html.escape(sub)}</div></div></div>")


def figures_html(ov: Overlay) -> str:
    """The figures as cards; each carries its exact value (``data-value``) for checks."""
    cfg = ov.config

    def card(key: str, label: str, text: str, value: Any, hint: str = "", hot: bool = False) -> str:
        exact = "" if value is None else (repr(float(value)) if isinstance(value, float) else html.escape(str(value)))
        return (f"<div class='bl-card{' hot' if hot else ''}' data-figure='{key}' data-value='{exact}'>"
                f"<div class='l'>{html.escape(label)}</div><div class='n'>{html.escape(text)}</div>"
                f"<div class='t'>{html.escape(hint)}</div></div>")

    te_hot = ov.rolling_te is not None and ov.rolling_te > cfg.tracking_error_threshold
    div_hot = ov.divergence is not None and ov.divergence > cfg.divergence_threshold
    start = ov.divergence_start.isoformat() if ov.divergence_start else "–"
    cards = [
        card("cum_live", "Live return", _pct(ov.cum_live), ov.cum_live, "cumulative"),
        card("cum_backtest", "Backtest return", _pct(ov.cum_backtest), ov.cum_backtest, f"{ov.basis} of costs"),
        card("divergence", "Divergence", _pct(ov.divergence), ov.divergence,
             f"threshold {_pct(cfg.divergence_threshold)}", div_hot),
        card("tracking_error", "Tracking error", _pct(ov.tracking_error), ov.tracking_error, "annualised, full period"),
        card("rolling_te", f"Rolling TE ({cfg.rolling_window_days}d)", _pct(ov.rolling_te), ov.rolling_te,
             f"threshold {_pct(cfg.tracking_error_threshold)}", te_hot),
        card("divergence_start", "Divergence start", start,
             ov.divergence_start.isoformat() if ov.divergence_start else None, "first window over threshold"),
        card("n_aligned", "Days compared", f"{ov.n_aligned:,}", ov.n_aligned,
             f"{ov.n_overlap:,} with a backtest bar"),
    ]
    return f"<div class='bl-cards live-figures'>{''.join(cards)}</div>"


# -- data --------------------------------------------------------------------------------------------
class LiveStore:
    """The page's reads (one DuckDB connection per session over the lake's views) and its one
    write (a link, through the lake)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._con: LakeConnection | None = None
        self._lock = threading.RLock()

    def _connection(self) -> LakeConnection:
        if self._con is None:
            self._con = connect(self.settings)
        return self._con

    def refresh(self) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    def strategies(self) -> pl.DataFrame:
        with self._lock:
            return live_strategies(self._connection())

    def overlay(self, strategy: str, run_id: str | None, config: OverlayConfig) -> Overlay:
        with self._lock:
            return load_overlay(self._connection(), strategy, run_id, config)

    def alerts(self, strategy: str | None) -> pd.DataFrame:
        with self._lock:
            return alerts_history(self._connection(), strategy).to_pandas()

    def runs(self) -> list[tuple[str, str]]:
        """(label, run_id) of completed runs with returns, newest first."""
        with self._lock:
            rows = self._connection().execute(
                "SELECT run_id, kind, strategy, symbols, params FROM runs WHERE status = 'completed' AND run_id IN "
                "(SELECT DISTINCT run_id FROM equity) ORDER BY created_at DESC, run_id LIMIT 2000").fetchall()
        return [(f"{r[0]} · {r[1]} · {r[2]} · {r[3]} · {r[4]}", str(r[0])) for r in rows]

    def link(self, strategy: str, run_id: str, user: str) -> str:
        with self._lock:
            result = link_strategy(Lake(self.settings), self._connection(), strategy, run_id, user)
        self.refresh()
        return result


# -- the page ----------------------------------------------------------------------------------------
class LivePage(pn.viewable.Viewer):
    """Strategy picker, thresholds, the overlay of the picked strategy, alerts, link form."""

    def __init__(self, store: LiveStore, identity: Identity, strategy: str | None = None) -> None:
        super().__init__()
        self.store, self.identity = store, identity
        defaults = OverlayConfig()
        self.strategy = pn.widgets.Select(label="Live strategy", options=[], css_classes=["strategy-picker"],
                                          width=280, sizing_mode="fixed")
        self.te = pn.widgets.FloatInput(label="TE threshold (ann.)", value=defaults.tracking_error_threshold,
                                        step=0.005, start=0.0001, css_classes=["te-threshold"], width=150,
                                        sizing_mode="fixed")
        self.div = pn.widgets.FloatInput(label="Divergence threshold", value=defaults.divergence_threshold,
                                         step=0.01, start=0.0001, css_classes=["divergence-threshold"], width=150,
                                         sizing_mode="fixed")
        self.days = pn.widgets.IntInput(label="Days for YELLOW", value=defaults.consecutive_days_for_yellow,
                                        start=1, css_classes=["consecutive-days"], width=130, sizing_mode="fixed")
        self.window = pn.widgets.IntInput(label="Rolling window (days)", value=defaults.rolling_window_days, start=2,
                                          css_classes=["rolling-window"], width=150, sizing_mode="fixed")
        self.reset = pn.widgets.Button(label="Defaults", color="light", width=90, sizing_mode="fixed",
                                       align="end", css_classes=["reset-thresholds"])
        self.reload_button = pn.widgets.Button(label="Refresh", color="light", width=90, sizing_mode="fixed",
                                               align="end", css_classes=["live-refresh"])
        self.body = pn.Column(sizing_mode="stretch_width", css_classes=["live-body"])
        self.link_strategy = pn.widgets.Select(label="Live strategy", options=[], width=240, sizing_mode="fixed",
                                               css_classes=["link-strategy"])
        self.link_run = pn.widgets.Select(label="Completed run", options={}, sizing_mode="stretch_width",
                                          css_classes=["link-run"])
        self.link_button = pn.widgets.Button(label="Link", color="primary", width=100, sizing_mode="fixed",
                                             align="end", css_classes=["link-button"])
        self.link_note = pn.pane.Markdown("", css_classes=["link-note"], sizing_mode="stretch_width")
        self._load_choices(strategy)
        for w in (self.strategy, self.te, self.div, self.days, self.window):
            w.param.watch(lambda _e: self.render(), "value")
        self.reset.on_click(self._reset)
        self.reload_button.on_click(lambda _e: self.reload())
        self.link_button.on_click(self._link)
        allowed, why = submit_gate(identity)
        if not allowed:
            self.link_button.disabled = True
            self.link_note.object = f"*{why}*"
        self.render()

    # -- choices ----------------------------------------------------------------------------------
    def _load_choices(self, wanted: str | None = None) -> None:
        try:
            strategies = self.store.strategies()
            runs = self.store.runs()
        except BacklakeError as e:
            self.problem: str | None = f"**Cannot read the lake** at `{self.store.settings.lake_uri}`: {e}"
            return
        self.problem = None
        self.linked = {r["strategy"]: r["run_id"] for r in strategies.iter_rows(named=True) if r["run_id"]}
        names = strategies["strategy"].to_list()
        labels = {(f"{s}  →  {self.linked[s]}" if s in self.linked else f"{s}  (not linked)"): s for s in names}
        current = wanted if wanted in names else (self.strategy.value if self.strategy.value in names else None)
        if current is None:
            current = next(iter(self.linked), names[0] if names else None)
        self.strategy.options = labels
        self.strategy.value = current
        self.link_strategy.options = names
        self.link_strategy.value = current
        self.link_run.options = dict(runs)
        if current in self.linked and self.linked[current] in dict(runs).values():
            self.link_run.value = self.linked[current]

    def reload(self) -> None:
        self.store.refresh()
        self._load_choices()
        self.render()

    def _reset(self, _event: Any) -> None:
        d = OverlayConfig()
        self.te.value, self.div.value = d.tracking_error_threshold, d.divergence_threshold
        self.days.value, self.window.value = d.consecutive_days_for_yellow, d.rolling_window_days

    def _link(self, _event: Any) -> None:
        try:
            who = self.identity.current()
            require(submit_gate(who))
            strategy, run_id = self.link_strategy.value, self.link_run.value
            if not strategy or not run_id:
                raise ConfigError("pick a live strategy and a completed run to link")
            result = self.store.link(strategy, run_id, who.name)
        except PermissionDenied as e:
            self.link_note.object = f"**Not allowed**: {e}"
            return
        except BacklakeError as e:
            self.link_note.object = f"**Cannot link**: {e}"
            return
        self.link_note.object = f"✔ {result}: `{strategy}` → `{run_id}`"
        self._load_choices(strategy)
        self.render()

    # -- the overlay ----------------------------------------------------------------------------------
    def render(self) -> None:
        self.body.objects = [self._view()]

    def _config(self) -> OverlayConfig:
        return OverlayConfig.parse(tracking_error_threshold=self.te.value, divergence_threshold=self.div.value,
                                   consecutive_days_for_yellow=self.days.value, rolling_window_days=self.window.value)

    def _view(self) -> pn.viewable.Viewable:
        if self.problem:
            return pn.pane.Alert(self.problem, alert_type="danger")
        name = self.strategy.value
        if not name:
            return pn.pane.Alert(
                "No live P&L in the lake yet. Ingest a strategy's daily results with "
                "`backlake live ingest FILE --strategy NAME` and link it with `backlake live link NAME RUN` "
                "(or with the form below); `backlake demo` adds a demo feed.", alert_type="secondary",
                css_classes=["live-empty"])
        if name not in self.linked:
            return pn.Column(pn.pane.Alert(
                f"Live strategy **{html.escape(name)}** is not linked to a backtest yet: link it below "
                f"(researcher or admin) or with `backlake live link {html.escape(name)} RUN`.",
                alert_type="info", css_classes=["not-linked"]), self._alerts(name), sizing_mode="stretch_width")
        try:
            cfg = self._config()
        except ConfigError as e:
            return pn.pane.Alert(f"**Invalid thresholds**: {html.escape(str(e))}", alert_type="danger",
                                 css_classes=["config-error"])
        try:
            ov = self.store.overlay(name, self.linked[name], cfg)
        except BacklakeError as e:
            return pn.pane.Alert(f"**Cannot compute the overlay**: {html.escape(str(e))}", alert_type="danger",
                                 css_classes=["overlay-error"])
        warnings = [pn.pane.Alert(f"⚠ {html.escape(w)}", alert_type="danger" if w.startswith("basis") else "warning",
                                  css_classes=["live-warning"], sizing_mode="stretch_width") for w in ov.warnings]
        span = (f"{ov.start_date} to {ov.last_date}, {ov.n_aligned:,} live days compared with backtest "
                f"<code>{html.escape(ov.run_id or '')}</code> ({ov.basis} of costs)") if ov.enabled else ""
        parts: list[Any] = [
            pn.pane.HTML(badge_html(ov), stylesheets=[CSS], sizing_mode="stretch_width", css_classes=["alert-badge"]),
            *warnings,
        ]
        if ov.enabled:
            parts += [
                pn.pane.HTML(figures_html(ov), stylesheets=[CSS], sizing_mode="stretch_width",
                             css_classes=["figures"]),
                pn.pane.HTML(f"<div class='bl-sub overlay-subtitle'>{span}</div>", stylesheets=[CSS],
                             sizing_mode="stretch_width"),
                pn.pane.HoloViews(self._cumulative_chart(ov), sizing_mode="stretch_width",
                                  css_classes=["cumulative-chart"]),
                pn.pane.HoloViews(self._te_chart(ov), sizing_mode="stretch_width", css_classes=["te-chart"]),
            ]
        parts.append(self._alerts(name))
        return pn.Column(*parts, sizing_mode="stretch_width", css_classes=["overlay"])

    @staticmethod
    def _frame(ov: Overlay) -> pd.DataFrame:
        df = ov.frame.to_pandas()
        df["date"] = pd.to_datetime(df["date"])
        return df

    def _cumulative_chart(self, ov: Overlay) -> hv.Overlay:
        df = self._frame(ov)
        lo = df[["cum_live", "cum_bt"]].min(axis=1)
        hi = df[["cum_live", "cum_bt"]].max(axis=1)
        gap = hv.Area((df["date"], lo, hi), kdims=["Date"], vdims=["Cumulative return", "upper"],
                      label="Divergence").opts(color=GAP_COLOUR, alpha=0.35, line_alpha=0)
        live = hv.Curve((df["date"], df["cum_live"]), "Date", "Cumulative return", label="Live").opts(
            color=LIVE_COLOUR, line_width=2)
        bt = hv.Curve((df["date"], df["cum_bt"]), "Date", "Cumulative return", label=f"Backtest ({ov.basis})").opts(
            color=BT_COLOUR, line_width=2)
        layers = gap * bt * live
        if ov.divergence_start is not None:
            layers = layers * hv.VLine(pd.Timestamp(ov.divergence_start)).opts(color="#c92a2a", line_dash="dashed",
                                                                               line_width=1.5)
        return layers.opts(
            title="Cumulative return: live vs backtest (shaded: divergence)", responsive=True, height=360,
            legend_position="top_left", show_grid=True, yformatter=NumeralTickFormatter(format="0.0%"), xlabel="",
            ylabel="Cumulative return")

    def _te_chart(self, ov: Overlay) -> hv.Overlay:
        df = self._frame(ov)
        cfg = ov.config
        te = hv.Curve((df["date"], df["rolling_te"]), "Date", "Tracking error",
                      label=f"Rolling TE ({cfg.rolling_window_days}d, annualised)").opts(color=TE_COLOUR, line_width=2)
        thr = hv.HLine(cfg.tracking_error_threshold).opts(color="#c92a2a", line_dash="dashed", line_width=1.5)
        marks = df[df["level"] != "NONE"]
        layers = te * thr
        for level, colour in (("YELLOW", "#e0b300"), ("RED", "#c92a2a")):
            sel = marks[marks["level"] == level]
            if sel.empty:
                continue
            layers = layers * hv.Scatter((sel["date"], sel["rolling_te"].fillna(0.0)), "Date", "Tracking error",
                                         label=f"{level} days").opts(color=colour, size=5, marker="square")
        return layers.opts(
            title=f"Rolling tracking error (dashed: threshold {_pct(cfg.tracking_error_threshold)})", responsive=True,
            height=280, legend_position="top_left", show_grid=True, yformatter=NumeralTickFormatter(format="0.0%"),
            xlabel="", ylabel="Tracking error (ann.)")

    def _alerts(self, name: str) -> pn.viewable.Viewable:
        try:
            df = self.store.alerts(name)
        except BacklakeError as e:
            return pn.pane.Alert(f"Cannot read the alerts: {e}", alert_type="warning")
        head = pn.pane.Markdown("#### Alerts recorded by the live monitor", margin=(10, 5, 0, 5))
        if df.empty:
            return pn.Column(head, pn.pane.Markdown(
                "*None yet: the `live-monitor` deployment records one per day (`backlake live monitor` runs it "
                "now).*", css_classes=["alerts-empty"]), sizing_mode="stretch_width")
        for c in ("date", "divergence_start"):
            df[c] = pd.to_datetime(df[c])
        df["created_at"] = pd.to_datetime(df["created_at"]).dt.tz_localize(None)
        shown = df[list(ALERT_COLUMNS)].rename(columns=ALERT_COLUMNS)
        table = pn.widgets.Tabulator(
            shown, show_index=False, disabled=True, pagination="local", page_size=10, layout="fit_data_stretch",
            formatters={"Date": DAY, "Divergence start": DAY, "Recorded (UTC)": DT, "TE (ann.)": PCT,
                        "Rolling TE": PCT, "Divergence": PCT},
            stylesheets=[TABLE_CSS], css_classes=["alerts-table"], sizing_mode="stretch_width")
        table.style.apply(lambda col: [
            f"background-color: {LEVEL_STYLE[v][1]}; color: {LEVEL_STYLE[v][0]}; font-weight: 600"
            if v in ("RED", "YELLOW") else "" for v in col], subset=["Level"])
        return pn.Column(head, table, sizing_mode="stretch_width")

    def sidebar(self) -> list[Any]:
        return []

    def __panel__(self) -> pn.viewable.Viewable:
        controls = pn.Row(self.strategy, self.te, self.div, self.days, self.window, self.reset, self.reload_button,
                          sizing_mode="stretch_width", css_classes=["live-controls"])
        link = pn.Card(
            pn.Row(self.link_strategy, self.link_run, self.link_button, sizing_mode="stretch_width"),
            self.link_note, title="Link a live strategy to a backtest", collapsed=False,
            sizing_mode="stretch_width", css_classes=["link-form"], header_background="#f4f6f8")
        return pn.Column(controls, self.body, link, sizing_mode="stretch_width", css_classes=["live-page"])


def _serve() -> None:
    pn.extension("tabulator", sizing_mode="stretch_width")
    template, identity = page("live", "Live vs backtest")
    if identity is not None:
        store = LiveStore()
        pn.state.on_session_destroyed(lambda _context: store.close())
        query = pn.state.location.query_params if pn.state.location is not None else {}
        wanted = query.get("strategy")
        if isinstance(wanted, list):
            wanted = wanted[0] if wanted else None
        if isinstance(wanted, bytes):
            wanted = wanted.decode()
        live_page = LivePage(store, identity, strategy=str(wanted) if wanted else None)
        template.main.append(live_page)
        try:
            from dashboards.layout import watch_versions

            watch_versions(template, store, ("live_pnl", "live_links", "alerts"), on_refresh=live_page.reload)
        except Exception:  # the banner is a convenience: the page works without it
            pass
    template.servable(title="backlake — live vs backtest")


if __name__.startswith("bokeh_app") or __name__ == "__main__":
    _serve()
