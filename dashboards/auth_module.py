"""The dashboard's password login: an auth module for ``panel serve --auth-module`` (Bokeh's
hook; ``backlake dashboard`` passes this file).

Panel's own ``--basic-auth`` compares passwords in clear text against its credentials file, so
this module keeps Panel's basic-auth machinery (its login handler, signed ``user`` cookie,
``pn.state.user``, logout handler) and replaces the check: :func:`backlake.auth.verify`
against the scrypt hashes of the users file (``BACKLAKE_USERS_FILE``). The cookie is signed
with the secret ``backlake dashboard`` keeps next to the users file (``PANEL_COOKIE_SECRET``).

- every request: :func:`get_user` reads the signed cookie and checks the user is still in the
  users file (removing a user signs them out);
- ``POST /login``: verified off the event loop; a refusal waits half a second and returns to
  the login page with "Invalid username or password";
- ``/logout`` clears the cookies.

The login and logout pages are self-contained (no CDN, no web fonts: it works offline).
"""

from __future__ import annotations

import asyncio
from typing import Any

import jinja2
import tornado.escape
from panel.auth import BasicLoginHandler, LogoutHandler as PanelLogoutHandler, _validate_next_url
from panel.config import config
from panel.io.state import state

from backlake import auth
from backlake.errors import ConfigError

__all__ = ["get_user", "login_url", "logout_url", "LoginHandler", "LogoutHandler"]

login_url = "/login"
logout_url = "/logout"
#: Seconds a refused login waits before answering (slows down guessing).
REFUSAL_DELAY = 0.5
INVALID = "Invalid username or password"

_STYLE = """
  * { box-sizing: border-box; margin: 0; padding: 0; }
  body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; background: #f4f6f8; color: #1d2733; }
  .wrap { min-height: 100vh; display: flex; align-items: center; justify-content: center; }
  .card { width: 360px; background: #fff; border: 1px solid #dde2e8; border-radius: 8px; overflow: hidden; }
  .bar { background: #1f3b57; color: #fff; padding: 18px 24px; }
  .bar h1 { font-size: 1.35em; font-weight: 600; }
  .bar p { font-size: 0.85em; opacity: 0.8; margin-top: 2px; }
  form, .body { padding: 20px 24px 24px; }
  label { display: block; font-size: 0.8em; color: #5f6b7a; margin: 12px 0 4px; }
  input { width: 100%; padding: 10px; border: 1px solid #cfd6de; border-radius: 4px; font-size: 1em; }
  button, .button { display: block; width: 100%; margin-top: 18px; padding: 10px; border: 0; border-radius: 4px;
    background: #1f6fb2; color: #fff; font-size: 1em; text-align: center; text-decoration: none; cursor: pointer; }
  .error { margin-top: 14px; padding: 8px 10px; border-radius: 4px; background: #fdecea; color: #a12622; }
"""
_templates = jinja2.Environment(autoescape=True, loader=jinja2.DictLoader({
    "login.html": """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>backlake | Sign in</title><style>""" + _STYLE + """</style></head>
<body><div class="wrap"><div class="card">
  <div class="bar"><h1>backlake</h1><p>Sign in to see the runs</p></div>
  <form class="login-form" action=".{{ login_endpoint }}" method="post">
    {% if errormessage %}<p class="error errormessage" role="alert">{{ errormessage }}</p>{% endif %}
    <label for="username">User name</label>
    <input id="username" name="username" type="text" autocapitalize="off" autocorrect="off"
           autocomplete="username" autofocus required>
    <label for="password">Password</label>
    <input id="password" name="password" type="password" autocomplete="current-password" required>
    <button type="submit">Sign in</button>
  </form>
</div></div></body></html>
""",
    "logout.html": """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>backlake | Signed out</title><style>""" + _STYLE + """</style></head>
<body><div class="wrap"><div class="card">
  <div class="bar"><h1>backlake</h1><p>Signed out</p></div>
  <div class="body"><p>You are signed out.</p><a class="button" href=".{{ LOGIN_ENDPOINT }}">Sign in again</a></div>
</div></div></body></html>
""",
}))


def get_user(request_handler: Any) -> str | None:
    """The signed-in user's name, if their cookie is valid and they are still in the users file."""
    raw = request_handler.get_secure_cookie("user", max_age_days=config.oauth_expiry)
    if not raw:
        return None
    name = raw.decode("utf-8")
    try:
        return name if auth.get_user(name) is not None else None
    except ConfigError:  # an unreadable users file signs nobody in
        return None


def _verify(name: str, password: str) -> auth.User | None:
    try:
        return auth.verify(name, password)
    except ConfigError:
        return None


class LoginHandler(BasicLoginHandler):
    """Panel's basic login page and cookie, checking the users file's hashes."""

    _login_endpoint = login_url
    _login_template = _templates.get_template("login.html")

    def _validate(self, username: str, password: str) -> bool:
        return _verify(username, password) is not None

    async def post(self) -> None:
        username = self.get_argument("username", "")
        password = self.get_argument("password", "")
        user = await asyncio.get_running_loop().run_in_executor(None, _verify, username, password)
        if user is None:
            await asyncio.sleep(REFUSAL_DELAY)
            self.redirect(f"{self.request.path}?error={tornado.escape.url_escape(INVALID)}")
            return
        self.set_current_user(user.name)
        self.redirect(_validate_next_url(self.get_cookie("next_url", state.base_url)) or state.base_url)


class LogoutHandler(PanelLogoutHandler):
    """Panel's logout (clears the cookies), with the backlake page."""

    _login_endpoint = login_url
    _logout_template = _templates.get_template("logout.html")
