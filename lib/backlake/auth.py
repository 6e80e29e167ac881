"""Dashboard users: a users file with scrypt-hashed passwords, three roles, and what each role
may do. No Panel and no Prefect here: the dashboard's login handler
(``dashboards/auth_module.py``) calls :func:`verify`, ``backlake users ...`` edits the file,
the dashboard asks :func:`can_submit` / :func:`can_cancel`, and ``backlake maintain`` asks
:func:`expiry_scope`.

The users file is ``BACKLAKE_USERS_FILE`` (default ``~/.backlake/users.json``), written with
mode 0600 (its directory 0700), replaced atomically and edited under a lock::

    {"version": 1, "users": {"alice": {"role": "researcher",
        "password": "scrypt$16384$8$1$<salt, base64>$<key, base64>",
        "created_at": "2025-01-02T03:04:05+00:00", "updated_at": "..."}}}

Passwords are never stored: only a salted ``hashlib.scrypt`` key (memory-hard: n=2**14, r=8,
16 MiB per check), compared with ``hmac.compare_digest``. A user added with ``password=None``
(someone who signs in through an OAuth provider) has no password and cannot log in with one.

Roles, each including the one before:

- ``viewer``: reads every run;
- ``researcher``: also submits runs, cancels its own and expires its own failed runs;
- ``admin``: also maintenance (compaction, vacuum...) and cancelling or expiring anyone's runs.

Example::

    add_user("alice", "researcher", "correct horse battery")
    user = verify("alice", "correct horse battery")     # User(name='alice', role='researcher')
    can_submit(user), can_cancel(user, "bob")            # (True, False)
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from backlake._suggest import closest, unknown_name_message
from backlake.errors import ConfigError

__all__ = [
    "User", "Role", "ROLES", "MIN_PASSWORD_LENGTH",
    "add_user", "remove_user", "set_password", "set_role", "list_users", "get_user", "require_user", "has_users",
    "verify",
    "can_read", "can_submit", "can_cancel", "can_maintain", "expiry_scope",
    "check_role", "check_name", "check_password", "hash_password", "password_matches",
    "users_path", "cookie_secret",
]

Role = Literal["viewer", "researcher", "admin"]
#: The roles, from the least to the most privileged.
ROLES: tuple[Role, ...] = ("viewer", "researcher", "admin")
MIN_PASSWORD_LENGTH = 8

_FILE_VERSION = 1
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}")
#: scrypt cost: 2**14 x 8 x 128 bytes = 16 MiB and about 50 ms per hash.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _SALT_BYTES, _KEY_BYTES = 2**14, 8, 1, 16, 32
_MAXMEM = 64 * 1024 * 1024
_COMMON = frozenset({
    "password", "password1", "passw0rd", "12345678", "123456789", "1234567890", "qwertyui", "qwerty123",
    "iloveyou", "letmein1", "abcdefgh", "abcd1234", "11111111", "00000000", "backlake", "changeme",
})


@dataclass(frozen=True)
class User:
    """A dashboard user: a name and a role (see the module docstring)."""

    name: str
    role: Role


# -- checks --------------------------------------------------------------------------------------
def check_role(role: str) -> Role:
    """``role`` if it is one of :data:`ROLES`, else a ConfigError naming the closest one."""
    if role in ROLES:
        return role
    raise ConfigError(unknown_name_message("role", role, ROLES))


def check_name(name: str) -> str:
    """A user name: letters, digits and ``. _ @ + -`` (an e-mail address fits), at most 100."""
    if not _NAME.fullmatch(name or ""):
        raise ConfigError(
            f"user name {name!r}: use 1 to 100 letters, digits and . _ @ + - (no spaces), "
            "starting with a letter or digit, e.g. 'alice' or 'alice@example.com'"
        )
    return name


def check_password(password: str, name: str = "") -> str:
    """``password`` if it is acceptable: at least :data:`MIN_PASSWORD_LENGTH` characters, not
    the user name, not one repeated character, not one of the most common passwords."""
    if not password:
        raise ConfigError("password: it is empty; choose one of at least "
                          f"{MIN_PASSWORD_LENGTH} characters")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(f"password: it has {len(password)} characters; use at least {MIN_PASSWORD_LENGTH}")
    if name and password.lower() == name.lower():
        raise ConfigError("password: it is the user name; choose another")
    if len(set(password)) == 1 or password.lower() in _COMMON:
        raise ConfigError("password: it is too easy to guess (a common password or one repeated character); "
                          "choose another, e.g. a few unrelated words")
    return password


# -- hashing -------------------------------------------------------------------------------------
def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$key``: a fresh random salt each time, so equal passwords differ."""
    salt = secrets.token_bytes(_SALT_BYTES)
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P,
                         maxmem=_MAXMEM, dklen=_KEY_BYTES)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(key)}"


