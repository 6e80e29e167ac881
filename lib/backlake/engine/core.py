"""``run_backtest(cfg, bars)``: bars -> aligned arrays -> strategy signals -> compiled kernel ->
trades, equity, metrics. Pure: no lake, no Prefect.

Multi-asset alignment: the backtest runs on the union of the universe's timestamps from the
first bar at which every symbol has data; a symbol missing a bar inside that range is
carried forward at its last close (open = high = low = close, volume 0) for valuation, and
nothing fills on such a bar: orders wait for the symbol's next real bar.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import cast

import numpy as np
import polars as pl

from backlake.calendars import calendar_of, periods_per_year
from backlake.config import INTRADAY_TIMEFRAMES, BacktestConfig
from backlake.data.schema import ENGINE_COLUMNS, date_filter
from backlake.data.validate import check_bars
from backlake.engine import nb
from backlake.engine.records import COST_NAMES, EXIT_REASONS, FEE_NAMES, Direction, Market, MarketData, SizeMethod
from backlake.engine.result import EQUITY_COLUMNS, TRADE_COLUMNS, BacktestResult
from backlake.errors import BacktestError, ConfigError, DataValidationError
from backlake.metrics import compute_metrics, monthly_returns, segment_metrics
from backlake.strategies import Signals, get_strategy
from backlake.strategies.base import BarData

__all__ = ["run_backtest", "prepare", "Prepared", "select_bars", "ENGINE_COLUMNS", "sim_options"]



@dataclass(frozen=True)
class Prepared:
    """The config's bars as aligned ``(n_bars, n_assets)`` arrays."""

    data: BarData
    ts: pl.Series  # Datetime("us", "UTC")
    symbols: list[str]
    periods_per_year: float
    tradable: np.ndarray  # (n_bars, n_assets) bool: a real bar; (1, 1) True when all are
    validated: bool = False  # bars read from the lake (validated by ingest): no row checks

    @property
    def n_bars(self) -> int:
        return self.ts.len()


def select_bars(cfg: BacktestConfig, bars: pl.DataFrame, symbol: str, *, validated: bool = False) -> pl.DataFrame:
    """The bars of ``symbol`` inside the config's dates and timeframe, sorted by ts; checked
    with :func:`backlake.data.validate.check_bars` unless ``validated`` (read from the lake)."""
    missing = [c for c in ENGINE_COLUMNS if c not in bars.columns]
    if missing:
        raise DataValidationError(f"bars is missing column(s) {missing}: expected {list(ENGINE_COLUMNS)}")
    if "timeframe" in bars.columns:
        present = bars.filter(pl.col("symbol") == symbol)["timeframe"].unique().to_list()
        if present and cfg.timeframe not in present:
            raise ConfigError(
                f"timeframe={cfg.timeframe!r} but {symbol} has {', '.join(sorted(present))} bars: "
                f"set timeframe to {sorted(present)[0]!r} or ingest {cfg.timeframe} bars"
            )
        bars = bars.filter(pl.col("timeframe") == cfg.timeframe)
    sym = bars.filter(pl.col("symbol") == symbol)
    if sym.is_empty():
        available = sorted(bars["symbol"].unique().to_list())
        shown = ", ".join(available[:30]) + (" ..." if len(available) > 30 else "")
        raise ConfigError(
            f"universe symbol {symbol!r} has no {cfg.timeframe} bars in the data "
            f"(available: {shown or 'none'}); ingest it or fix the universe"
        )
    sel = sym.filter(date_filter(cfg.start, cfg.end)).sort("ts")
    if sel.is_empty():
        first, last = cast(dt.datetime, sym["ts"].min()), cast(dt.datetime, sym["ts"].max())
        raise ConfigError(
            f"no {symbol} bars between start={cfg.start} and end={cfg.end}: the data covers "
            f"{first:%Y-%m-%d} to {last:%Y-%m-%d}; move the dates inside that range"
        )
    if not validated:
        check_bars(sel)
    return sel


