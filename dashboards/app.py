"""The backlake dashboards, served with ``panel serve dashboards/app.py`` (``backlake dashboard``).

The lake comes from settings (``BACKLAKE_LAKE_URI``). Each browser session gets its own
``LakeStore``: opening the page reads the lake as it is now, Refresh re-reads it, and the
session's DuckDB connection is closed when the session ends.

Who the session is comes from ``dashboards.identity`` (the signed-in user and their role in
the users file, or the local user with ``backlake dashboard --no-auth``); a session without a
user sees only why, and no data. The header shows the user, their role and a sign-out link.
"""

from __future__ import annotations

import html

import panel as pn

from dashboards.identity import Identity, current_identity
from dashboards.jobs import shared_queue
from dashboards.runs import RunsPage
from dashboards.store import LakeStore

pn.extension("tabulator", sizing_mode="stretch_width")

#: How often a session looks at the jobs submitted from this dashboard (milliseconds).
JOBS_POLL_MS = 1000

HEADER_CSS = """
:host { margin-left: auto; }
.bl-user { color: #fff; font-size: 0.95rem; white-space: nowrap; }
.bl-user .bl-role { display: inline-block; margin-left: 6px; padding: 1px 8px; border-radius: 10px;
  background: rgba(255, 255, 255, 0.18); font-size: 0.8rem; }
.bl-user a { color: #fff; margin-left: 14px; text-decoration: underline; }
"""


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
                        sizing_mode="fixed", width=420, height=28, align="center")


identity = current_identity()
# Bootstrap: its assets are served by Panel itself (the Fast/Material designs fetch web fonts
# from Google, which fails on machines without internet and logs console errors).
template = pn.template.BootstrapTemplate(title="backlake — runs", header_background="#1f3b57")
template.header.append(user_badge(identity))
if identity.user is None:
    template.main.append(pn.pane.Alert(identity.problem, alert_type="danger", css_classes=["access-denied"]))
else:
    store = LakeStore()
    pn.state.on_session_destroyed(lambda _context: store.close())
    page = RunsPage(store, identity=identity, jobs=shared_queue())
    template.main.append(page)
    template.sidebar.extend(page.sidebar())
    pn.state.add_periodic_callback(page.poll, period=JOBS_POLL_MS)
template.servable(title="backlake — runs")
