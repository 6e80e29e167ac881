"""``run_backtest(cfg, bars)``: pure simulation, no lake and no Prefect."""

from __future__ import annotations

import numpy as np
import polars as pl

from backlake.calendars import calendar_of, periods_per_year
from backlake.config import BacktestConfig
from backlake.engine.result import EQUITY_COLUMNS, TRADE_COLUMNS, BacktestResult
from backlake.engine.simulate import simulate_long_only
from backlake.errors import BacktestError, ConfigError, DataValidationError
from backlake.metrics import compute_metrics
from backlake.strategies import get_strategy

__all__ = ["run_backtest", "BacktestResult", "select_bars", "BAR_COLUMNS"]

BAR_COLUMNS = ("symbol", "ts", "open", "high", "low", "close", "volume")


def select_bars(cfg: BacktestConfig, bars: pl.DataFrame, symbol: str) -> pl.DataFrame:
    """The bars of ``symbol`` inside the config's dates and timeframe, sorted by ts."""
    missing = [c for c in BAR_COLUMNS if c not in bars.columns]
    if missing:
        raise DataValidationError(
            f"bars is missing column(s) {missing}: expected {list(BAR_COLUMNS)}"
        )
    if "timeframe" in bars.columns:
        bars = bars.filter(pl.col("timeframe") == cfg.timeframe)
    sym = bars.filter(pl.col("symbol") == symbol)
    if sym.is_empty():
        available = sorted(bars["symbol"].unique().to_list())
        shown = ", ".join(available[:30]) + (" ..." if len(available) > 30 else "")
        raise ConfigError(
            f"universe symbol {symbol!r} has no {cfg.timeframe} bars in the data "
            f"(available: {shown or 'none'}); ingest it or fix the universe"
        )
    ts_date = pl.col("ts").dt.date()
    cond = pl.lit(True)
    if cfg.start:
        cond &= ts_date >= cfg.start
    if cfg.end:
        cond &= ts_date <= cfg.end
    sel = sym.filter(cond).sort("ts")
    if sel.is_empty():
        first, last = sym["ts"].min(), sym["ts"].max()
        raise ConfigError(
            f"no {symbol} bars between start={cfg.start} and end={cfg.end}: the data covers "
            f"{first:%Y-%m-%d} to {last:%Y-%m-%d}; move the dates inside that range"
        )
    if sel["ts"].is_duplicated().any():
        raise DataValidationError(f"{symbol} has duplicate timestamps; validate and ingest the bars first")
    nan_rows = sel.select(
        pl.any_horizontal([pl.col(c).is_null() | pl.col(c).is_nan() for c in ("open", "high", "low", "close")])
    ).to_series()
    if nan_rows.any():
        raise DataValidationError(
            f"{symbol} has {int(nan_rows.sum())} bar(s) with missing prices; validate and ingest the bars first"
        )
    return sel


def run_backtest(cfg: BacktestConfig, bars: pl.DataFrame) -> BacktestResult:
    """Simulate ``cfg`` on ``bars`` (columns ``symbol, ts, open, high, low, close, volume``).

    Example::

        res = run_backtest(BacktestConfig.model_validate({...}), bars)
        res.metrics["sharpe"], res.trades, res.equity
    """
    symbols = cfg.symbols
    if len(symbols) != 1:
        raise ConfigError(
            f"universe={symbols!r}: this engine runs one symbol per backtest; "
            "give a single symbol (one config per symbol)"
        )
    symbol = symbols[0]
    sel = select_bars(cfg, bars, symbol)
    spec = get_strategy(cfg.strategy)
    params = cfg.strategy_params()
    data = {c: sel[c].to_numpy().astype(np.float64) for c in ("open", "high", "low", "close", "volume")}
    try:
        signals = spec.signal_fn(data, params)
    except Exception as e:
        raise BacktestError(f"strategy {cfg.strategy!r} failed on {symbol}: {e}") from e

    out = simulate_long_only(
        data["open"], data["high"], data["low"], data["close"],
        np.asarray(signals.entries, dtype=bool), np.asarray(signals.exits, dtype=bool),
        initial_cash=cfg.initial_cash,
        fraction=cfg.sizing.fraction,
        whole_units=cfg.sizing.whole_units,
        commission=cfg.costs.commission_bps / 1e4,
        slippage=cfg.costs.slippage_bps / 1e4,
        fill_next_open=cfg.execution.fill == "next_open",
    )
    ts = sel["ts"]
    trades = _trades_frame(out.trades, ts, symbol)
    bench = _benchmark(cfg, bars, sel)
    equity = _equity_frame(ts, out.equity, out.cash, out.position_value, bench)
    ppy = periods_per_year(cfg.timeframe, calendar_of(symbol))
    metrics = compute_metrics(out.equity, ts.to_numpy(), trades, ppy, cfg.initial_cash)
    return BacktestResult(config=cfg, trades=trades, equity=equity, metrics=metrics)


