"""The one strict base model of every config object (backtest configs, their sections, and
strategy parameters): frozen, unknown keys rejected with a message that names the key and the
closest valid one, and numbers taken only as numbers: no ``true`` for 1, no ``"10"`` for 10,
no NaN or infinity."""

from __future__ import annotations

import math
import types
from typing import Any, ClassVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, model_validator

from backlake._suggest import unknown_name_message

__all__ = ["StrictModel", "shorten"]

#: Longest echo of a user's value in an error message.
MAX_ECHO = 60


def shorten(value: object, limit: int = MAX_ECHO) -> str:
    """``repr(value)``, cut to ``limit`` characters with its full length said."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _scalar_kind(annotation: object) -> type | None:
    """``int`` or ``float`` when a field holds that number (optionally None), else None."""
    if annotation in (int, float):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        kinds = [a for a in get_args(annotation) if a is not type(None)]
        if len(kinds) == 1 and kinds[0] in (int, float):
            return kinds[0]  # type: ignore[no-any-return]
    return None


def _number_problem(kind: type, value: Any) -> str | None:
    """Why ``value`` is not an acceptable ``kind``, or None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return f"must be a number, not {str(value).lower()}"
    if isinstance(value, str):
        return f"must be a number, not the string {shorten(value)}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, not {value}"
    if kind is int and isinstance(value, float) and not value.is_integer():
        return f"must be a whole number, not {value}"
    return None


class StrictModel(BaseModel):
    """Frozen; an unknown key is an error naming it and the closest valid one. ``_what``
    is how the message calls a key (``key``, ``parameter``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    _what: ClassVar[str] = "key"

    @model_validator(mode="before")
    @classmethod
    def _check_keys_and_numbers(cls, data: object) -> object:
        if isinstance(data, dict):
            for key, value in data.items():
                field = cls.model_fields.get(key)
                if field is None:
                    name = str(key)
                    if len(name) > MAX_ECHO:
                        name = f"{name[:MAX_ECHO]}... ({len(name)} characters)"
                    raise ValueError(unknown_name_message(cls._what, name, cls.model_fields))
                kind = _scalar_kind(field.annotation)
                problem = _number_problem(kind, value) if kind is not None else None
                if problem:
                    raise ValueError(f"{key}: {problem}")
        return data
