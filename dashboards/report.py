"""Tear-sheet reports of runs: one self-contained HTML file per run, and the page ``/report``.

A report is a header (strategy, symbols, kind, status, period, who ran it) over the run's
detail view, the same one the runs page shows (``dashboards.details.render``), saved by Panel
with every script and stylesheet inline and the widgets' state embedded: it opens from disk
with no server and no network, and prints to PDF from the browser (print styles included).

    render_report(LakeStore(), "c760323b0de27b64", "tear-sheet.html")

Stored reports (the ``report`` flow, ``flows/report.py``) live beside the lake in
``<lake root>/_reports/<run_id>.html`` (a local directory, or the S3 prefix
``s3://bucket/prefix/_reports/``): :class:`ReportStore`.

Served as the page ``/report?run=<id>`` (behind the dashboard's sign-in like every page): the
stored report when there is one, else the run rendered on the fly, and a download button.
"""

from __future__ import annotations

import contextlib
import html
import json
import re
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import panel as pn

from backlake.errors import ConfigError
from backlake.settings import Settings, get_settings
from backlake.strategies import display_name

__all__ = ["render_report", "report_html", "report_header", "find_run", "ReportStore", "REPORTS_DIR",
           "PRINT_CSS", "PRINT_HIDDEN", "PRINT_SCRIPT"]

#: The directory (or S3 prefix) beside the lake's tables that holds the stored reports.
REPORTS_DIR = "_reports"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

#: Report styles: a readable page on screen, and on paper (the browser's Print to PDF).
PRINT_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1a202c;
  margin: 0 auto; max-width: 1280px; padding: 0 20px 40px 20px; }
