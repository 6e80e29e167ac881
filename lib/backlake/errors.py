"""The backlake error hierarchy: one domain error per layer, all under ``BacklakeError``."""

from __future__ import annotations

from typing import Any

__all__ = [
    "BacklakeError",
    "ConfigError",
    "DataValidationError",
    "ChangedBarsError",
    "LakeError",
    "LakeConnectionError",
    "BacktestError",
]


class BacklakeError(Exception):
    """Base class of every error backlake raises on purpose."""


class ConfigError(BacklakeError, ValueError):
    """A configuration value is invalid. The message names the field, the value and the fix."""


class DataValidationError(BacklakeError, ValueError):
    """Input data cannot be used at all (e.g. no valid row, missing columns)."""


class ChangedBarsError(DataValidationError):
    """Re-ingested bars differ from the bars the lake holds under the same key; nothing was
    written. ``changed``: symbol -> rows that differ; ``sample``: up to 5 differences as dicts
    (symbol, timeframe, ts, column, stored, new)."""

    def __init__(self, message: str, changed: dict[str, int] | None = None, sample: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.changed = dict(changed or {})
        self.sample = list(sample or [])


class LakeError(BacklakeError):
    """The lake could not be read or written."""


class LakeConnectionError(LakeError):
    """The lake's storage cannot be reached (endpoint down, bucket missing, bad credentials)."""


class BacktestError(BacklakeError):
    """A backtest failed while running; the message says which config and why."""