def prepare(cfg: BacktestConfig, bars: pl.DataFrame, *, validated: bool = False) -> Prepared:
    """Select, align and stack the universe's bars. ``validated``: the bars were read from the
    lake, where ingest validated them, so the row checks (:func:`check_bars`) are skipped."""
    symbols = cfg.symbols
    spec = get_strategy(cfg.strategy)
    if spec.intraday_only and cfg.timeframe not in INTRADAY_TIMEFRAMES:
        raise ConfigError(
            f"strategy {cfg.strategy!r} needs intraday bars but timeframe={cfg.timeframe!r}: "
            f"use one of {', '.join(INTRADAY_TIMEFRAMES)}"
        )
    fields = ("open", "high", "low", "close", "volume")
    if len(symbols) == 1:
        frame = select_bars(cfg, bars, symbols[0], validated=validated)
        ts = frame["ts"]
        stack = {c: frame[c].to_numpy().astype(np.float64)[:, None] for c in fields}
        tradable = np.ones((1, 1), dtype=np.bool_)
    else:
        ts, stack, tradable = _stack_universe(cfg, bars, symbols, validated=validated)
    if ts.len() < 2:
        raise ConfigError(
            f"only {ts.len()} bar(s) between start={cfg.start} and end={cfg.end}: a backtest needs at least 2"
        )
    cal = calendar_of(symbols[0])
    data: BarData = {
        **stack, "ts": ts.dt.replace_time_zone(None).to_numpy(),  # type: ignore[typeddict-item]
        "symbols": symbols, "timeframe": cfg.timeframe,
    }
    return Prepared(data=data, ts=ts, symbols=symbols, periods_per_year=periods_per_year(cfg.timeframe, cal),
                    tradable=tradable, validated=validated)


def _aligned_layout(wanted: pl.DataFrame, index: dict[str, int]) -> tuple[pl.Series, np.ndarray, np.ndarray] | None:
    """(ts, rows, cols) when the rows are one run per symbol, each with the same strictly
    increasing timestamps (the common case); None otherwise."""
    runs = wanted["symbol"].rle()
    m = len(index)
    if runs.len() != m:
        return None
    lengths = runs.struct.field("len").to_numpy()
    names = runs.struct.field("value").to_list()
    n = int(lengths[0])
    if n == 0 or (lengths != n).any() or set(names) != set(index):
        return None
    ts_us = wanted["ts"].dt.cast_time_unit("us").to_physical().to_numpy().reshape(m, n)
    if not (np.diff(ts_us[0]) > 0).all() or not (ts_us == ts_us[0]).all():
        return None
    rows = np.tile(np.arange(n), m)
    cols = np.repeat(np.array([index[s] for s in names], dtype=np.int64), n)
    return wanted["ts"].head(n), rows, cols


