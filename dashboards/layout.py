"""What every dashboard page shares: the template, the navigation between pages, who is
signed in. Each page is its own Panel app (``dashboards/<name>.py``, served at ``/<name>``
by ``backlake dashboard``) and starts with :func:`page`::

    tpl, identity = page("compare", "Compare runs")
    if identity is not None:          # None: the template already says why (no data shown)
        tpl.main.append(ComparePage(...))
    tpl.servable(title="backlake — compare")

The header carries the navigation (the current page highlighted), the signed-in user with
their role and a Sign out link. Extra header items (the health badge) are added by
:data:`HEADER_HOOKS`: functions called with the template and identity of every page.

The lake-health badge (:func:`health_badge`, registered in ``HEADER_HOOKS``) is on every page:
All OK / Issues, opening the per-source list, refreshed every 10 s from one process-wide
monitor per lake (:func:`shared_health`). A page that shows lake tables tells the layout which,
so a banner offers to reload when the lake moves past the versions it shows::

    store = LakeStore()
    ...                                     # build the page from store, append it to tpl.main
    watch_versions(tpl, store, ("runs", "metrics"), on_refresh=my_page.reload)
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import panel as pn

from backlake.analytics.health import (
    HealthMonitor,
    HealthResult,
    LakeProbe,
    VersionWatcher,
    human_span,
    lake_monitor,
    overall_status,
)
from backlake.lake import Lake
from backlake.settings import Settings, get_settings
from dashboards.identity import Identity, current_identity

__all__ = ["PAGES", "LINKED_PAGES", "page", "nav_bar", "user_badge", "page_names", "served_pages", "HEADER_HOOKS",
           "health_badge", "watch_versions", "shared_health", "HEALTH_POLL_MS"]

#: The pages, in navigation order: (app name = module = URL path, label).
PAGES: tuple[tuple[str, str], ...] = (
    ("app", "Runs"),
    ("compare", "Compare"),
    ("live", "Live vs backtest"),
    ("health", "Health"),
    ("editor", "New backtest"),
    ("regression", "Regression"),
    ("alpha", "Alpha"),
    ("sql", "SQL"),
)

#: Called as ``hook(template, identity)`` on every page after the header is built (e.g. the
#: health badge); a page that fails in a hook still renders.
HEADER_HOOKS: list[Callable[[pn.template.BaseTemplate, Identity], None]] = []

HEADER_CSS = """
:host { margin-left: auto; width: max-content !important; flex: none !important; }
.bl-user { color: #fff; font-size: 0.95rem; white-space: nowrap; }
.bl-user .bl-role { display: inline-block; margin-left: 6px; padding: 1px 8px; border-radius: 10px;
  background: rgba(255, 255, 255, 0.18); font-size: 0.8rem; }
.bl-user a { color: #fff; margin-left: 14px; text-decoration: underline; }
@media (max-width: 1399px) { .bl-user { font-size: 0.85rem; } .bl-user a { margin-left: 10px; } }
"""

NAV_CSS = """
:host { width: max-content !important; flex: none !important; }
.bl-nav { display: flex; gap: 4px; align-items: center; white-space: nowrap; }
.bl-nav a { color: rgba(255, 255, 255, 0.85); text-decoration: none; padding: 4px 8px; border-radius: 6px;
  font-size: 0.95rem; }
.bl-nav a:hover { background: rgba(255, 255, 255, 0.12); color: #fff; }
@media (max-width: 1399px) { .bl-nav { gap: 2px; } .bl-nav a { font-size: 0.85rem; padding: 4px 6px; } }
.bl-nav a.active { background: rgba(255, 255, 255, 0.22); color: #fff; font-weight: 600; }
"""

HERE = Path(__file__).resolve().parent


def page_names() -> list[str]:
    """The pages that exist in this package (their module is there), in navigation order."""
    return [name for name, _ in PAGES if (HERE / f"{name}.py").exists()]


#: Pages served but not in the navigation (reached by links, e.g. a run's report).
LINKED_PAGES: tuple[str, ...] = ("report",)


def served_pages() -> list[str]:
    """Every page ``backlake dashboard`` serves: the navigation's, then the linked ones."""
    return page_names() + [name for name in LINKED_PAGES if (HERE / f"{name}.py").exists()]


def nav_bar(active: str) -> pn.pane.HTML:
    """Links to every page that exists, ``active`` highlighted (relative links: the pages are
    siblings under the server's prefix)."""
    labels = dict(PAGES)
    links = "".join(
        f"<a class='bl-nav-{name}{' active' if name == active else ''}' href='./{name}'>{html.escape(labels[name])}</a>"
        for name in page_names()
    )
    # as wide as its links (no fixed width), like the user badge: with the health badge and the
    # theme toggle the header fits a 1280 px window (the links are smaller below 1400 px)
    return pn.pane.HTML(f"<nav class='bl-nav'>{links}</nav>", stylesheets=[NAV_CSS], css_classes=["nav-bar"],
                        height=34, align="center")


def user_badge(identity: Identity) -> pn.pane.HTML:
    """``alice [researcher]  Sign out`` for the header (no link without a login)."""
    if identity.user is None:
        text = "not signed in"
    else:
        text = f"{html.escape(identity.name)}<span class='bl-role'>{html.escape(identity.role)}</span>"
    if identity.mode == "none":
        text += " <span class='bl-role'>no login (--no-auth)</span>"
    elif identity.user is not None:
        text += " <a class='bl-logout' href='./logout'>Sign out</a>"
    return pn.pane.HTML(f"<div class='bl-user'>{text}</div>", stylesheets=[HEADER_CSS], css_classes=["user-badge"],
                        height=28, align="center")


def page(name: str, title: str) -> tuple[pn.template.BootstrapTemplate, Identity | None]:
    """The template of page ``name`` (navigation, user) and the session's identity, or None
    when the session has no user (the template then shows why, and the page adds nothing)."""
    identity = current_identity()
    # Bootstrap: its assets are served by Panel itself (the Fast/Material designs fetch web fonts
    # from Google, which fails on machines without internet and logs console errors).
    # the header says "backlake" and the navigation marks the page (a long page title would push
    # the navigation into the user badge); the browser tab has the page's own title
    template = pn.template.BootstrapTemplate(title="backlake", header_background="#1f3b57")
    template.header.append(nav_bar(name))
    template.header.append(user_badge(identity))
    for hook in HEADER_HOOKS:
        try:
            hook(template, identity)
        except Exception as e:  # a broken widget must not take the page down
            template.main.append(pn.pane.Alert(f"header widget failed: {e}", alert_type="warning"))
    if identity.user is None:
        template.main.append(pn.pane.Alert(identity.problem, alert_type="danger", css_classes=["access-denied"]))
        return template, None
    return template, identity


# -- lake health: the header badge and the version-freshness banner --------------------------------
#: How often a page refreshes its health badge and looks for newer table versions (milliseconds).
HEALTH_POLL_MS = 10_000

_SHARED: dict[tuple[str, str], tuple[HealthMonitor, VersionWatcher]] = {}
_SHARED_LOCK = threading.Lock()


def shared_health(settings: Settings | None = None) -> tuple[HealthMonitor, VersionWatcher]:
    """The health monitor and version watcher of a lake, one per server process and lake (and
    thresholds): every session polls the same cache, so the lake is read once per TTL."""
    settings = settings or get_settings()
    key = (settings.lake_uri, settings.health_thresholds.model_dump_json())
    with _SHARED_LOCK:
        if key not in _SHARED:
            lake = Lake(settings, check=False)
            probe = LakeProbe(lake)
            monitor = lake_monitor(lake, settings.health_thresholds, probe=probe)
            _SHARED[key] = (monitor, VersionWatcher(lake, probe=probe))
        return _SHARED[key]


HEALTH_CSS = """
:host { position: fixed; top: 52px; right: 16px; z-index: 2000; width: 540px; }
.bl-hp { background: #fff; color: #1f2933; border: 1px solid #d0d7de; border-radius: 8px;
  box-shadow: 0 8px 24px rgba(31, 41, 51, 0.18); font-size: 0.85rem; }
.bl-hp-head { padding: 8px 12px; border-bottom: 1px solid #e5e9ef; display: flex; justify-content: space-between; }
.bl-hp-head b { font-size: 0.9rem; }
.bl-hp-rows { max-height: 55vh; overflow-y: auto; }
.bl-hp table { width: 100%; border-collapse: collapse; }
.bl-hp td { padding: 4px 10px; border-bottom: 1px solid #f0f2f5; vertical-align: top; }
.bl-hp td.src { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.8rem; word-break: break-all; }
.bl-hp td.age { white-space: nowrap; text-align: right; color: #52606d; }
.bl-hp .ico { font-weight: 700; width: 18px; text-align: center; }
.bl-hp tr.ok .ico { color: #1a7f37; } .bl-hp tr.stale .ico { color: #b7791f; } .bl-hp tr.error .ico { color: #c62828; }
.bl-hp tr.stale { background: #fffaf0; } .bl-hp tr.error { background: #fff5f5; }
.bl-hp .msg { color: #7b8794; font-size: 0.75rem; }
.bl-hp-foot { padding: 6px 12px; color: #52606d; font-size: 0.78rem; display: flex; flex-wrap: wrap; gap: 4px 12px;
  justify-content: space-between; }
.bl-hp-foot a { color: #1f6feb; }
"""

BADGE_CSS = """
:host { width: max-content !important; flex: none !important; }
:host .bk-btn { border-radius: 14px; font-size: 0.85rem; padding: 3px 12px; font-weight: 600; white-space: nowrap; }
"""

_ICONS = {"OK": "✔", "STALE": "▲", "ERROR": "✖"}
_BUTTON_TYPES = {"OK": "success", "STALE": "warning", "ERROR": "danger"}


def badge_label(results: list[HealthResult]) -> str:
    """``● All OK`` or ``● Issues: 2 stale, 1 error``."""
    stale = sum(r.status == "STALE" for r in results)
    error = sum(r.status == "ERROR" for r in results)
    if not stale and not error:
        return "● All OK"
    parts = [f"{n} {what}" for n, what in ((stale, "stale"), (error, "error")) if n]
    return "● Issues: " + ", ".join(parts)


def health_rows_html(results: list[HealthResult], thresholds_text: str) -> str:
    """The dropdown: one row per source (icon, name, human age, why), worst first."""
    checked = max((r.checked_at for r in results), default=None)
    rows = []
    for r in results:
        limit = human_span(r.threshold_seconds) if r.threshold_seconds else "no limit"
        msg = f"<div class='msg'>{html.escape(r.message)}</div>" if r.status != "OK" and r.message else ""
        rows.append(
            f"<tr class='{r.status.lower()}' data-source='{html.escape(r.source)}'>"
            f"<td class='ico' title='{r.status}'>{_ICONS[r.status]}</td>"
            f"<td class='src'>{html.escape(r.source)}{msg}</td>"
            f"<td class='age' title='threshold {limit}'>{html.escape(r.age_text)}</td></tr>")
    body = "".join(rows) or "<tr><td colspan='3'>No sources: the lake holds no tables yet.</td></tr>"
    status = overall_status(results)
    when = checked.strftime("%H:%M:%S UTC") if checked else "-"
    return (f"<div class='bl-hp'><div class='bl-hp-head'><b>Lake health: {status}</b>"
            f"<span>{len(results)} sources · checked {when}</span></div>"
            f"<div class='bl-hp-rows'><table>{body}</table></div>"
            f"<div class='bl-hp-foot'><span>{html.escape(thresholds_text)}</span>"
            f"<a href='./health'>Health page →</a></div></div>")


def _thresholds_text(settings: Settings) -> str:
    t = settings.health_thresholds
    cats = " · ".join(f"{c} {human_span(getattr(t, c))}" for c in ("price", "volume", "signal", "fundamental"))
    return f"Stale after: {cats}" + (f" (+{len(t.overrides)} overrides)" if t.overrides else "")


def health_badge(template: pn.template.BaseTemplate, identity: Identity) -> None:
    """Header hook: the overall badge (All OK / Issues) that opens the per-source list, both
    refreshed every :data:`HEALTH_POLL_MS` (no badge for a session without a user)."""
    if identity.user is None:
        return
    settings = get_settings()
    monitor, _ = shared_health(settings)
    thresholds_text = _thresholds_text(settings)
    button = pn.widgets.Toggle(name="● checking…", button_type="light", css_classes=["health-badge"],
                               stylesheets=[BADGE_CSS], height=32, align="center")
    panel_ = pn.pane.HTML("", stylesheets=[HEALTH_CSS], css_classes=["health-panel"], visible=False,
                          sizing_mode="fixed", width=540)
    button.param.watch(lambda e: setattr(panel_, "visible", bool(e.new)), "value")

    def update() -> None:
        results = monitor.results()
        status = overall_status(results)
        button.name = badge_label(results)
        button.button_type = _BUTTON_TYPES[status]
        panel_.object = health_rows_html(results, thresholds_text)

    update()
    template.header.append(button)
    template.header.append(panel_)
    cb = pn.state.add_periodic_callback(update, period=HEALTH_POLL_MS)
    pn.state.on_session_destroyed(lambda _ctx: cb.stop())


HEADER_HOOKS.append(health_badge)


class _Refreshable(Protocol):
    settings: Settings

    def refresh(self) -> None: ...


BANNER_CSS = """
:host { width: 100%; }
.bl-banner { display: flex; align-items: center; gap: 10px; padding: 8px 14px; border-radius: 6px;
  background: #fff8e1; border: 1px solid #f0c36d; color: #5f4b00; font-size: 0.9rem; }
.bl-banner ul { margin: 0; padding-left: 18px; }
"""


def watch_versions(template: pn.template.BaseTemplate, store: _Refreshable, tables: Iterable[str] = ("runs",),
                   *, on_refresh: Callable[[], Any] | None = None) -> pn.Row:
    """Tell the layout which lake tables the page shows (read through ``store``): their versions
    are recorded now and whenever ``store.refresh()`` runs (recorded just before the re-read, so
    a recorded version is never newer than what the page shows); every :data:`HEALTH_POLL_MS` the
    page compares them with the lake, and when a table moved on a banner at the top says what
    changed (``runs v12 shown, v15 in the lake: 3 commits (3 WRITE)``) with a Refresh button,
    which calls ``on_refresh`` (the page re-reading its data through ``store.refresh()``) or,
    without one, reloads the page. Call it after the page's content is in ``template.main``.
    Returns the banner row (hidden while the page is up to date)."""
    tables = tuple(dict.fromkeys(tables))
    _, watcher = shared_health(store.settings)
    shown: dict[str, int | None] = {}

    def record() -> None:
        shown.clear()
        shown.update(watcher.latest(tables, fresh=True))

    text = pn.pane.HTML("", stylesheets=[BANNER_CSS], css_classes=["version-banner-text"], sizing_mode="stretch_width")
    button = pn.widgets.Button(name="Load latest", button_type="warning", css_classes=["version-refresh"],
                               sizing_mode="fixed", width=100, align="center")
    banner = pn.Row(text, button, visible=False, css_classes=["version-banner"], sizing_mode="stretch_width")

    def check() -> None:
        try:
            changes = watcher.changes(shown)
        except Exception:  # the health badge reports an unreadable lake; the banner stays quiet
            return
        if changes:
            items = "".join(f"<li>{html.escape(c.message)}</li>" for c in changes)
            text.object = (f"<div class='bl-banner'><b>The lake has moved on since this page read it.</b>"
                           f"<ul>{items}</ul></div>")
        banner.visible = bool(changes)

    original_refresh = store.refresh

    def refresh_and_record() -> None:
        record()
        original_refresh()
        banner.visible = False

    store.refresh = refresh_and_record  # type: ignore[method-assign]
    if on_refresh is None:
        button.js_on_click(code="window.location.reload()")
    else:
        button.on_click(lambda _e: (on_refresh(), check()))
    try:
        record()
    except Exception:
        return banner
    template.main.insert(0, banner)
    cb = pn.state.add_periodic_callback(check, period=HEALTH_POLL_MS)
    pn.state.on_session_destroyed(lambda _ctx: cb.stop())
    return banner