def password_matches(password: str, encoded: str | None) -> bool:
    """Whether ``password`` hashes to ``encoded`` (constant-time compare; False for no hash or
    a malformed one)."""
    if not encoded:
        return False
    try:
        scheme, n, r, p, salt, key = encoded.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(key, validate=True)
        got = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt, validate=True), n=int(n),
                             r=int(r), p=int(p), maxmem=_MAXMEM, dklen=len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


#: Hashed once so that checking an unknown user costs what checking a known one does.
_DUMMY_HASH: str | None = None


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_hex(16))
    return _DUMMY_HASH


# -- the users file ------------------------------------------------------------------------------
def users_path(path: str | Path | None = None) -> Path:
    """``path``, or ``BACKLAKE_USERS_FILE`` (default ``~/.backlake/users.json``)."""
    if path is not None:
        return Path(path).expanduser()
    from backlake.settings import get_settings

    return get_settings().users_file


def _read(path: Path) -> dict[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ConfigError(f"users file {path}: cannot read it ({e.strerror}); check BACKLAKE_USERS_FILE "
                          "and the file's permissions") from e
    try:
        data = json.loads(text)
        users = data["users"]
        if not isinstance(users, dict) or not all(isinstance(v, dict) for v in users.values()):
            raise ValueError("'users' is not an object of objects")
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"users file {path}: not a backlake users file ({e}); fix or remove it, then "
                          "add users with `backlake users add NAME --role ROLE`") from e
    return cast(dict[str, dict[str, Any]], users)


