"""What a backtest returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from backlake.config import BacktestConfig

TRADE_COLUMNS = (
    "trade_id", "symbol", "direction", "qty", "entry_ts", "entry_price", "exit_ts", "exit_price",
    "pnl", "return_pct", "fees", "bars_held", "mae", "mfe", "exit_reason",
)
#: The costs charged on each bar (money), with the equity: their total and its split
#: (commission, market fees besides commission, slippage, market impact).
COST_COLUMNS = ("costs", "cost_commission", "cost_fees", "cost_slippage", "cost_impact")
EQUITY_COLUMNS = (
    "ts", "equity", "cash", "gross_exposure", "net_exposure", "drawdown", "ret", "benchmark_equity",
    *COST_COLUMNS,
)


@dataclass(frozen=True)
class BacktestResult:
    """The outcome of one backtest.

    - ``trades``: one row per closed (or open-at-end) trade: TRADE_COLUMNS plus the cost
      breakdown (slippage_cost, impact_cost, commission, sec_fee, finra_taf, stt,
      exchange_fee, gst, stamp_duty, sebi_fee);
    - ``equity``: one row per bar (EQUITY_COLUMNS), with the costs charged that bar
      (COST_COLUMNS: ``costs`` = commission + fees + slippage + impact; gross = net + costs);
    - ``metrics``: the full-period metrics; ``segments``: ``{"full": ..., "is": ..., "oos": ...}``
      when an out-of-sample start was given;
    - ``monthly_returns``: year, month, ret; ``assets``: per-asset rollup;
      ``correlation``: correlation of the per-asset return streams.
    """

    config: BacktestConfig
    trades: pl.DataFrame
    equity: pl.DataFrame
    metrics: dict[str, float | None]
    segments: dict[str, dict[str, float | None]] = field(default_factory=dict)
    monthly_returns: pl.DataFrame | None = None
    assets: pl.DataFrame | None = None
    correlation: pl.DataFrame | None = None

    def summary(self) -> dict[str, object]:
        return {"config_id": self.config.id, "strategy": self.config.strategy, **self.metrics}
