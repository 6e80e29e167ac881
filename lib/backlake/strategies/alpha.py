"""The ``alpha`` strategy: a registered alpha's cross-sectional scores turned into target weights.

An alpha backtest is an ordinary :class:`~backlake.config.BacktestConfig` with
``"strategy": "alpha"``: the engine executes its weights like any weights strategy (next-bar
fills, the same cost model, the per-asset rollup), and the regression flow replays it unchanged.

Example config::

    {"strategy": "alpha", "universe": "sp500_stocks", "direction": "long_short",
     "params": {"alpha": "momentum_12_1", "alpha_params": {}, "method": "zscore", "rebalance": "monthly"}}

The parameters are the alpha (a name of :func:`backlake.alpha.registry.list_alphas`), its own
parameters (validated by the alpha's model, defaults filled in) and the weight options of
:class:`backlake.alpha.weights.WeightOptions` (method, n, quantile, long_short, gross, net,
max_weight, rebalance).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator

from backlake.strategies.base import BarData, Signals, StrategyParams, register

if TYPE_CHECKING:  # backlake.alpha is imported when first used (it may import the config layer)
    from backlake.alpha.panel import Panel
    from backlake.alpha.weights import WeightOptions

__all__ = ["AlphaStrategyParams", "alpha_strategy", "panel_of", "alpha_scores", "alpha_weights",
           "WEIGHT_FIELDS", "can_short", "config_problems"]

#: The parameters of the strategy that are :class:`~backlake.alpha.weights.WeightOptions` fields.
WEIGHT_FIELDS = ("method", "n", "quantile", "long_short", "gross", "net", "max_weight", "rebalance")


class AlphaStrategyParams(StrategyParams):
    """Parameters of ``alpha``: which alpha, its parameters, and how its scores become weights."""

    alpha: str = Field(default="momentum_12_1", description="Registered alpha name (backlake alpha list).")
    alpha_params: dict[str, Any] = Field(
        default={}, description="The alpha's own parameters (its defaults filled in).")
    method: Literal["zscore", "rank", "top_n", "bottom_n"] = Field(
        default="zscore",
        description="zscore: demeaned scores scaled to the gross exposure; rank: long-short by rank; "
                    "top_n / bottom_n: the n (or quantile) best / worst names, equal weight.")
    n: int | None = Field(default=None, ge=1, description="Names held by top_n / bottom_n.")
    quantile: float | None = Field(
        default=None, gt=0, le=1, description="Fraction of the scored names held by top_n / bottom_n, e.g. 0.2.")
    long_short: bool = Field(
        default=False, description="top_n / bottom_n: also short the other end (long-short).")
    gross: float = Field(default=1.0, gt=0, le=10, description="Gross exposure, a multiple of equity.")
    net: float | None = Field(default=None, ge=-10, le=10, description="Net exposure target, a multiple of equity.")
    max_weight: float | None = Field(default=None, gt=0, le=10, description="Largest absolute weight of one name.")
    rebalance: Literal["daily", "weekly", "monthly"] = Field(default="daily", description="Rebalance cadence.")

    @field_validator("alpha")
    @classmethod
    def _known_alpha(cls, v: str) -> str:
        from backlake.alpha.registry import get_alpha

        get_alpha(v)  # ConfigError naming the closest alpha
        return v

    @field_validator("alpha_params", mode="before")
    @classmethod
    def _alpha_params(cls, v: Any, info: ValidationInfo) -> dict[str, Any]:
        from backlake.alpha.registry import validate_alpha_params

        name = info.data.get("alpha")
        if v is None:
            v = {}
        if not isinstance(v, dict):
            raise ValueError(f"alpha_params must be an object of parameter -> value, got {v!r}")
        if name is None:  # the alpha itself failed validation; reported there
            return v
        return validate_alpha_params(name, v).model_dump(mode="json")

    @model_validator(mode="after")
    def _weights(self) -> AlphaStrategyParams:
        self.weight_options()  # WeightOptions' own checks (n or quantile for top_n, ...)
        return self

    def weight_options(self) -> WeightOptions:
        """The weight options as :class:`~backlake.alpha.weights.WeightOptions` (ConfigError if invalid)."""
        from backlake.alpha.weights import WeightOptions

        return WeightOptions(**{f: getattr(self, f) for f in WEIGHT_FIELDS})


def can_short(params: AlphaStrategyParams) -> bool:
    """Whether the weights may be negative (then the config's direction must be long_short)."""
    return params.method in ("zscore", "rank") or params.long_short or (params.net is not None and params.net < 0)


def config_problems(timeframe: str, direction: str, params: AlphaStrategyParams) -> list[str]:
    """What an ``alpha`` backtest config cannot do (empty: fine), checked before it runs: an
    intraday timeframe (an alpha scores each symbol once per date) or a direction that would
    drop the short side of the weights."""
    from backlake.calendars import bar_duration_seconds

    out: list[str] = []
    if bar_duration_seconds(timeframe) < 86_400:
        out.append(f"timeframe={timeframe!r}: an alpha scores each symbol once per date; use daily bars "
                   "(timeframe '1d')")
    if direction != "long_short" and can_short(params):
        out.append(f"direction={direction!r}: {params.method} weights{' (long_short)' if params.long_short else ''} "
                   "have a short side the engine would drop; set direction to 'long_short'")
    return out


def panel_of(data: BarData) -> Panel:
    """The engine's aligned bars as an alpha :class:`~backlake.alpha.panel.Panel` (dates as days)."""
    from backlake.alpha.panel import Panel

    def f64(a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=np.float64)

    return Panel(dates=np.asarray(data["ts"]).astype("datetime64[D]"), symbols=list(data["symbols"]),
                 close=f64(data["close"]), open=f64(data["open"]), high=f64(data["high"]), low=f64(data["low"]),
                 volume=f64(data["volume"]))


def alpha_scores(panel: Panel, params: AlphaStrategyParams) -> np.ndarray:
    """The alpha's scores ``(n_bars, n_assets)`` on ``panel`` (NaN: not scored)."""
    from backlake.alpha.registry import get_alpha, validate_alpha_params

    spec = get_alpha(params.alpha)
    out = spec.fn(panel, validate_alpha_params(params.alpha, params.alpha_params))
    return np.asarray(out.scores, dtype=np.float64)


def alpha_weights(panel: Panel, scores: np.ndarray, params: AlphaStrategyParams) -> np.ndarray:
    """Target weights of ``scores`` (NaN rows: no rebalance that bar; 0: not held)."""
    from backlake.alpha.weights import compute_weights

    return np.asarray(compute_weights(scores, panel.dates, params.weight_options()), dtype=np.float64)


@register(
    "alpha", AlphaStrategyParams,
    rule="rebalance to weights of a registered alpha's cross-sectional scores (zscore, rank, top_n, bottom_n)",
)
def alpha_strategy(data: BarData, params: AlphaStrategyParams) -> Signals:
    """Target weights. The alpha ``alpha`` (with ``alpha_params``) scores every asset at each
    bar's close from bars up to and including that bar; on the rebalance bars of ``rebalance``
    the scores become weights by ``method`` (see :func:`backlake.alpha.weights.compute_weights`),
    every other row is NaN (no rebalance). The engine fills them at the next bar's open."""
    from backlake.alpha.registry import get_alpha, validate_alpha_params

    panel = panel_of(data)
    scores = alpha_scores(panel, params)
    weights = alpha_weights(panel, scores, params)
    lookback = get_alpha(params.alpha).lookback(validate_alpha_params(params.alpha, params.alpha_params))
    return Signals(weights=weights, warmup=int(lookback))