def _trades_frame(rows: list[dict], ts: pl.Series, symbol: str) -> pl.DataFrame:
    schema = {
        "trade_id": pl.Int64, "symbol": pl.String, "direction": pl.String, "qty": pl.Float64,
        "entry_ts": ts.dtype, "entry_price": pl.Float64, "exit_ts": ts.dtype, "exit_price": pl.Float64,
        "pnl": pl.Float64, "return_pct": pl.Float64, "fees": pl.Float64, "bars_held": pl.Int64,
        "mae": pl.Float64, "mfe": pl.Float64, "exit_reason": pl.String,
    }
    if not rows:
        return pl.DataFrame(schema=schema)
    data = {
        "trade_id": list(range(1, len(rows) + 1)),
        "symbol": [symbol] * len(rows),
        "direction": ["long"] * len(rows),
        "qty": [r["qty"] for r in rows],
        "entry_ts": ts.gather([r["entry_idx"] for r in rows]),
        "entry_price": [r["entry_price"] for r in rows],
        "exit_ts": ts.gather([r["exit_idx"] for r in rows]),
        "exit_price": [r["exit_price"] for r in rows],
        "pnl": [r["pnl"] for r in rows],
        "return_pct": [r["return_pct"] for r in rows],
        "fees": [r["fees"] for r in rows],
        "bars_held": [r["bars_held"] for r in rows],
        "mae": [r["mae"] for r in rows],
        "mfe": [r["mfe"] for r in rows],
        "exit_reason": [r["exit_reason"] for r in rows],
    }
    return pl.DataFrame(data, schema=schema).select(TRADE_COLUMNS)


def _benchmark(cfg: BacktestConfig, bars: pl.DataFrame, sel: pl.DataFrame) -> np.ndarray:
    """Buy and hold of the traded asset (default) or of ``cfg.benchmark``, from the first close."""
    if cfg.benchmark is None or cfg.benchmark == sel["symbol"][0]:
        close = sel["close"].to_numpy()
    else:
        other = select_bars(cfg, bars, cfg.benchmark).select("ts", "close")
        aligned = sel.select("ts").join(other, on="ts", how="left").sort("ts")
        close = aligned["close"].fill_null(strategy="forward").fill_null(strategy="backward").to_numpy()
    return cfg.initial_cash * close / close[0]


def _equity_frame(ts, equity, cash, pos_val, bench) -> pl.DataFrame:
    peak = np.maximum.accumulate(equity)
    ret = np.zeros_like(equity)
    ret[1:] = equity[1:] / equity[:-1] - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        expo = np.where(equity != 0, pos_val / equity, 0.0)
    return pl.DataFrame(
        {
            "ts": ts,
            "equity": equity,
            "cash": cash,
            "gross_exposure": np.abs(expo),
            "net_exposure": expo,
            "drawdown": equity / peak - 1.0,
            "ret": ret,
            "benchmark_equity": bench,
        }
    ).select(EQUITY_COLUMNS)
