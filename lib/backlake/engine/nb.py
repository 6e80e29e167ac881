"""Compiled portfolio simulation (numba, ``cache=True``): bars x assets with shared cash.

Everything here takes one :class:`~backlake.engine.records.MarketData` (the bars), the
strategy's events or weights and one options record (:class:`SimOptions`), and returns
arrays; the Python side (``engine/core.py``) builds the inputs and turns the outputs into
frames. State is named, not positional: the book of one simulation (cash, positions,
pending orders, open-trade accumulators) and the trades are record arrays whose dtypes,
with the codes (``Direction``, ``ExitReason``, ...), live in ``engine/records.py``.

Per bar ``i`` the kernel does, in this order:

1. fills of orders decided at bar ``i-1``'s close, at bar ``i``'s open (``fill_next_open``):
   reductions and closes for every asset first, then openings and increases, so cash freed by
   one asset can fund another;
2. stop-loss / take-profit on every open position against bar ``i``'s range: a gap through
   the level fills at the open, otherwise at the level; if both are touched in one bar the
   stop is assumed first;
3. mark to market at the close;
4. decisions from bar ``i``'s close: max-holding exits, strategy events or target weights;
   with close fills they execute at once at bar ``i``'s close.

Orders above the participation cap fill partially; the rest is carried to the next bar.
Costs per fill: commission (bps + fixed per order), slippage (bps) and square-root market
impact ``k * sigma * sqrt(qty / ADV)`` as price moves against the trader, and the market's
regulatory fees (US: SEC fee and FINRA TAF on sells; India: STT, exchange charges, SEBI fee,
GST on brokerage + charges, stamp duty on buys).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import literal_unroll, njit

from backlake.engine.records import (
    FEE_NAMES,
    NO_PENDING,
    Book,
    Direction,
    ExitReason,
    Market,
    MarketData,
    Record,
    SizeMethod,
    account_dt,
    fee_dt,
    open_trade_dt,
    pending_dt,
    trade_dt,
)

__all__ = ["SimOptions", "simulate_nb", "rolling_sigma_nb", "rolling_mean_nb"]


class SimOptions(NamedTuple):
    """The kernel's options, one record per backtest (``core.sim_options``); codes are plain ints."""

    initial_cash: float
    direction: int  # Direction
    fill_next_open: bool
    size_method: int  # SizeMethod
    fraction: float
    quantity: float
    target_vol: float
    max_leverage: float
    whole_units: bool
    periods_per_year: float
    commission_rate: float
    commission_fixed: float
    slippage_rate: float
    impact_k: float
    participation_cap: float  # <= 0: no cap
    stop_loss: float  # <= 0: none (fraction of entry price)
    take_profit: float  # <= 0: none
    max_hold: int  # <= 0: none
    market: int  # Market
    sec_fee_rate: float
    finra_taf_per_share: float
    finra_taf_max: float
    stt_rate: float
    exchange_rate: float
    gst_rate: float
    stamp_duty_rate: float
    sebi_rate: float


@njit(cache=True)
def _round_qty(q: float, whole: bool) -> float:
    if whole:
        return math.floor(q + 1e-9) if q >= 0 else -math.floor(-q + 1e-9)
    return q


# -- fee breakdowns: records with one field per name of FEE_NAMES (fee_dt, open_trade_dt, trade_dt)
@njit(cache=True)
def _clear_fees(rec: Record) -> None:
    for name in literal_unroll(FEE_NAMES):
        rec[name] = 0.0


@njit(cache=True)
def _add_fees(dst: Record, src: Record) -> None:
    for name in literal_unroll(FEE_NAMES):
        dst[name] += src[name]


@njit(cache=True)
def _copy_fees(dst: Record, src: Record) -> None:
    for name in literal_unroll(FEE_NAMES):
        dst[name] = src[name]


