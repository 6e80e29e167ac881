"""``backlake users``: the dashboard's users file (names, roles, hashed passwords).

    backlake users add alice --role researcher          # asks for the password twice
    echo "$PW" | backlake users add ci --role viewer --password-stdin
    backlake users add alice@example.com --role viewer --no-password   # signs in through OAuth only
    backlake users list
    backlake users passwd alice
    backlake users role alice admin
    backlake users remove alice
"""

from __future__ import annotations

import argparse
import getpass
import sys

from backlake.auth import ROLES
from backlake.errors import ConfigError
from flows.cli.output import add_format_option, format_rows


def add_users(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("users", help="dashboard users: add, list, passwd, role, remove")
    usub = s.add_subparsers(dest="users_command", required=True)

    a = usub.add_parser("add", help="add a user with a role (asks for the password)")
    a.add_argument("name", help="user name (letters, digits, . _ @ + -)")
    a.add_argument("--role", required=True, help=f"one of {', '.join(ROLES)}")
    _password_options(a, no_password=True)
    a.set_defaults(fn=cmd_users_add)

    ls = usub.add_parser("list", help="users and their roles (never the passwords)")
    add_format_option(ls)
    ls.set_defaults(fn=cmd_users_list)

    pw = usub.add_parser("passwd", help="set a user's password")
    pw.add_argument("name")
    _password_options(pw, no_password=False)
    pw.set_defaults(fn=cmd_users_passwd)

    r = usub.add_parser("role", help="change a user's role")
    r.add_argument("name")
    r.add_argument("role", help=f"one of {', '.join(ROLES)}")
    r.set_defaults(fn=cmd_users_role)

    rm = usub.add_parser("remove", help="remove a user (their runs stay in the lake)")
    rm.add_argument("name")
    rm.set_defaults(fn=cmd_users_remove)


def _password_options(p: argparse.ArgumentParser, *, no_password: bool) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of stdin (for scripts) instead of a prompt")
    if no_password:
        g.add_argument("--no-password", action="store_true",
                       help="no password: the user signs in only through an OAuth provider")


def _read_password(args: argparse.Namespace) -> str | None:
    """The new password: from stdin, or typed twice at a prompt (never echoed, never an argument)."""
    if getattr(args, "no_password", False):
        return None
    if args.password_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    if not sys.stdin.isatty():
        raise ConfigError("no terminal to ask for the password: pipe it in with --password-stdin")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise ConfigError("the two passwords differ; nothing was changed")
    return first


def cmd_users_add(args: argparse.Namespace) -> int:
    from backlake.auth import add_user, check_name, check_role, users_path

    check_name(args.name)
    check_role(args.role)  # before the prompt: a typo in the role should not cost a password
    user = add_user(args.name, args.role, _read_password(args))
    print(f"added {user.name} ({user.role}) to {users_path()}")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    from backlake.auth import list_users, users_path

    users = list_users()
    if args.format == "table":
        print(f"users file: {users_path()}")
    print(format_rows(["name", "role"], [[u.name, u.role] for u in users], args.format))
    return 0


def cmd_users_passwd(args: argparse.Namespace) -> int:
    from backlake.auth import require_user, set_password

    require_user(args.name)  # an unknown name is an error before the prompt, not after
    set_password(args.name, _read_password(args) or "")
    print(f"password of {args.name} changed")
    return 0


def cmd_users_role(args: argparse.Namespace) -> int:
    from backlake.auth import set_role

    user = set_role(args.name, args.role)
    print(f"{user.name} is now {user.role}")
    return 0


def cmd_users_remove(args: argparse.Namespace) -> int:
    from backlake.auth import remove_user

    remove_user(args.name)
    print(f"removed {args.name}")
    return 0
