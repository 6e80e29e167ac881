"""What every dashboard page shares: the template, the navigation between pages, who is
signed in. Each page is its own Panel app (``dashboards/<name>.py``, served at ``/<name>``
by ``backlake dashboard``) and starts with :func:`page`::

    tpl, identity = page("compare", "Compare runs")
    if identity is not None:          # None: the template already says why (no data shown)
        tpl.main.append(ComparePage(...))
    tpl.servable(title=tpl.title)

The header carries the navigation (the current page highlighted), the signed-in user with
their role and a Sign out link. Extra header items (the health badge) are added by
:data:`HEADER_HOOKS`: functions called with the template and identity of every page.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

import panel as pn

from dashboards.identity import Identity, current_identity

__all__ = ["PAGES", "page", "nav_bar", "user_badge", "page_names", "HEADER_HOOKS"]

#: The pages, in navigation order: (app name = module = URL path, label).
PAGES: tuple[tuple[str, str], ...] = (
    ("app", "Runs"),
    ("compare", "Compare"),
    ("live", "Live vs backtest"),
    ("health", "Health"),
    ("editor", "New backtest"),
)

#: Called as ``hook(template, identity)`` on every page after the header is built (e.g. the
#: health badge); a page that fails in a hook still renders.
HEADER_HOOKS: list[Callable[[pn.template.BaseTemplate, Identity], None]] = []

HEADER_CSS = """
:host { margin-left: auto; }
.bl-user { color: #fff; font-size: 0.95rem; white-space: nowrap; }
.bl-user .bl-role { display: inline-block; margin-left: 6px; padding: 1px 8px; border-radius: 10px;
  background: rgba(255, 255, 255, 0.18); font-size: 0.8rem; }
.bl-user a { color: #fff; margin-left: 14px; text-decoration: underline; }
"""

NAV_CSS = """
.bl-nav { display: flex; gap: 4px; align-items: center; white-space: nowrap; }
.bl-nav a { color: rgba(255, 255, 255, 0.85); text-decoration: none; padding: 4px 10px; border-radius: 6px;
  font-size: 0.95rem; }
.bl-nav a:hover { background: rgba(255, 255, 255, 0.12); color: #fff; }
.bl-nav a.active { background: rgba(255, 255, 255, 0.22); color: #fff; font-weight: 600; }
"""

HERE = Path(__file__).resolve().parent


def page_names() -> list[str]:
    """The pages that exist in this package (their module is there), in navigation order."""
    return [name for name, _ in PAGES if (HERE / f"{name}.py").exists()]


def nav_bar(active: str) -> pn.pane.HTML:
    """Links to every page that exists, ``active`` highlighted (relative links: the pages are
    siblings under the server's prefix)."""
    labels = dict(PAGES)
    links = "".join(
        f"<a class='bl-nav-{name}{' active' if name == active else ''}' href='./{name}'>{html.escape(labels[name])}</a>"
        for name in page_names()
    )
    return pn.pane.HTML(f"<nav class='bl-nav'>{links}</nav>", stylesheets=[NAV_CSS], css_classes=["nav-bar"],
                        sizing_mode="fixed", width=620, height=34, align="center")


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


def page(name: str, title: str) -> tuple[pn.template.BootstrapTemplate, Identity | None]:
    """The template of page ``name`` (navigation, user) and the session's identity, or None
    when the session has no user (the template then shows why, and the page adds nothing)."""
    identity = current_identity()
    # Bootstrap: its assets are served by Panel itself (the Fast/Material designs fetch web fonts
    # from Google, which fails on machines without internet and logs console errors).
    template = pn.template.BootstrapTemplate(title=f"backlake — {title}", header_background="#1f3b57")
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
