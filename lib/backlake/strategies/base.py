"""The strategy registry: each strategy is a parameter model plus a causal signal function.

A signal function takes the bars of the universe as 2-D arrays (``n_bars x n_assets``,
columns in universe order) and returns :class:`Signals`. Every value at bar N must be
computed from bars 0..N only (the engine acts on it at bar N+1's open, or at N's close).

Two kinds of output:

- **events** (``entries`` / ``exits``): a bullish / bearish event at that bar's close. The
  engine maps them through ``direction``: long_only opens a long on an entry and closes it on
  an exit; short_only opens a short on an exit and covers on an entry; long_short goes long on
  an entry and short on an exit (reversing an open position).
- **target weights** (``weights``): at bars where a row is not NaN the portfolio rebalances to
  those weights of equity (negative = short); NaN rows mean "no rebalance".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from backlake._suggest import unknown_name_message
from backlake.errors import ConfigError

__all__ = [
    "StrategyParams", "Signals", "StrategySpec", "BarData", "register", "get_strategy", "list_strategies",
]


class BarData(TypedDict):
    """What a signal function receives. Price/volume arrays are float64 ``(n_bars, n_assets)``."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    ts: np.ndarray  # datetime64[us] (UTC), shape (n_bars,)
    symbols: list[str]
    timeframe: str


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
    """A strategy's output; arrays are ``(n_bars, n_assets)``.

    ``max_hold_bars``: positions are closed once held this many bars (the strategy's own
    holding rule; the config's ``execution.max_hold_bars`` also applies, the smaller wins).
    """

    entries: np.ndarray | None = None
    exits: np.ndarray | None = None
    weights: np.ndarray | None = None
    warmup: int = 0
    max_hold_bars: int | None = None

    def __post_init__(self) -> None:
        events = self.entries is not None or self.exits is not None
        if events == (self.weights is not None):
            raise ValueError("Signals needs entries/exits or weights (exactly one kind)")
        if events and (self.entries is None or self.exits is None):
            raise ValueError("Signals needs both entries and exits")


SignalFn = Callable[[BarData, StrategyParams], Signals]


@dataclass(frozen=True)
class StrategySpec:
    name: str
    params_model: type[StrategyParams]
    signal_fn: SignalFn
    doc: str
    intraday_only: bool = False


_REGISTRY: dict[str, StrategySpec] = {}


def register(
    name: str, params_model: type[StrategyParams], *, intraday_only: bool = False
) -> Callable[[SignalFn], SignalFn]:
    """Register ``fn`` as strategy ``name`` with its parameter model."""

    def deco(fn: SignalFn) -> SignalFn:
        if name in _REGISTRY:
            raise ValueError(f"strategy {name!r} is registered twice")
        _REGISTRY[name] = StrategySpec(name, params_model, fn, (fn.__doc__ or "").strip(), intraday_only)
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