@njit(cache=True)
def _fee_total(rec: Record) -> float:
    """The sum of the breakdown, added up in FEE_NAMES order."""
    total = 0.0
    for name in literal_unroll(FEE_NAMES):
        total += rec[name]
    return total


@njit(cache=True)
def _fees(value: float, qty: float, is_buy: bool, o: SimOptions, out: Record) -> float:
    """Fill the fee breakdown ``out`` (a fee_dt record) for one fill of ``value`` (price x qty,
    > 0); return the total."""
    _clear_fees(out)
    if qty <= 0:
        return 0.0
    out.commission = value * o.commission_rate + o.commission_fixed
    if o.market == Market.US:
        if not is_buy:
            out.sec_fee = value * o.sec_fee_rate
            out.finra_taf = min(qty * o.finra_taf_per_share, o.finra_taf_max)
    elif o.market == Market.INDIA:
        out.stt = value * o.stt_rate
        out.exchange_fee = value * o.exchange_rate
        out.sebi_fee = value * o.sebi_rate
        out.gst = o.gst_rate * (out.commission + out.exchange_fee + out.sebi_fee)
        if is_buy:
            out.stamp_duty = value * o.stamp_duty_rate
    return _fee_total(out)


@njit(cache=True)
def _stamp(o: SimOptions) -> float:
    """Fees on a buy that scale with value, besides commission (for affordability)."""
    if o.market == Market.INDIA:
        return o.stt_rate + o.exchange_rate + o.sebi_rate + o.stamp_duty_rate + o.gst_rate * (
            o.commission_rate + o.exchange_rate + o.sebi_rate)
    return 0.0


@njit(cache=True)
def _price_moves(
    ref: float, qty: float, is_buy: bool, sigma: float, adv: float, o: SimOptions
) -> tuple[float, float, float]:
    """(fill price, slippage cost, impact cost) for ``qty`` units at reference price ``ref``."""
    slip = ref * o.slippage_rate
    imp = 0.0
    if (o.impact_k > 0) and (adv > 0) and (sigma == sigma):
        imp = ref * o.impact_k * sigma * math.sqrt(qty / adv)
    move = slip + imp
    price = ref + move if is_buy else max(ref - move, 1e-12)
    return price, slip * qty, imp * qty


@njit(cache=True)
def _charge(acct: Record, fill: Record, fee: float, slip: float, imp: float) -> None:
    """Add one fill's costs to the current bar's (``account_dt``): commission, the other fees,
    slippage and impact."""
    acct.bar_commission += fill.commission
    acct.bar_fees += fee - fill.commission
    acct.bar_slippage += slip
    acct.bar_impact += imp


# -- the book -----------------------------------------------------------------------------------
@njit(cache=True)
def _new_book(m: int, cash: float) -> Book:
    pending = np.empty(m, dtype=pending_dt)
    for j in range(m):
        p = pending[j]
        p.side = NO_PENDING
        p.target = np.nan
        p.signal_idx = 0
        p.reason = ExitReason.SIGNAL
    account = np.zeros(1, dtype=account_dt)
    account[0].cash = cash
    return Book(np.zeros(m), pending, np.zeros(m, dtype=open_trade_dt), account, np.zeros(1, dtype=fee_dt))


@njit(cache=True)
def _tradable(tradable: np.ndarray, i: int, j: int) -> bool:
    """Asset ``j`` has a real bar ``i`` (orders can fill there); see ``MarketData.tradable``."""
    return (tradable.shape[0] == 1) or bool(tradable[i, j])


@njit(cache=True)
def _cap(volume: float, o: SimOptions) -> float:
    """Most units one fill may take from a bar of ``volume`` (participation cap)."""
    return o.participation_cap * volume if o.participation_cap > 0 else np.inf


@njit(cache=True)
def _grow(trades: np.ndarray, n: int) -> np.ndarray:
    if n < trades.shape[0]:
        return trades
    bigger = np.empty(trades.shape[0] * 2 + 16, dtype=trade_dt)
    bigger[: trades.shape[0]] = trades
    return bigger


