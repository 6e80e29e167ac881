"""``backlake demo`` and ``backlake dashboard``."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from backlake.errors import ConfigError
from flows.cli.output import port
from flows.cli.progress import add_progress_option
from flows.cli.server import run_in_foreground


def add_demo(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("demo", help="ingest the samples, run backtests through Prefect, print a summary")
    add_progress_option(s)
    s.set_defaults(fn=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from flows.demo import run_demo  # flows.demo imports the CLI's helpers: import it only here

    return run_demo(args.progress)


def add_dashboard(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("dashboard", help="serve the Panel dashboards (sign-in against `backlake users`)")
    s.add_argument("--port", type=port, default=5006, help="port to serve on")
    s.add_argument("--address", default="127.0.0.1", help="address to listen on")
    s.add_argument("--show", action="store_true", help="open a browser")
    s.add_argument("--oauth-provider", metavar="NAME",
                   help="sign in through one of Panel's OAuth providers (github, google, azure, okta, auth0, "
                        "gitlab, generic, ...) instead of passwords; its key and secret come from "
                        "PANEL_OAUTH_KEY and PANEL_OAUTH_SECRET; roles still come from the users file")
    s.add_argument("--no-auth", action="store_true",
                   help="no sign-in: whoever reaches the port is you (BACKLAKE_USER or the OS user) with the "
                        "admin role; for a single-user laptop only")
    s.set_defaults(fn=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Serve dashboards/app.py. By default people sign in with a password from the users file
    (``dashboards/auth_module.py``, scrypt hashes); ``--oauth-provider`` signs them in through
    Panel's OAuth instead; ``--no-auth`` serves without sign-in, with a warning. The cookie
    secret is the one kept next to the users file (generated on first use)."""
    from backlake import auth
    from dashboards.identity import AUTH_ENV
    from flows.cli.lake import require_lake


    spec = importlib.util.find_spec("dashboards")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the dashboards package is not installed; run `make demo` or `pip install -e .`")
    package = Path(next(iter(spec.submodule_search_locations)))
    from dashboards.layout import served_pages

    apps = [str(package / f"{name}.py") for name in served_pages()]  # one Panel app per page: /app, /compare...
    cmd = [
        sys.executable, "-m", "panel", "serve", *apps, "--port", str(args.port),
        "--address", args.address, "--allow-websocket-origin", f"{args.address}:{args.port}",
        "--allow-websocket-origin", f"localhost:{args.port}", "--index", "app",
    ]
    env = os.environ.copy()
    if args.no_auth:
        if args.oauth_provider:
            raise ConfigError("--no-auth and --oauth-provider exclude each other: drop one")
        env[AUTH_ENV] = "none"
        from backlake.settings import get_settings

        reach = ("anyone on your network" if args.address not in ("127.0.0.1", "localhost", "::1")
                 else "anyone who can reach this machine's loopback port")
        print(f"warning: --no-auth: no sign-in; {reach} ({args.address}:{args.port}) reads the lake and submits "
              f"runs as {get_settings().user!r} with the admin role. Use it only on a single-user machine.",
              file=sys.stderr)
    else:
        if not auth.has_users():
            raise ConfigError(
                f"no dashboard users in {auth.users_path()}: add one with `backlake users add NAME --role admin` "
                "(or serve without sign-in on a single-user laptop: `backlake dashboard --no-auth`)"
            )
        if not env.get("PANEL_COOKIE_SECRET"):  # through the environment: not visible in `ps`
            env["PANEL_COOKIE_SECRET"] = auth.cookie_secret()
        if args.oauth_provider:
            env[AUTH_ENV] = "oauth"
            cmd += ["--oauth-provider", args.oauth_provider]
        else:
            env[AUTH_ENV] = "password"
            cmd += ["--auth-module", str(package / "auth_module.py")]
    if args.show:
        cmd.append("--show")
    how = {"none": "no sign-in", "oauth": f"sign-in through {args.oauth_provider}",
           "password": f"sign-in with the users of {auth.users_path()}"}[env[AUTH_ENV]]
    print(f"serving the dashboard at http://{args.address}:{args.port}/app ({how}; Ctrl-C to stop)")
    # panel in its own process group, stopped with all it started on Ctrl-C or SIGTERM
    require_lake()  # after the sign-in checks: the dashboard only reads the lake
    return run_in_foreground(lambda: subprocess.Popen(cmd, env=env, start_new_session=True))
