"""``backlake s3 serve``: a local S3 server (moto's) on 127.0.0.1 with a bucket, for trying the
lake on S3 without MinIO or AWS.

    backlake s3 serve [--port 9000] [--bucket backlake]

Runs in the foreground until Ctrl-C or SIGTERM (the server and everything it started stop
with it). Once the bucket exists it prints the exports that point the lake at it. moto keeps
the objects in memory: they are gone when the server stops.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backlake.errors import ConfigError
from flows.cli.output import port
from flows.cli.server import port_free, run_in_foreground

#: moto accepts any credentials; these are the ones its documentation uses
ACCESS_KEY, SECRET_KEY = "testing", "testing"


def add_s3(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("s3", help="a local S3 server (moto) for the lake")
    ssub = s.add_subparsers(dest="s3_command", required=True)
    sv = ssub.add_parser("serve", help="serve S3 on 127.0.0.1 with a bucket, print the exports, run until Ctrl-C")
    sv.add_argument("--port", type=port, default=9000, help="port on 127.0.0.1")
    sv.add_argument("--bucket", default="backlake", help="bucket to create")
    sv.add_argument("--prefix", default="lake", help="the lake's prefix in the bucket (BACKLAKE_LAKE_URI)")
    sv.add_argument("--verbose", action="store_true", help="print the server's request log")
    sv.set_defaults(fn=cmd_s3_serve)


def exports(endpoint: str, bucket: str, prefix: str) -> str:
    """The shell line that points backlake at the server."""
    uri = f"s3://{bucket}/{prefix.strip('/')}" if prefix.strip("/") else f"s3://{bucket}"
    return (f"export BACKLAKE_LAKE_URI={uri} BACKLAKE_S3_ENDPOINT_URL={endpoint} BACKLAKE_S3_ALLOW_HTTP=true "
            f"AWS_ACCESS_KEY_ID={ACCESS_KEY} AWS_SECRET_ACCESS_KEY={SECRET_KEY}")


def _create_bucket(endpoint: str, bucket: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Create ``bucket`` as soon as the server answers (an existing one is fine)."""
    import boto3
    import botocore.exceptions

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
                          aws_secret_access_key=SECRET_KEY)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ConfigError(f"the S3 server exited with code {proc.returncode}")
        try:
            client.create_bucket(Bucket=bucket)
            return
        except client.exceptions.BucketAlreadyOwnedByYou:
            return
        except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError):
            if time.monotonic() > deadline:
                raise ConfigError(f"the S3 server did not answer at {endpoint} within {timeout:.0f} s") from None
            time.sleep(0.2)


def cmd_s3_serve(args: argparse.Namespace) -> int:
    if not port_free(args.port):
        raise ConfigError(f"port {args.port} on 127.0.0.1 is in use: pick another with --port")
    endpoint = f"http://127.0.0.1:{args.port}"
    log = Path(tempfile.gettempdir()) / f"backlake-s3-{args.port}.log"
    procs: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        with contextlib.ExitStack() as stack:
            out = None if args.verbose else stack.enter_context(open(log, "wb"))
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(args.port)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT if out else None,
                env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
            ))
        return procs[0]

    def ready() -> None:
        try:
            _create_bucket(endpoint, args.bucket, procs[0])
        except ConfigError as e:
            tail = [] if args.verbose else log.read_text(errors="replace").strip().splitlines()[-1:]
            raise ConfigError(f"{e}" + (f": {tail[0]} (log {log})" if tail else "")) from None
        print(f"S3 (moto) at {endpoint} with bucket {args.bucket!r}; objects live in memory until it stops. "
              f"Point backlake at it with:\n\n{exports(endpoint, args.bucket, args.prefix)}\n\n"
              f"Serving until Ctrl-C or SIGTERM" + ("" if args.verbose else f" (request log: {log})") + ".",
              flush=True)

    rc = run_in_foreground(start, ready)
    print("stopped the S3 server", file=sys.stderr)
    return rc
