"""The SQL page (``/sql``): read-only SQL over the lake, for every role.

The queries run on the same locked-down connection as ``backlake sql``
(``backlake.lake.sql.connect_readonly``: one SELECT that reads the lake and nothing else), with
a row limit and a time limit per query (``run_limited``: the connection is interrupted at the
time limit). Beside the editor: the lake's tables with their columns and the ``<table>_at(N)``
macros, and example queries. Results are a paged table with a CSV download; an error is one
line under the editor.
"""

from __future__ import annotations

import asyncio
import html
import io
import threading
import time
from typing import Any

import pandas as pd
import panel as pn
import polars as pl

from backlake.errors import BacklakeError
from backlake.lake.schemas import TABLES
from backlake.settings import Settings, get_settings

__all__ = ["SqlPage", "EXAMPLES", "ROW_LIMITS", "TIME_LIMITS", "to_display"]

#: Row limits offered (rows fetched per query; a larger result is cut and says so).
ROW_LIMITS = (100, 1_000, 10_000, 50_000)
#: Time limits offered, in seconds (the query is interrupted after that).
TIME_LIMITS = (5, 15, 30, 60)

#: Example queries: label -> SQL (``{run}`` is a completed run of the lake, ``{version}`` an
#: earlier version of the runs table).
EXAMPLES: dict[str, str] = {
    "Best Sharpe per strategy": (
        "SELECT strategy, max(sharpe) AS best_sharpe, arg_max(run_id, sharpe) AS best_run, count(*) AS runs\n"
        "FROM runs\nWHERE status = 'completed' AND sharpe IS NOT NULL\nGROUP BY strategy\nORDER BY best_sharpe DESC"
    ),
    "A run's trades": (
        "SELECT trade_id, symbol, direction, qty, entry_ts, entry_price, exit_ts, exit_price, pnl, return_pct, "
        "exit_reason\nFROM trades\nWHERE run_id = '{run}'\nORDER BY trade_id"
    ),
    "A table at an earlier version": (
        "-- runs as of Delta version {version}: <table>_at(N) reads any table at version N\n"
        "SELECT kind, status, count(*) AS runs\nFROM runs_at({version})\nGROUP BY ALL\nORDER BY runs DESC"
    ),
    "Metrics of the latest runs": (
        "SELECT r.run_id, r.kind, r.strategy, m.name, m.value\nFROM runs r JOIN metrics m USING (run_id)\n"
        "WHERE r.status = 'completed' AND m.segment = 'full'\n"
        "  AND r.run_id IN (SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 3)\nORDER BY r.run_id, m.name"
    ),
    "Bars per symbol": (
        "SELECT symbol, timeframe, count(*) AS bars, min(ts) AS first_bar, max(ts) AS last_bar\n"
        "FROM bars\nGROUP BY ALL\nORDER BY symbol"
    ),
}

CSS = """
.sql-error { color: #a61b1b; background: #fdecec; border: 1px solid #f3b7b7; border-radius: 4px;
  padding: 6px 10px; font-family: var(--bs-font-monospace, monospace); font-size: 0.88rem;
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.sql-status { color: #4a5568; font-size: 0.9rem; }
.sql-status .trunc { color: #9a6700; font-weight: 600; }
.sql-tables details { margin: 0 0 4px 0; }
.sql-tables summary { cursor: pointer; font-family: var(--bs-font-monospace, monospace); font-size: 0.9rem; }
.sql-tables summary .n { color: #718096; font-family: sans-serif; font-size: 0.8rem; margin-left: 4px; }
.sql-tables table { font-size: 0.8rem; margin: 2px 0 6px 14px; }
.sql-tables td { padding: 0 8px 0 0; font-family: var(--bs-font-monospace, monospace); }
.sql-tables td.t { color: #718096; }
.sql-tables .macro { color: #2b6cb0; }
"""


