"""The runs page: every run (any kind, any status; "mine" or everyone's) in a filtered, sorted,
server-side paged table, the detail of the selected run, and (in the sidebar) a form to submit
a backtest and the jobs submitted from here.

Views only: every number comes from ``LakeStore`` (the list is one page of
``LakeStore.runs_page``: filters, sort and paging run in DuckDB), every submission goes through
``dashboards.jobs`` (the library's run protocol), and every control asks the gates of
``dashboards.identity`` (viewers get the controls disabled, with the reason). The detail of a
completed run is ``dashboards.details.render`` (a view per kind) under a header; the detail of a
failed, running or cancelled run shows its error and events.

    page = RunsPage(store=LakeStore(), identity=current_identity(), jobs=shared_queue())
    template.main.append(page); template.sidebar.extend(page.sidebar())
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Callable
from typing import Any

import pandas as pd
import panel as pn
import param

from backlake.config import BacktestConfig
from backlake.errors import BacklakeError
from backlake.strategies import display_name
from dashboards import details
from dashboards.editor import DEFAULT_CONFIG
from dashboards.fmt import DASH, metric_text
from dashboards.identity import Identity, cancel_gate, submit_gate
from dashboards.jobs import Job, JobQueue
from dashboards.store import KINDS, STATUSES, LakeStore, RunFilter

__all__ = ["RunsPage", "RunsTable", "RunDetail", "SubmitForm", "JobsList", "MINE", "EVERYONE",
           "default_owner_filter", "format_params", "symbols_html", "status_html", "kind_html", "progress_parts"]

EMPTY_LAKE = (
    "**No runs yet** — run `backlake demo` to ingest the sample data and backtest the demo "
    "strategies, then press **Refresh**."
)
NO_SELECTION = "Select a run in the table to see its detail: charts, metrics, config and trades, or its error."
NONE_OF_MINE = (
    "**You have no runs yet** — switch to **Everyone** to see the others' runs, or submit "
    "a backtest from the sidebar."
)
NO_MATCH = "**No run matches these filters** — widen them or press **Clear filters**."
MINE, EVERYONE = "Mine", "Everyone"
#: What the submit form holds until a run is selected (selecting one copies its config): the
#: config editor's new config (the same costs), with its timeframe and cash spelled out.
EXAMPLE_CONFIG = {**DEFAULT_CONFIG, "timeframe": "1d", "initial_cash": 10000}
PAGE_SIZES = (25, 50, 100)
#: A selected run's detail is built this long after the selection (the form is filled at once).
SHOW_DETAIL_AFTER_MS = 150
#: A universe longer than this shows as "N symbols" (the list on hover).
MAX_SYMBOLS_SHOWN = 3


def format_params(params_json: str | None) -> str:
    """``{"fast": 10, "slow": 30}`` -> ``fast=10, slow=30``. Values read as in the JSON config
    (``true``, ``{"lookback": 252}``); parameters left unset (null) are not shown."""
    if not params_json:
        return ""
    try:
        params = json.loads(params_json)
    except ValueError:
        return params_json
    if not isinstance(params, dict):
        return params_json

    def text(v: Any) -> str:
        return v if isinstance(v, str) else json.dumps(v)

    return ", ".join(f"{k}={text(v)}" for k, v in params.items() if v is not None)


# -- cells ---------------------------------------------------------------------------------------
KIND_LABELS = {"backtest": "Backtest", "sweep": "Sweep", "optimize": "Optimize", "walk_forward": "Walk-forward",
               "monte_carlo": "Monte Carlo", "alpha": "Alpha"}
KIND_COLORS = {"backtest": "#1f6fb2", "sweep": "#7b4fb0", "optimize": "#b5651d", "walk_forward": "#137a63",
               "monte_carlo": "#a23a72", "alpha": "#4d6a8a"}
STATUS_COLORS = {"completed": ("#e6f4ea", "#1e7b34"), "running": ("#e3effb", "#1f5fa8"),
                 "pending": ("#eef0f3", "#4a5563"), "failed": ("#fdecea", "#b3261e"),
                 "crashed": ("#fdecea", "#b3261e"), "cancelled": ("#f3eee4", "#7a5b1e")}
BADGE = ("display:inline-block;padding:1px 7px;border-radius:9px;font-size:0.78em;font-weight:600;"
         "line-height:1.5;white-space:nowrap;")


def kind_html(kind: str | None) -> str:
    """A colored badge of the run's kind ("?" when only its events are known)."""
    if not kind:
        return f"<span class='bl-kind' style='{BADGE}color:#5f6b7a;border:1px solid #c9ced6'>?</span>"
    color = KIND_COLORS.get(kind, "#4a5563")
    return (f"<span class='bl-kind bl-kind-{html.escape(kind)}' style='{BADGE}color:{color};"
            f"border:1px solid {color}'>{html.escape(KIND_LABELS.get(kind, kind))}</span>")


def _first_line(text: str | None, width: int = 60) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def elapsed_text(since: Any, now: dt.datetime | None = None) -> str:
    """``3 h 05 min`` / ``4 min 12 s`` / ``12 s`` since ``since`` (naive UTC)."""
    if since is None or pd.isna(since):
        return ""
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    secs = max(0, int((now - pd.Timestamp(since).to_pydatetime()).total_seconds()))
    h, rest = divmod(secs, 3600)
    m, s = divmod(rest, 60)
    if h >= 48:
        return f"{h // 24} d {h % 24} h"
    return f"{h} h {m:02d} min" if h else (f"{m} min {s:02d} s" if m else f"{s} s")


