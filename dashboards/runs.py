"""The runs page: a table of completed runs ("mine" or everyone's), the detail of the selected
run, and (in the sidebar) a form to submit a backtest and the jobs submitted from here.

Views only: every number comes from ``LakeStore``, every submission goes through
``dashboards.jobs`` (the library's run protocol), and every control asks the gates of
``dashboards.identity`` (viewers get the controls disabled, with the reason).

    page = RunsPage(store=LakeStore(), identity=current_identity(), jobs=shared_queue())
    template.main.append(page); template.sidebar.extend(page.sidebar())
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable

import hvplot.pandas  # noqa: F401  (registers DataFrame.hvplot)
import pandas as pd
import panel as pn
import param
from bokeh.models import NumeralTickFormatter
from bokeh.models.widgets.tables import DateFormatter, NumberFormatter

from backlake.config import BacktestConfig
from backlake.errors import BacklakeError
from dashboards.identity import Identity, cancel_gate, submit_gate
from dashboards.jobs import Job, JobQueue
from dashboards.store import LakeStore

__all__ = ["RunsPage", "RunsTable", "RunDetail", "SubmitForm", "JobsList", "MINE", "EVERYONE",
           "default_owner_filter"]

EMPTY_LAKE = (
    "**No runs yet** — run `backlake demo` to ingest the sample data and backtest the demo "
    "strategies, then press **Refresh**."
)
NO_SELECTION = "Select a run in the table to see its equity curve, drawdown, metrics, config and trades."
NONE_OF_MINE = (
    "**You have no completed runs yet** — switch to **Everyone** to see the others' runs, or submit "
    "a backtest from the sidebar."
)
MINE, EVERYONE = "Mine", "Everyone"
#: What the submit form holds until a run is selected (selecting one copies its config).
EXAMPLE_CONFIG = {
    "strategy": "sma_crossover", "params": {"fast": 10, "slow": 30}, "universe": ["GOOG"],
    "timeframe": "1d", "initial_cash": 10000, "costs": {"commission_bps": 10},
}

STRATEGY_COLOR, BENCHMARK_COLOR, DRAWDOWN_COLOR = "#1f6fb2", "#9a9a9a", "#c0392b"


# -- formatting ----------------------------------------------------------------------------------
def _pct(v: float) -> str:
    return f"{v:.2%}"


def _ratio(v: float) -> str:
    return f"{v:.2f}"


def _count(v: float) -> str:
    return f"{v:,.0f}"


#: metric name -> (label, formatter), in display order; other metrics follow, sorted.
METRICS: dict[str, tuple[str, Callable[[float], str]]] = {
    "total_return": ("Total return", _pct),
    "cagr": ("CAGR", _pct),
    "annual_volatility": ("Annual volatility", _pct),
    "sharpe": ("Sharpe", _ratio),
    "sortino": ("Sortino", _ratio),
    "max_drawdown": ("Max drawdown", _pct),
    "win_rate": ("Win rate", _pct),
    "n_trades": ("Trades", _count),
    "n_closed_trades": ("Closed trades", _count),
}


def format_metric(name: str, value: float | None) -> tuple[str, str]:
    """(label, text) of a metric value; undefined values show as an en dash."""
    label, fmt = METRICS.get(name, (name.replace("_", " ").capitalize(), lambda v: f"{v:.4g}"))
    if value is None or not math.isfinite(value):
        return label, "–"
    return label, fmt(value)


def format_params(params_json: str | None) -> str:
    """``{"fast": 10, "slow": 30}`` -> ``fast=10, slow=30``."""
    if not params_json:
        return ""
    try:
        params = json.loads(params_json)
    except ValueError:
        return params_json
    return ", ".join(f"{k}={v}" for k, v in params.items()) if isinstance(params, dict) else params_json


def _pct_cell(digits: int = 2) -> NumberFormatter:
    return NumberFormatter(format=f"0.{'0' * digits}%", text_align="right")


def _num_cell(fmt: str = "0,0.00") -> NumberFormatter:
    return NumberFormatter(format=fmt, text_align="right")


RUN_TITLES = {
    "run_id": "Run", "strategy": "Strategy", "symbols": "Symbols", "params": "Params",
    "total_return": "Total return", "cagr": "CAGR", "sharpe": "Sharpe", "sortino": "Sortino",
    "max_drawdown": "Max DD", "n_trades": "Trades", "created_at": "Created (UTC)", "created_by": "By",
}
RUN_FORMATTERS = {
    "total_return": _pct_cell(), "cagr": _pct_cell(), "max_drawdown": _pct_cell(),
    "sharpe": _num_cell(), "sortino": _num_cell(), "n_trades": _num_cell("0,0"),
    "created_at": DateFormatter(format="%Y-%m-%d %H:%M"),
}
TRADE_TITLES = {
    "trade_id": "#", "symbol": "Symbol", "direction": "Side", "qty": "Qty", "entry_ts": "Entry",
    "entry_price": "Entry price", "exit_ts": "Exit", "exit_price": "Exit price", "pnl": "P&L",
    "return_pct": "Return", "fees": "Fees", "bars_held": "Bars", "mae": "MAE", "mfe": "MFE",
    "exit_reason": "Exit reason",
}
TRADE_FORMATTERS = {
    "qty": _num_cell("0,0.[0000]"), "entry_price": _num_cell(), "exit_price": _num_cell(),
    "pnl": _num_cell(), "fees": _num_cell(), "return_pct": _pct_cell(), "mae": _pct_cell(),
    "mfe": _pct_cell(),
    "entry_ts": DateFormatter(format="%Y-%m-%d"), "exit_ts": DateFormatter(format="%Y-%m-%d"),
}

METRIC_CSS = """
.bl-metrics { display: grid; grid-template-columns: repeat(auto-fill, minmax(130px, 1fr)); gap: 8px; }
.bl-metric { border: 1px solid #e3e6ea; border-radius: 6px; padding: 8px 10px; background: #fafbfc; }
.bl-label { font-size: 0.78em; color: #5f6b7a; text-transform: uppercase; letter-spacing: 0.03em; }
.bl-value { font-size: 1.35em; font-weight: 600; margin-top: 2px; }
.bl-neg { color: #c0392b; }
"""


TABLE_CSS = ":host .tabulator { font-size: 0.875rem; }"


def _alert(text: str, kind: str = "info") -> pn.pane.Alert:
    return pn.pane.Alert(text, alert_type=kind, sizing_mode="stretch_width")


# -- views ---------------------------------------------------------------------------------------
class RunsTable(pn.viewable.Viewer):
    """The completed runs, sortable; ``run_id`` follows the selected row."""

    run_id = param.String(default=None, allow_None=True, doc="The selected run, or None.")
    n_runs = param.Integer(default=0, doc="How many completed runs the table shows.")
    n_total = param.Integer(default=0, doc="How many completed runs the lake holds (whoever made them).")
    owner = param.String(default=None, allow_None=True, doc="Show only the runs this user created; None: all.")
    selected = param.List(default=[], item_type=str, doc="The selected runs, in the order they were selected.")

    def __init__(self, store: LakeStore, **params: object) -> None:
        super().__init__(**params)
        self.store = store
        self.message = _alert(EMPTY_LAKE, "info")
        self._table = pn.widgets.Tabulator(
            pd.DataFrame(columns=list(RUN_TITLES)), show_index=False, selectable=True, disabled=True,
            titles=RUN_TITLES, formatters=RUN_FORMATTERS, layout="fit_data_stretch",
            pagination="local", page_size=15, frozen_columns=["run_id"], sizing_mode="stretch_width",
            header_align="center", css_classes=["runs-table"], stylesheets=[TABLE_CSS],
        )
        self._table.param.watch(self._on_select, "selection")
        self.param.watch(lambda _e: self.load(), "owner")
        self.load()

    def load(self) -> None:
        """(Re-)read the runs; keep the selected run selected if it is still there."""
        try:
            runs = self.store.runs()
        except BacklakeError as e:
            self._show_message(f"**Cannot read the lake** at `{self.store.lake_uri}`: {e}", "danger")
            return
        self.n_total = len(runs)
        if self.owner is not None:
            runs = runs[runs["created_by"] == self.owner].reset_index(drop=True)
        self.n_runs = len(runs)
        if runs.empty:
            self._show_message(EMPTY_LAKE if self.n_total == 0 else NONE_OF_MINE, "info")
            return
        shown = runs.assign(params=runs["params"].map(format_params))
        self._table.value = shown
        keep = list(dict.fromkeys([*self.selected, *([self.run_id] if self.run_id else [])]))
        rows = shown.index[shown["run_id"].isin(keep)].tolist()
        self._table.selection = rows
        self.message.visible, self._table.visible = False, True

    def _show_message(self, text: str, kind: str) -> None:
        self.n_runs = 0
        self.message.object, self.message.alert_type = text, kind
        self.message.visible, self._table.visible = True, False
        self.run_id = None

    def _on_select(self, event: param.parameterized.Event) -> None:
        """Several rows may be selected (Ctrl/Shift-click, to compare them); the detail follows
        the one selected last."""
        ids = [str(self._table.value["run_id"].iloc[i]) for i in event.new]
        added = [r for r in ids if r not in self.selected]
        kept = [r for r in self.selected if r in ids]
        self.selected = kept + added
        self.run_id = added[-1] if added else (self.run_id if self.run_id in ids else (kept[-1] if kept else None))

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self.message, self._table, sizing_mode="stretch_width")


class RunDetail(pn.viewable.Viewer):
    """Equity vs benchmark, drawdown, metrics, config and trades of one run."""

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
            equity, trades = self.store.equity(self.run_id), self.store.trades(self.run_id)
            metrics = self.store.metrics(self.run_id)
        except BacklakeError as e:
            return _alert(f"**Cannot read run `{self.run_id}`**: {e}", "danger")
        return pn.Column(
            self._header(run),
            edit_copy_link(self.run_id),
            self._charts(self.run_id, equity),
            pn.Row(
                pn.Column("#### Metrics", self._metrics(metrics), sizing_mode="stretch_width"),
                pn.Card(pn.pane.JSON(run["config"], depth=-1, sizing_mode="stretch_width"),
                        title="Config", sizing_mode="stretch_width", collapsible=True),
                sizing_mode="stretch_width",
            ),
            self._trades(trades),
            sizing_mode="stretch_width",
        )

    @staticmethod
    def _header(run: dict) -> pn.pane.Markdown:
        created = run["created_at"].strftime("%Y-%m-%d %H:%M UTC") if pd.notna(run["created_at"]) else "?"
        return pn.pane.Markdown(
            f"### Run `{run['run_id']}` — {run['strategy']} on {run['symbols']} ({run['timeframe']})\n"
            f"{format_params(run['params'])} · created {created} by {run['created_by']} · "
            f"code {run['code_version']} · data versions `{run['data_versions']}`",
            sizing_mode="stretch_width",
        )

    @staticmethod
    def _charts(run_id: str, equity: pd.DataFrame) -> pn.viewable.Viewable:
        if equity.empty:
            return _alert(f"Run `{run_id}` has no equity rows.", "warning")
        df = equity.rename(columns={
            "ts": "Date", "equity": "Strategy", "benchmark_equity": "Benchmark", "drawdown": "Drawdown",
        })
        series = ["Strategy"] + (["Benchmark"] if df["Benchmark"].notna().any() else [])
        curve = df.hvplot.line(
            x="Date", y=series, title=f"Equity — {run_id}", ylabel="Equity", xlabel="",
            color=[STRATEGY_COLOR, BENCHMARK_COLOR][: len(series)], legend="top_left",
            yformatter=NumeralTickFormatter(format="0,0"), responsive=True, height=340,
            group_label="Series", value_label="Equity",
        )
        drawdown = df.hvplot.area(
            x="Date", y="Drawdown", title=f"Drawdown — {run_id}", ylabel="Drawdown", xlabel="",
            color=DRAWDOWN_COLOR, alpha=0.35, line_width=1,
            yformatter=NumeralTickFormatter(format="0%"), responsive=True, height=200,
        )
        return pn.pane.HoloViews(
            (curve + drawdown).cols(1), sizing_mode="stretch_width", css_classes=["run-charts"]
        )

    @staticmethod
    def _metrics(metrics: dict[str, float | None]) -> pn.viewable.Viewable:
        if not metrics:
            return _alert("No metrics recorded for this run.", "warning")
        names = [n for n in METRICS if n in metrics] + sorted(n for n in metrics if n not in METRICS)
        cells = []
        for name in names:
            label, text = format_metric(name, metrics[name])
            neg = " bl-neg" if (metrics[name] or 0) < 0 else ""
            cells.append(
                f'<div class="bl-metric"><div class="bl-label">{html.escape(label)}</div>'
                f'<div class="bl-value{neg}">{html.escape(text)}</div></div>'
            )
        return pn.pane.HTML(
            f'<div class="bl-metrics">{"".join(cells)}</div>', stylesheets=[METRIC_CSS],
            sizing_mode="stretch_width",
        )

    @staticmethod
    def _trades(trades: pd.DataFrame) -> pn.viewable.Viewable:
        title = f"#### Trades ({len(trades)})"
        if trades.empty:
            return pn.Column(title, _alert("This run made no trades.", "secondary"))
        table = pn.widgets.Tabulator(
            trades, show_index=False, disabled=True, titles=TRADE_TITLES, formatters=TRADE_FORMATTERS,
            layout="fit_data_stretch", pagination="local", page_size=10, sizing_mode="stretch_width",
            css_classes=["trades-table"], stylesheets=[TABLE_CSS],
        )
        return pn.Column(title, table, sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.panel(self._view, loading_indicator=True), sizing_mode="stretch_width",
            css_classes=["run-detail"],
        )


def edit_copy_link(run_id: str) -> pn.pane.HTML:
    """"Edit a copy": the config editor with this run's config loaded (``./editor?from=<id>``)."""
    rid = html.escape(run_id)
    return pn.pane.HTML(
        f"<a class='edit-copy' href='./editor?from={rid}' style='font-weight:600'>✎ Edit a copy in the "
        "config editor</a>", css_classes=["edit-copy-link"], sizing_mode="stretch_width", margin=(0, 10),
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
    return pn.pane.HTML(text, css_classes=["compare-link"], sizing_mode="fixed", width=260, height=36,
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
    """Header (lake, run count, mine / everyone, refresh), the runs table, the selected run's
    detail; :meth:`sidebar` holds the submit form and the jobs."""

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
        """Select ``run_id`` in the table and show its detail (showing everyone's runs when it is
        not in the current filter); nothing when it is None or not a completed run."""
        if not run_id:
            return
        try:
            runs = self.store.runs()
        except BacklakeError:
            return
        if not (runs["run_id"] == run_id).any():
            return
        mine = (runs["run_id"] == run_id) & (runs["created_by"] == self.table.owner)
        if self.table.owner is not None and not mine.any():
            self.owner_filter.value = EVERYONE
        self.table.run_id = run_id
        self.table.load()

    def _owner(self, choice: str) -> str | None:
        return self.identity.name if choice == MINE else None

    def _on_run(self, event: param.parameterized.Event) -> None:
        self.detail.run_id = event.new
        if event.new and self.submit is not None:
            try:
                run = self.store.run(event.new)
            except BacklakeError:
                return
            if run is not None:
                self.submit.use_config(run["config"])

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

    def _summary(self, n: int, total: int, owner: str | None) -> pn.pane.Markdown:
        lake = f"**Lake** `{self.store.lake_uri}`"
        if owner is None:
            text = f"{lake} · **{n}** completed run{'s' if n != 1 else ''}"
        else:
            text = f"{lake} · **{n}** completed run{'s' if n != 1 else ''} by **{owner or '?'}** · {total} in all"
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
            pn.Row(pn.bind(self._summary, t.n_runs, t.n_total, t.owner), pn.bind(compare_link, t.selected),
                   self.owner_filter, self._refresh, sizing_mode="stretch_width"),
            self.table,
            # no detail area under the "no runs yet" message
            pn.Column(pn.layout.Divider(), self.detail, visible=t.n_runs.rx() > 0, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
