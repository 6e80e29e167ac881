"""backlake.auth (users file, scrypt hashes, roles and permissions), `backlake users`, the
sign-in choices of `backlake dashboard`, and ownership in `backlake maintain`'s expiry."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from backlake import auth
from backlake.auth import User
from backlake.errors import ConfigError
from flows.cli import main

PW = "correct horse battery"


@pytest.fixture
def users_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh users file, also what BACKLAKE_USERS_FILE says (for the CLI)."""
    path = tmp_path / "home" / "users.json"
    monkeypatch.setenv("BACKLAKE_USERS_FILE", str(path))
    return path


# -- the users file ------------------------------------------------------------------------------
def test_add_and_verify_store_only_a_salted_scrypt_hash(users_file: Path) -> None:
    assert auth.add_user("alice", "researcher", PW) == User("alice", "researcher")
    auth.add_user("bob", "viewer", PW)  # the same password: a different salt, a different hash
    text = users_file.read_text()
    assert PW not in text
    users = json.loads(text)["users"]
    a, b = users["alice"]["password"], users["bob"]["password"]
    assert a.startswith("scrypt$16384$8$1$") and b.startswith("scrypt$") and a != b
    assert auth.verify("alice", PW) == User("alice", "researcher")
    assert auth.verify("alice", PW + "x") is None
    assert auth.verify("alice", "") is None
    assert auth.verify("nobody", PW) is None


def test_users_file_and_its_directory_are_private(users_file: Path) -> None:
    auth.add_user("alice", "admin", PW)
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(users_file.parent.stat().st_mode) == 0o700
    os.chmod(users_file, 0o644)  # rewritten private whatever it was
    auth.set_password("alice", "another good one")
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600
    assert auth.verify("alice", "another good one") and not auth.verify("alice", PW)


def test_list_remove_role(users_file: Path) -> None:
    assert auth.list_users() == [] and not auth.has_users()
    auth.add_user("bob", "viewer", PW)
    auth.add_user("alice", "admin", PW)
    assert auth.list_users() == [User("alice", "admin"), User("bob", "viewer")] and auth.has_users()
    assert auth.set_role("bob", "researcher") == User("bob", "researcher")
    assert auth.verify("bob", PW) == User("bob", "researcher")
    auth.remove_user("bob")
    assert auth.get_user("bob") is None and auth.verify("bob", PW) is None
    assert [u.name for u in auth.list_users()] == ["alice"]


def test_a_user_without_password_cannot_sign_in_with_one(users_file: Path) -> None:
    auth.add_user("alice@example.com", "viewer", None)
    assert auth.get_user("alice@example.com") == User("alice@example.com", "viewer")
    assert auth.verify("alice@example.com", "") is None
    assert auth.verify("alice@example.com", "None") is None