def progress_parts(progress: Any, now: dt.datetime | None = None) -> tuple[str, str] | None:
    """A running run's latest progress report (a mapping with done, total, unit, ts, e.g. a row of
    ``LakeStore.progress``) as (a bar, ``3/8 chunks (38 %) · 12 s ago``); None without one."""
    if progress is None:
        return None
    try:
        done, total = int(progress["done"]), int(progress["total"])
    except (KeyError, TypeError, ValueError):
        return None
    frac = 1.0 if total <= 0 else min(1.0, max(0.0, done / total))
    pct = int(frac * 100 + 0.5)
    unit = str(progress.get("unit") or "")
    text = " ".join(f"{done:,}/{total:,} {unit} ({pct} %)".split())
    age = elapsed_text(progress.get("ts"), now)
    if age:
        text += f" · {age} ago"
    bar = (f"<span class='bl-progress' role='progressbar' aria-valuemin='0' aria-valuemax='{total}' "
           f"aria-valuenow='{done}' title='{html.escape(text, quote=True)}' style='display:inline-block;width:64px;"
           "height:7px;background:#d6e4f5;border-radius:4px;vertical-align:middle;overflow:hidden;margin:0 4px'>"
           f"<span class='bl-progress-bar' style='display:block;height:100%;width:{frac * 100:.1f}%;"
           "background:#1f5fa8'></span></span>")
    return bar, text


def status_html(status: str | None, error: str | None = None, message: str | None = None,
                since: Any = None, now: dt.datetime | None = None, progress: Any = None) -> str:
    """A status badge and what goes with it: a running run's progress (its latest progress
    report, ``progress``: a bar and ``3/8 chunks (38 %) · 12 s ago``; else its latest event's
    message) and elapsed time, a failed run's error (first line; all of it on hover), a cancelled
    run's who/what (the cancelling event's message)."""
    status = status or "unknown"
    bg, fg = STATUS_COLORS.get(status, ("#eef0f3", "#4a5563"))
    badge = (f"<span class='bl-status bl-status-{html.escape(status)}' style='{BADGE}background:{bg};"
             f"color:{fg}'>{html.escape(status)}</span>")
    note, full = "", ""
    if status in ("running", "pending"):
        shown = progress_parts(progress, now)
        if shown is not None:
            bar, text = shown
            running_for = elapsed_text(since, now)
            full = " · ".join(p for p in (text, f"running for {running_for}" if running_for else "", message or "")
                              if p)
            return (f"{badge}{bar}<span class='bl-status-note bl-progress-text' "
                    f"title='{html.escape(full, quote=True)}' style='color:{fg};font-size:0.85em'>"
                    f"{html.escape(text)}</span>")
        parts = [p for p in (_first_line(message, 40), elapsed_text(since, now)) if p]
        note, full = " · ".join(parts), message or ""
    elif status in ("failed", "crashed"):
        full = error or message or ""
        note = _first_line(full)
    elif status == "cancelled":
        full = message or ""
        note = _first_line(full) or "cancelled"
    if not note:
        return badge
    return (f"{badge} <span class='bl-status-note' title='{html.escape(full or note, quote=True)}' "
            f"style='color:{fg};font-size:0.85em'>{html.escape(note)}</span>")


def symbols_html(symbols: str | None) -> str:
    """The universe: up to 3 symbols as they are, a longer one as "20 symbols" with the list on hover."""
    names = [s for s in (symbols or "").split(",") if s]
    if not names:
        return DASH
    if len(names) <= MAX_SYMBOLS_SHOWN:
        return html.escape(", ".join(names))
    return (f"<span class='bl-universe' title='{html.escape(', '.join(names), quote=True)}' "
            f"style='border-bottom:1px dotted #8a94a3;cursor:help'>{len(names)} symbols</span>")


#: The table's columns in display order (the metrics before the params: they are what one scans).
RUN_TITLES = {
    "run_id": "Run", "kind": "Kind", "status": "Status", "strategy": "Strategy", "symbols": "Symbols",
    "total_return": "Total return", "cagr": "CAGR", "sharpe": "Sharpe", "sortino": "Sortino",
    "max_drawdown": "Max DD", "n_trades": "Trades", "params": "Params", "created_at": "Created (UTC)",
    "created_by": "By",
}
METRIC_COLUMNS = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "n_trades")
#: The params column's width (px): the rest of a long params text is in the cell's tooltip.
PARAMS_WIDTH = 260
HTML_COLUMNS = ("kind", "status", "symbols")
#: Sort choices: label -> column.
SORT_CHOICES = {RUN_TITLES[c]: c for c in ("created_at", "run_id", "kind", "status", "strategy", "symbols",
                                           "params", *METRIC_COLUMNS, "created_by")}
SORT_CHOICES["Finished (UTC)"] = "finished_at"

TABLE_CSS = """
:host .tabulator { font-size: 0.85rem; }
:host(.runs-table) .tabulator-footer { display: none; }
:host .tabulator-row.tabulator-selected .bl-kind,
:host .tabulator-row.tabulator-selected .bl-status { background: #fff; }
:host .tabulator-row.tabulator-selected .bl-status-note { color: #fff !important; }
:host .tabulator-row.tabulator-selected .bl-progress { background: rgba(255,255,255,0.35) !important; }
:host .tabulator-row.tabulator-selected .bl-progress-bar { background: #fff !important; }
:host .bl-status-note { display: inline-block; max-width: 240px; overflow: hidden; text-overflow: ellipsis;
  vertical-align: bottom; white-space: nowrap; }
:host .tabulator .tabulator-cell { padding: 5px 8px; }
"""
FILTER_CSS = ":host { margin-top: 0; }"


