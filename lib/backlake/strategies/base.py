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
from typing import ClassVar, TypeAlias, TypedDict, TypeVar, cast

import numpy as np

from backlake._model import StrictModel
from backlake._suggest import unknown_name_message
from backlake.errors import ConfigError

__all__ = [
    "StrategyParams", "Signals", "StrategySpec", "BarData", "StrategyFn", "register", "get_strategy", "list_strategies",
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


class StrategyParams(StrictModel):
    """Base of every strategy's parameter model: frozen, unknown keys rejected with a hint."""

    _what: ClassVar[str] = "parameter"


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


P = TypeVar("P", bound=StrategyParams)

SignalFn: TypeAlias = Callable[[BarData, StrategyParams], Signals]
"""A signal function as the registry holds it: called with an instance of its spec's params_model."""

StrategyFn: TypeAlias = Callable[[BarData, P], Signals]
"""A signal function for parameter model ``P``: ``StrategyFn[SmaCrossoverParams]``."""


@dataclass(frozen=True)
class StrategySpec:
    name: str
    params_model: type[StrategyParams]
    signal_fn: SignalFn
    doc: str
    intraday_only: bool = False
    rule: str = ""  # the trading rule in one line (``backlake strategies``, the dashboard)


_REGISTRY: dict[str, StrategySpec] = {}


def register(
    name: str, params_model: type[P], *, rule: str = "", intraday_only: bool = False
) -> Callable[[StrategyFn[P]], StrategyFn[P]]:
    """Register ``fn`` as strategy ``name`` with its parameter model and its trading ``rule``
    in one line (the docstring holds the exact definition).

    Typed: the decorated function must accept ``params_model`` (or a base of it) as its
    parameters, and is returned unchanged, with its own signature."""

    def deco(fn: StrategyFn[P]) -> StrategyFn[P]:
        if name in _REGISTRY:
            raise ValueError(f"strategy {name!r} is registered twice")
        # The registry erases P: a spec's signal_fn is only ever called with params validated
        # by the same spec's params_model (spec.params_model.model_validate(...)), i.e. a P.
        signal_fn = cast(SignalFn, fn)
        _REGISTRY[name] = StrategySpec(name, params_model, signal_fn, (fn.__doc__ or "").strip(), intraday_only,
                                       rule)
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
