"""``BacktestConfig``: the one object a user edits as JSON, passes to a flow, and finds in the lake.

Example::

    cfg = BacktestConfig.model_validate({
        "strategy": "sma_crossover", "params": {"fast": 10, "slow": 30},
        "universe": ["GOOG"], "start": "2004-08-19", "end": "2013-03-01",
        "timeframe": "1d", "initial_cash": 10000,
        "costs": {"commission_bps": 10},
    })
    cfg.id  # '5c0e…' stable hash of the canonical JSON
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any, Literal

from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from backlake._model import StrictModel, shorten
from backlake._suggest import unknown_name_message
from backlake.errors import ConfigError
from backlake.strategies import get_strategy
from backlake.strategies.base import StrategyParams

__all__ = [
    "BacktestConfig", "Sizing", "Costs", "Execution", "MarketImpact", "UsFees", "IndiaFees",
    "TIMEFRAMES", "INTRADAY_TIMEFRAMES", "UNIVERSES", "canonical_hash", "config_json_schema",
]

TIMEFRAMES: tuple[str, ...] = ("1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w", "1mo")
#: The timeframes shorter than a day (strategies marked ``intraday_only`` need one of these).
INTRADAY_TIMEFRAMES: tuple[str, ...] = TIMEFRAMES[:6]

#: Named universes: a config may say ``"universe": "sp500_stocks"`` instead of a list.
UNIVERSES: dict[str, tuple[str, ...]] = {
    "sp500_stocks": (
        "AAPL", "AMD", "BAC", "BBY", "CVX", "GE", "HD", "JNJ", "JPM", "KO",
        "LLY", "MRK", "MSFT", "PEP", "PFE", "PG", "RRC", "UNH", "WMT", "XOM",
    ),
    "indices": ("SP500", "NASDAQ"),
}


def canonical_hash(obj: Any, length: int = 16) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys, no spaces), first ``length`` hex."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


class _Section(StrictModel):
    """A frozen config section that names unknown keys with the closest valid one."""


class Sizing(_Section):
    """How many units an entry buys (or sells short)."""

    method: Literal["fixed_fraction", "fixed_quantity", "equal_weight", "volatility_target"] = Field(
        default="fixed_fraction",
        description=(
            "fixed_fraction: `fraction` of equity per entry; fixed_quantity: `quantity` units; "
            "equal_weight: `fraction` of equity split equally across the universe; "
            "volatility_target: size so each position's annualised volatility is "
            "`target_volatility` / n_assets of equity, capped at `max_leverage`."
        ),
    )
    fraction: float = Field(default=1.0, gt=0, le=10, description="Fraction of equity (1.0 = all of it).")
    quantity: float | None = Field(default=None, gt=0, description="Units per entry (fixed_quantity).")
    target_volatility: float = Field(default=0.15, gt=0, le=5, description="Annualised volatility target, e.g. 0.15.")
    vol_lookback: int = Field(default=20, ge=2, le=1000, description="Bars of returns for the volatility estimate.")
    max_leverage: float = Field(default=1.0, gt=0, le=10,
                                description="Cap on position value / equity (volatility_target).")
    whole_units: bool = Field(default=True, description="Round quantities down to whole units.")

    @model_validator(mode="after")
    def _quantity_for_fixed(self) -> Sizing:
        if self.method == "fixed_quantity" and self.quantity is None:
            raise ValueError("sizing.method='fixed_quantity' needs sizing.quantity (units per entry), e.g. 100")
        return self


class MarketImpact(_Section):
    """Square-root market impact: price moves by ``k * sigma * sqrt(qty / ADV)`` of the price."""

    k: float = Field(default=0.1, ge=0, le=10, description="Impact coefficient (dimensionless).")
    sigma_lookback: int = Field(default=20, ge=2, le=1000,
                                description="Bars of returns for sigma (per-bar volatility).")
    adv_lookback: int = Field(default=20, ge=1, le=1000,
                              description="Bars of volume for the average daily (bar) volume.")


class UsFees(_Section):
    """US equity regulatory fees (charged on sells)."""

    sec_fee_rate: float = Field(default=27.80e-6, ge=0, description="SEC Section 31 fee per dollar of sale proceeds.")
    finra_taf_per_share: float = Field(default=0.000166, ge=0, description="FINRA trading activity fee per share sold.")
    finra_taf_max: float = Field(default=8.30, ge=0, description="Cap on the FINRA TAF per trade, in dollars.")


class IndiaFees(_Section):
    """Indian equity (delivery) charges, as fractions of traded value."""

    stt_rate: float = Field(default=0.001, ge=0, description="Securities transaction tax, buys and sells.")
    exchange_rate: float = Field(default=0.0000297, ge=0, description="Exchange transaction charges.")
    gst_rate: float = Field(default=0.18, ge=0, description="GST on brokerage + exchange charges + SEBI fee.")
    stamp_duty_rate: float = Field(default=0.00015, ge=0, description="Stamp duty, on buys only.")
    sebi_rate: float = Field(default=0.000001, ge=0, description="SEBI turnover fee (10 rupees per crore).")


class Costs(_Section):
    commission_bps: float = Field(default=0.0, ge=0, le=1000, description="Commission per side, bps of traded value.")
    commission_fixed: float = Field(default=0.0, ge=0,
                                    description="Fixed commission per order (per fill), currency units.")
    slippage_bps: float = Field(default=0.0, ge=0, le=1000,
                                description="Price slippage per fill, bps, against the trader.")
    impact: MarketImpact | None = Field(default=None, description="Square-root market impact; none by default.")
    participation_cap: float | None = Field(
        default=None, gt=0, le=1,
        description="Max fraction of a bar's volume one order may fill; the rest carries to the next bar.",
    )
    market: Literal["none", "us", "india"] = Field(default="none", description="Regulatory fee schedule to apply.")
    us: UsFees = Field(default_factory=UsFees)
    india: IndiaFees = Field(default_factory=IndiaFees)


class Execution(_Section):
    fill: Literal["next_open", "close"] = Field(
        default="next_open",
        description="next_open: signal on bar N's close fills at bar N+1's open; close: fills at N's close.",
    )
    stop_loss: float | None = Field(default=None, gt=0, lt=1,
                                    description="Stop loss as a fraction of the entry price, e.g. 0.05.")
    take_profit: float | None = Field(default=None, gt=0, le=100,
                                      description="Take profit as a fraction of the entry price.")
    max_hold_bars: int | None = Field(default=None, ge=1, description="Close a position after this many bars.")


class BacktestConfig(_Section):
    """A complete, frozen description of one backtest; ``id`` is its stable hash."""

    strategy: str = Field(description="Registered strategy name, see backlake.list_strategies().")
    params: dict[str, Any] = Field(default_factory=dict, validate_default=True,
                                   description="Strategy parameters (defaults filled in).")
    universe: list[str] | str = Field(description="Symbols, or a universe name such as 'sp500_stocks'.")
    start: dt.date | None = Field(default=None, description="First bar date (inclusive); default: data start.")
    end: dt.date | None = Field(default=None, description="Last bar date (inclusive); default: data end.")
    timeframe: str = Field(default="1d", description=f"Bar size, one of {', '.join(TIMEFRAMES)}.")
    initial_cash: float = Field(default=10_000.0, gt=0, le=1e15,
                                description="Starting cash, in the quote currency (at most 1e15).")
    direction: Literal["long_only", "short_only", "long_short"] = Field(
        default="long_only", description="long_only, short_only, or long_short (reverses on an opposite signal)."
    )
    sizing: Sizing = Field(default_factory=Sizing)
    costs: Costs = Field(default_factory=Costs)
    execution: Execution = Field(default_factory=Execution)
    benchmark: str | None = Field(
        default=None,
        description=(
            "None or 'asset': buy and hold of the traded asset (equal weight across a multi-asset "
            "universe); 'equal_weight': equal-weight buy and hold of the universe; or a symbol."
        ),
    )
    seed: int | None = Field(default=None, description="Seed for any randomised step.")

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, v: str) -> str:
        get_strategy(v)  # raises ConfigError naming the closest strategy
        return v

    @field_validator("params", mode="before")
    @classmethod
    def _validate_params(cls, v: Any, info: ValidationInfo) -> dict[str, Any]:
        name = info.data.get("strategy")
        if name is None:  # the strategy itself failed validation; reported there
            return v if isinstance(v, dict) else {}
        if v is None:
            v = {}
        if not isinstance(v, dict):
            raise ValueError(f"params must be an object of parameter -> value, got {v!r}")
        model = get_strategy(name).params_model
        try:
            return model.model_validate(v).model_dump(mode="json")
        except ValidationError as e:
            raise ValueError(_format_errors(e, prefix="params")) from None

    @field_validator("universe")
    @classmethod
    def _universe(cls, v: list[str] | str) -> list[str] | str:
        if isinstance(v, str):
            if v not in UNIVERSES:
                raise ValueError(
                    unknown_name_message("universe", v, UNIVERSES)
                    + "; or give a list of symbols such as [\"GOOG\"]"
                )
            return v
        symbols = [s.strip() for s in v]
        if not symbols:
            raise ValueError('universe is empty: list at least one symbol, e.g. ["GOOG"]')
        if any(not s for s in symbols):
            raise ValueError(f"universe={v!r} contains an empty symbol")
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"universe={v!r} lists a symbol twice")
        return symbols

    @field_validator("timeframe")
    @classmethod
    def _timeframe(cls, v: str) -> str:
        if v not in TIMEFRAMES:
            raise ValueError(unknown_name_message("timeframe", v, TIMEFRAMES))
        return v

    @model_validator(mode="after")
    def _dates_in_order(self) -> BacktestConfig:
        if self.start and self.end and self.end < self.start:
            raise ValueError(
                f"end={self.end.isoformat()} is before start={self.start.isoformat()}: swap them"
            )
        return self

    # -- construction always raises ConfigError ---------------------------------------------
    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise ConfigError(_format_errors(e)) from None

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> BacktestConfig:
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as e:
            raise ConfigError(_format_errors(e)) from None

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> BacktestConfig:
        try:
            return super().model_validate_json(json_data, **kwargs)
        except ValidationError as e:
            raise ConfigError(_format_errors(e)) from None

    # -- derived ----------------------------------------------------------------------------
    @property
    def symbols(self) -> list[str]:
        """The universe as a list of symbols."""
        return list(UNIVERSES[self.universe]) if isinstance(self.universe, str) else list(self.universe)

    @property
    def id(self) -> str:
        """Stable hash of the canonical JSON: the same config always has the same id."""
        return canonical_hash(self.model_dump(mode="json"))

    def strategy_params(self) -> StrategyParams:
        return get_strategy(self.strategy).params_model.model_validate(self.params)


def config_json_schema() -> dict[str, Any]:
    """JSON Schema of BacktestConfig (strategy params are validated by each strategy's model;
    their schemas are under ``$defs.strategy_params``)."""
    from backlake.strategies import get_strategy, list_strategies

    schema = BacktestConfig.model_json_schema()
    schema.setdefault("$defs", {})["strategy_params"] = {
        name: get_strategy(name).params_model.model_json_schema() for name in list_strategies()
    }
    return schema


def _format_errors(err: ValidationError, prefix: str = "") -> str:
    """One line per problem: ``field: message (got value)``."""
    errors = err.errors()
    if len(errors) == 1 and isinstance(errors[0].get("ctx", {}).get("error"), ConfigError) and not errors[0]["loc"]:
        return str(errors[0]["ctx"]["error"])  # already formatted by a nested validation
    lines = []
    for e in errors:
        loc = ".".join(str(p) for p in e["loc"] if p != "__root__")
        if prefix:
            loc = f"{prefix}.{loc}" if loc else prefix
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "missing":
            msg = "is required"
        got = ""
        if e["type"] not in ("missing", "value_error") and "input" in e:
            got = f" (got {shorten(e['input'])})"
        if loc and not msg.startswith((f"{loc}:", f"{loc}.")):
            msg = f"{loc}: {msg}"
        lines.append(f"{msg}{got}")
    head = "invalid backtest config: " if not prefix else ""
    return head + "; ".join(lines)