def _stack_universe(
    cfg: BacktestConfig, bars: pl.DataFrame, symbols: list[str], *, validated: bool = False
) -> tuple[pl.Series, dict[str, np.ndarray], np.ndarray]:
    """Align many symbols in a few vectorised passes (see the module docstring), after
    :func:`check_bars` unless ``validated``."""
    cond = pl.col("symbol").is_in(symbols) & date_filter(cfg.start, cfg.end)
    if "timeframe" in bars.columns:
        cond &= pl.col("timeframe") == cfg.timeframe
    wanted = bars.filter(cond).select(ENGINE_COLUMNS)
    index = {s: j for j, s in enumerate(symbols)}
    aligned = _aligned_layout(wanted, index)
    if aligned is not None:  # every symbol has the same sorted timestamps: no search needed
        ts, rows, cols = aligned
    else:
        firsts = wanted.group_by("symbol").agg(pl.col("ts").min())
        if firsts.height < len(symbols):
            have_any = set(firsts["symbol"].to_list())
            for s in symbols:  # the first symbol without bars: select_bars says exactly why
                if s not in have_any:
                    select_bars(cfg, bars, s, validated=validated)
        wanted = wanted.filter(pl.col("ts") >= firsts["ts"].max())
        ts = wanted["ts"].unique().sort()
        ts_us = ts.dt.cast_time_unit("us").to_physical().to_numpy()
        rows = np.searchsorted(ts_us, wanted["ts"].dt.cast_time_unit("us").to_physical().to_numpy())
        cols = wanted["symbol"].replace_strict(index, return_dtype=pl.Int64).to_numpy()
    if not validated:
        check_bars(wanted)
    n, m = ts.len(), len(symbols)
    flat = cols * n + rows  # symbol-major: rows of one symbol are contiguous (fast scatter)
    have = (np.bincount(flat, minlength=n * m) == 1).reshape(m, n).T
    stack: dict[str, np.ndarray] = {}
    for c in ("open", "high", "low", "close", "volume"):
        a = np.full(n * m, np.nan)
        a[flat] = wanted[c].to_numpy()
        stack[c] = np.ascontiguousarray(a.reshape(m, n).T)
    if not have.all():  # a missing bar is flat at the last close, with no volume
        last = np.where(have, np.arange(n)[:, None], 0)
        np.maximum.accumulate(last, axis=0, out=last)
        close = stack["close"][last, np.arange(m)[None, :]]
        stack["close"] = close
        for c in ("open", "high", "low"):
            stack[c] = np.where(have, stack[c], close)
        stack["volume"] = np.where(have, stack["volume"], 0.0)
        return ts, stack, have
    return ts, stack, np.ones((1, 1), dtype=np.bool_)


_DIRECTIONS = {
    "long_only": Direction.LONG_ONLY, "short_only": Direction.SHORT_ONLY, "long_short": Direction.LONG_SHORT,
}
_SIZING = {
    "fixed_fraction": SizeMethod.FIXED_FRACTION, "fixed_quantity": SizeMethod.FIXED_QUANTITY,
    "equal_weight": SizeMethod.EQUAL_WEIGHT, "volatility_target": SizeMethod.VOL_TARGET,
}
_MARKETS = {"none": Market.NONE, "us": Market.US, "india": Market.INDIA}


def sim_options(cfg: BacktestConfig, ppy: float, strategy_max_hold: int | None = None) -> nb.SimOptions:
    """The kernel's options record for a config (codes as plain ints: one compiled signature)."""
    c, s, e = cfg.costs, cfg.sizing, cfg.execution
    holds = [h for h in (e.max_hold_bars, strategy_max_hold) if h]
    return nb.SimOptions(
        initial_cash=float(cfg.initial_cash), direction=int(_DIRECTIONS[cfg.direction]),
        fill_next_open=e.fill == "next_open", size_method=int(_SIZING[s.method]), fraction=float(s.fraction),
        quantity=float(s.quantity or 0.0), target_vol=float(s.target_volatility),
        max_leverage=float(s.max_leverage), whole_units=bool(s.whole_units), periods_per_year=float(ppy),
        commission_rate=c.commission_bps / 1e4, commission_fixed=float(c.commission_fixed),
        slippage_rate=c.slippage_bps / 1e4, impact_k=float(c.impact.k) if c.impact else 0.0,
        participation_cap=float(c.participation_cap or 0.0), stop_loss=float(e.stop_loss or 0.0),
        take_profit=float(e.take_profit or 0.0), max_hold=int(min(holds)) if holds else 0,
        market=int(_MARKETS[c.market]), sec_fee_rate=c.us.sec_fee_rate,
        finra_taf_per_share=c.us.finra_taf_per_share, finra_taf_max=c.us.finra_taf_max,
        stt_rate=c.india.stt_rate, exchange_rate=c.india.exchange_rate, gst_rate=c.india.gst_rate,
        stamp_duty_rate=c.india.stamp_duty_rate, sebi_rate=c.india.sebi_rate,
    )


