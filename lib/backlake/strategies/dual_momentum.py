"""Dual momentum rotation: relative momentum picks the assets, absolute momentum can go to cash."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from backlake.strategies.base import BarData, Signals, StrategyParams, register
from backlake.strategies.indicators import pct_change


class DualMomentumParams(StrategyParams):
    """Parameters of ``dual_momentum``."""

    lookback: int = Field(default=126, ge=1, description="Trailing return window, in bars.")
    rebalance_every: int = Field(
        default=21, ge=1, description="Rebalance on bars whose index is a multiple of this, in bars.",
    )
    top_k: int = Field(default=1, ge=1, description="Number of assets held, each at weight 1/top_k.")
    min_return: float = Field(
        default=0.0, gt=-1,
        description="Absolute momentum floor: an asset is held only if its trailing return over "
        "lookback bars is above this, a fraction (0.0 = 0%).",
    )


@register(
    "dual_momentum", DualMomentumParams,
    rule=("every rebalance_every bars, equal weight in the top_k assets by lookback return above min_return,"
          " the rest in cash"),
)
def dual_momentum(data: BarData, params: DualMomentumParams) -> Signals:
    """Target weights. On bar N with N % ``rebalance_every`` == 0 and N >= ``lookback``, rank
    the assets by trailing return close[N] / close[N - lookback] - 1 (ties by column order,
    NaN returns are never held); the ``top_k`` best whose return is > ``min_return`` get
    weight 1/``top_k`` each, every other asset 0 (the unfilled part stays in cash, all cash
    when no return beats ``min_return``). Every other row is NaN (no rebalance)."""
    close = np.asarray(data["close"], dtype=np.float64)
    n, m = close.shape
    weights = np.full((n, m), np.nan)
    rows = np.arange(params.lookback, n)
    rows = rows[rows % params.rebalance_every == 0]
    if rows.size:
        ret = pct_change(close, params.lookback)[rows]
        with np.errstate(invalid="ignore"):
            eligible = ret > params.min_return
        order = np.argsort(-np.where(eligible, ret, -np.inf), axis=1, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.broadcast_to(np.arange(m), order.shape), axis=1)
        weights[rows] = (eligible & (rank < params.top_k)) / params.top_k
    return Signals(weights=weights, warmup=params.lookback)
