"""Who is using this dashboard session, and the gates every page asks before it acts.

``backlake dashboard`` says how people sign in through ``BACKLAKE_DASHBOARD_AUTH``:

- ``password`` (the default, and what a missing or unknown value means): the login page of
  ``dashboards/auth_module.py`` checked the password against the users file; the signed
  ``user`` cookie names the user (``pn.state.user``);
- ``oauth``: one of Panel's OAuth providers signed the user in; ``pn.state.user`` is the
  provider's user name, which must be in the users file for a role;
- ``none`` (``backlake dashboard --no-auth``, a single-user laptop): no login; the session is
  the local user (``BACKLAKE_USER`` or the OS user) with the admin role.

The role always comes from the users file: read when the session starts (what the page
shows), and again when the user acts (:meth:`Identity.current`). A session without a user (not
signed in, or signed in but not in the users file) gets no page at all.

The gates (:func:`submit_gate`, :func:`cancel_gate`) return whether an action is allowed and,
if not, the sentence to show next to the disabled control; the code that acts asks them again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from backlake import auth
from backlake.errors import ConfigError
from backlake.settings import get_settings

__all__ = ["AUTH_ENV", "MODES", "Identity", "resolve_identity", "current_identity", "submit_gate",
           "cancel_gate", "require", "PermissionDenied"]

AUTH_ENV = "BACKLAKE_DASHBOARD_AUTH"
MODES = ("password", "oauth", "none")


class PermissionDenied(ConfigError):
    """The session's role does not allow the action; the message says which role does."""


@dataclass(frozen=True)
class Identity:
    """The session's user (None: refused, ``problem`` says why) and how they signed in."""

    user: auth.User | None
    mode: str
    problem: str = ""

    @property
    def name(self) -> str:
        return self.user.name if self.user else ""

    @property
    def role(self) -> str:
        return self.user.role if self.user else ""

    def current(self) -> Identity:
        """This session's user with the role the users file gives now: the code that acts asks
        this, so a demoted or removed user loses the right at once, not at the next session."""
        if self.mode == "none" or self.user is None or not self.user.name:
            return self
        return resolve_identity(self.mode, self.user.name)

    @classmethod
    def anonymous(cls) -> Identity:
        """A nameless viewer: what a page gets when nobody says who is using it."""
        return cls(auth.User("", "viewer"), "password")


def auth_mode() -> str:
    """The sign-in mode ``backlake dashboard`` chose; anything unknown means ``password``."""
    mode = os.environ.get(AUTH_ENV, "password").strip().lower()
    return mode if mode in MODES else "password"


def resolve_identity(mode: str, login_name: str | None, users_file: str | None = None) -> Identity:
    """The identity of a session whose login (``pn.state.user``) is ``login_name``."""
    if mode == "none":
        return Identity(auth.User(get_settings().user, "admin"), mode)
    if not login_name or login_name == "guest":
        how = "sign in" if mode == "password" else "sign in through the OAuth provider"
        return Identity(None, mode, f"Not signed in: [{how}](./login) to see the runs.")
    try:
        user = auth.get_user(login_name, users_file)
    except ConfigError as e:
        return Identity(None, mode, f"Cannot read the users file: {e}")
    if user is None:
        return Identity(None, mode, (
            f"**{login_name}** is signed in but has no backlake role. An admin gives one with "
            f"`backlake users add {login_name} --role viewer --no-password`. [Sign out](./logout)"
        ))
    return Identity(user, mode)


def current_identity() -> Identity:
    """The identity of the running Panel session."""
    import panel as pn

    mode = auth_mode()
    return resolve_identity(mode, None if mode == "none" else pn.state.user)


def submit_gate(identity: Identity) -> tuple[bool, str]:
    """(allowed, why not) for submitting runs."""
    if auth.can_submit(identity.user):
        return True, ""
    return False, (
        f"Submitting runs needs the researcher or admin role; {identity.name or 'this session'} is a "
        f"{identity.role or 'guest'}. An admin can run `backlake users role {identity.name or 'NAME'} researcher`."
    )


def cancel_gate(identity: Identity, owner: str | None) -> tuple[bool, str]:
    """(allowed, why not) for cancelling a run or job that ``owner`` started."""
    if auth.can_cancel(identity.user, owner):
        return True, ""
    if auth.can_submit(identity.user):
        return False, f"Only {owner} or an admin can cancel this."
    return False, "Cancelling needs the researcher role (your own runs) or admin (anyone's)."


def require(allowed_why: tuple[bool, str]) -> None:
    """Raise PermissionDenied unless a gate allowed the action."""
    allowed, why = allowed_why
    if not allowed:
        raise PermissionDenied(why)
