"""Single-asset, long-only bar simulation (the first engine cut).

Semantics: a signal is computed from data up to and including bar N's close. With
``execution.fill = "next_open"`` (default) the order fills at bar N+1's open; with ``"close"``
it fills at bar N's close. A signal on the last bar has no bar to fill on and is dropped.
Entries invest ``sizing.fraction`` of equity: ``qty = floor(fraction * equity /
(price * (1 + commission)))`` in whole units (or the unrounded value with fractional units).
Commission is charged per side on traded value; slippage moves the fill price against the
trader. A position still open after the last bar is marked to the last close and reported with
``exit_reason = "end_of_data"`` (no exit commission charged).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class _OpenTrade:
    entry_idx: int
    entry_price: float
    qty: float
    entry_fee: float
    low: float = math.inf
    high: float = -math.inf


@dataclass
class SimOutput:
    equity: np.ndarray
    cash: np.ndarray
    position_value: np.ndarray
    trades: list[dict] = field(default_factory=list)  # indices, prices, qty, fees, reason


def simulate_long_only(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    entries: np.ndarray,
    exits: np.ndarray,
    *,
    initial_cash: float,
    fraction: float,
    whole_units: bool,
    commission: float,
    slippage: float,
    fill_next_open: bool,
) -> SimOutput:
    """Run the bar loop. ``commission`` and ``slippage`` are fractions (10 bps = 0.001)."""
    n = close.size
    cash = initial_cash
    qty = 0.0
    trade: _OpenTrade | None = None
    pending = 0  # +1 enter at next open, -1 exit at next open
    equity = np.empty(n)
    cash_arr = np.empty(n)
    pos_val = np.empty(n)
    trades: list[dict] = []

    def enter(i: int, ref_price: float) -> None:
        nonlocal cash, qty, trade
        price = ref_price * (1.0 + slippage)
        budget = fraction * cash
        size = budget / (price * (1.0 + commission))
        if whole_units:
            size = math.floor(size + 1e-9)
        if size <= 0:
            return
        fee = price * size * commission
        cash -= price * size + fee
        qty = size
        trade = _OpenTrade(entry_idx=i, entry_price=price, qty=size, entry_fee=fee)

    def leave(i: int, ref_price: float, reason: str) -> None:
        nonlocal cash, qty, trade
        assert trade is not None
        price = ref_price * (1.0 - slippage)
        fee = price * qty * commission
        cash += price * qty - fee
        trades.append(_closed(trade, i, price, fee, reason))
        qty = 0.0
        trade = None

    for i in range(n):
        if fill_next_open and pending:
            if pending > 0 and trade is None:
                enter(i, open_[i])
            elif pending < 0 and trade is not None:
                leave(i, open_[i], "signal")
            pending = 0
        if trade is not None:
            trade.low = min(trade.low, low[i])
            trade.high = max(trade.high, high[i])
        # signals from bar i's close
        if trade is None and entries[i]:
            if fill_next_open:
                pending = 1 if i + 1 < n else 0
            else:
                enter(i, close[i])
        elif trade is not None and exits[i]:
            if fill_next_open:
                pending = -1 if i + 1 < n else 0
            else:
                leave(i, close[i], "signal")
        cash_arr[i] = cash
        pos_val[i] = qty * close[i]
        equity[i] = cash + pos_val[i]

    if trade is not None:
        trades.append(_closed(trade, n - 1, close[-1], 0.0, "end_of_data"))
    return SimOutput(equity=equity, cash=cash_arr, position_value=pos_val, trades=trades)


def _closed(t: _OpenTrade, exit_idx: int, exit_price: float, exit_fee: float, reason: str) -> dict:
    fees = t.entry_fee + exit_fee
    pnl = (exit_price - t.entry_price) * t.qty - fees
    return {
        "entry_idx": t.entry_idx,
        "exit_idx": exit_idx,
        "qty": t.qty,
        "entry_price": t.entry_price,
        "exit_price": exit_price,
        "pnl": pnl,
        "return_pct": pnl / (t.entry_price * t.qty),
        "fees": fees,
        "bars_held": exit_idx - t.entry_idx,
        "mae": t.low / t.entry_price - 1.0,
        "mfe": t.high / t.entry_price - 1.0,
        "exit_reason": reason,
    }