def table_frame(rows: pd.DataFrame, now: dt.datetime | None = None,
                progress: pd.DataFrame | None = None) -> pd.DataFrame:
    """A page of ``LakeStore.runs_page`` rows as the table shows them (HTML badges, the metric
    columns as text in their units); ``progress``: the running runs' latest progress reports
    (``LakeStore.progress``), shown as a bar and ``3/8 chunks (38 %)`` in their status cell."""
    out = pd.DataFrame({"run_id": rows["run_id"].astype(str)})
    reports = ({str(r["run_id"]): r for r in progress.to_dict("records")}
               if progress is not None and not progress.empty else {})
    out["kind"] = [kind_html(k if isinstance(k, str) else None) for k in rows["kind"]]
    out["status"] = [
        status_html(st if isinstance(st, str) else None, e if isinstance(e, str) else None,
                    m if isinstance(m, str) else None, c if pd.isna(ts) else ts, now,
                    reports.get(str(rid)))
        for rid, st, e, m, c, ts in zip(rows["run_id"], rows["status"], rows["error"], rows["message"],
                                        rows["created_at"], rows["status_ts"])
    ]
    out["strategy"] = rows["strategy"].fillna(DASH)
    out["symbols"] = [symbols_html(s if isinstance(s, str) else None) for s in rows["symbols"]]
    out["params"] = [format_params(p) if isinstance(p, str) else "" for p in rows["params"]]
    for name in METRIC_COLUMNS:
        out[name] = [metric_text(name, None if pd.isna(v) else float(v)) for v in rows[name]]
    out["created_at"] = [t.strftime("%Y-%m-%d %H:%M") if pd.notna(t) else DASH for t in rows["created_at"]]
    out["created_by"] = rows["created_by"].fillna(DASH)
    return out[list(RUN_TITLES)]


def _alert(text: str, kind: str = "info") -> pn.pane.Alert:
    return pn.pane.Alert(text, alert_type=kind, sizing_mode="stretch_width")