def _signals(cfg: BacktestConfig, prep: Prepared) -> Signals:
    spec = get_strategy(cfg.strategy)
    try:
        sig = spec.signal_fn(prep.data, cfg.strategy_params())
    except ConfigError:
        raise
    except Exception as e:
        raise BacktestError(f"strategy {cfg.strategy!r} failed on {', '.join(prep.symbols)}: {e}") from e
    shape = prep.data["close"].shape
    for name in ("entries", "exits", "weights"):
        arr = getattr(sig, name)
        if arr is not None and np.shape(arr) != shape:
            raise BacktestError(f"strategy {cfg.strategy!r} returned {name} of shape {np.shape(arr)}, expected {shape}")
    return sig


def _risk_inputs(cfg: BacktestConfig, prep: Prepared) -> tuple[np.ndarray, np.ndarray]:
    """Per-bar volatility and average volume, as known at each bar's close (for market
    impact and volatility-target sizing). Zeros when no cost or sizing rule needs them."""
    close, volume = prep.data["close"], prep.data["volume"]
    imp = cfg.costs.impact
    has_impact = imp is not None and imp.k > 0
    if has_impact or cfg.costs.participation_cap is not None:
        silent = [s for j, s in enumerate(prep.symbols) if not np.any(volume[:, j] > 0)]
        if silent:
            raise ConfigError(
                f"costs.impact / costs.participation_cap need volume, but {', '.join(silent)} has none "
                "(close-only data): drop those costs or use symbols with volume"
            )
    vol_target = cfg.sizing.method == "volatility_target"
    if not (has_impact or vol_target):
        zeros = np.zeros_like(close)
        return zeros, zeros
    # one volatility estimate serves both uses; with volatility targeting its lookback wins
    lookback = cfg.sizing.vol_lookback if vol_target else imp.sigma_lookback  # type: ignore[union-attr]
    sigma = nb.rolling_sigma_nb(close, lookback)
    adv = nb.rolling_mean_nb(volume, imp.adv_lookback) if has_impact else np.zeros_like(close)  # type: ignore[union-attr]
    return sigma, adv


def run_backtest(
    cfg: BacktestConfig, bars: pl.DataFrame, *, oos_start: dt.date | dt.datetime | None = None,
    validated: bool = False,
) -> BacktestResult:
    """Simulate ``cfg`` on ``bars`` (columns ``symbol, ts, open, high, low, close, volume``).

    ``oos_start`` splits the metrics into in-sample (before) and out-of-sample (from it on)
    segments besides the full period. Bars handed in directly are checked first (duplicate
    timestamps, missing or non-positive prices: :func:`backlake.data.validate.check_bars`);
    ``validated=True`` says they were read from the lake, where ingest validated them once.

    Example::

        res = run_backtest(BacktestConfig.model_validate({...}), bars)
        res.metrics["sharpe"], res.trades, res.equity
    """
    prep = prepare(cfg, bars, validated=validated)
    sig = _signals(cfg, prep)
    opts = sim_options(cfg, prep.periods_per_year, sig.max_hold_bars)
    sigma, adv = _risk_inputs(cfg, prep)
    d = prep.data
    n, m = d["close"].shape
    use_w = sig.weights is not None
    entries = np.asarray(sig.entries, dtype=np.bool_) if not use_w else np.zeros((n, m), dtype=np.bool_)
    exits = np.asarray(sig.exits, dtype=np.bool_) if not use_w else np.zeros((n, m), dtype=np.bool_)
    weights = np.asarray(sig.weights, dtype=np.float64) if use_w else np.full((1, m), np.nan)
    mkt = MarketData(d["open"], d["high"], d["low"], d["close"], d["volume"], sigma, adv, prep.tradable)
    equity, cash, position, trade_rec, costs = nb.simulate_nb(mkt, entries, exits, weights, use_w, opts)
    return _result(cfg, prep, bars, equity, cash, position, trade_rec, oos_start, costs)