@pytest.mark.parametrize(("call", "message"), [
    (lambda: auth.add_user("alice", "reseacher", PW), "unknown role 'reseacher'; did you mean 'researcher'?"),
    (lambda: auth.add_user("alice", "root", PW), "valid: admin, researcher, viewer"),
    (lambda: auth.add_user("al ice", "viewer", PW), "user name 'al ice'"),
    (lambda: auth.add_user("", "viewer", PW), "user name ''"),
    (lambda: auth.add_user("alice", "viewer", ""), "password: it is empty"),
    (lambda: auth.add_user("alice", "viewer", "short"), "it has 5 characters; use at least 8"),
    (lambda: auth.add_user("alicealice", "viewer", "AliceAlice"), "it is the user name"),
    (lambda: auth.add_user("alice", "viewer", "password"), "too easy to guess"),
    (lambda: auth.add_user("alice", "viewer", "aaaaaaaaaaa"), "too easy to guess"),
])
def test_bad_input_is_a_clear_config_error(users_file: Path, call, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        call()
    assert not users_file.exists()  # nothing written


def test_duplicate_and_unknown_users(users_file: Path) -> None:
    auth.add_user("alice", "viewer", PW)
    with pytest.raises(ConfigError, match=r"user 'alice' already exists \(role viewer\).*backlake users passwd alice"):
        auth.add_user("alice", "admin", PW)
    assert auth.get_user("alice") == User("alice", "viewer")  # unchanged
    with pytest.raises(ConfigError, match=r"unknown user 'alcie'.*did you mean 'alice'"):
        auth.remove_user("alcie")
    with pytest.raises(ConfigError, match="unknown user 'zed'"):
        auth.set_password("zed", PW)
    with pytest.raises(ConfigError, match="unknown user 'zed'"):
        auth.set_role("zed", "admin")


def test_a_damaged_users_file_is_a_config_error_naming_it(users_file: Path) -> None:
    users_file.parent.mkdir(parents=True)
    users_file.write_text("{not json")
    with pytest.raises(ConfigError, match=f"users file {users_file}: not a backlake users file"):
        auth.list_users()
    users_file.write_text(json.dumps({"users": {"alice": {"role": "owner", "password": None}}}))
    with pytest.raises(ConfigError, match="user 'alice' has role 'owner'"):
        auth.get_user("alice")


def test_password_hash_rejects_garbage() -> None:
    h = auth.hash_password(PW)
    assert auth.password_matches(PW, h) and not auth.password_matches("x", h)
    for bad in (None, "", "plain", "md5$1$2$3$4$5", "scrypt$x$8$1$AA==$AA==", h.replace("scrypt", "bcrypt")):
        assert not auth.password_matches(PW, bad)


def test_cookie_secret_is_generated_once_and_kept(users_file: Path) -> None:
    first = auth.cookie_secret()
    assert len(first) >= 32 and auth.cookie_secret() == first
    path = users_file.with_name("cookie_secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.unlink()
    assert auth.cookie_secret() != first  # deleting it signs everyone out


# -- permissions ---------------------------------------------------------------------------------
def test_permissions_by_role_and_owner() -> None:
    viewer, alice, bob, admin = User("v", "viewer"), User("alice", "researcher"), User("bob", "researcher"), \
        User("root", "admin")
    assert all(auth.can_read(u) for u in (viewer, alice, admin)) and not auth.can_read(None)
    assert [auth.can_submit(u) for u in (None, viewer, alice, admin)] == [False, False, True, True]
    assert auth.can_cancel(alice, "alice") and not auth.can_cancel(alice, "bob") and not auth.can_cancel(bob, "alice")
    assert not auth.can_cancel(alice, None)
    assert not auth.can_cancel(viewer, "v")  # a viewer cancels nothing, not even under its own name
    assert auth.can_cancel(admin, "alice") and auth.can_cancel(admin, None)
    assert [auth.can_maintain(u) for u in (None, viewer, alice, admin)] == [False, False, False, True]
    assert auth.expiry_scope(admin) is None and auth.expiry_scope(alice) == "alice"
    with pytest.raises(ConfigError, match="role viewer: expiring runs needs the researcher role"):
        auth.expiry_scope(viewer)


# -- backlake users ------------------------------------------------------------------------------
def test_users_cli(users_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PW + "\n"))
    assert main(["users", "add", "alice", "--role", "researcher", "--password-stdin"]) == 0
    assert auth.verify("alice", PW) == User("alice", "researcher")
    answers = iter([PW + "2", PW + "2"])
    monkeypatch.setattr("getpass.getpass", lambda _prompt="": next(answers))
    monkeypatch.setattr("sys.stdin", io.StringIO())
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    assert main(["users", "passwd", "alice"]) == 0
    assert auth.verify("alice", PW + "2")
    assert main(["users", "add", "ops@example.com", "--role", "admin", "--no-password"]) == 0
    assert main(["users", "role", "alice", "admin"]) == 0
    capsys.readouterr()
    assert main(["users", "list", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"name": "alice", "role": "admin"},
                                                    {"name": "ops@example.com", "role": "admin"}]
    assert main(["users", "remove", "ops@example.com"]) == 0
    assert [u.name for u in auth.list_users()] == ["alice"]


def test_users_cli_errors_are_one_line_exit_2(users_file: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PW + "\n"))
    assert main(["users", "add", "alice", "--role", "admn", "--password-stdin"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'admin'" in err
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal, no --password-stdin
    assert main(["users", "add", "alice", "--role", "admin"]) == 2
    assert "--password-stdin" in capsys.readouterr().err
    answers = iter([PW, PW + "typo"])
    monkeypatch.setattr("getpass.getpass", lambda _prompt="": next(answers))
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    assert main(["users", "add", "alice", "--role", "admin"]) == 2
    assert "the two passwords differ" in capsys.readouterr().err
    assert main(["users", "passwd", "nobody"]) == 2  # before any prompt
    assert not auth.has_users()


# -- backlake dashboard --------------------------------------------------------------------------
@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[list[str], dict[str, str]]]:
    """`backlake dashboard` without starting Panel: the command and environment it would run
    (on an existing, empty lake directory: the dashboard refuses a lake path that is not there)."""
    calls: list[tuple[list[str], dict[str, str]]] = []
    (tmp_path / "lake").mkdir()
    monkeypatch.setenv("BACKLAKE_LAKE_URI", str(tmp_path / "lake"))

    def record(cmd: list[str], env: dict[str, str], **_kw: object) -> int:
        calls.append((cmd, env))
        return 0

    monkeypatch.setattr(subprocess, "call", record)
    monkeypatch.setattr(subprocess, "Popen", record)
    monkeypatch.setattr("flows.cli.app.run_in_foreground", lambda start, *a, **k: start(), raising=False)
    monkeypatch.delenv("PANEL_COOKIE_SECRET", raising=False)
    return calls


def test_dashboard_refuses_to_start_without_users(users_file: Path, served, capsys) -> None:
    assert main(["dashboard"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "backlake users add" in err and "--no-auth" in err
    assert served == []


def test_dashboard_signs_in_against_the_users_file(users_file: Path, served, capsys) -> None:
    auth.add_user("alice", "admin", PW)
    assert main(["dashboard", "--port", "5999"]) == 0
    ((cmd, env),) = served
    assert "--auth-module" in cmd and cmd[cmd.index("--auth-module") + 1].endswith("dashboards/auth_module.py")
    assert "--basic-auth" not in cmd and "--cookie-secret" not in cmd  # the secret is not on the command line
    assert env["BACKLAKE_DASHBOARD_AUTH"] == "password"
    assert env["PANEL_COOKIE_SECRET"] == auth.cookie_secret()
    assert "sign-in with the users of" in capsys.readouterr().out


def test_dashboard_oauth_and_no_auth(users_file: Path, served, capsys, monkeypatch) -> None:
    auth.add_user("alice@example.com", "researcher", None)
    assert main(["dashboard", "--oauth-provider", "github"]) == 0
    cmd, env = served[-1]
    assert cmd[cmd.index("--oauth-provider") + 1] == "github" and "--auth-module" not in cmd
    assert env["BACKLAKE_DASHBOARD_AUTH"] == "oauth" and env["PANEL_COOKIE_SECRET"]
    capsys.readouterr()
    monkeypatch.setenv("BACKLAKE_USER", "laptop")
    assert main(["dashboard", "--no-auth"]) == 0
    cmd, env = served[-1]
    assert env["BACKLAKE_DASHBOARD_AUTH"] == "none" and "--auth-module" not in cmd and "--oauth-provider" not in cmd
    err = capsys.readouterr().err
    assert err.startswith("warning: --no-auth") and "'laptop' with the admin role" in err
    assert main(["dashboard", "--no-auth", "--oauth-provider", "github"]) == 2


# -- maintain: expiry respects ownership ---------------------------------------------------------
@pytest.fixture
def failed_runs(local_settings, users_file: Path) -> dict[str, str]:
    """A local lake with one failed run by alice and one by bob; owner -> run id."""
    from backlake.config import BacktestConfig
    from backlake.data.ingest import ingest_bars
    from backlake.data.synthetic import synthetic_bars
    from backlake.lake import Lake
    from backlake.runs.backtest import RunOutcome, commit_outcomes, plan_runs

    lake = Lake(local_settings)
    ingest_bars(lake, synthetic_bars(["AAA"], periods=300, seed=1))
    out = {}
    for owner, fast in (("alice", 5), ("bob", 6)):
        cfg = BacktestConfig.model_validate({"strategy": "sma_crossover", "params": {"fast": fast, "slow": 20},
                                             "universe": ["AAA"]})
        (planned,) = plan_runs(lake, [cfg])
        started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        commit_outcomes(lake, [RunOutcome(planned, None, "boom", started, started)], created_by=owner)
        out[owner] = planned.run_id
    return out


def _failed(settings) -> dict[str, str]:
    from backlake.lake import Lake

    runs = Lake(settings).read("runs", columns=["run_id", "created_by", "status"])
    return {r["created_by"]: r["run_id"] for r in runs.iter_rows(named=True) if r["status"] == "failed"}


def test_expiry_only_for_one_user(failed_runs, local_settings) -> None:
    from backlake.lake import Lake
    from backlake.lake.maintenance import maintain

    kw = dict(compact=False, checkpoint=False, vacuum_retention_hours=None, failed_retention_days=0)
    report = maintain(Lake(local_settings), expire_only_user="alice", **kw)
    assert report.deleted_runs == 1 and _failed(local_settings) == {"bob": failed_runs["bob"]}
    assert maintain(Lake(local_settings), expire_only_user="alice", **kw).deleted_runs == 0
    assert maintain(Lake(local_settings), **kw).deleted_runs == 1  # no user: anyone's, as before
    assert _failed(local_settings) == {}


def test_maintain_cli_follows_the_role(failed_runs, local_settings, users_file: Path, monkeypatch,
                                       capsys) -> None:
    auth.add_user("alice", "researcher", PW)
    auth.add_user("vera", "viewer", PW)
    monkeypatch.setenv("BACKLAKE_USER", "vera")
    assert main(["maintain", "--failed-days", "0"]) == 2
    assert "role viewer" in capsys.readouterr().err
    monkeypatch.setenv("BACKLAKE_USER", "mallory")
    assert main(["maintain", "--failed-days", "0"]) == 2
    assert "'mallory' (BACKLAKE_USER or the OS user) is not in the users file" in capsys.readouterr().err
    assert set(_failed(local_settings)) == {"alice", "bob"}
    monkeypatch.setenv("BACKLAKE_USER", "alice")
    assert main(["maintain", "--failed-days", "0"]) == 0
    out = capsys.readouterr().out
    assert "maintain as alice (researcher)" in out and "expired failed/cancelled runs: 1" in out
    assert _failed(local_settings) == {"bob": failed_runs["bob"]}