@njit(cache=True)
def _record(rec: Record, t: Record, j: int, exit_idx: int, reason: int) -> None:
    """Write trade record ``rec`` (trade_dt) from asset ``j``'s open-trade accumulators ``t``."""
    d = t.direction
    entry = t.open_val / t.open_qty
    exit_ = t.close_val / t.close_qty if t.close_qty > 0 else entry
    fees = _fee_total(t)
    _copy_fees(rec, t)
    # long: sold - bought; short: sold (opening) - bought (closing)
    pnl = d * (t.close_val - t.open_val) - fees
    rec.asset = j
    rec.direction = d
    rec.qty = t.open_qty
    rec.entry_idx = t.entry_idx
    rec.entry_price = entry
    rec.exit_idx = exit_idx
    rec.exit_price = exit_
    rec.pnl = pnl
    rec.ret = pnl / t.open_val
    rec.fees = fees
    rec.bars_held = exit_idx - t.entry_idx
    lo, hi = t.low, t.high
    if not (lo < np.inf):
        lo, hi = entry, entry
    if d > 0:
        rec.mae = lo / entry - 1.0
        rec.mfe = hi / entry - 1.0
    else:
        rec.mae = 1.0 - hi / entry
        rec.mfe = 1.0 - lo / entry
    rec.exit_reason = reason
    rec.slippage_cost = t.slippage_cost
    rec.impact_cost = t.impact_cost


@njit(cache=True)
def _log_trade(trades: np.ndarray, book: Book, j: int, exit_idx: int, reason: int) -> np.ndarray:
    """Append asset ``j``'s trade to ``trades`` (trade_dt; grown when full, hence returned)."""
    acct = book.account[0]
    k = acct.n_trades
    trades = _grow(trades, k)
    _record(trades[k], book.open_trade[j], j, exit_idx, reason)
    acct.n_trades = k + 1
    return trades


