"""The backtest engine: ``run_backtest(cfg, bars)`` (pure: no lake, no Prefect)."""

from backlake.engine.core import ENGINE_COLUMNS, prepare, run_backtest, select_bars
from backlake.engine.result import BacktestResult

__all__ = ["run_backtest", "BacktestResult", "select_bars", "prepare", "ENGINE_COLUMNS"]