.bl-report-head { border-bottom: 3px solid #1f3b57; padding: 14px 0 10px 0; margin-bottom: 14px; }
.bl-report-head h1 { font-size: 1.6rem; margin: 0 0 4px 0; color: #1f3b57; }
.bl-report-head .sub { color: #4a5568; font-size: 0.95rem; }
.bl-report-head table { border-collapse: collapse; margin-top: 8px; font-size: 0.88rem; }
.bl-report-head td { padding: 2px 18px 2px 0; vertical-align: top; }
.bl-report-head td.k { color: #718096; white-space: nowrap; }
.bl-report-head .badge { display: inline-block; padding: 1px 8px; border-radius: 10px; background: #e2e8f0;
  font-size: 0.8rem; margin-right: 6px; }
.bl-report-foot { color: #718096; font-size: 0.8rem; margin-top: 24px; border-top: 1px solid #e2e8f0;
  padding-top: 6px; }
@media print {
  @page { size: A4 landscape; margin: 10mm; }
  body { max-width: none; padding: 0; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  .bk-panel-models-layout-Column > *, .bk-Row, .bk-Figure, .bk-panel-models-tabulator-DataTabulator,
  .bl-report-head { break-inside: avoid; page-break-inside: avoid; }
}
"""

#: What a printed report leaves out: the charts' toolbars (Bokeh; Plotly's mode bar) and the
#: interactive widgets (pickers, sliders, buttons, the tables' pagers, tab headers: the tab shown
#: prints). They live in the shadow roots of the charts and widgets, out of reach of the
#: document's stylesheet.
PRINT_HIDDEN = (
    ".bk-ToolbarPanel", ".bk-Toolbar", ".modebar-container", ".modebar", ".bk-Slider", ".bk-RangeSlider",
    ".bk-Select", ".bk-MultiChoice", ".bk-MultiSelect", ".bk-TextInput", ".bk-TextAreaInput", ".bk-DatePicker",
    ".bk-Spinner", ".bk-NumericInput", ".bk-Button", ".bk-Toggle", ".bk-RadioButtonGroup", ".bk-CheckboxButtonGroup",
    ".bk-CheckboxGroup", ".tabulator-footer", ".bk-header:has(.bk-tab)",
)
PRINT_HIDE_CSS = "@media print { " + ", ".join(PRINT_HIDDEN) + " { display: none !important; } }"
#: Puts :data:`PRINT_HIDE_CSS` into every shadow root of the page (as the charts and widgets
#: render, and again right before printing), so print, and Print to PDF, shows no toolbar.
PRINT_SCRIPT = """(() => {
  const css = __CSS__;
  const adopt = (root) => {
    if (root.querySelector && root.querySelector(':scope > style.bl-print-hide')) return;
    const style = document.createElement('style');
    style.className = 'bl-print-hide';
    style.textContent = css;
    root.appendChild(style);
  };
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.shadowRoot) { adopt(el.shadowRoot); walk(el.shadowRoot); }
    }
  };
  const run = () => { try { walk(document); } catch (e) { /* printing must go on */ } };
  window.addEventListener('beforeprint', run);
  window.matchMedia('print').addEventListener('change', run);
  let n = 0;  /* the charts render after load: keep up with them for a while */
  const timer = setInterval(() => { run(); if (++n >= 120) clearInterval(timer); }, 250);
  window.addEventListener('load', run);
})();""".replace("__CSS__", json.dumps(PRINT_HIDE_CSS))


#: Where a user finds a run id.
FIND_RUN = "the runs page, or `backlake sql \"SELECT run_id, strategy FROM runs\"`"

def find_run(store: Any, run_id: str) -> dict[str, Any]:
    """The ``runs`` row of ``run_id`` (any status) as a dict; ConfigError naming it if absent."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise ConfigError(f"run {run_id!r} is not a run id: give the run_id of a run ({FIND_RUN})")
    run = None
    try:
        run = store.run(run_id)
    except Exception:
        run = None
    if run is None:
        df = store.query("SELECT * FROM runs WHERE run_id = ? ORDER BY created_at DESC LIMIT 1", [run_id])
        if not len(df):
            raise ConfigError(f"run {run_id!r} is not in the lake at {store.lake_uri}: "
                              f"pick a run_id from {FIND_RUN}")
        run = df.iloc[0].to_dict()
    full = store.query("SELECT * FROM runs WHERE run_id = ? ORDER BY created_at DESC LIMIT 1", [run_id],
                       key=("report-run", run_id))
    if len(full):  # every column (status, error, ...) next to what the store's row has
        for k, v in full.iloc[0].to_dict().items():
            run.setdefault(k, v)
    return dict(run)


def _text(v: Any) -> str:
    if v is None:
        return "–"
    try:
        import pandas as pd

        if pd.isna(v):
            return "–"
    except (TypeError, ValueError):
        pass
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M UTC")
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v)
    return str(v)


def _symbols(run: dict[str, Any]) -> list[str]:
    v = run.get("symbols")
    if v is None:
        return []
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        return [str(x) for x in v]
    return [s.strip() for s in str(v).split(",") if s.strip()]  # runs.symbols: "AAPL,MSFT"


def report_title(run: dict[str, Any]) -> str:
    """``sma_crossover on AAPL, MSFT — backtest`` (a long universe shortened)."""
    syms = _symbols(run)
    shown = ", ".join(syms) if len(syms) <= 4 else f"{', '.join(syms[:3])} and {len(syms) - 3} more"
    kind = str(run.get("kind") or "run").replace("_", " ")
    return f"{display_name(run.get('strategy'), run.get('params')) or 'run'} on {shown or 'no symbols'} — {kind}"


def report_header(run: dict[str, Any]) -> pn.pane.HTML:
    """The report's header: title, badges and the run's facts."""
    params = run.get("params")
    if isinstance(params, str):
        with contextlib.suppress(ValueError, AttributeError):
            params = ", ".join(f"{k}={v}" for k, v in json.loads(params).items())
    facts = [
        ("Run", run.get("run_id")), ("Strategy", run.get("strategy")), ("Symbols", _text(_symbols(run))),
        ("Timeframe", run.get("timeframe")), ("Parameters", params), ("Created", run.get("created_at")),
        ("Finished", run.get("finished_at")), ("By", run.get("created_by")), ("Code", run.get("code_version")),
    ]
    if run.get("error"):
        facts.append(("Error", run.get("error")))
    rows = "".join(f"<tr><td class='k'>{k}</td><td>{html.escape(_text(v))}</td></tr>" for k, v in facts
                   if v is not None and _text(v) != "–")
    badges = "".join(f"<span class='badge'>{html.escape(str(b))}</span>"
                     for b in (run.get("kind"), run.get("status")) if b)
    return pn.pane.HTML(
        f"<div class='bl-report-head'><h1>{html.escape(report_title(run))}</h1>"
        f"<div class='sub'>{badges}Tear sheet · backlake</div><table>{rows}</table></div>",
        sizing_mode="stretch_width", css_classes=["report-header"], stylesheets=[PRINT_CSS],
    )


def report_view(store: Any, run: dict[str, Any]) -> pn.Column:
    """Header, the run's detail view and a footer naming the lake and the time of rendering."""
    from dashboards.details import render

    made = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return pn.Column(
        report_header(run),
        render(store, run, full_tables=True),
        pn.pane.HTML(f"<div class='bl-report-foot'>Rendered {made} from the lake {html.escape(store.lake_uri)} "
                     f"(run {html.escape(str(run['run_id']))}).</div>", sizing_mode="stretch_width",
                     stylesheets=[PRINT_CSS]),
        sizing_mode="stretch_width", css_classes=["bl-report"],
    )


def render_report(store: Any, run_id: str, path: str | Path) -> Path:
    """Write the tear sheet of ``run_id`` to ``path`` (one self-contained HTML file: inline
    scripts and styles, widget state embedded; opens offline). Returns the path."""
    from bokeh.resources import INLINE

    out = Path(path)
    if out.is_dir():
        raise ConfigError(f"--output {str(path)!r} is a directory: give a file name, e.g. {out / f'{run_id}.html'}")
    if not out.parent.exists():
        raise ConfigError(f"--output {str(path)!r}: the directory {out.parent} does not exist; create it first")
    if not out.parent.is_dir():
        raise ConfigError(f"--output {str(path)!r}: {out.parent} is a file, not a directory; give a path in a "
                          "directory")
    run = find_run(store, run_id)
    try:  # before the work: a place that takes no file (read-only, /proc, ...) is the user's to fix
        with open(out, "a", encoding="utf-8"):
            pass
    except OSError as e:
        raise ConfigError(f"--output {str(path)!r} cannot be written ({e.strerror or e}): give a path in a "
                          "directory you can write to") from None
    with pn.config.set(inline=True):  # the widgets' stylesheets inline too, not links to Panel's CDN
        view = report_view(store, run)
        view.save(str(out), resources=INLINE, embed=True, max_states=100, max_opts=20, progress=False,
                  title=f"backlake — {report_title(run)}")
    # a style block in <head> as well: the print rules must reach the page, not only a shadow root;
    # and a script that puts the rule hiding toolbars and widgets in print into every shadow root
    text = inline_panel_assets(out.read_text(encoding="utf-8"))
    # the document's own </head> is the last one followed by <body> (inline scripts hold others)
    head = max((m.start() for m in re.finditer(r"</head>\s*<body", text)), default=-1)
    if head >= 0:
        text = f"{text[:head]}<style>{PRINT_CSS}</style>\n<script>{PRINT_SCRIPT}</script>\n{text[head:]}"
    out.write_text(text, encoding="utf-8")
    return out


_PANEL_CDN = re.compile(r"https://cdn\.holoviz\.org/panel/[^/\"'\\]+/dist/([^\"'\\?)\s]+)(\?v=[^\"'\\)\s]*)?")
_CSS_URL = re.compile(r"url\((['\"]?)(?!data:|https?:|#)([^'\")]+)\1\)")


def _data_uri(path: Path, depth: int = 0) -> str | None:
    import base64
    import mimetypes

    if not path.is_file():
        return None
    data = path.read_bytes()
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if path.suffix == ".css" and depth < 2:  # the stylesheet's own url(...) references, inlined too
        def sub(m: re.Match[str]) -> str:
            uri = _data_uri((path.parent / m.group(2)).resolve(), depth + 1)
            return f"url({m.group(1)}{uri}{m.group(1)})" if uri else m.group(0)

        data = _CSS_URL.sub(sub, data.decode("utf-8")).encode("utf-8")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def inline_panel_assets(text: str) -> str:
    """Replace the links to Panel's CDN that ``save(resources=INLINE)`` still leaves in the
    document (stylesheets of the widgets, the favicon; holoviz/panel#6759) by data URIs of the
    same files from the installed Panel: the file then needs no network at all."""
    dist = Path(pn.__file__).parent / "dist"

    def sub(m: re.Match[str]) -> str:
        return _data_uri(dist / m.group(1)) or m.group(0)

    return _PANEL_CDN.sub(sub, text)


def report_html(store: Any, run_id: str) -> bytes:
    """The tear sheet of ``run_id`` as bytes (rendered through a temporary file)."""
    with tempfile.TemporaryDirectory(prefix="backlake-report-") as tmp:
        path = render_report(store, run_id, Path(tmp) / f"{run_id}.html")
        return path.read_bytes()


class ReportStore:
    """The stored reports beside a lake: ``<root>/_reports/<run_id>.html`` and the report
    flow's state ``_reports/_state.json``, in a local directory or on S3 (boto3, the lake's
    endpoint, region and credentials)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.root = f"{self.settings.root.rstrip('/')}/{REPORTS_DIR}"

    # -- names ---------------------------------------------------------------------------------
    def uri(self, run_id: str) -> str:
        return f"{self.root}/{_check_id(run_id)}.html"

    def _key(self, name: str) -> str:
        prefix = self.root.split("://", 1)[1].split("/", 1)
        return f"{prefix[1]}/{name}" if len(prefix) > 1 else name

    def _client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.settings.s3_endpoint_url, region_name=self.settings.s3_region,
                            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}))

    # -- objects -------------------------------------------------------------------------------
    def _get(self, name: str) -> bytes | None:
        if not self.settings.is_s3:
            p = Path(self.root) / name
            return p.read_bytes() if p.exists() else None
        import botocore.exceptions as bx

        try:
            obj = self._client().get_object(Bucket=self.settings.bucket, Key=self._key(name))
        except bx.ClientError as e:
            if str(e.response.get("Error", {}).get("Code", "")) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        body: bytes = obj["Body"].read()
        return body

    def _put(self, name: str, data: bytes, content_type: str) -> None:
        if not self.settings.is_s3:
            d = Path(self.root)
            d.mkdir(parents=True, exist_ok=True)
            tmp = d / f".{name}.tmp"
            tmp.write_bytes(data)
            tmp.replace(d / name)  # readers never see half a file
            return
        self._client().put_object(Bucket=self.settings.bucket, Key=self._key(name), Body=data,
                                  ContentType=content_type)

    def names(self) -> set[str]:
        """The run ids that have a stored report."""
        if not self.settings.is_s3:
            d = Path(self.root)
            return {p.stem for p in d.glob("*.html")} if d.exists() else set()
        out: set[str] = set()
        pages = self._client().get_paginator("list_objects_v2").paginate(
            Bucket=self.settings.bucket, Prefix=self._key(""))
        for pg in pages:
            for obj in pg.get("Contents", []):
                key = str(obj["Key"]).rsplit("/", 1)[-1]
                if key.endswith(".html"):
                    out.add(key[: -len(".html")])
        return out

    def read(self, run_id: str) -> bytes | None:
        """The stored report of ``run_id``, or None."""
        return self._get(f"{_check_id(run_id)}.html")

    def write(self, run_id: str, data: bytes) -> str:
        """Store ``data`` as the report of ``run_id``; returns its URI."""
        self._put(f"{_check_id(run_id)}.html", data, "text/html; charset=utf-8")
        return self.uri(run_id)

    def state(self) -> dict[str, Any]:
        """The report flow's state (``{"last_run_at": iso time, ...}``; {} before the first run)."""
        raw = self._get("_state.json")
        if raw is None:
            return {}
        try:
            out = json.loads(raw)
        except ValueError:
            return {}
        return out if isinstance(out, dict) else {}

    def save_state(self, state: dict[str, Any]) -> None:
        self._put("_state.json", json.dumps(state, indent=1).encode(), "application/json")


def _check_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise ConfigError(f"run {run_id!r} is not a run id: give the run_id of a run ({FIND_RUN})")
    return run_id


# -- the page /report?run=<id> ---------------------------------------------------------------------
def report_page(store: Any, reports: ReportStore, run_id: str | None) -> pn.viewable.Viewable:
    """The stored report of ``run_id`` (in a frame) or its view rendered now, with a download."""
    if not run_id:
        return pn.pane.Alert("No run given: open a run on the Runs page and follow its Report link "
                             "(or add ?run=<run_id> to this address).", alert_type="info",
                             css_classes=["report-empty"])
    try:
        run = find_run(store, run_id)
    except ConfigError as e:
        return pn.pane.Alert(str(e), alert_type="warning", css_classes=["report-missing"])
    stored = None
    try:
        stored = reports.read(run_id)
    except Exception as e:  # an unreachable reports prefix: render on the fly instead
        stored = None
        note = f" (the stored reports could not be read: {e})"
    else:
        note = ""

    def download() -> Any:
        import io

        return io.BytesIO(stored if stored is not None else report_html(store, run_id))

    button = pn.widgets.FileDownload(callback=download, filename=f"report-{run_id}.html", embed=False,
                                     label="Download tear sheet (HTML)", button_type="primary", width=260,
                                     css_classes=["report-download"])
    if stored is not None:
        where = f"Stored report {reports.uri(run_id)}"
        body: pn.viewable.Viewable = pn.pane.HTML(
            f"<iframe class='report-frame' srcdoc='{html.escape(stored.decode('utf-8'), quote=True)}' "
            "style='width:100%;height:calc(100vh - 150px);min-height:600px;border:1px solid #e2e8f0;"
            "border-radius:4px'></iframe>",
            sizing_mode="stretch_width", css_classes=["report-stored"])
    else:
        where = "Rendered now (no stored report yet: the daily report flow stores one)" + note
        body = report_view(store, run)
    return pn.Column(
        pn.Row(pn.pane.Markdown(f"<span class='report-source'>{html.escape(where)}</span>"), pn.layout.HSpacer(),
               button, sizing_mode="stretch_width"),
        body, sizing_mode="stretch_width",
    )


if __name__.startswith("bokeh"):
    from dashboards.layout import page
    from dashboards.store import LakeStore

    template, identity = page("report", "Report")
    if identity is not None:  # the page is behind the same sign-in as every page
        arg = pn.state.session_args.get("run", [b""])[0]
        run_arg = arg.decode() if isinstance(arg, bytes) else str(arg)
        settings = get_settings()
        lake_store = LakeStore(settings)
        template.main.append(report_page(lake_store, ReportStore(settings), run_arg or None))
        pn.state.on_session_destroyed(lambda _ctx: lake_store.close())
    template.servable(title="backlake — report")