# -- the simulation -----------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def simulate_nb(
    mkt: MarketData, entries: np.ndarray, exits: np.ndarray, weights: np.ndarray, use_weights: bool,
    o: SimOptions,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Simulate; see the module docstring. Arrays are ``(n_bars, n_assets)``.

    ``mkt.tradable[i, j]`` is False where asset j has no real bar i (a carried-forward price):
    nothing fills there; pending orders wait for the asset's next real bar. A ``(1, 1)``
    array means every bar is tradable.

    Returns ``(equity, cash, position, trades, costs)``: equity and cash per bar, position
    (units, signed) per bar and asset, the trades (a ``trade_dt`` record array) and the costs
    charged on each bar, ``(n_bars, 4)`` money amounts in the order of ``COST_NAMES``
    (commission, other fees, slippage, impact).
    """
    n, m = mkt.close.shape
    # what the per-bar loop reads; the helpers that take the whole book run on events only
    open_, high, low, close, tradable = mkt.open, mkt.high, mkt.low, mkt.close, mkt.tradable
    equity = np.empty(n)
    cash_out = np.empty(n)
    costs_out = np.zeros((n, 4))
    position = np.zeros((n, m))
    trades = np.empty(max(16, 4 * m), dtype=trade_dt)
    book = _new_book(m, o.initial_cash)
    pos, pending, held, account = book.pos, book.pending, book.open_trade, book.account
    pend_weights_row = -1

    for i in range(n):
        acct0 = account[0]
        acct0.bar_commission = 0.0
        acct0.bar_fees = 0.0
        acct0.bar_slippage = 0.0
        acct0.bar_impact = 0.0
        # ---- 1. fills at this bar's open ---------------------------------------------------
        if o.fill_next_open and (i > 0):
            if pend_weights_row >= 0:
                _size_weights(weights[pend_weights_row], open_[i], book, o)
                pend_weights_row = -1
            if _any_pending(pending):
                trades = _fill_pending(i, open_[i], True, mkt, book, o, trades)
        # ---- 2. stops / targets during the bar --------------------------------------------
        if (o.stop_loss > 0) or (o.take_profit > 0):
            for j in range(m):
                if (pos[j] == 0) or not _tradable(tradable, i, j):
                    continue
                t = held[j]
                entered_now = (t.entry_idx == i) and o.fill_next_open
                ref, reason = _stop_or_target(
                    pos[j], t.open_val / t.open_qty, open_[i, j], high[i, j], low[i, j], entered_now, o)
                if reason < 0:
                    continue
                p = pending[j]
                p.side = 0
                p.target = np.nan
                trades = _reduce(i, j, ref, max(i - 1, 0), reason, True, mkt, book, o, trades)
                if pos[j] != 0:  # capped partial exit: the rest leaves at the next open
                    p.side = 0
                    p.reason = reason
                    p.signal_idx = i
        # ---- 3. mark to market -------------------------------------------------------------
        for j in range(m):
            t = held[j]
            if t.is_open:
                t.low = min(t.low, low[i, j])
                t.high = max(t.high, high[i, j])
        # ---- 4. decisions at the close -----------------------------------------------------
        last = i == n - 1
        if not (o.fill_next_open and last):
            if use_weights:
                row_ok = True
                for j in range(m):
                    if weights[i, j] != weights[i, j]:
                        row_ok = False
                if row_ok:
                    if o.fill_next_open:
                        pend_weights_row = i
                    else:
                        _size_weights(weights[i], close[i], book, o)
                    for j in range(m):
                        pending[j].signal_idx = i
            else:
                for j in range(m):
                    p = pending[j]
                    side = _decide(entries[i, j], exits[i, j], pos[j], p.side, o.direction)
                    if side != NO_PENDING:
                        p.side = side
                        p.target = np.nan
                        p.signal_idx = i
                        p.reason = ExitReason.SIGNAL
            if o.max_hold > 0:
                fill_at = i + 1 if o.fill_next_open else i
                for j in range(m):
                    p = pending[j]
                    if ((pos[j] != 0) and (fill_at - held[j].entry_idx >= o.max_hold)
                            and ((p.side == NO_PENDING) or (p.side * pos[j] > 0))):
                        p.side = 0
                        p.target = np.nan
                        p.signal_idx = i
                        p.reason = ExitReason.MAX_HOLD
            if (not o.fill_next_open) and _any_pending(pending):
                trades = _fill_pending(i, close[i], False, mkt, book, o, trades)
        cash = account[0].cash
        value = cash
        for j in range(m):
            value += pos[j] * close[i, j]
            position[i, j] = pos[j]
        equity[i] = value
        cash_out[i] = cash
        acct0 = account[0]
        costs_out[i, 0] = acct0.bar_commission
        costs_out[i, 1] = acct0.bar_fees
        costs_out[i, 2] = acct0.bar_slippage
        costs_out[i, 3] = acct0.bar_impact

    # ---- positions still open: marked to the last close --------------------------------------
    for j in range(m):
        if pos[j] != 0:
            px = close[n - 1, j]
            q = abs(pos[j])
            t = held[j]
            t.close_qty += q
            t.close_val += q * px
            trades = _log_trade(trades, book, j, n - 1, ExitReason.END_OF_DATA)
    return equity, cash_out, position, trades[: account[0].n_trades], costs_out


@njit(cache=True)
def _any_pending(pending: np.ndarray) -> bool:
    m: int = pending.shape[0]
    j = 0  # a loop, not any(...): numba compiles no generator expression
    while (j < m) and (pending[j].side == NO_PENDING):
        j += 1
    return j < m


@njit(cache=True)
def _fill_pending(
    i: int, prices: np.ndarray, at_open: bool, mkt: MarketData, book: Book, o: SimOptions, trades: np.ndarray
) -> np.ndarray:
    """Work every pending order at ``prices`` (bar ``i``'s opens, or its closes): reductions and
    closes of every asset first, then openings and increases, so cash freed by one asset can
    fund another. Returns ``trades``."""
    m = book.pos.shape[0]
    for j in range(m):
        p = book.pending[j]
        if (p.side == NO_PENDING) or not _tradable(mkt.tradable, i, j):
            continue
        sig = p.signal_idx if at_open else i
        trades = _reduce(i, j, prices[j], sig, p.reason, False, mkt, book, o, trades)
    for j in range(m):
        p = book.pending[j]
        if (p.side == NO_PENDING) or not _tradable(mkt.tradable, i, j):
            continue
        sig = p.signal_idx if at_open else i
        _increase(i, j, prices[j], sig, prices, mkt, book, o)
    return trades


@njit(cache=True)
def _stop_or_target(
    pos: float, entry: float, open_: float, high: float, low: float, entered_now: bool, o: SimOptions
) -> tuple[float, int]:
    """(reference price, ExitReason) of a stop-loss or take-profit exit of a position of ``pos``
    units entered at ``entry``, against a bar's open / high / low; reason -1: no exit.

    The stop is assumed first when both levels are touched. A gap through the level fills at
    the open, unless the position was entered at this very open (then at the level)."""
    d = 1.0 if pos > 0 else -1.0
    level = 0.0
    reason = -1
    if o.stop_loss > 0:
        sl = entry * (1 - d * o.stop_loss)
        if ((d > 0) and (low <= sl)) or ((d < 0) and (high >= sl)):
            level, reason = sl, ExitReason.STOP_LOSS
    if (reason < 0) and (o.take_profit > 0):
        tp = entry * (1 + d * o.take_profit)
        if ((d > 0) and (high >= tp)) or ((d < 0) and (low <= tp)):
            level, reason = tp, ExitReason.TAKE_PROFIT
    if reason < 0:
        return 0.0, reason
    if reason == ExitReason.STOP_LOSS:
        gap = ((d > 0) and (open_ <= level)) or ((d < 0) and (open_ >= level))
    else:
        gap = ((d > 0) and (open_ >= level)) or ((d < 0) and (open_ <= level))
    return (open_ if (gap and not entered_now) else level), reason


@njit(cache=True)
def _decide(entry: bool, exit_: bool, pos: float, pending: int, direction: int) -> int:
    """Target side (+1 / 0 / -1) an event asks for, or NO_PENDING when nothing changes."""
    if entry == exit_:
        return NO_PENDING
    cur = 1 if pos > 0 else (-1 if pos < 0 else 0)
    if pending != NO_PENDING:
        cur = pending
    if direction == Direction.LONG_ONLY:
        want = 1 if entry else 0
    elif direction == Direction.SHORT_ONLY:
        want = -1 if exit_ else 0
    else:
        want = 1 if entry else -1
    if want == cur:
        return NO_PENDING
    if (direction == Direction.LONG_ONLY) and (cur == 0) and (want == 0):
        return NO_PENDING
    return want


@njit(cache=True)
def _size_weights(w: np.ndarray, prices: np.ndarray, book: Book, o: SimOptions) -> None:
    """Turn target weights ``w`` (one per asset) into signed unit targets at ``prices``
    (equity marked at them)."""
    pos = book.pos
    m = pos.shape[0]
    eq = book.account[0].cash
    for j in range(m):
        eq += pos[j] * prices[j]
    for j in range(m):
        wj = w[j]
        if o.direction == Direction.LONG_ONLY:
            wj = max(wj, 0.0)
        elif o.direction == Direction.SHORT_ONLY:
            wj = min(wj, 0.0)
        tgt = _round_qty(wj * o.fraction * eq / prices[j], o.whole_units) if prices[j] > 0 else 0.0
        if tgt == pos[j]:
            continue
        p = book.pending[j]
        p.side = 1 if tgt > 0 else (-1 if tgt < 0 else 0)
        p.target = tgt
        p.reason = ExitReason.REBALANCE


@njit(cache=True)
def _entry_units(
    j: int, sig: int, ref: float, prices: np.ndarray, mkt: MarketData, book: Book, o: SimOptions
) -> float:
    """Units to open at reference price ``ref`` under the sizing method (unsigned)."""
    pos = book.pos
    m = pos.shape[0]
    eq: float = book.account[0].cash
    for k in range(m):
        eq += pos[k] * prices[k]
    unit_cost = ref * (1 + o.slippage_rate) * (1 + o.commission_rate)
    if o.size_method == SizeMethod.FIXED_QUANTITY:
        return o.quantity
    if o.size_method == SizeMethod.FIXED_FRACTION:
        budget = o.fraction * eq
    elif o.size_method == SizeMethod.EQUAL_WEIGHT:
        budget = o.fraction * eq / m
    else:
        s = mkt.sigma[sig, j]
        if not (s > 0):
            return 0.0
        ann = s * math.sqrt(o.periods_per_year)
        budget = eq * min(o.max_leverage, o.target_vol / ann) / m
    return max(budget - o.commission_fixed, 0.0) / unit_cost


@njit(cache=True)
def _reduce(
    i: int, j: int, ref: float, sig: int, reason: int, forced: bool, mkt: MarketData, book: Book, o: SimOptions,
    trades: np.ndarray,
) -> np.ndarray:
    """Work asset ``j``'s pending order at reference price ``ref``, first half: reduce or close
    the position (fully, or the part above a smaller same-side target), at most the
    participation cap; the remainder stays pending. ``sig``: the bar whose volatility and volume
    price the impact; ``reason``: the ExitReason recorded if the trade closes; ``forced``: a
    stop / target exit (the pending order is not consumed). Returns ``trades``."""
    p = book.pending[j]
    side = p.side
    cur = book.pos[j]
    if cur == 0:
        return trades
    tgt = p.target
    if (side == 0) or ((cur > 0) and (side < 0)) or ((cur < 0) and (side > 0)):
        goal = 0.0
    elif (tgt == tgt) and (abs(tgt) < abs(cur)):
        goal = tgt
    else:
        return trades
    q = min(abs(cur - goal), _cap(mkt.volume[i, j], o))
    if q <= 0:
        return trades
    is_buy = cur < 0
    price, slip, imp = _price_moves(ref, q, is_buy, mkt.sigma[sig, j], mkt.adv[sig, j], o)
    fill = book.fill_fees[0]
    fee = _fees(price * q, q, is_buy, o, fill)
    acct = book.account[0]
    acct.cash += (-price * q if is_buy else price * q) - fee
    _charge(acct, fill, fee, slip, imp)
    t = book.open_trade[j]
    _add_fees(t, fill)
    t.slippage_cost += slip
    t.impact_cost += imp
    t.close_qty += q
    t.close_val += price * q
    book.pos[j] = cur + q if is_buy else cur - q
    if abs(book.pos[j]) < 1e-12:
        book.pos[j] = 0.0
        trades = _log_trade(trades, book, j, i, reason)
        t.is_open = False
        if (side == 0) or forced:
            if side == 0:
                p.side = NO_PENDING
            p.target = np.nan
        elif (p.target == p.target) and (p.target == 0):
            p.side = NO_PENDING
    elif (goal != 0) and (abs(book.pos[j] - goal) < 1e-12):
        p.side = NO_PENDING
        p.target = np.nan
    return trades


@njit(cache=True)
def _increase(
    i: int, j: int, ref: float, sig: int, prices: np.ndarray, mkt: MarketData, book: Book, o: SimOptions
) -> None:
    """Work asset ``j``'s pending order at reference price ``ref``, second half: open or
    increase towards the target side (sized at ``ref``, equity marked at ``prices``), at most
    the participation cap and what cash affords for a long; the remainder stays pending."""
    p = book.pending[j]
    side = p.side
    cur = book.pos[j]
    if (side == 0) or (side == NO_PENDING):
        return
    if ((cur > 0) and (side < 0)) or ((cur < 0) and (side > 0)):
        return  # still closing the opposite side (capped): wait
    tgt = p.target
    if tgt != tgt:
        if cur != 0:  # already on that side: nothing to open
            p.side = NO_PENDING
            return
        units = _round_qty(_entry_units(j, sig, ref, prices, mkt, book, o), o.whole_units)
        if units <= 0:
            p.side = NO_PENDING
            return
        tgt = units * side
        p.target = tgt
    need = abs(tgt) - abs(cur)
    if need <= 0:
        p.side = NO_PENDING
        p.target = np.nan
        return
    q = min(need, _cap(mkt.volume[i, j], o))
    is_buy = side > 0
    price, slip, imp = _price_moves(ref, q, is_buy, mkt.sigma[sig, j], mkt.adv[sig, j], o)
    acct = book.account[0]
    if is_buy:  # longs are paid from cash: shrink to what cash affords
        afford = (acct.cash - o.commission_fixed) / (price * (1 + o.commission_rate) * (1 + _stamp(o)))
        if q > afford:
            q = _round_qty(max(afford, 0.0), o.whole_units)
            if q <= 0:
                p.side = NO_PENDING
                p.target = np.nan
                return
            price, slip, imp = _price_moves(ref, q, is_buy, mkt.sigma[sig, j], mkt.adv[sig, j], o)
            p.target = cur + q  # cannot afford more: this is the target now
    fill = book.fill_fees[0]
    fee = _fees(price * q, q, is_buy, o, fill)
    acct.cash += (-price * q if is_buy else price * q) - fee
    _charge(acct, fill, fee, slip, imp)
    t = book.open_trade[j]
    if not t.is_open:
        t.is_open = True
        t.direction = 1 if side > 0 else -1
        t.entry_idx = i
        t.open_qty = 0.0
        t.open_val = 0.0
        t.close_qty = 0.0
        t.close_val = 0.0
        _clear_fees(t)
        t.slippage_cost = 0.0
        t.impact_cost = 0.0
        t.low = mkt.low[i, j] if o.fill_next_open else np.inf
        t.high = mkt.high[i, j] if o.fill_next_open else -np.inf
    _add_fees(t, fill)
    t.slippage_cost += slip
    t.impact_cost += imp
    t.open_qty += q
    t.open_val += price * q
    book.pos[j] = cur + q * side
    if abs(abs(book.pos[j]) - abs(p.target)) < 1e-12:
        p.side = NO_PENDING
        p.target = np.nan


@njit(cache=True)
def rolling_sigma_nb(close: np.ndarray, window: int) -> np.ndarray:
    """Std (ddof=1) of simple returns over the last ``window`` bars, known at each bar's close."""
    n, m = close.shape
    out = np.full((n, m), np.nan)
    for j in range(m):
        for i in range(window, n):
            s = 0.0
            s2 = 0.0
            for k in range(i - window + 1, i + 1):
                r = close[k, j] / close[k - 1, j] - 1.0
                s += r
                s2 += r * r
            mean = s / window
            var = (s2 - window * mean * mean) / (window - 1) if window > 1 else 0.0
            out[i, j] = math.sqrt(max(var, 0.0))
    return out


@njit(cache=True)
def rolling_mean_nb(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values, known at each bar's close (NaN before)."""
    n, m = x.shape
    out = np.full((n, m), np.nan)
    for j in range(m):
        s = 0.0
        for i in range(n):
            s += x[i, j]
            if i >= window:
                s -= x[i - window, j]
            if i >= window - 1:
                out[i, j] = s / window
    return out
