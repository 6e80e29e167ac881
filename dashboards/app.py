"""The backlake dashboards, served with ``panel serve dashboards/app.py`` (``backlake dashboard``).

The lake comes from settings (``BACKLAKE_LAKE_URI``); one ``LakeStore`` is shared by every
browser session of the server, so its cache is too (each page's Refresh re-reads the lake).
"""

from __future__ import annotations

import panel as pn

from dashboards.runs import RunsPage
from dashboards.store import LakeStore

pn.extension("tabulator", sizing_mode="stretch_width", notifications=False)

store: LakeStore = pn.state.as_cached("backlake.dashboards.store", LakeStore)

# Bootstrap: its assets are served by Panel itself (the Fast/Material designs fetch web fonts
# from Google, which fails on machines without internet and logs console errors).
pn.template.BootstrapTemplate(
    title="backlake — runs", main=[RunsPage(store)], header_background="#1f3b57",
).servable(title="backlake — runs")