def to_display(frame: pl.DataFrame) -> pd.DataFrame:
    """A query result as Tabulator shows it: nested values (lists, structs, maps) as text and
    timestamps as naive UTC (Tabulator takes neither tz-aware times nor arrays)."""
    cols: list[pl.Expr] = []
    for name, dtype in frame.schema.items():
        if isinstance(dtype, (pl.List, pl.Array, pl.Struct, pl.Object)):
            cols.append(pl.col(name).map_elements(lambda v: None if v is None else str(v), return_dtype=pl.String))
        elif isinstance(dtype, pl.Datetime) and dtype.time_zone:
            cols.append(pl.col(name).dt.convert_time_zone("UTC").dt.replace_time_zone(None))
        elif isinstance(dtype, (pl.Duration, pl.Time, pl.Decimal, pl.Binary, pl.Null)):
            cols.append(pl.col(name).cast(pl.String))
        else:
            cols.append(pl.col(name))
    return frame.select(cols).to_pandas() if frame.width else pd.DataFrame()


def csv_text(frame: pl.DataFrame) -> str:
    """The result as CSV, exactly as ``backlake sql --format csv`` writes it (every digit of a
    float, times to the second, empty for NULL)."""
    from flows.cli.output import format_rows

    return format_rows(frame.columns, frame.rows(), "csv") + "\n"


