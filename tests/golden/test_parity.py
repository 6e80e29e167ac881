"""Parity with established backtesters on the real sample data (test-only dependencies).

The reference config on GOOG must give, trade for trade, what backtesting.py and vectorbt
give for the same rules; further cross-checks on the S&P 500 and NASDAQ sample data.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest

import backlake as bl
from backlake.data.samples import load_samples
from backlake.strategies.indicators import sma

warnings.filterwarnings("ignore")

REFERENCE = {
    "strategy": "sma_crossover", "params": {"fast": 10, "slow": 30}, "universe": ["GOOG"],
    "start": "2004-08-19", "end": "2013-03-01", "timeframe": "1d", "initial_cash": 10000,
    "direction": "long_only",
    "sizing": {"method": "fixed_fraction", "fraction": 1.0, "whole_units": True},
    "costs": {"commission_bps": 10},
    "execution": {"fill": "next_open"},
}


def ohlc_pandas(bars: pl.DataFrame) -> pd.DataFrame:
    df = bars.select("ts", "open", "high", "low", "close", "volume").to_pandas().set_index("ts")
    df.index = df.index.tz_localize(None)
    return df.rename(columns=str.capitalize)


def backtesting_py_run(df: pd.DataFrame, fast: int, slow: int, commission: float, cash: float,
                       reverse: bool = False):
    from backtesting import Backtest, Strategy

    def SMA(x, n):
        return pd.Series(x).rolling(n).mean().to_numpy()

    class Cross(Strategy):
        def init(self):
            self.a = self.I(SMA, self.data.Close, fast)
            self.b = self.I(SMA, self.data.Close, slow)

        def next(self):
            a, b = self.a, self.b
            if a[-2] < b[-2] and a[-1] > b[-1]:
                if reverse or not self.position:
                    self.buy()
            elif a[-2] > b[-2] and a[-1] < b[-1]:
                if reverse:
                    self.sell()
                else:
                    self.position.close()

    bt = Backtest(df, Cross, cash=cash, commission=commission, exclusive_orders=reverse)
    return bt.run()


def crosses(close: np.ndarray, fast: int, slow: int) -> tuple[np.ndarray, np.ndarray]:
    """Bars where SMA(fast) crosses above / below SMA(slow) (strictly), written out here."""
    f, s = sma(close, fast), sma(close, slow)
    prev_f, prev_s = np.roll(f, 1), np.roll(s, 1)
    prev_f[0] = prev_s[0] = np.nan
    with np.errstate(invalid="ignore"):
        return (prev_f < prev_s) & (f > s), (prev_f > prev_s) & (f < s)


@pytest.fixture(scope="module")
def goog() -> pl.DataFrame:
    return load_samples(["GOOG"])


@pytest.fixture(scope="module")
def reference(goog):
    return bl.run_backtest(bl.BacktestConfig.model_validate(REFERENCE), goog)


def test_reference_config_golden(reference):
    closed = reference.trades.filter(pl.col("exit_reason") == "signal")
    assert closed.height == 32
    open_ = reference.trades.filter(pl.col("exit_reason") == "end_of_data")
    assert open_.height == 1 and open_["exit_price"][0] == 806.19  # marked to the last close
    assert reference.equity["equity"][-1] == pytest.approx(54101.37, abs=0.01)


def test_reference_matches_backtesting_py_trade_for_trade(goog, reference):
    stats = backtesting_py_run(ohlc_pandas(goog), 10, 30, 0.001, 10000)
    ref = stats._trades
    ours = reference.trades.filter(pl.col("exit_reason") == "signal")
    assert len(ref) == ours.height == 32
    assert [t.date() for t in ref["EntryTime"]] == [t.date() for t in ours["entry_ts"]]
    assert [t.date() for t in ref["ExitTime"]] == [t.date() for t in ours["exit_ts"]]
    np.testing.assert_allclose(ours["entry_price"], ref["EntryPrice"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours["exit_price"], ref["ExitPrice"], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(ours["qty"], ref["Size"])
    np.testing.assert_allclose(ours["pnl"], ref["PnL"], rtol=1e-12, atol=1e-8)
    # backtesting.py leaves the last position open and marks it to the last close too
    assert stats["Equity Final [$]"] == pytest.approx(reference.equity["equity"][-1], abs=1e-6)


def test_reference_matches_vectorbt_trade_for_trade(goog, reference):
    vbt = pytest.importorskip("vectorbt")
    df = ohlc_pandas(goog)
    close = df["Close"].to_numpy()
    up, down = crosses(close, 10, 30)
    # act on the next bar's open: shift the signals one bar and trade at the open
    entries = pd.Series(up, index=df.index).shift(1, fill_value=False)
    exits = pd.Series(down, index=df.index).shift(1, fill_value=False)
    pf = vbt.Portfolio.from_signals(
        df["Close"], entries, exits, price=df["Open"], fees=0.001, init_cash=10000,
        size=np.inf, size_granularity=1, freq="1D",
    )
    rec = pf.trades.records_readable
    closed = rec[rec["Status"] == "Closed"]
    ours = reference.trades.filter(pl.col("exit_reason") == "signal")
    assert len(closed) == 32 and (rec["Status"] == "Open").sum() == 1
    np.testing.assert_allclose(ours["entry_price"], closed["Avg Entry Price"], atol=1e-9)
    np.testing.assert_allclose(ours["exit_price"], closed["Avg Exit Price"], atol=1e-9)
    np.testing.assert_array_equal(ours["qty"], closed["Size"])
    np.testing.assert_allclose(ours["pnl"], closed["PnL"], rtol=1e-12, atol=1e-8)
    assert pf.final_value() == pytest.approx(54101.37, abs=0.01)


@pytest.mark.parametrize(
    ("symbol", "fast", "slow", "cash", "reverse"),
    [
        ("SP500", 20, 100, 1_000_000, False),
        ("NASDAQ", 5, 40, 1_000_000, False),
        ("SP500", 50, 200, 1_000_000, True),
    ],
)
def test_cross_check_backtesting_py_on_index_data(symbol, fast, slow, cash, reverse):
    """Other real data, other windows, and long/short reversals: same trades as backtesting.py."""
    bars = load_samples([symbol])
    cfg = bl.BacktestConfig.model_validate({
        "strategy": "sma_crossover", "params": {"fast": fast, "slow": slow}, "universe": [symbol],
        "initial_cash": cash, "costs": {"commission_bps": 5},
        "direction": "long_short" if reverse else "long_only",
    })
    ours = bl.run_backtest(cfg, bars)
    stats = backtesting_py_run(ohlc_pandas(bars), fast, slow, 0.0005, cash, reverse=reverse)
    ref = stats._trades
    closed = ours.trades.filter(pl.col("exit_reason") != "end_of_data")
    assert closed.height == len(ref) > 5
    assert closed["direction"].to_list() == ["long" if s > 0 else "short" for s in ref["Size"]]
    np.testing.assert_allclose(closed["entry_price"], ref["EntryPrice"], atol=1e-9)
    np.testing.assert_allclose(closed["exit_price"], ref["ExitPrice"], atol=1e-9)
    np.testing.assert_array_equal(closed["qty"], np.abs(ref["Size"]))
    np.testing.assert_allclose(closed["pnl"], ref["PnL"], rtol=1e-9, atol=1e-6)
    assert stats["Equity Final [$]"] == pytest.approx(ours.equity["equity"][-1], rel=1e-12)


def test_reference_matches_bt_trade_for_trade(goog, reference):
    """bt trades at the prices it is given: feed it the opens and the targets decided at the
    previous close; its transactions are our fills (entries and exits, same dates, prices, sizes)."""
    bt = pytest.importorskip("bt")
    df = ohlc_pandas(goog)
    close = df["Close"].to_numpy()
    up, down = crosses(close, 10, 30)
    target = np.full(len(close), np.nan)
    holding = False
    for i in range(len(close) - 1):
        if up[i] and not holding:
            holding, target[i + 1] = True, 1.0
        elif down[i] and holding:
            holding, target[i + 1] = False, 0.0
    weights = pd.Series(target, index=df.index)

    class WeighOnSignal(bt.Algo):
        def __call__(self, strategy):
            w = weights.loc[strategy.now]
            if np.isnan(w):
                return False
            strategy.temp["weights"] = {"GOOG": w}
            return True

    test = bt.Backtest(
        bt.Strategy("sma", [WeighOnSignal(), bt.algos.Rebalance()]), pd.DataFrame({"GOOG": df["Open"]}),
        initial_capital=10_000, commissions=lambda q, p: abs(q) * p * 0.001, integer_positions=True,
        progress_bar=False,
    )
    tx = bt.run(test).get_transactions().reset_index()
    buys, sells = tx[tx["quantity"] > 0], tx[tx["quantity"] < 0]
    ours = reference.trades
    assert len(buys) == ours.height == 33 and len(sells) == 32
    assert [d.date() for d in buys["Date"]] == [t.date() for t in ours["entry_ts"]]
    assert [d.date() for d in sells["Date"]] == [t.date() for t in ours["exit_ts"][:32]]
    np.testing.assert_allclose(buys["price"], ours["entry_price"], atol=1e-9)
    np.testing.assert_allclose(sells["price"], ours["exit_price"][:32], atol=1e-9)
    np.testing.assert_array_equal(buys["quantity"], ours["qty"])
