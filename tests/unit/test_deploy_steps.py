"""The docker pool's deployment steps (flows/deploy_steps.py) and settings that read an empty
variable as unset: what containers are given is only what is set, never a host path."""

from __future__ import annotations

import pytest

from backlake.errors import ConfigError
from backlake.runs.ids import code_version
from backlake.settings import get_settings
from flows import deploy_steps
from tests.conftest import free_port

VARS = ("BACKLAKE_IMAGE", "BACKLAKE_DOCKER_LAKE_URI", "BACKLAKE_LAKE_URI", "BACKLAKE_DOCKER_S3_ENDPOINT_URL",
        "BACKLAKE_S3_ENDPOINT_URL", "BACKLAKE_DOCKER_NETWORK", *deploy_steps.PASS_THROUGH)


@pytest.fixture(autouse=True)
def bare_env(monkeypatch):
    for name in VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{free_port()}")  # no engine answers there
    code_version.cache_clear()
    yield
    code_version.cache_clear()


@pytest.mark.parametrize(("version", "tag"), [
    ("0.1.0+ab12cd3", "0.1.0-ab12cd3"),
    ("0.1.0+ab12cd3.dirty", "0.1.0-ab12cd3.dirty"),
    ("-x/y:z", "x-y-z"),
    ("---", "latest"),
    ("a" * 200, "a" * 128),
])
def test_image_tag_is_a_valid_docker_tag(version, tag):
    assert deploy_steps.image_tag(version) == tag


def test_image_tag_defaults_to_the_code_version(monkeypatch):
    monkeypatch.setenv("BACKLAKE_CODE_VERSION", "1.2.3+deadbee")
    assert deploy_steps.image_tag() == "1.2.3-deadbee"


def test_build_image_without_an_engine_names_the_image_and_says_how_to_build(monkeypatch, capsys):
    monkeypatch.setenv("BACKLAKE_CODE_VERSION", "1.2.3+deadbee")
    assert deploy_steps.build_image() == {"image": "backlake:1.2.3-deadbee", "built": False}
    assert ("docker build -t backlake:1.2.3-deadbee --build-arg BACKLAKE_CODE_VERSION=1.2.3+deadbee ."
            in capsys.readouterr().err)


def test_build_image_uses_a_prebuilt_image(monkeypatch):
    monkeypatch.setenv("BACKLAKE_IMAGE", "registry.example/backlake:7")
    assert deploy_steps.build_image() == {"image": "registry.example/backlake:7", "built": False}


def test_container_env_leaves_out_unset_and_empty_variables(monkeypatch, capsys):
    monkeypatch.setenv("BACKLAKE_S3_ALLOW_HTTP", "")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "   ")
    monkeypatch.setenv("BACKLAKE_LAKE_URI", "/tmp/host/lake")  # a host path never reaches containers
    out = deploy_steps.container_env()
    assert out == {"env": {}, "networks": [], "volumes": ["backlake-lake:/data/lake"]}
    assert "no S3 lake for containers" in capsys.readouterr().err


def test_container_env_gives_the_s3_lake_and_the_endpoint_containers_reach(monkeypatch):
    monkeypatch.setenv("BACKLAKE_LAKE_URI", "s3://research/lake")
    monkeypatch.setenv("BACKLAKE_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("BACKLAKE_DOCKER_S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("BACKLAKE_S3_ALLOW_HTTP", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("BACKLAKE_DOCKER_NETWORK", "backlake_default")
    out = deploy_steps.container_env()
    assert out == {"env": {"BACKLAKE_LAKE_URI": "s3://research/lake", "BACKLAKE_S3_ENDPOINT_URL": "http://minio:9000",
                           "BACKLAKE_S3_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "k"},
                   "networks": ["backlake_default"], "volumes": []}


def test_container_env_prefers_the_docker_lake_and_refuses_a_host_path(monkeypatch):
    monkeypatch.setenv("BACKLAKE_LAKE_URI", "s3://host-lake/x")
    monkeypatch.setenv("BACKLAKE_DOCKER_LAKE_URI", "s3://container-lake/y")
    assert deploy_steps.container_env()["env"]["BACKLAKE_LAKE_URI"] == "s3://container-lake/y"
    monkeypatch.setenv("BACKLAKE_DOCKER_LAKE_URI", "/srv/lake")
    with pytest.raises(ValueError, match="BACKLAKE_DOCKER_LAKE_URI='/srv/lake' is not an S3 lake"):
        deploy_steps.container_env()


def test_settings_read_an_empty_variable_as_unset(monkeypatch):
    monkeypatch.setenv("BACKLAKE_S3_ALLOW_HTTP", "")
    monkeypatch.setenv("BACKLAKE_S3_ENDPOINT_URL", "")
    monkeypatch.setenv("BACKLAKE_LAKE_URI", "")
    s = get_settings()
    assert s.s3_allow_http is False and s.s3_endpoint_url is None and s.lake_uri == "./lake"
    monkeypatch.setenv("BACKLAKE_S3_ALLOW_HTTP", "maybe")
    with pytest.raises(ConfigError, match=r"BACKLAKE_S3_ALLOW_HTTP='maybe': .*valid boolean.*\(use true or false\)"):
        get_settings()
