"""The backlake dashboards, served with ``panel serve dashboards/app.py`` (``backlake dashboard``).

The lake comes from settings (``BACKLAKE_LAKE_URI``). Each browser session gets its own
``LakeStore``: opening the page reads the lake as it is now, Refresh re-reads it, and the
session's DuckDB connection is closed when the session ends.
"""

from __future__ import annotations

import panel as pn

from dashboards.runs import RunsPage
from dashboards.store import LakeStore

pn.extension("tabulator", sizing_mode="stretch_width")

store = LakeStore()
pn.state.on_session_destroyed(lambda _context: store.close())

# Bootstrap: its assets are served by Panel itself (the Fast/Material designs fetch web fonts
# from Google, which fails on machines without internet and logs console errors).
pn.template.BootstrapTemplate(
    title="backlake — runs", main=[RunsPage(store)], header_background="#1f3b57",
).servable(title="backlake — runs")
