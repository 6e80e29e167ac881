"""The Health page (``/health``): every lake source's freshness, the thresholds in force, and the
bar coverage per symbol (first / last bar, gaps against the symbol's exchange calendar).

The sources come from the process-wide monitor the header badge uses (``layout.shared_health``),
so this page costs no extra lake read per TTL; "Check now" re-reads every source. The coverage
reads the bars' symbol, timeframe and ts columns once per session (and on "Check now").
"""

from __future__ import annotations

import html

import pandas as pd
import panel as pn
from bokeh.models.widgets.tables import DateFormatter, NumberFormatter

from backlake.analytics.health import CATEGORIES, TABLE_CATEGORIES, HealthResult, bar_coverage, human_age, human_span
from backlake.errors import BacklakeError
from backlake.lake import Lake
from backlake.settings import Settings, get_settings
from dashboards.layout import HEALTH_POLL_MS, page, shared_health, watch_versions

pn.extension("tabulator", sizing_mode="stretch_width")

STATUS_COLOURS = {"OK": ("#1a7f37", "#e6f4ea"), "STALE": ("#8a5a00", "#fff4d6"), "ERROR": ("#b3261e", "#fde7e7")}
ICONS = {"OK": "✔", "STALE": "▲", "ERROR": "✖"}
TABLE_CSS = ":host .tabulator { font-size: 0.85rem; }"
CARDS_CSS = """
.bl-cards { display: flex; gap: 12px; flex-wrap: wrap; }
.bl-card { border: 1px solid #d0d7de; border-radius: 8px; padding: 10px 16px; min-width: 150px; background: #fff; }
.bl-card .n { font-size: 1.6rem; font-weight: 700; }
.bl-card .l { color: #52606d; font-size: 0.8rem; text-transform: uppercase; letter-spacing: 0.04em; }
.bl-card.ok .n { color: #1a7f37; } .bl-card.stale .n { color: #b7791f; } .bl-card.error .n { color: #c62828; }
"""
THRESHOLDS_CSS = """
table { border-collapse: collapse; font-size: 0.85rem; margin-bottom: 8px; }
th, td { border: 1px solid #e1e4e8 !important; padding: 4px 12px !important; text-align: left; }
th { background: #f6f8fa; font-weight: 600; }
"""
DT = DateFormatter(format="%Y-%m-%d %H:%M:%S")
DAY = DateFormatter(format="%Y-%m-%d")


def status_pill(status: str) -> str:
    fg, bg = STATUS_COLOURS[status]
    return (f"<span style='color:{fg};background:{bg};padding:1px 8px;border-radius:10px;font-weight:600'>"
            f"{ICONS[status]} {status}</span>")


def sources_frame(results: list[HealthResult]) -> pd.DataFrame:
    rows = [{
        "status": status_pill(r.status), "source": r.source, "category": r.category or "-", "table": r.table or "-",
        "last_update": r.last_update.replace(tzinfo=None) if r.last_update else None, "age": r.age_text,
        "threshold": human_span(r.threshold_seconds) if r.threshold_seconds else "none",
        "checked": human_age((pd.Timestamp.now(tz="UTC") - r.checked_at).total_seconds()),
        "message": r.message,
    } for r in results]
    return pd.DataFrame(rows, columns=["status", "source", "category", "table", "last_update", "age", "threshold",
                                       "checked", "message"])


def thresholds_markdown(settings: Settings) -> str:
    t = settings.health_thresholds
    lines = ["| category | stale after | tables |", "|---|---|---|"]
    for c in CATEGORIES:
        tables = ", ".join(k for k, v in TABLE_CATEGORIES.items() if v == c) or "—"
        seconds = getattr(t, c)
        lines.append(f"| {c} | {human_span(seconds)} ({seconds:,} s) | {tables} |")
    lines.append("| (none) | never (informational) | every other table, unless overridden |")
    if t.overrides:
        lines += ["", "| override (source, glob or table) | stale after |", "|---|---|"]
        lines += [f"| `{html.escape(k)}` | {human_span(v)} ({v:,} s) |"
                  for k, v in t.overrides.items()]
    lines += ["", "Set with `BACKLAKE_HEALTH_THRESHOLDS` (JSON), e.g. for a nightly ingest: "
              '`{"price": 93600, "volume": 93600, "overrides": {"live_pnl": 172800}}`.']
    return "\n".join(lines)


