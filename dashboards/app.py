"""The backlake dashboards, served with ``panel serve dashboards/app.py`` (``backlake dashboard``).

The runs page (``dashboards.runs``): every run of any kind and status, filtered, sorted and
paged in DuckDB, and the selected run's detail. The lake comes from settings
(``BACKLAKE_LAKE_URI``). Each browser session gets its own ``LakeStore``: opening the page
reads the lake as it is now, Refresh re-reads it, and the session's DuckDB connection is closed
when the session ends.

Who the session is comes from ``dashboards.identity`` (the signed-in user and their role in
the users file, or the local user with ``backlake dashboard --no-auth``); a session without a
user sees only why, and no data. The header shows the user, their role and a sign-out link.
"""

from __future__ import annotations

import panel as pn

from dashboards.jobs import shared_queue
from dashboards.layout import page, watch_versions
from dashboards.runs import RunsPage
from dashboards.store import LakeStore

pn.extension("tabulator", sizing_mode="stretch_width")

#: How often a session looks at the jobs submitted from this dashboard (milliseconds).
JOBS_POLL_MS = 1000

template, identity = page("app", "runs")
if identity is not None:
    store = LakeStore()
    pn.state.on_session_destroyed(lambda _context: store.close())
    runs_page = RunsPage(store, identity=identity, jobs=shared_queue())
    template.main.append(runs_page)
    template.sidebar.extend(runs_page.sidebar())
    pn.state.add_periodic_callback(runs_page.poll, period=JOBS_POLL_MS)
    # a banner when the lake's runs (or their events: runs starting, ending) move past the
    # versions this page shows
    watch_versions(template, store, ("runs", "run_events"), on_refresh=runs_page.reload)
template.servable(title="backlake — runs")
