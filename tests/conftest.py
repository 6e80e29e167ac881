"""Shared fixtures: a real moto S3 server over HTTP (own process), one Prefect test harness
per session, and lake settings for a local directory or an S3 bucket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from backlake.settings import Settings

REPO = Path(__file__).resolve().parents[1]

# The suite never talks to real AWS, and Prefect must not phone home.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


def wait_until(pred, timeout: float, what: str, interval: float = 0.1):
    """``pred()``'s first truthy value, polled every ``interval`` s; TimeoutError naming
    ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := pred():
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout}s")


#: Debian's Chromium, started headless for the browser tests (never a downloaded browser)
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium for a test module (skipped where Chromium is absent)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` s."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto S3 server on 127.0.0.1, in its own process (delta-rs holds the GIL in places)."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def make_bucket(endpoint: str, name: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=name)


@pytest.fixture
def s3_settings(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for a fresh bucket on the moto server; the env says the same (flows read it)."""
    bucket = f"lake-{uuid.uuid4().hex[:10]}"
    make_bucket(moto_endpoint, bucket)
    env = {
        "BACKLAKE_LAKE_URI": f"s3://{bucket}/research",
        "BACKLAKE_S3_ENDPOINT_URL": moto_endpoint,
        "BACKLAKE_S3_ALLOW_HTTP": "true",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return Settings()


@pytest.fixture
def local_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for a fresh local-directory lake; the env says the same (flows read it)."""
    monkeypatch.setenv("BACKLAKE_LAKE_URI", str(tmp_path / "lake"))
    for k in ("BACKLAKE_S3_ENDPOINT_URL", "BACKLAKE_S3_ALLOW_HTTP"):
        monkeypatch.delenv(k, raising=False)
    return Settings()


@pytest.fixture(params=["local", "s3"])
def lake_settings(request: pytest.FixtureRequest) -> Settings:
    """The same test on a local directory and on the moto S3 server."""
    if request.param == "s3":
        request.applymarker(pytest.mark.s3)
        return request.getfixturevalue("s3_settings")
    return request.getfixturevalue("local_settings")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server for the whole session (it takes ~10 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
