"""Registered strategies. Importing this package registers every built-in strategy."""

from backlake.strategies import sma_crossover as _sma_crossover  # noqa: F401  (registers)
from backlake.strategies.base import (
    Signals,
    StrategyParams,
    StrategySpec,
    get_strategy,
    list_strategies,
    register,
)

__all__ = ["Signals", "StrategyParams", "StrategySpec", "get_strategy", "list_strategies", "register"]