class CoverageStore:
    """What this page reads besides the monitor: the bar coverage (``watch_versions`` refreshes it)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._coverage: pd.DataFrame | None = None

    def refresh(self) -> None:
        self._coverage = None

    def coverage(self) -> pd.DataFrame:
        if self._coverage is None:
            df = bar_coverage(Lake(self.settings, check=False)).to_pandas()
            for c in ("first_bar", "last_bar", "last_ingested", "largest_gap_from", "largest_gap_to"):
                df[c] = df[c].dt.tz_localize(None)
            self._coverage = df
        return self._coverage


class HealthPage(pn.viewable.Viewer):
    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self.monitor, _ = shared_health(settings)
        self.store = CoverageStore(settings)
        self.cards = pn.pane.HTML("", stylesheets=[CARDS_CSS], css_classes=["health-cards"])
        self.sources = pn.widgets.Tabulator(
            sources_frame([]), show_index=False, disabled=True, layout="fit_data_stretch",
            formatters={"status": {"type": "html"}, "last_update": DT}, pagination="local", page_size=25,
            titles={"status": "Status", "source": "Source", "category": "Category", "table": "Table",
                    "last_update": "Last update (UTC)", "age": "Age", "threshold": "Stale after",
                    "checked": "Checked", "message": "Message"},
            css_classes=["health-sources"], stylesheets=[TABLE_CSS], sizing_mode="stretch_width",
        )
        self.coverage = pn.widgets.Tabulator(
            pd.DataFrame(), show_index=False, disabled=True, layout="fit_data_stretch",
            formatters={"first_bar": DT, "last_bar": DT, "last_ingested": DT, "largest_gap_from": DAY,
                        "largest_gap_to": DAY, "largest_gap_days": NumberFormatter(format="0.0"),
                        "bars": NumberFormatter(format="0,0")},
            titles={"symbol": "Symbol", "timeframe": "Timeframe", "bars": "Bars", "first_bar": "First bar",
                    "last_bar": "Last bar", "last_ingested": "Last ingest (UTC)", "gaps": "Gaps",
                    "largest_gap_from": "Largest gap from", "largest_gap_to": "to", "largest_gap_days": "days"},
            css_classes=["health-coverage"], stylesheets=[TABLE_CSS], sizing_mode="stretch_width",
        )
        self.coverage_note = pn.pane.Markdown("", css_classes=["coverage-note"])
        self.check_now = pn.widgets.Button(name="Check now", button_type="primary", sizing_mode="fixed", width=120)
        self.check_now.on_click(lambda _e: self.update(force=True))
        self._coverage_loaded = False
        self.update()

    def update(self, force: bool = False) -> None:
        results = self.monitor.results(force=force)
        counts = {s: sum(r.status == s for r in results) for s in ("OK", "STALE", "ERROR")}
        cards = "".join(f"<div class='bl-card {s.lower()}'><div class='n'>{n}</div><div class='l'>{s}</div></div>"
                        for s, n in counts.items())
        self.cards.object = (f"<div class='bl-cards'>{cards}<div class='bl-card'><div class='n'>{len(results)}</div>"
                             f"<div class='l'>sources</div></div></div>")
        self.sources.value = sources_frame(results)
        if force or not self._coverage_loaded:
            if force:
                self.store.refresh()
            self._load_coverage()
            self._coverage_loaded = True

    def _load_coverage(self) -> None:
        try:
            df = self.store.coverage()
        except BacklakeError as e:
            self.coverage_note.object = f"**Cannot read the bars** of `{self.settings.lake_uri}`: {e}"
            return
        if df.empty:
            self.coverage_note.object = "No bars in the lake yet: `backlake ingest` or `backlake demo` adds some."
        else:
            gaps = int(df["gaps"].sum())
            self.coverage_note.object = (
                f"{len(df)} symbol/timeframe series, {int(df['bars'].sum()):,} bars, {gaps} gap(s). A gap is a "
                "missing stretch on the symbol's calendar (daily equities: a New York Stock Exchange session "
                "without a bar, so holidays and closures are not gaps; fx daily: more than 4 calendar days "
                "between bars; crypto: more than one day; intraday: a missing bar within the session), the "
                "rule the ingest validation counts.")
        self.coverage.value = df

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.Row(pn.pane.Markdown(f"## Lake health\n`{self.settings.lake_uri}` · sources refresh every "
                                    f"{HEALTH_POLL_MS // 1000} s"), self.check_now, sizing_mode="stretch_width"),
            self.cards,
            pn.pane.Markdown("### Sources"), self.sources,
            pn.pane.Markdown("### Bar coverage"), self.coverage_note, self.coverage,
            pn.pane.Markdown("### Thresholds"), pn.pane.Markdown(thresholds_markdown(self.settings),
                                                                css_classes=["health-thresholds"],
                                                                stylesheets=[THRESHOLDS_CSS]),
            sizing_mode="stretch_width",
        )


template, identity = page("health", "Health")
if identity is not None:
    settings = get_settings()
    health_page = HealthPage(settings)
    template.main.append(health_page)
    cb = pn.state.add_periodic_callback(lambda: health_page.update(), period=HEALTH_POLL_MS)
    pn.state.on_session_destroyed(lambda _ctx: cb.stop())
    watch_versions(template, health_page.store, ("bars",), on_refresh=lambda: health_page.update(force=True))
template.servable(title="backlake — health")