def _result(
    cfg: BacktestConfig, prep: Prepared, bars: pl.DataFrame, equity: np.ndarray, cash: np.ndarray,
    position: np.ndarray, trade_rec: np.ndarray, oos_start: dt.date | dt.datetime | None,
    costs: np.ndarray | None = None,
) -> BacktestResult:
    d = prep.data
    close = d["close"]
    trades = trades_frame(trade_rec, prep.ts, prep.symbols)
    value = position * close
    gross = np.abs(value).sum(axis=1)
    net = value.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        gross_x = np.where(equity != 0, gross / equity, 0.0)
        net_x = np.where(equity != 0, net / equity, 0.0)
    bench = benchmark_curve(cfg, bars, prep)
    peak = np.maximum.accumulate(equity)
    ret = np.zeros_like(equity)
    ret[1:] = equity[1:] / equity[:-1] - 1.0
    eq = pl.DataFrame({
        "ts": prep.ts, "equity": equity, "cash": cash, "gross_exposure": gross_x, "net_exposure": net_x,
        "drawdown": equity / peak - 1.0, "ret": ret, "benchmark_equity": bench,
        **_cost_columns(costs if costs is not None else np.zeros((equity.shape[0], len(COST_NAMES)))),
    }).select(EQUITY_COLUMNS)
    ts_np = prep.ts.dt.replace_time_zone(None).to_numpy()
    kw = {"benchmark_equity": bench, "exposure": gross_x}
    metrics = compute_metrics(equity, ts_np, trades, prep.periods_per_year, cfg.initial_cash, **kw)
    segments = {"full": metrics}
    if oos_start is not None:
        split = oos_start if isinstance(oos_start, dt.datetime) else dt.datetime.combine(oos_start, dt.time())
        segments = segment_metrics(equity, ts_np, trades, prep.periods_per_year, cfg.initial_cash, split=split, **kw)
    assets, corr = _per_asset(prep, position, equity, trades)
    return BacktestResult(
        config=cfg, trades=trades, equity=eq, metrics=metrics, segments=segments,
        monthly_returns=monthly_returns(equity, ts_np), assets=assets, correlation=corr,
    )


def _cost_columns(costs: np.ndarray) -> dict[str, np.ndarray]:
    """The kernel's per-bar costs ``(n_bars, 4)`` (COST_NAMES order) as the equity's
    COST_COLUMNS: the total first, added up in that order."""
    split = {f"cost_{name}": np.ascontiguousarray(costs[:, k]) for k, name in enumerate(COST_NAMES)}
    total = np.zeros(costs.shape[0])
    for col in split.values():
        total = total + col
    return {"costs": total, **split}


def trades_frame(rec: np.ndarray, ts: pl.Series, symbols: list[str]) -> pl.DataFrame:
    """Trade records from the kernel (``trade_dt``) as the trades frame (TRADE_COLUMNS + cost
    breakdown)."""
    rec = rec[np.lexsort((rec["asset"], rec["entry_idx"]))]
    sym = np.asarray(symbols, dtype=object)
    frame = {
        "trade_id": np.arange(1, rec.shape[0] + 1, dtype=np.int64),
        "symbol": pl.Series(sym[rec["asset"]].tolist(), dtype=pl.String),
        "direction": pl.Series(np.where(rec["direction"] > 0, "long", "short").tolist(), dtype=pl.String),
        "qty": rec["qty"],
        "entry_ts": ts.gather(rec["entry_idx"].tolist()),
        "entry_price": rec["entry_price"],
        "exit_ts": ts.gather(rec["exit_idx"].tolist()),
        "exit_price": rec["exit_price"],
        "pnl": rec["pnl"],
        "return_pct": rec["ret"],
        "fees": rec["fees"],
        "bars_held": rec["bars_held"],
        "mae": rec["mae"],
        "mfe": rec["mfe"],
        "exit_reason": pl.Series([EXIT_REASONS[r] for r in rec["exit_reason"].tolist()], dtype=pl.String),
        "slippage_cost": rec["slippage_cost"],
        "impact_cost": rec["impact_cost"],
    }
    for name in FEE_NAMES:
        frame[name] = rec[name]
    return pl.DataFrame(frame).select([*TRADE_COLUMNS, "slippage_cost", "impact_cost", *FEE_NAMES])


