"""Registered strategies. Importing this package registers every built-in strategy."""

import json
from typing import Any

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

__all__ = ["Signals", "StrategyParams", "StrategySpec", "get_strategy", "list_strategies", "register",
           "display_name"]


def display_name(strategy: str | None, params: Any = None) -> str:
    """How titles and legends name a run's strategy: its registry name, except an ``alpha``
    backtest, named by its alpha (``"alpha momentum_12_1"``). ``params``: the run's params (a
    dict or the ``runs.params`` JSON text)."""
    name = str(strategy or "")
    if name != "alpha":
        return name
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except ValueError:
            params = None
    alpha = params.get("alpha") if isinstance(params, dict) else None
    return f"alpha {alpha}" if isinstance(alpha, str) and alpha else name
