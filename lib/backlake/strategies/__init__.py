"""Registered strategies. Importing this package registers every built-in strategy."""

from backlake.strategies import (  # noqa: F401  (each import registers its strategy)
    alpha as _alpha,
    bollinger_bands as _bollinger_bands,
    dual_momentum as _dual_momentum,
    macd_crossover as _macd_crossover,
    momentum_breakout as _momentum_breakout,
    opening_range_breakout as _opening_range_breakout,
    rsi_mean_reversion as _rsi_mean_reversion,
    rsi_vol_filter as _rsi_vol_filter,
    sma_crossover as _sma_crossover,
)
from backlake.strategies.base import (
    Signals,
    StrategyParams,
    StrategySpec,
    get_strategy,
    list_strategies,
    register,
)

__all__ = ["Signals", "StrategyParams", "StrategySpec", "get_strategy", "list_strategies", "register"]
