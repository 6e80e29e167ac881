"""Deployment steps that ``prefect deploy`` runs for the docker pool (see prefect.yaml).

``build_image`` builds the project's Dockerfile into ``backlake:<code version>`` when a Docker
engine answers; ``container_env`` writes the job environment the containers get: the S3 lake and
its endpoint, only the variables that are set (an unset one is left out, never an empty string),
never a host path. Both run on the machine that deploys, so they read its environment:

- ``BACKLAKE_IMAGE``: an image already built (the compose stack builds ``backlake:latest``);
  no build then.
- ``BACKLAKE_DOCKER_LAKE_URI``: the lake the containers use (``s3://bucket/prefix``); without it
  the deploying shell's ``BACKLAKE_LAKE_URI`` when that is an S3 lake. With neither, containers
  keep the lake in the Docker volume ``backlake-lake`` (mounted at the image's ``/data/lake``):
  shared by the containers of one Docker host, not seen by anything else.
- ``BACKLAKE_DOCKER_S3_ENDPOINT_URL``: the endpoint as containers reach it (e.g.
  ``http://minio:9000`` on the compose network); without it ``BACKLAKE_S3_ENDPOINT_URL``.
- ``BACKLAKE_DOCKER_NETWORK``: a Docker network the containers join (e.g. ``backlake_default``,
  the compose stack's).
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

from backlake.runs.ids import code_version

__all__ = ["build_image", "container_env", "image_tag"]

#: the lake of containers without an S3 lake: a named volume at the image's BACKLAKE_LAKE_URI
LAKE_VOLUME, CONTAINER_LAKE = "backlake-lake", "/data/lake"

#: passed through to containers when set (besides the lake and its endpoint)
PASS_THROUGH = ("BACKLAKE_S3_ALLOW_HTTP", "BACKLAKE_S3_REGION", "AWS_REGION", "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "BACKLAKE_USER")


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def image_tag(version: str | None = None) -> str:
    """A Docker tag for the code version (``0.1.0+ab12cd3`` -> ``0.1.0-ab12cd3``): letters,
    digits, ``_``, ``.``, ``-``; at most 128 characters, not starting with ``.`` or ``-``."""
    tag = re.sub(r"[^A-Za-z0-9_.-]", "-", version or code_version()).lstrip(".-")[:128]
    return tag or "latest"


def _engine() -> Any | None:
    """A Docker client whose engine answers, or None."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
        return client
    except Exception:  # no SDK, no socket, engine down: all mean "cannot build here"
        return None


def build_image(image_name: str = "backlake", dockerfile: str = "Dockerfile", tag: str | None = None) -> dict[str, Any]:
    """The image the docker deployments run: ``BACKLAKE_IMAGE`` when set, else ``image_name`` built
    from ``dockerfile`` and tagged with the code version. Without a Docker engine the image is
    named but not built (the deployment still registers; build it where the docker worker runs)."""
    prebuilt = _env("BACKLAKE_IMAGE")
    if prebuilt:
        return {"image": prebuilt, "built": False}
    version = code_version()
    tag = tag or image_tag(version)
    image = f"{image_name}:{tag}"
    if _engine() is None:
        _say(f"no Docker engine answers here: the docker deployments use image {image}, not built now. "
             f"Build it where the docker worker runs: docker build -t {image} "
             f"--build-arg BACKLAKE_CODE_VERSION={version} .")
        return {"image": image, "built": False}
    from prefect_docker.deployments.steps import build_docker_image

    out = build_docker_image(image_name=image_name, tag=tag, dockerfile=dockerfile,
                             buildargs={"BACKLAKE_CODE_VERSION": version})
    return {"image": out["image"], "built": True}


def container_env() -> dict[str, Any]:
    """Job variables for containers: ``env`` (only variables that are set), ``networks`` and
    ``volumes`` (the ``backlake-lake`` volume when no S3 lake is configured for them)."""
    lake = _env("BACKLAKE_DOCKER_LAKE_URI")
    if lake is None and (_env("BACKLAKE_LAKE_URI") or "").startswith(("s3://", "s3a://")):
        lake = _env("BACKLAKE_LAKE_URI")
    env: dict[str, str] = {}
    if lake is not None:
        if not lake.startswith(("s3://", "s3a://")):
            raise ValueError(f"BACKLAKE_DOCKER_LAKE_URI={lake!r} is not an S3 lake: containers need "
                             f"s3://bucket/prefix (a host path does not exist inside them)")
        env["BACKLAKE_LAKE_URI"] = lake
    else:
        _say(f"no S3 lake for containers (BACKLAKE_DOCKER_LAKE_URI, or an s3:// BACKLAKE_LAKE_URI): the docker "
             f"deployments keep their lake in the Docker volume {LAKE_VOLUME} ({CONTAINER_LAKE} inside), which "
             f"only containers on that Docker host see; set one and deploy again to share the S3 lake")
    endpoint = _env("BACKLAKE_DOCKER_S3_ENDPOINT_URL") or _env("BACKLAKE_S3_ENDPOINT_URL")
    if endpoint is not None:
        env["BACKLAKE_S3_ENDPOINT_URL"] = endpoint
    for name in PASS_THROUGH:
        value = _env(name)
        if value is not None:
            env[name] = value
    network = _env("BACKLAKE_DOCKER_NETWORK")
    return {"env": env, "networks": [network] if network else [],
            "volumes": [] if lake is not None else [f"{LAKE_VOLUME}:{CONTAINER_LAKE}"]}
