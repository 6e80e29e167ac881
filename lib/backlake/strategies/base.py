"""The strategy registry: each strategy is a parameter model plus a causal signal function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from backlake._suggest import unknown_name_message
from backlake.errors import ConfigError

__all__ = ["StrategyParams", "Signals", "StrategySpec", "register", "get_strategy", "list_strategies"]


class StrategyParams(BaseModel):
    """Base of every strategy's parameter model: frozen, unknown keys rejected with a hint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown(cls, data: object) -> object:
        if isinstance(data, dict):
            for key in data:
                if key not in cls.model_fields:
                    raise ValueError(unknown_name_message("parameter", str(key), cls.model_fields))
        return data


@dataclass(frozen=True)
class Signals:
    """Per-bar boolean arrays computed from data up to and including that bar's close."""

    entries: np.ndarray  # open (or keep) a long position after this bar's close
    exits: np.ndarray  # close a long position after this bar's close
    warmup: int  # bars needed before the first signal can fire


SignalFn = Callable[[dict[str, np.ndarray], StrategyParams], Signals]


@dataclass(frozen=True)
class StrategySpec:
    name: str
    params_model: type[StrategyParams]
    signal_fn: SignalFn
    doc: str


_REGISTRY: dict[str, StrategySpec] = {}


def register(name: str, params_model: type[StrategyParams]) -> Callable[[SignalFn], SignalFn]:
    """Register ``fn`` as strategy ``name`` with its parameter model."""

    def deco(fn: SignalFn) -> SignalFn:
        if name in _REGISTRY:
            raise ValueError(f"strategy {name!r} is registered twice")
        _REGISTRY[name] = StrategySpec(name, params_model, fn, (fn.__doc__ or "").strip())
        return fn

    return deco


def get_strategy(name: str) -> StrategySpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(unknown_name_message("strategy", name, _REGISTRY)) from None


def list_strategies() -> list[str]:
    """Names of the registered strategies, sorted."""
    return sorted(_REGISTRY)
