"""What a backtest returns."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from backlake.config import BacktestConfig

TRADE_COLUMNS = (
    "trade_id", "symbol", "direction", "qty", "entry_ts", "entry_price", "exit_ts", "exit_price",
    "pnl", "return_pct", "fees", "bars_held", "mae", "mfe", "exit_reason",
)
EQUITY_COLUMNS = (
    "ts", "equity", "cash", "gross_exposure", "net_exposure", "drawdown", "ret", "benchmark_equity",
)


@dataclass(frozen=True)
class BacktestResult:
    """Trades (one row per closed or open-at-end trade), equity (one row per bar), metrics."""

    config: BacktestConfig
    trades: pl.DataFrame
    equity: pl.DataFrame
    metrics: dict[str, float | None]

    def summary(self) -> dict[str, object]:
        return {"config_id": self.config.id, "strategy": self.config.strategy, **self.metrics}
