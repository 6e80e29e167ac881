"""Runtime settings, read from ``BACKLAKE_*`` environment variables (and the usual ``AWS_*``).

Example::

    BACKLAKE_LAKE_URI=s3://research/lake \
    BACKLAKE_S3_ENDPOINT_URL=http://127.0.0.1:9000 BACKLAKE_S3_ALLOW_HTTP=true \
    AWS_ACCESS_KEY_ID=minio AWS_SECRET_ACCESS_KEY=minio123 backlake lake status
"""

from __future__ import annotations

import getpass
import os
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from backlake.errors import ConfigError

__all__ = ["Settings", "get_settings", "HealthThresholds"]


def _default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (some containers)
        return "unknown"


class HealthThresholds(BaseModel):
    """How old (seconds since the last successful update) a source may be before it is STALE.

    Per category (``price``/``volume`` 15 min, ``signal`` 10 min, ``fundamental`` one day) and
    per table or source in ``overrides`` (exact name, or a glob like ``bars/*/SP500``), set as
    JSON in ``BACKLAKE_HEALTH_THRESHOLDS``, e.g. for a nightly ingest:
    ``{"price": 93600, "overrides": {"live_pnl": 172800}}``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    price: int = 900
    volume: int = 900
    signal: int = 600
    fundamental: int = 86400
    overrides: dict[str, int] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            from backlake._suggest import unknown_name_message

            for key in data:
                if key not in cls.model_fields:
                    raise ValueError("BACKLAKE_HEALTH_THRESHOLDS: "
                                     + unknown_name_message("key", str(key), cls.model_fields))
        return data

    @field_validator("price", "volume", "signal", "fundamental")
    @classmethod
    def _positive(cls, v: int, info: ValidationInfo) -> int:
        if v <= 0:
            raise ValueError(f"BACKLAKE_HEALTH_THRESHOLDS: {info.field_name}={v} must be a positive number of "
                             "seconds, e.g. 900 (15 minutes)")
        return v

    @field_validator("overrides")
    @classmethod
    def _positive_overrides(cls, v: dict[str, int]) -> dict[str, int]:
        for name, seconds in v.items():
            if seconds <= 0:
                raise ValueError(f"BACKLAKE_HEALTH_THRESHOLDS: overrides[{name!r}]={seconds} must be a positive "
                                 "number of seconds, e.g. 86400 (one day)")
        return v


class Settings(BaseSettings):
    """Where the lake lives and who writes to it."""

    # an empty variable (``BACKLAKE_S3_ALLOW_HTTP=`` from a template whose value was unset) means unset
    model_config = SettingsConfigDict(env_prefix="BACKLAKE_", frozen=True, extra="ignore", env_ignore_empty=True)

    lake_uri: str = Field(
        default="./lake",
        description="Root of the lake: a local directory (default ./lake) or s3://bucket/prefix.",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint for MinIO or a moto server, e.g. http://127.0.0.1:9000."
    )
    s3_allow_http: bool = Field(default=False, description="Allow plain-HTTP S3 endpoints.")
    s3_region: str = Field(
        default_factory=lambda: os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or "us-east-1"
    )
    user: str = Field(default_factory=_default_user, description="Recorded as runs.created_by.")
    users_file: Path = Field(
        default=Path("~/.backlake/users.json"), validate_default=True,
        description="The dashboard's users file (names, roles, scrypt password hashes; mode 0600).",
    )
    alert_webhook_url: str | None = Field(
        default=None,
        description="URL the live monitor POSTs each new YELLOW / RED alert to, as JSON (none: no posts).",
    )

    health_thresholds: HealthThresholds = Field(
        default_factory=HealthThresholds,
        description="Staleness thresholds of the health monitor (JSON, see HealthThresholds).",
    )

    @field_validator("lake_uri")
    @classmethod
    def _check_uri(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("BACKLAKE_LAKE_URI is empty: set a local directory or s3://bucket/prefix")
        scheme = urlparse(v).scheme
        if scheme in ("s3", "s3a"):
            bucket = urlparse(v).netloc
            if not bucket:
                raise ValueError(
                    f"BACKLAKE_LAKE_URI={v!r} has no bucket: use s3://bucket/prefix"
                )
            return "s3://" + v.split("://", 1)[1].rstrip("/")
        if scheme in ("", "file"):
            return v
        if len(scheme) == 1:  # a Windows drive letter
            return v
        raise ValueError(
            f"BACKLAKE_LAKE_URI={v!r} has scheme {scheme!r}: use a local directory or s3://bucket/prefix"
        )

    @field_validator("users_file")
    @classmethod
    def _expand_users_file(cls, v: Path) -> Path:
        return v.expanduser()

    @property
    def is_s3(self) -> bool:
        return self.lake_uri.startswith("s3://")

    @cached_property
    def root(self) -> str:
        """The lake root as delta-rs and DuckDB take it: an absolute path or s3:// URI."""
        if self.is_s3:
            return self.lake_uri
        path = self.lake_uri[len("file://"):] if self.lake_uri.startswith("file://") else self.lake_uri
        return str(Path(path).expanduser().resolve())

    @property
    def bucket(self) -> str | None:
        return urlparse(self.lake_uri).netloc if self.is_s3 else None

    def table_uri(self, table: str) -> str:
        return f"{self.root}/{table}"

    def storage_options(self) -> dict[str, str]:
        """Options for delta-rs' object store (empty for a local directory)."""
        if not self.is_s3:
            return {}
        opts: dict[str, str] = {"AWS_REGION": self.s3_region}
        if self.s3_endpoint_url:
            opts["AWS_ENDPOINT_URL"] = self.s3_endpoint_url
            opts["AWS_S3_ADDRESSING_STYLE"] = "path"
            opts["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
        if self.s3_allow_http or (self.s3_endpoint_url or "").startswith("http://"):
            opts["AWS_ALLOW_HTTP"] = "true"
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            if os.environ.get(key):
                opts[key] = os.environ[key]
        return opts


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, with keyword overrides (e.g. ``lake_uri=...``)."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:  # one clear line per bad setting
        raise ConfigError("; ".join(_explain(err) for err in e.errors())) from None
    except SettingsError as e:  # a JSON setting that is not JSON
        raise ConfigError(f"{e}: BACKLAKE_HEALTH_THRESHOLDS takes JSON, e.g. "
                          '\'{"price": 93600, "overrides": {"live_pnl": 172800}}\'') from None


def _explain(err: Any) -> str:
    """One line naming the variable, its value and what it takes."""
    msg = str(err["msg"]).removeprefix("Value error, ")
    if "BACKLAKE_" in msg or not err.get("loc"):
        return msg
    name = "BACKLAKE_" + str(err["loc"][0]).upper()
    hint = " (use true or false)" if err.get("type") == "bool_parsing" else ""
    return f"{name}={err.get('input')!r}: {msg}{hint}"