def _write(path: Path, users: dict[str, dict[str, Any]]) -> None:
    """Replace the file atomically, mode 0600 from the first byte."""
    text = json.dumps({"version": _FILE_VERSION, "users": users}, indent=2, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _editing(path: Path) -> Iterator[dict[str, dict[str, Any]]]:
    """The users, to change in place; written back on a clean exit. One editor at a time."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"users file {path}: cannot create its directory ({e.strerror}); "
                          "set BACKLAKE_USERS_FILE to a writable path") from e
    lock = path.with_name(f".{path.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        except ImportError:  # not POSIX: no lock
            pass
        users = _read(path)
        yield users
        _write(path, users)
    finally:
        os.close(fd)  # releases the lock


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _user(name: str, entry: dict[str, Any], path: Path) -> User:
    role = entry.get("role")
    if role not in ROLES:
        raise ConfigError(f"users file {path}: user {name!r} has role {role!r}; "
                          f"{unknown_name_message('role', str(role), ROLES)}; "
                          f"fix it with `backlake users role {name} ROLE`")
    return User(name, cast(Role, role))


def _unknown_user(name: str, users: dict[str, dict[str, Any]], path: Path) -> ConfigError:
    if not users:
        return ConfigError(f"unknown user {name!r}: the users file {path} has no users; "
                           "add one with `backlake users add NAME --role ROLE`")
    hint = closest(name, users)
    did_you_mean = f"; did you mean {hint!r}?" if hint else ""
    return ConfigError(f"unknown user {name!r} in {path}{did_you_mean} (`backlake users list` shows them)")


def list_users(path: str | Path | None = None) -> list[User]:
    """Every user, by name."""
    p = users_path(path)
    users = _read(p)
    return [_user(n, users[n], p) for n in sorted(users)]


def has_users(path: str | Path | None = None) -> bool:
    """Whether the users file exists and has at least one user."""
    return bool(_read(users_path(path)))


def get_user(name: str, path: str | Path | None = None) -> User | None:
    """The user called ``name``, or None."""
    p = users_path(path)
    entry = _read(p).get(name)
    return None if entry is None else _user(name, entry, p)


def require_user(name: str, path: str | Path | None = None) -> User:
    """The user called ``name``; a ConfigError naming the closest user if there is none."""
    p = users_path(path)
    users = _read(p)
    if name not in users:
        raise _unknown_user(name, users, p)
    return _user(name, users[name], p)


def add_user(name: str, role: str, password: str | None, *, path: str | Path | None = None) -> User:
    """Add a user; ``password=None`` for one who signs in only through an OAuth provider."""
    p = users_path(path)
    check_name(name)
    r = check_role(role)
    if password is not None:
        check_password(password, name)
    hashed = hash_password(password) if password is not None else None
    with _editing(p) as users:
        if name in users:
            old = users[name].get("role")
            raise ConfigError(
                f"user {name!r} already exists (role {old}) in {p}: change the password with "
                f"`backlake users passwd {name}`, the role with `backlake users role {name} ROLE`, "
                f"or `backlake users remove {name}` first"
            )
        users[name] = {"role": r, "password": hashed, "created_at": _now(), "updated_at": _now()}
    return User(name, r)


def remove_user(name: str, *, path: str | Path | None = None) -> None:
    """Remove a user (their runs stay in the lake, still recorded as theirs)."""
    p = users_path(path)
    with _editing(p) as users:
        if name not in users:
            raise _unknown_user(name, users, p)
        del users[name]


def set_password(name: str, password: str, *, path: str | Path | None = None) -> None:
    """Replace a user's password (a new salt and hash)."""
    p = users_path(path)
    check_password(password, name)
    hashed = hash_password(password)
    with _editing(p) as users:
        if name not in users:
            raise _unknown_user(name, users, p)
        users[name].update(password=hashed, updated_at=_now())


def set_role(name: str, role: str, *, path: str | Path | None = None) -> User:
    """Change a user's role (a dashboard session picks it up when it next starts)."""
    p = users_path(path)
    r = check_role(role)
    with _editing(p) as users:
        if name not in users:
            raise _unknown_user(name, users, p)
        users[name].update(role=r, updated_at=_now())
    return User(name, r)


def verify(name: str, password: str, path: str | Path | None = None) -> User | None:
    """The user if ``password`` is theirs, else None (an unknown name takes as long to refuse
    as a wrong password)."""
    p = users_path(path)
    entry = _read(p).get(name)
    encoded = entry.get("password") if entry is not None else None
    ok = password_matches(password, encoded if isinstance(encoded, str) else _dummy_hash())
    if not ok or entry is None or not isinstance(encoded, str):
        return None
    return _user(name, entry, p)


def cookie_secret(path: str | Path | None = None) -> str:
    """The dashboard's cookie-signing secret, kept in ``cookie_secret`` next to the users file
    (mode 0600): generated on first use, then the same for every start, so a restart keeps
    everyone logged in. Delete the file to log everyone out."""
    p = users_path(path).with_name("cookie_secret")
    try:
        secret = p.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        secret = ""
    except OSError as e:
        raise ConfigError(f"cookie secret {p}: cannot read it ({e.strerror}); check its permissions") from e
    if len(secret) >= 32:
        return secret
    p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    try:  # O_EXCL: two first starts at once agree on the file that won
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        existing = p.read_text(encoding="ascii").strip()
        if len(existing) >= 32:
            return existing
        os.unlink(p)  # an empty or truncated secret: replace it
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secret + "\n")
    return secret


# -- permissions ---------------------------------------------------------------------------------
def _rank(user: User | None) -> int:
    return -1 if user is None else ROLES.index(user.role)


def can_read(user: User | None) -> bool:
    """Every role reads every run."""
    return _rank(user) >= 0


def can_submit(user: User | None) -> bool:
    """Researchers and admins submit runs."""
    return _rank(user) >= ROLES.index("researcher")


def can_cancel(user: User | None, run_owner: str | None) -> bool:
    """Admins cancel (and expire) anyone's runs; researchers only their own."""
    if _rank(user) >= ROLES.index("admin"):
        return True
    return can_submit(user) and user is not None and run_owner is not None and run_owner == user.name


def can_maintain(user: User | None) -> bool:
    """Only admins run the whole maintenance (compaction, checkpoints, vacuum, anyone's expiry)."""
    return _rank(user) >= ROLES.index("admin")


def expiry_scope(user: User) -> str | None:
    """Whose failed / cancelled runs ``user`` may expire: None for everyone's (admin), their own
    name (researcher); a viewer may expire nothing (ConfigError)."""
    if can_maintain(user):
        return None
    if can_submit(user):
        return user.name
    raise ConfigError(
        f"user {user.name!r} has role {user.role}: expiring runs needs the researcher role (your own "
        f"runs) or admin (anyone's); an admin can run `backlake users role {user.name} researcher`"
    )