# -- views ---------------------------------------------------------------------------------------
class RunsTable(pn.viewable.Viewer):
    """Every run matching the filters, one page at a time (the store pages in DuckDB);
    ``run_id`` follows the selected row, ``selected`` keeps the selection across pages."""

    run_id = param.String(default=None, allow_None=True, doc="The selected run, or None.")
    n_runs = param.Integer(default=0, doc="How many runs match the filters (all pages).")
    n_total = param.Integer(default=0, doc="How many runs the lake holds (whoever made them; 0 until needed).")
    counts = param.Dict(default={}, doc="status -> how many runs match the filters.")
    owner = param.String(default=None, allow_None=True, doc="Show only the runs this user created; None: all.")
    selected = param.List(default=[], item_type=str, doc="The selected runs, in the order they were selected.")
    page = param.Integer(default=0, bounds=(0, None), doc="The page shown (from 0).")
    page_size = param.Integer(default=PAGE_SIZES[0])
    sort = param.String(default="created_at")
    descending = param.Boolean(default=True)

    def __init__(self, store: LakeStore, **params: object) -> None:
        super().__init__(**params)
        self.store = store
        self.message = _alert(EMPTY_LAKE, "info")
        self.message.visible = False
        self.rows = pd.DataFrame()
        try:
            strategies = store.strategies()
        except BacklakeError:
            strategies = []
        w = pn.widgets
        self.kind_filter = w.MultiChoice(label="Kind", options=list(KINDS), placeholder="any kind",
                                         css_classes=["filter-kind"], width=200)
        self.status_filter = w.MultiChoice(label="Status", options=list(STATUSES), placeholder="any status",
                                           css_classes=["filter-status"], width=200)
        self.strategy_filter = w.MultiChoice(label="Strategy", options=strategies, placeholder="any strategy",
                                             css_classes=["filter-strategy"], width=220)
        self.symbol_filter = w.TextInput(label="Symbol", placeholder="e.g. GOOG", css_classes=["filter-symbol"],
                                         width=110)
        self.since_filter = w.DatePicker(label="Created from", css_classes=["filter-since"], width=140)
        self.until_filter = w.DatePicker(label="to", css_classes=["filter-until"], width=140)
        self.search_filter = w.TextInput(label="Search params", placeholder="e.g. fast=10 or \"slow\": 30",
                                         css_classes=["filter-search"], width=200)
        self.clear_button = w.Button(label="Clear filters", css_classes=["filter-clear"], width=110,
                                     align="end")
        self.clear_button.on_click(lambda _e: self.clear_filters())
        self.sort_select = w.Select(label="Sort by", options=SORT_CHOICES, value=self.sort,
                                    css_classes=["sort-by"], width=150)
        self.order_select = w.Select(label="Order", options={"Descending": True, "Ascending": False},
                                     value=self.descending, css_classes=["sort-order"], width=120)
        self.filters = [self.kind_filter, self.status_filter, self.strategy_filter, self.symbol_filter,
                        self.since_filter, self.until_filter, self.search_filter]
        for widget in self.filters:
            widget.param.watch(lambda _e: self._filters_changed(), "value")
        self.sort_select.param.watch(lambda e: self._loading or self._set(sort=e.new, page=0), "value")
        self.order_select.param.watch(lambda e: self._loading or self._set(descending=e.new, page=0), "value")
        self.prev_button = w.Button(label="← Prev", css_classes=["page-prev"], width=80)
        self.next_button = w.Button(label="Next →", css_classes=["page-next"], width=80)
        self.prev_button.on_click(lambda _e: self._set(page=max(0, self.page - 1)))
        self.next_button.on_click(lambda _e: self._set(page=self.page + 1))
        self.size_select = w.Select(options=list(PAGE_SIZES), value=self.page_size, css_classes=["page-size"],
                                    width=70)
        self.size_select.param.watch(lambda e: self._set(page_size=e.new, page=0), "value")
        self.page_text = pn.pane.HTML("", css_classes=["page-info"], align="center", width=210,
                                      styles={"margin-left": "auto", "text-align": "right"})
        self._table = pn.widgets.Tabulator(
            pd.DataFrame(columns=list(RUN_TITLES)), show_index=False, selectable=True, disabled=True,
            titles=RUN_TITLES, formatters={c: {"type": "html"} for c in HTML_COLUMNS},
            text_align={c: "right" for c in METRIC_COLUMNS}, layout="fit_data_stretch",
            frozen_columns=["run_id"], sizing_mode="stretch_width", header_align="center",
            # a long params text (an alpha's options) is cut with an ellipsis, whole in its tooltip,
            # instead of widening the table past the window
            widths={"params": PARAMS_WIDTH}, configuration={"columnDefaults": {"tooltip": True}},
            pagination="local", page_size=max(PAGE_SIZES),  # one local page: the paging is the store's
            css_classes=["runs-table"], stylesheets=[TABLE_CSS],
        )
        self._table.param.watch(self._on_select, "selection")
        self._table.param.watch(self._on_header_sort, "sorters")
        self.param.watch(lambda _e: self._set(page=0), "owner")
        self.load()

    # -- state ---------------------------------------------------------------------------------
    def run_filter(self) -> RunFilter:
        """The filters as the store takes them."""
        return RunFilter(
            kinds=tuple(self.kind_filter.value), strategies=tuple(self.strategy_filter.value),
            statuses=tuple(self.status_filter.value), symbol=self.symbol_filter.value or "", owner=self.owner,
            since=self.since_filter.value, until=self.until_filter.value, search=self.search_filter.value or "",
        )

    def clear_filters(self) -> None:
        """Every filter back to "any" (the owner choice stays), then one reload."""
        self._loading = True
        try:
            for widget in self.filters:
                widget.value = [] if isinstance(widget, pn.widgets.MultiChoice) else (
                    None if isinstance(widget, pn.widgets.DatePicker) else "")
        finally:
            self._loading = False
        self._set(page=0)

    _loading = False

    def _filters_changed(self) -> None:
        if not self._loading:
            self._set(page=0)

    def _set(self, **values: Any) -> None:
        self.param.update(**values)
        self.load()

    def load(self) -> None:
        """(Re-)read the page of runs; keep the selected runs selected where they are shown."""
        try:
            strategies = self.store.strategies()
            if strategies != list(self.strategy_filter.options):
                self.strategy_filter.options = strategies
            flt = self.run_filter()
            got = self.store.runs_page(flt, sort=self.sort, descending=self.descending,
                                       offset=self.page * self.page_size, limit=self.page_size)
            if got.rows.empty and got.total and self.page > 0:  # the page is past the end now
                self.page = max(0, (got.total - 1) // self.page_size)
                got = self.store.runs_page(flt, sort=self.sort, descending=self.descending,
                                           offset=self.page * self.page_size, limit=self.page_size)
            if got.total == 0:
                self.n_total = self.store.runs_page(RunFilter(), limit=1).total
        except BacklakeError as e:
            self._show_message(f"**Cannot read the lake** at `{self.store.lake_uri}`: {e}", "danger")
            return
        self.counts = dict(got.counts)
        self.n_runs = got.total
        self._pager(got.total)
        if got.rows.empty:
            if self.n_total == 0:
                self._show_message(EMPTY_LAKE, "info")
            elif self.run_filter() == RunFilter(owner=self.owner) and self.owner is not None:
                self._show_message(NONE_OF_MINE, "info")
            else:
                self._show_message(NO_MATCH, "info")
            return
        self.rows = got.rows
        active = got.rows.loc[got.rows["status"].isin(["running", "pending"]), "run_id"].astype(str).tolist()
        try:
            reports = self.store.progress(active) if active else None
        except BacklakeError:  # progress is a nicety: the list shows without it
            reports = None
        shown = table_frame(got.rows, progress=reports)
        self._loading = True
        try:
            self._table.value = shown
            keep = list(dict.fromkeys([*self.selected, *([self.run_id] if self.run_id else [])]))
            self._table.selection = shown.index[shown["run_id"].isin(keep)].tolist()
        finally:
            self._loading = False
        self.message.visible, self._table.visible = False, True

    def _pager(self, total: int) -> None:
        first = self.page * self.page_size
        last = min(total, first + self.page_size)
        pages = max(1, -(-total // self.page_size))
        self.page_text.object = (
            f"<span style='color:#5f6b7a'>{first + 1 if total else 0:,}–{last:,} of <b>{total:,}</b> · "
            f"page {self.page + 1:,} of {pages:,}</span>")
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = last >= total

    def _show_message(self, text: str, kind: str) -> None:
        self.message.object, self.message.alert_type = text, kind
        self.message.visible, self._table.visible = True, False
        self._table.value = pd.DataFrame(columns=list(RUN_TITLES))
        if not self.selected:
            self.run_id = None

    def _on_select(self, event: param.parameterized.Event) -> None:
        """Several rows may be selected (Ctrl/Shift-click, to compare them; runs selected on
        other pages stay selected); the detail follows the one selected last."""
        if self._loading:
            return
        on_page = set(self._table.value["run_id"].astype(str))
        ids = [str(self._table.value["run_id"].iloc[i]) for i in event.new]
        elsewhere = [r for r in self.selected if r not in on_page]
        added = [r for r in ids if r not in self.selected]
        kept = [r for r in self.selected if r in ids]
        self.selected = elsewhere + kept + added
        if added:
            self.run_id = added[-1]
        elif self.run_id not in self.selected:
            self.run_id = self.selected[-1] if self.selected else None

    def _on_header_sort(self, event: param.parameterized.Event) -> None:
        """A click on a column header sorts the whole list (in DuckDB, as the Sort by / Order
        choices do), not only the page; the table then shows the store's order."""
        if self._loading or not event.new:
            return
        column = str(event.new[0].get("field"))
        # the same column again flips the order; a new one starts with the largest / newest first
        # for numbers and dates, A to Z for text
        descending = (not self.descending if column == self.sort
                      else column in (*METRIC_COLUMNS, "created_at", "finished_at"))
        self._loading = True
        try:
            self._table.sorters = []
        finally:
            self._loading = False
        if column not in SORT_CHOICES.values():
            return
        self._loading = True  # one reload for both choices
        try:
            self.sort_select.value, self.order_select.value = column, descending
        finally:
            self._loading = False
        self._set(sort=column, descending=descending, page=0)

    def filter_bar(self) -> pn.viewable.Viewable:
        return pn.FlexBox(*self.filters, self.clear_button, flex_wrap="wrap", align_items="flex-end",
                          sizing_mode="stretch_width", css_classes=["runs-filters"])

    def __panel__(self) -> pn.viewable.Viewable:
        # sorting on the left, paging pushed to the right; on a narrow window the paging wraps below
        pager = pn.FlexBox(self.sort_select, self.order_select, self.page_text, self.prev_button,
                           self.next_button, self.size_select, flex_wrap="wrap", align_items="flex-end",
                           sizing_mode="stretch_width", css_classes=["runs-pager"])
        return pn.Column(self.filter_bar(), pager, self.message, self._table, sizing_mode="stretch_width")


class RunDetail(pn.viewable.Viewer):
    """The selected run: a header (kind, strategy and symbols, status, who and when, links),
    then its kind's view (``dashboards.details.render``) when it completed, or its error and
    events when it did not."""

    run_id = param.String(default=None, allow_None=True)

    def __init__(self, store: LakeStore, **params: object) -> None:
        super().__init__(**params)
        self.store = store

    @param.depends("run_id")
    def _view(self) -> pn.viewable.Viewable:
        if not self.run_id:
            return _alert(NO_SELECTION, "secondary")
        try:
            run = self.store.run(self.run_id)
            if run is None:
                gone = f"Run `{self.run_id}` is not in the lake any more; press **Refresh**."
                return _alert(gone, "warning")
            events = self.store.run_events(self.run_id)
        except BacklakeError as e:
            return _alert(f"**Cannot read run `{self.run_id}`**: {e}", "danger")
        if run.get("status") in ("running", "pending"):
            try:
                reports = self.store.progress([self.run_id])
            except BacklakeError:  # progress is a nicety: the detail shows without it
                reports = pd.DataFrame()
            if not reports.empty:
                run = {**run, "progress": reports.iloc[0].to_dict()}  # a copy: the store's is shared
        parts: list[Any] = [self._header(run), self._links(run)]
        if run.get("status") == "completed":
            try:
                parts.append(details.render(self.store, run))
            except BacklakeError as e:
                parts.append(_alert(f"**Cannot read run `{self.run_id}`**: {e}", "danger"))
            if not events.empty:
                parts.append(pn.Card(self._events(events), title=f"Events ({len(events)})", collapsed=True,
                                     sizing_mode="stretch_width", css_classes=["run-events-card"]))
        else:
            parts.append(self._not_completed(run))
            parts.append(pn.Column(f"#### Events ({len(events)})", self._events(events),
                                   sizing_mode="stretch_width"))
        return pn.Column(*parts, sizing_mode="stretch_width")

    @staticmethod
    def title(run: dict[str, Any]) -> str:
        """``Backtest · sma_crossover on GOOG, MSFT (1d)`` (``20 symbols`` for a long universe)."""
        kind = KIND_LABELS.get(str(run.get("kind")), str(run.get("kind") or "Run"))
        if not run.get("strategy"):  # known from its events only: the runs row comes when it ends
            if run.get("status") in ("running", "pending"):
                return "Run in progress — its details come when it ends"
            return f"{str(run.get('status') or 'Unfinished').capitalize()} run — it wrote no results"
        names = [s for s in str(run.get("symbols") or "").split(",") if s]
        universe = ", ".join(names) if len(names) <= MAX_SYMBOLS_SHOWN else f"{len(names)} symbols"
        tf = f" ({run['timeframe']})" if run.get("timeframe") else ""
        return f"{kind} · {display_name(run['strategy'], run.get('params'))} on {universe or '?'}{tf}"

    @classmethod
    def _header(cls, run: dict[str, Any]) -> pn.pane.HTML:
        def when(v: Any) -> str:
            return pd.Timestamp(v).strftime("%Y-%m-%d %H:%M UTC") if v is not None and pd.notna(v) else ""

        rid = html.escape(str(run["run_id"]))
        facts = [f"Run <code>{rid}</code>"]
        if run.get("params"):
            facts.append(html.escape(format_params(run["params"])))
        created = when(run.get("created_at"))
        if created:
            facts.append(f"created {created}" + (f" by <b>{html.escape(str(run['created_by']))}</b>"
                                                 if run.get("created_by") else ""))
        if when(run.get("finished_at")):
            facts.append(f"finished {when(run['finished_at'])}")
        if run.get("code_version"):
            facts.append(f"code {html.escape(str(run['code_version']))}")
        if run.get("data_versions"):
            facts.append(f"data versions <code>{html.escape(str(run['data_versions']))}</code>")
        names = [s for s in str(run.get("symbols") or "").split(",") if s]
        universe = (f"<div class='bl-universe-list' style='color:#5f6b7a;font-size:0.85em'>Universe "
                    f"({len(names)}): {html.escape(', '.join(names))}</div>" if len(names) > MAX_SYMBOLS_SHOWN else "")
        status = status_html(run.get("status"), run.get("error"), run.get("message"), run.get("created_at"),
                             progress=run.get("progress"))
        return pn.pane.HTML(
            f"<div class='bl-run-title' style='display:flex;gap:10px;align-items:center'>"
            f"<h3 style='margin:0'>{html.escape(cls.title(run))}</h3>{kind_html(run.get('kind'))}{status}</div>"
            f"<div class='bl-run-facts' style='color:#3b4350;margin-top:4px'>{' · '.join(facts)}</div>{universe}",
            sizing_mode="stretch_width", css_classes=["run-header"],
        )

    @staticmethod
    def _links(run: dict[str, Any]) -> pn.Row:
        rid = html.escape(str(run["run_id"]))
        links = [f"<a class='run-report' href='./report?run={rid}' style='font-weight:600'>▤ Report</a>"]
        if run.get("config"):
            links.append(f"<a class='edit-copy' href='./editor?from={rid}' style='font-weight:600'>✎ Edit a copy in "
                         "the config editor</a>")
        return pn.Row(pn.pane.HTML(" &nbsp;·&nbsp; ".join(links), css_classes=["run-links", "edit-copy-link"],
                                   sizing_mode="stretch_width", margin=(0, 10)), sizing_mode="stretch_width")

    @staticmethod
    def _not_completed(run: dict[str, Any]) -> pn.viewable.Viewable:
        status = str(run.get("status") or "unknown")
        message = str(run.get("message") or "")
        if status in ("failed", "crashed"):
            error = str(run.get("error") or message or "no error was recorded")
            return pn.pane.Alert(f"**This run {status}**<pre style='white-space:pre-wrap;margin:6px 0 0'>"
                                 f"{html.escape(error)}</pre>", alert_type="danger", sizing_mode="stretch_width",
                                 css_classes=["run-error"])
        if status == "cancelled":
            return pn.pane.Alert(f"**This run was cancelled**: {html.escape(message or 'no reason recorded')}",
                                 alert_type="warning", sizing_mode="stretch_width", css_classes=["run-cancelled"])
        if status in ("running", "pending"):
            since = elapsed_text(run.get("created_at"))
            note = f" ({html.escape(message)})" if message else ""
            shown = progress_parts(run.get("progress"))
            if shown is not None:
                note = f": **{html.escape(shown[1])}**{note}"
            return pn.pane.Alert(f"**This run is {status}**{note} — for {since}. Its results appear when it "
                                 "completes; press **Refresh**.", alert_type="info", sizing_mode="stretch_width",
                                 css_classes=["run-running"])
        return _alert(f"This run is {html.escape(status)}.", "secondary")

    @staticmethod
    def _events(events: pd.DataFrame) -> pn.viewable.Viewable:
        if events.empty:
            return pn.pane.Markdown("_No events recorded for this run._")
        shown = events.assign(ts=events["ts"].map(lambda t: t.strftime("%Y-%m-%d %H:%M:%S")))
        return pn.widgets.Tabulator(
            shown, show_index=False, disabled=True, layout="fit_data_stretch", sizing_mode="stretch_width",
            titles={"ts": "When (UTC)", "status": "Status", "message": "Message", "attempt": "Attempt",
                    "host": "Host", "pid": "PID"},
            css_classes=["run-events"], stylesheets=[TABLE_CSS], pagination="local", page_size=10,
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.panel(self._view, loading_indicator=True), sizing_mode="stretch_width",
            css_classes=["run-detail"],
        )


def run_from_url() -> str | None:
    """The run a link asks to open (``./app?run=<id>``), or None."""
    raw = (pn.state.session_args or {}).get("run")
    if not raw:
        return None
    value = raw[0].decode() if isinstance(raw[0], bytes) else str(raw[0])
    return value.strip() or None


def compare_link(selected: list[str]) -> pn.pane.HTML:
    """"Compare selected (n)": the compare page on the selected runs (``./compare?runs=a,b``), a
    link once 2 to 10 runs are selected, a hint otherwise."""
    n = len(selected)
    if 2 <= n <= 10:
        href = html.escape(f"./compare?runs={','.join(selected)}&baseline={selected[0]}&basis=net")
        text = (f"<a class='compare-selected btn btn-outline-primary btn-sm' href='{href}'>"
                f"Compare selected ({n})</a>")
    else:
        text = ("<span class='compare-hint' style='color:#5f6b7a'>"
                + ("Ctrl- or Shift-click 2 to 10 runs to compare them" if n < 2
                   else f"{n} selected: compare at most 10") + "</span>")
    return pn.pane.HTML(text, css_classes=["compare-link"], width=260, height=36,
                        align="center")


def default_owner_filter(identity: Identity) -> str:
    """Researchers start on their own runs ("Mine"); viewers and admins on everyone's."""
    return MINE if identity.role == "researcher" else EVERYONE


def config_for_form(config_json: str | None) -> str:
    """A stored run's config as the submit form shows it: the keys that differ from the
    defaults (the same config, shorter), indented; "" when it cannot be read."""
    try:
        stored = json.loads(config_json or "")
    except ValueError:
        return ""
    if not isinstance(stored, dict):
        return ""
    data = {k: v for k, v in stored.items() if k in BacktestConfig.model_fields}
    try:
        short = BacktestConfig.model_validate(data).model_dump(mode="json", exclude_defaults=True)
    except (ValueError, BacklakeError):  # a config this version no longer takes: as stored
        return json.dumps(data, indent=1)
    first = [k for k in ("strategy", "params", "universe") if k in short]
    return json.dumps({**{k: short[k] for k in first}, **short}, indent=1)


EDITOR_CSS = ":host textarea { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.8rem; }"


class SubmitForm(pn.viewable.Viewer):
    """A backtest config (JSON) and a Submit button; for a role that may not submit, both are
    disabled and the reason is shown. Submitting asks the gate again (``JobQueue.submit``)."""

    def __init__(self, identity: Identity, jobs: JobQueue, **params: object) -> None:
        super().__init__(**params)
        self.identity, self.jobs = identity, jobs
        self.allowed, why = submit_gate(identity)
        self.editor = pn.widgets.TextAreaInput(
            value=json.dumps(EXAMPLE_CONFIG, indent=1), height=300, disabled=not self.allowed,
            css_classes=["submit-config"], stylesheets=[EDITOR_CSS], sizing_mode="stretch_width",
        )
        self.button = pn.widgets.Button(
            label="Submit backtest", color="primary", disabled=not self.allowed,
            css_classes=["submit-run"], sizing_mode="stretch_width",
        )
        self.button.on_click(self._on_submit)
        self.reason = pn.pane.Alert(why, alert_type="warning", visible=not self.allowed,
                                    css_classes=["submit-denied"], sizing_mode="stretch_width")
        self.feedback = pn.pane.Alert("", alert_type="success", visible=False, css_classes=["submit-feedback"],
                                      sizing_mode="stretch_width")

    def use_config(self, config_json: str | None) -> None:
        """Put a stored run's config in the form (to edit and run again)."""
        text = config_for_form(config_json)
        if self.allowed and text:
            self.editor.value = text

    def _say(self, text: str, kind: str) -> None:
        self.feedback.object, self.feedback.alert_type, self.feedback.visible = text, kind, True

    def _on_submit(self, _event: object) -> None:
        try:
            data = json.loads(self.editor.value or "")
        except ValueError as e:
            self._say(f"**Not JSON**: {e}", "danger")
            return
        try:
            cfg = BacktestConfig.model_validate(data)
            job = self.jobs.submit(self.identity.current(), cfg)  # the role as it is now
        except (BacklakeError, ValueError) as e:
            self._say(f"**Not submitted**: {html.escape(str(e))}", "danger")
            return
        self._say(f"Job **#{job.id}** queued: {cfg.strategy} on {', '.join(cfg.symbols)} "
                  f"({format_params(json.dumps(cfg.params))}), as **{job.owner}**.", "success")

    def __panel__(self) -> pn.viewable.Viewable:
        intro = ("Edit a config (selecting a run copies its config here) and submit it; the run is recorded "
                 f"as **{self.identity.name}**'s." if self.allowed else "")
        return pn.Column(
            pn.pane.Markdown(intro, visible=self.allowed, margin=(0, 5)),
            self.reason, self.editor, self.button, self.feedback, sizing_mode="stretch_width",
        )


class JobsList(pn.viewable.Viewer):
    """The jobs submitted from this dashboard (every session's), with Cancel where the gate
    allows it: your own queued or running jobs, or anyone's for an admin."""

    MAX_SHOWN = 20

    def __init__(self, identity: Identity, jobs: JobQueue, on_finished: Callable[[], None] | None = None,
                 **params: object) -> None:
        super().__init__(**params)
        self.identity, self.jobs, self.on_finished = identity, jobs, on_finished
        self._column = pn.Column(sizing_mode="stretch_width", css_classes=["jobs-list"])
        self._version = -1
        self._finished: set[int] = set()
        self.poll()

    def poll(self) -> None:
        """Redraw if any job changed; tell ``on_finished`` when a job completed since last time."""
        if self.jobs.version == self._version:
            return
        self._version = self.jobs.version
        jobs = self.jobs.jobs()
        finished = {j.id for j in jobs if j.status == "completed"}
        new = finished - self._finished
        self._finished = finished
        self._column.objects = [self._row(j) for j in jobs[: self.MAX_SHOWN]] or [
            pn.pane.Markdown("No jobs submitted from this dashboard yet.", css_classes=["no-jobs"])
        ]
        if new and self.on_finished is not None:
            self.on_finished()

    def _row(self, job: Job) -> pn.viewable.Viewable:
        params = format_params(json.dumps(job.config.params))
        lines = [f"**#{job.id}** {job.config.strategy} on {', '.join(job.config.symbols)} ({params})",
                 f"by {job.owner} · **{job.status}**" + (f" · run `{job.run_id}`" if job.run_id else "")]
        if job.message:
            lines.append(html.escape(job.message))
        parts: list[pn.viewable.Viewable] = [
            pn.pane.Markdown("<br>".join(lines), sizing_mode="stretch_width", margin=(0, 5)),
        ]
        if job.active:
            allowed, why = cancel_gate(self.identity, job.owner)
            button = pn.widgets.Button(label="Cancel", color="warning", disabled=not allowed,
                                       css_classes=["cancel-job"], width=80)
            button.on_click(lambda _e, job_id=job.id: self._cancel(job_id))
            parts.append(button)
            if not allowed:
                parts.append(pn.pane.Markdown(f"<small>{html.escape(why)}</small>", margin=(0, 5)))
        return pn.Column(*parts, css_classes=["job", f"job-{job.status}"], sizing_mode="stretch_width",
                         styles={"border-bottom": "1px solid #e3e6ea"})

    def _cancel(self, job_id: int) -> None:
        try:
            self.jobs.cancel(self.identity.current(), job_id)
        except BacklakeError as e:
            self._column.insert(0, _alert(html.escape(str(e)), "danger"))
        self.poll()

    def __panel__(self) -> pn.viewable.Viewable:
        return self._column


class RunsPage(pn.viewable.Viewer):
    """Header (lake, run counts by status, mine / everyone, refresh), the filters, the runs
    table with its pager, the selected run's detail; :meth:`sidebar` holds the submit form and the jobs."""

    def __init__(self, store: LakeStore, identity: Identity | None = None, jobs: JobQueue | None = None,
                 **params: object) -> None:
        super().__init__(**params)
        self.store = store
        self.identity = identity or Identity.anonymous()
        self.owner_filter = pn.widgets.RadioButtonGroup(
            options=[MINE, EVERYONE], value=default_owner_filter(self.identity), color="light",
            css_classes=["owner-filter"], width=170, height=36, sizing_mode="fixed",
        )
        self.table = RunsTable(store, owner=self._owner(self.owner_filter.value))
        self.owner_filter.param.watch(lambda e: setattr(self.table, "owner", self._owner(e.new)), "value")
        self.detail = RunDetail(store, run_id=self.table.run_id)
        self.table.param.watch(self._on_run, "run_id")
        self._refresh = pn.widgets.Button(
            label="↻ Refresh", color="primary", width=110, height=36, sizing_mode="fixed",
        )
        self._refresh.on_click(self._on_refresh)
        self.jobs = jobs
        self.submit = SubmitForm(self.identity, jobs) if jobs is not None else None
        self.jobs_list = JobsList(self.identity, jobs, on_finished=self.reload) if jobs is not None else None
        self.open_run(run_from_url())

    def open_run(self, run_id: str | None) -> None:
        """Select ``run_id`` and show its detail (switching to everyone's runs when it is not the
        user's); nothing when it is None or not in the lake."""
        if not run_id:
            return
        try:
            run = self.store.run(run_id)
        except BacklakeError:
            return
        if run is None:
            return
        if self.table.owner is not None and run.get("created_by") != self.table.owner:
            self.owner_filter.value = EVERYONE
        self.table.selected = [run_id]
        self.table.run_id = run_id
        self.table.load()

    def _owner(self, choice: str) -> str | None:
        return self.identity.name if choice == MINE else None

    def _on_run(self, event: param.parameterized.Event) -> None:
        # the form first (one cached query), then the detail (its charts take a moment)
        if event.new and self.submit is not None:
            try:
                run = self.store.run(event.new)
            except BacklakeError:
                run = None
            if run is not None:
                self.submit.use_config(run.get("config"))
        doc = pn.state.curdoc
        if doc is not None and doc.session_context is not None:
            # in a browser session: a moment later, once the table's and the form's changes have gone
            # out to the browser (a next-tick callback ran before they were sent, so the form waited
            # seconds for the detail's charts)
            pn.state.add_periodic_callback(self._show_selected, period=SHOW_DETAIL_AFTER_MS, count=1)
        else:
            self._show_selected()

    def _show_selected(self) -> None:
        if self.detail.run_id != self.table.run_id:
            self.detail.run_id = self.table.run_id

    def reload(self) -> None:
        """Re-read the lake: the table, and the detail of the selected run."""
        self.store.refresh()
        self.table.load()
        self.detail.param.trigger("run_id")

    def _on_refresh(self, _event: object) -> None:
        self.reload()

    def poll(self) -> None:
        """Follow the jobs (a periodic callback of the session calls this)."""
        if self.jobs_list is not None:
            self.jobs_list.poll()

    def _summary(self, counts: dict[str, int], owner: str | None) -> pn.pane.Markdown:
        """``Lake … · 12 completed runs by alice · 1 running · 2 failed`` (under the filters)."""
        lake = f"**Lake** `{self.store.lake_uri}`"
        n = counts.get("completed", 0)
        text = f"{lake} · **{n}** completed run{'s' if n != 1 else ''}"
        if owner is not None:
            text += f" by **{owner or '?'}**"
        others = [f"{counts[s]} {s}" for s in STATUSES if s != "completed" and counts.get(s)]
        others += [f"{v} {k}" for k, v in counts.items() if k not in STATUSES and v]
        if others:
            text += " · " + " · ".join(others)
        return pn.pane.Markdown(text, css_classes=["runs-summary"], sizing_mode="stretch_width",
                                margin=(12, 10, 0, 10))

    def sidebar(self) -> list[pn.viewable.Viewable]:
        """The submit form and the jobs list (nothing without a job queue)."""
        if self.submit is None or self.jobs_list is None:
            return []
        return [
            pn.pane.Markdown("### Submit a backtest"), self.submit,
            pn.pane.Markdown("### Jobs from this dashboard"), self.jobs_list,
        ]

    def __panel__(self) -> pn.viewable.Viewable:
        t = self.table.param
        return pn.Column(
            pn.Row(pn.bind(self._summary, t.counts, t.owner), pn.bind(compare_link, t.selected),
                   self.owner_filter, self._refresh, sizing_mode="stretch_width"),
            self.table,
            # no detail area under the "no runs yet" message
            pn.Column(pn.layout.Divider(), self.detail, visible=(t.n_runs.rx() > 0) | t.run_id.rx().rx.bool(),
                      sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