def benchmark_curve(cfg: BacktestConfig, bars: pl.DataFrame, prep: Prepared) -> np.ndarray:
    """Buy and hold from the first bar's close: of the asset (equal weight over a universe),
    equal weight of the universe, or of ``cfg.benchmark``."""
    close = prep.data["close"]
    if cfg.benchmark in (None, "asset", "equal_weight") or cfg.benchmark in prep.symbols:
        if cfg.benchmark in prep.symbols:
            close = close[:, [prep.symbols.index(cfg.benchmark)]]
        growth = (close / close[0]).mean(axis=1)
        curve: np.ndarray = cfg.initial_cash * growth
        return curve
    other = select_bars(cfg.model_copy(update={"start": None, "end": None}), bars, cfg.benchmark,
                        validated=prep.validated).select("ts", "close")
    aligned = pl.DataFrame({"ts": prep.ts}).join(other, on="ts", how="left").sort("ts")
    series = aligned["close"].fill_null(strategy="forward")
    if series.null_count():
        before = other.filter(pl.col("ts") <= prep.ts[0])
        if before.is_empty():
            raise ConfigError(
                f"benchmark {cfg.benchmark!r} has no bar at or before {prep.ts[0]:%Y-%m-%d}: "
                "choose a benchmark that covers the backtest"
            )
        series = series.fill_null(before["close"][-1])
    b = series.to_numpy()
    curve = cfg.initial_cash * b / b[0]
    return curve


def _per_asset(
    prep: Prepared, position: np.ndarray, equity: np.ndarray, trades: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per-asset P&L contribution and the correlation of per-asset return streams."""
    close = prep.data["close"]
    pnl_bar = np.zeros_like(close)
    pnl_bar[1:] = position[:-1] * (close[1:] - close[:-1])
    prev_eq = np.concatenate([[equity[0]], equity[:-1]])
    rets = pnl_bar / prev_eq[:, None]
    by_symbol = (
        trades.group_by("symbol").agg(
            pl.len().alias("n_trades"), pl.col("pnl").sum(), pl.col("fees").sum(),
            (pl.col("pnl").filter(pl.col("exit_reason") != "end_of_data") > 0).mean().alias("win_rate"),
        )
        if trades.height else pl.DataFrame(schema={"symbol": pl.String, "n_trades": pl.UInt32, "pnl": pl.Float64,
                                                   "fees": pl.Float64, "win_rate": pl.Float64})
    )
    assets = (
        pl.DataFrame({
            "symbol": prep.symbols,
            "exposure_time": (position != 0).mean(axis=0),
            "return_contribution": rets.sum(axis=0),
        })
        .join(by_symbol, on="symbol", how="left", maintain_order="left")
        .with_columns(pl.col("n_trades").fill_null(0).cast(pl.Int64), pl.col("pnl").fill_null(0.0),
                      pl.col("fees").fill_null(0.0), pl.col("win_rate").cast(pl.Float64))
        .select("symbol", "n_trades", "pnl", "fees", "win_rate", "exposure_time", "return_contribution")
    )
    m = len(prep.symbols)
    corr = np.full((m, m), np.nan)
    if m > 1:
        sd = rets.std(axis=0)
        ok = sd > 0
        if ok.any():
            c = np.corrcoef(rets[:, ok].T)
            idx = np.flatnonzero(ok)
            corr[np.ix_(idx, idx)] = np.atleast_2d(c)
    else:
        corr[0, 0] = 1.0
    correlation = pl.DataFrame({"symbol": prep.symbols, **{s: corr[:, j] for j, s in enumerate(prep.symbols)}})
    return assets, correlation
