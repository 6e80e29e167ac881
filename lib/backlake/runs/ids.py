"""Run identity: one scheme for every kind of run.

A run's id is the hash of its kind, its request (the config, plus the grid / study / windows /
seeds of a research job) and the fingerprint of the data it read (:func:`backlake.runs.data.
fingerprint`): the same request on the same rows is the same run, whatever else the lake
holds. The Delta versions a run read are recorded beside it (for replay), not hashed.

Example::

    run_id("backtest", {"config": cfg.model_dump(mode="json")}, pinned.fingerprint)
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any

from backlake.config import canonical_hash

__all__ = ["RUN_KINDS", "run_id", "code_version"]

#: Every kind of run the lake records.
RUN_KINDS = ("backtest", "sweep", "optimize", "walk_forward", "monte_carlo", "regression", "alpha")


def run_id(kind: str, request: dict[str, Any], fingerprint: str) -> str:
    """The id of a ``kind`` run of ``request`` on the data with ``fingerprint`` (16 hex)."""
    if kind not in RUN_KINDS:
        raise ValueError(f"kind={kind!r} is not a run kind: use one of {', '.join(RUN_KINDS)}")
    return canonical_hash({"kind": kind, "request": request, "data": fingerprint})


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``<package version>+<git sha>`` (``BACKLAKE_CODE_VERSION`` overrides, e.g. in images)."""
    from backlake import __version__

    if os.environ.get("BACKLAKE_CODE_VERSION"):
        return os.environ["BACKLAKE_CODE_VERSION"]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__