class SqlPage:
    """Editor, limits, run button, one-line error, paged results with CSV download, table list
    and examples. One read-only connection per page (per browser session)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._con: Any = None
        self._lock = threading.Lock()
        self.frame: pl.DataFrame = pl.DataFrame()
        self.editor = pn.widgets.CodeEditor(
            value=EXAMPLES["Best Sharpe per strategy"], language="sql", theme="chrome", height=190,
            sizing_mode="stretch_width", css_classes=["sql-editor"], name="Query",
        )
        self.run_button = pn.widgets.Button(name="Run query", button_type="primary", width=130,
                                            css_classes=["sql-run"])
        self.max_rows = pn.widgets.Select(name="Row limit", options={f"{n:,}": n for n in ROW_LIMITS}, value=1_000,
                                          width=110, css_classes=["sql-max-rows"])
        self.timeout = pn.widgets.Select(name="Time limit (s)", options=list(TIME_LIMITS), value=15, width=110,
                                         css_classes=["sql-timeout"])
        self.error = pn.pane.HTML("", css_classes=["sql-error-box"], stylesheets=[CSS], visible=False,
                                  sizing_mode="stretch_width")
        self.status = pn.pane.HTML("<div class='sql-status'>Write a SELECT over the lake's tables and run it "
                                   "with Run query.</div>",
                                   stylesheets=[CSS], sizing_mode="stretch_width", css_classes=["sql-status-box"])
        self.results = pn.widgets.Tabulator(
            pd.DataFrame(), pagination="remote", page_size=20, disabled=True, show_index=False,
            sizing_mode="stretch_width", css_classes=["sql-results"], layout="fit_data_table",
            visible=False,
        )
        self.download = pn.widgets.FileDownload(
            callback=self._csv, filename="query.csv", label="Download CSV", button_type="light", width=150,
            css_classes=["sql-download"], disabled=True, embed=False,
        )
        self.examples = pn.widgets.Select(name="Example queries", options=["(pick one)", *EXAMPLES],
                                          width=300, css_classes=["sql-examples"])
        self.tables = pn.pane.HTML("", stylesheets=[CSS], css_classes=["sql-tables"], width=300)
        self.run_button.on_click(self._on_run)
        self.examples.param.watch(self._on_example, "value")

    # -- connection ------------------------------------------------------------------------
    def connection(self) -> Any:
        from backlake.lake.sql import connect_readonly

        if self._con is None:
            self._con = connect_readonly(self.settings)
        return self._con

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    def load_tables(self) -> None:
        """Fill the table list (columns and types of every lake table, and the ``_at`` macros)."""
        from backlake.lake.sql import lake_columns

        with self._lock:
            cols = lake_columns(self.connection())
        parts = []
        for table in TABLES:
            rows = "".join(f"<tr><td>{html.escape(c)}</td><td class='t'>{html.escape(t.lower())}</td></tr>"
                           for c, t in cols.get(table, []))
            parts.append(
                f"<details data-table='{table}'><summary>{table}<span class='n'>{len(cols.get(table, []))} "
                f"columns</span></summary><table>{rows}</table>"
                f"<div class='macro'>{table}_at(N): {table} at version N</div></details>")
        self.tables.object = f"<div class='sql-tables'>{''.join(parts)}</div>"

    # -- callbacks -------------------------------------------------------------------------
    def _on_example(self, event: Any) -> None:
        label = event.new
        if label not in EXAMPLES:
            return
        run, version = self._example_values()
        self.editor.value = EXAMPLES[label].replace("{run}", run).replace("{version}", str(version))

    def _example_values(self) -> tuple[str, int]:
        """A recent completed run and the runs table's previous version, for the examples."""
        try:
            with self._lock:
                con = self.connection()
                row = con.raw.execute("SELECT run_id FROM runs WHERE status = 'completed' AND kind = 'backtest' "
                                      "ORDER BY created_at DESC LIMIT 1").fetchone()
            version = con.lake.version("runs") if con.lake.exists("runs") else 0
        except Exception:  # examples must not fail the page
            return "RUN_ID", 0
        return (str(row[0]) if row else "RUN_ID"), max(0, int(version or 0) - 1)

    async def _on_run(self, _event: Any = None) -> None:
        await self.run(self.editor.value or "")

    async def run(self, query: str) -> None:
        """Run ``query`` with the chosen limits off the event loop; show rows or one error line."""
        from backlake.lake.sql import run_limited

        max_rows, timeout_s = int(self.max_rows.value), float(self.timeout.value)
        self.run_button.disabled = True
        self.run_button.loading = True
        self.error.visible = False
        t0 = time.perf_counter()

        def work() -> tuple[pl.DataFrame, bool]:
            with self._lock:  # one query at a time on the session's connection
                return run_limited(self.connection(), query, max_rows=max_rows, timeout_s=timeout_s)

        try:
            frame, truncated = await asyncio.to_thread(work)
        except BacklakeError as e:
            self._show_error(str(e))
            return
        except Exception as e:  # a bug or a broken lake: still one line, the page stays up
            self._show_error(f"{type(e).__name__}: {e}")
            return
        finally:
            self.run_button.loading = False
            self.run_button.disabled = False
        elapsed = time.perf_counter() - t0
        self.frame = frame
        self.results.value = to_display(frame)
        self.results.visible = True
        self.download.disabled = frame.width == 0
        n = frame.height
        note = (f" <span class='trunc'>· showing the first {n:,} rows (the row limit): raise the limit or add "
                f"LIMIT/WHERE</span>" if truncated else "")
        self.status.object = (f"<div class='sql-status'>{n:,} row{'s' if n != 1 else ''} · {frame.width} "
                              f"column{'s' if frame.width != 1 else ''} · {elapsed:.2f} s{note}</div>")

    def _show_error(self, message: str) -> None:
        line = " ".join(message.split())
        self.error.object = f"<div class='sql-error' title='{html.escape(line)}'>SQL error: {html.escape(line)}</div>"
        self.error.visible = True
        self.status.object = "<div class='sql-status'>The query did not run to the end; nothing is shown.</div>"
        self.results.visible = False
        self.download.disabled = True

    def _csv(self) -> io.StringIO:
        return io.StringIO(csv_text(self.frame))

    def __panel__(self) -> pn.viewable.Viewable:
        controls = pn.Row(self.run_button, self.max_rows, self.timeout, pn.layout.HSpacer(), self.download,
                          sizing_mode="stretch_width", align="end")
        left = pn.Column(
            pn.pane.Markdown(f"## SQL\nRead-only DuckDB over the lake `{self.settings.lake_uri}`: one SELECT per "
                             "query, each table a view of the same name, `<table>_at(N)` for version N.",
                             sizing_mode="stretch_width"),
            self.editor, controls, self.error, self.status, self.results,
            sizing_mode="stretch_width",
        )
        right = pn.Column(self.examples, pn.pane.Markdown("#### Tables"), self.tables, width=320)
        return pn.Row(left, right, sizing_mode="stretch_width")


if __name__.startswith("bokeh"):
    from dashboards.layout import page

    template, identity = page("sql", "SQL")
    if identity is not None:  # every role may read
        sql_page = SqlPage()
        try:
            sql_page.load_tables()
        except Exception as e:
            template.main.append(pn.pane.Alert(f"the lake's tables could not be listed: {e}", alert_type="warning"))
        template.main.append(sql_page)
        pn.state.on_session_destroyed(lambda _ctx: sql_page.close())
    template.servable(title="backlake — SQL")
