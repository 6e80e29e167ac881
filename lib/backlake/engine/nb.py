"""Compiled portfolio simulation (numba, ``cache=True``): bars x assets with shared cash.

Everything here takes arrays and one options record (:class:`SimOptions`) and returns arrays;
the Python side (``engine/core.py``) builds the inputs and turns the outputs into frames.

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
from numba import njit

# -- enums ------------------------------------------------------------------------------------
DIR_LONG_ONLY, DIR_SHORT_ONLY, DIR_LONG_SHORT = 0, 1, 2
SIZE_FIXED_FRACTION, SIZE_FIXED_QUANTITY, SIZE_EQUAL_WEIGHT, SIZE_VOL_TARGET = 0, 1, 2, 3
MARKET_NONE, MARKET_US, MARKET_INDIA = 0, 1, 2
EXIT_SIGNAL, EXIT_STOP_LOSS, EXIT_TAKE_PROFIT, EXIT_MAX_HOLD, EXIT_END_OF_DATA, EXIT_REBALANCE = 0, 1, 2, 3, 4, 5
EXIT_REASONS = ("signal", "stop_loss", "take_profit", "max_hold", "end_of_data", "rebalance")

# fee breakdown columns, in order
FEE_NAMES = ("commission", "sec_fee", "finra_taf", "stt", "exchange_fee", "gst", "stamp_duty", "sebi_fee")
N_FEES = len(FEE_NAMES)

# trade record columns
(T_ASSET, T_DIR, T_QTY, T_ENTRY_IDX, T_ENTRY_PRICE, T_EXIT_IDX, T_EXIT_PRICE, T_PNL, T_RET, T_FEES,
 T_BARS, T_MAE, T_MFE, T_REASON, T_SLIP, T_IMPACT) = range(16)
T_FEE0 = 16
N_TRADE_COLS = T_FEE0 + N_FEES
NO_PENDING = 9  # pending side when no order is waiting


class SimOptions(NamedTuple):
    initial_cash: float
    direction: int
    fill_next_open: bool
    size_method: int
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
    market: int
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


@njit(cache=True)
def _fees(value: float, qty: float, is_buy: bool, o: SimOptions, out: np.ndarray) -> float:
    """Fill the fee breakdown for one fill of ``value`` (price x qty, > 0); return the total."""
    for k in range(N_FEES):
        out[k] = 0.0
    if qty <= 0:
        return 0.0
    out[0] = value * o.commission_rate + o.commission_fixed
    if o.market == MARKET_US:
        if not is_buy:
            out[1] = value * o.sec_fee_rate
            out[2] = min(qty * o.finra_taf_per_share, o.finra_taf_max)
    elif o.market == MARKET_INDIA:
        out[3] = value * o.stt_rate
        out[4] = value * o.exchange_rate
        out[7] = value * o.sebi_rate
        out[5] = o.gst_rate * (out[0] + out[4] + out[7])
        if is_buy:
            out[6] = value * o.stamp_duty_rate
    total = 0.0
    for k in range(N_FEES):
        total += out[k]
    return total


@njit(cache=True)
def _price_moves(ref: float, qty: float, is_buy: bool, sigma: float, adv: float, o: SimOptions):
    """(fill price, slippage cost, impact cost) for ``qty`` units at reference price ``ref``."""
    slip = ref * o.slippage_rate
    imp = 0.0
    if o.impact_k > 0 and adv > 0 and sigma == sigma:
        imp = ref * o.impact_k * sigma * math.sqrt(qty / adv)
    move = slip + imp
    price = ref + move if is_buy else max(ref - move, 1e-12)
    return price, slip * qty, imp * qty


@njit(cache=True)
def _grow(trades: np.ndarray, n: int) -> np.ndarray:
    if n < trades.shape[0]:
        return trades
    bigger = np.full((trades.shape[0] * 2 + 16, trades.shape[1]), np.nan)
    bigger[: trades.shape[0]] = trades
    return bigger


@njit(cache=True, nogil=True)
def simulate_nb(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray,
    entries: np.ndarray, exits: np.ndarray, weights: np.ndarray, use_weights: bool,
    sigma: np.ndarray, adv: np.ndarray, tradable: np.ndarray, o: SimOptions,
):
    """Simulate; see the module docstring. Arrays are ``(n_bars, n_assets)``.

    ``tradable[i, j]`` is False where asset j has no real bar i (a carried-forward price):
    nothing fills there; pending orders wait for the asset's next real bar. A ``(1, 1)``
    array means every bar is tradable.

    Returns ``(equity, cash, position, trades)``: equity and cash per bar, position (units,
    signed) per bar and asset, and the trade records (``N_TRADE_COLS`` columns, see T_*).
    """
    n, m = close.shape
    equity = np.empty(n)
    cash_out = np.empty(n)
    position = np.zeros((n, m))
    trades = np.full((max(16, 4 * m), N_TRADE_COLS), np.nan)
    n_trades = 0

    cash = o.initial_cash
    pos = np.zeros(m)
    # open trade accumulators
    t_open = np.zeros(m, dtype=np.bool_)
    t_dir = np.zeros(m)
    t_entry_idx = np.zeros(m, dtype=np.int64)
    t_open_qty = np.zeros(m)  # units bought (long) / sold (short) to open or increase
    t_open_val = np.zeros(m)
    t_close_qty = np.zeros(m)
    t_close_val = np.zeros(m)
    t_fees = np.zeros((m, N_FEES))
    t_slip = np.zeros(m)
    t_imp = np.zeros(m)
    t_lo = np.zeros(m)
    t_hi = np.zeros(m)
    # pending orders
    pend_side = np.full(m, NO_PENDING, dtype=np.int64)  # -1 / 0 / +1 target side
    pend_target = np.full(m, np.nan)  # signed target units once sized (partial fills)
    pend_sig_idx = np.zeros(m, dtype=np.int64)  # bar whose close decided the order
    pend_reason = np.zeros(m, dtype=np.int64)
    pend_weights_row = -1
    fee_buf = np.zeros(N_FEES)
    all_tradable = tradable.shape[0] == 1

    for i in range(n):
        # ---- 1. fills at this bar's open ---------------------------------------------------
        if o.fill_next_open and i > 0:
            if pend_weights_row >= 0:
                _size_weights(pend_weights_row, weights, open_[i], cash, pos, pend_side, pend_target, pend_reason, o)
                pend_weights_row = -1
            for phase in range(2):
                for j in range(m):
                    if pend_side[j] == NO_PENDING or not (all_tradable or tradable[i, j]):
                        continue
                    cash, n_trades, trades = _execute(
                        i, j, phase, open_[i, j], pend_sig_idx[j], pend_reason[j], cash, pos, open_[i],
                        volume, sigma, adv, pend_side, pend_target, o, fee_buf,
                        t_open, t_dir, t_entry_idx, t_open_qty, t_open_val, t_close_qty, t_close_val,
                        t_fees, t_slip, t_imp, t_lo, t_hi, trades, n_trades, high, low,
                    )
        # ---- 2. stops / targets during the bar --------------------------------------------
        if o.stop_loss > 0 or o.take_profit > 0:
            for j in range(m):
                if pos[j] == 0 or not (all_tradable or tradable[i, j]):
                    continue
                d = 1.0 if pos[j] > 0 else -1.0
                entry = t_open_val[j] / t_open_qty[j]
                level = 0.0
                reason = -1
                if o.stop_loss > 0:
                    sl = entry * (1 - d * o.stop_loss)
                    if d > 0 and low[i, j] <= sl or d < 0 and high[i, j] >= sl:
                        level, reason = sl, EXIT_STOP_LOSS
                if reason < 0 and o.take_profit > 0:
                    tp = entry * (1 + d * o.take_profit)
                    if d > 0 and high[i, j] >= tp or d < 0 and low[i, j] <= tp:
                        level, reason = tp, EXIT_TAKE_PROFIT
                if reason < 0:
                    continue
                entered_now = t_entry_idx[j] == i and o.fill_next_open
                gap = (d > 0 and (open_[i, j] <= level if reason == EXIT_STOP_LOSS else open_[i, j] >= level)) or (
                    d < 0 and (open_[i, j] >= level if reason == EXIT_STOP_LOSS else open_[i, j] <= level))
                ref = open_[i, j] if gap and not entered_now else level
                pend_side[j] = 0
                pend_target[j] = np.nan
                cash, n_trades, trades = _execute(
                    i, j, 0, ref, max(i - 1, 0), reason, cash, pos, open_[i], volume, sigma, adv,
                    pend_side, pend_target, o, fee_buf, t_open, t_dir, t_entry_idx, t_open_qty,
                    t_open_val, t_close_qty, t_close_val, t_fees, t_slip, t_imp, t_lo, t_hi, trades,
                    n_trades, high, low, True,
                )
                if pos[j] != 0:  # capped partial exit: the rest leaves at the next open
                    pend_side[j] = 0
                    pend_reason[j] = reason
                    pend_sig_idx[j] = i
        # ---- 3. mark to market -------------------------------------------------------------
        for j in range(m):
            if t_open[j]:
                t_lo[j] = min(t_lo[j], low[i, j])
                t_hi[j] = max(t_hi[j], high[i, j])
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
                        _size_weights(i, weights, close[i], cash, pos, pend_side, pend_target, pend_reason, o)
                    for j in range(m):
                        pend_sig_idx[j] = i
            else:
                for j in range(m):
                    side = _decide(entries[i, j], exits[i, j], pos[j], pend_side[j], o.direction)
                    if side != NO_PENDING:
                        pend_side[j] = side
                        pend_target[j] = np.nan
                        pend_sig_idx[j] = i
                        pend_reason[j] = EXIT_SIGNAL
            if o.max_hold > 0:
                fill_at = i + 1 if o.fill_next_open else i
                for j in range(m):
                    if pos[j] != 0 and fill_at - t_entry_idx[j] >= o.max_hold:
                        if pend_side[j] == NO_PENDING or pend_side[j] * pos[j] > 0:
                            pend_side[j] = 0
                            pend_target[j] = np.nan
                            pend_sig_idx[j] = i
                            pend_reason[j] = EXIT_MAX_HOLD
            if not o.fill_next_open:
                for phase in range(2):
                    for j in range(m):
                        if pend_side[j] == NO_PENDING or not (all_tradable or tradable[i, j]):
                            continue
                        cash, n_trades, trades = _execute(
                            i, j, phase, close[i, j], i, pend_reason[j], cash, pos, close[i],
                            volume, sigma, adv, pend_side, pend_target, o, fee_buf,
                            t_open, t_dir, t_entry_idx, t_open_qty, t_open_val, t_close_qty, t_close_val,
                            t_fees, t_slip, t_imp, t_lo, t_hi, trades, n_trades, high, low,
                        )
        value = cash
        for j in range(m):
            value += pos[j] * close[i, j]
            position[i, j] = pos[j]
        equity[i] = value
        cash_out[i] = cash

    # ---- positions still open: marked to the last close --------------------------------------
    for j in range(m):
        if pos[j] != 0:
            px = close[n - 1, j]
            q = abs(pos[j])
            t_close_qty[j] += q
            t_close_val[j] += q * px
            trades = _grow(trades, n_trades)
            _record(trades, n_trades, j, n - 1, EXIT_END_OF_DATA, t_dir, t_entry_idx, t_open_qty,
                    t_open_val, t_close_qty, t_close_val, t_fees, t_slip, t_imp, t_lo, t_hi)
            n_trades += 1
    return equity, cash_out, position, trades[:n_trades]


@njit(cache=True)
def _decide(entry: bool, exit_: bool, pos: float, pending: int, direction: int) -> int:
    """Target side (+1 / 0 / -1) an event asks for, or NO_PENDING when nothing changes."""
    if entry == exit_:
        return NO_PENDING
    cur = 1 if pos > 0 else (-1 if pos < 0 else 0)
    if pending != NO_PENDING:
        cur = pending
    if direction == DIR_LONG_ONLY:
        want = 1 if entry else 0
    elif direction == DIR_SHORT_ONLY:
        want = -1 if exit_ else 0
    else:
        want = 1 if entry else -1
    if want == cur:
        return NO_PENDING
    if direction == DIR_LONG_ONLY and cur == 0 and want == 0:
        return NO_PENDING
    return want


@njit(cache=True)
def _size_weights(row: int, weights: np.ndarray, prices: np.ndarray, cash: float, pos: np.ndarray,
                  pend_side: np.ndarray, pend_target: np.ndarray, pend_reason: np.ndarray, o: SimOptions) -> None:
    """Turn target weights into signed unit targets at ``prices`` (equity marked at them)."""
    m = pos.shape[0]
    eq = cash
    for j in range(m):
        eq += pos[j] * prices[j]
    for j in range(m):
        w = weights[row, j]
        if o.direction == DIR_LONG_ONLY:
            w = max(w, 0.0)
        elif o.direction == DIR_SHORT_ONLY:
            w = min(w, 0.0)
        tgt = _round_qty(w * o.fraction * eq / prices[j], o.whole_units) if prices[j] > 0 else 0.0
        if tgt == pos[j]:
            continue
        pend_side[j] = 1 if tgt > 0 else (-1 if tgt < 0 else 0)
        pend_target[j] = tgt
        pend_reason[j] = EXIT_REBALANCE


@njit(cache=True)
def _entry_units(i: int, j: int, sig: int, ref: float, cash: float, pos: np.ndarray, prices: np.ndarray,
                 sigma: np.ndarray, adv: np.ndarray, o: SimOptions) -> float:
    """Units to open at reference price ``ref`` under the sizing method (unsigned)."""
    m = pos.shape[0]
    eq = cash
    for k in range(m):
        eq += pos[k] * prices[k]
    unit_cost = ref * (1 + o.slippage_rate) * (1 + o.commission_rate)
    if o.size_method == SIZE_FIXED_QUANTITY:
        return o.quantity
    if o.size_method == SIZE_FIXED_FRACTION:
        budget = o.fraction * eq
    elif o.size_method == SIZE_EQUAL_WEIGHT:
        budget = o.fraction * eq / m
    else:
        s = sigma[sig, j]
        if not (s > 0):
            return 0.0
        ann = s * math.sqrt(o.periods_per_year)
        budget = eq * min(o.max_leverage, o.target_vol / ann) / m
    return max(budget - o.commission_fixed, 0.0) / unit_cost


@njit(cache=True)
def _execute(i, j, phase, ref, sig, reason, cash, pos, prices, volume, sigma, adv, pend_side, pend_target,
             o, fee_buf, t_open, t_dir, t_entry_idx, t_open_qty, t_open_val, t_close_qty, t_close_val,
             t_fees, t_slip, t_imp, t_lo, t_hi, trades, n_trades, high, low, forced=False):
    """Work the pending order of asset ``j`` at reference price ``ref``.

    Phase 0 reduces or closes positions; phase 1 opens or increases them. A fill larger than
    the participation cap is cut; the remainder stays pending. Returns (cash, n_trades, trades).
    """
    side = pend_side[j]
    cur = pos[j]
    cap = o.participation_cap * volume[i, j] if o.participation_cap > 0 else np.inf
    if phase == 0:
        # close (fully, or the part above a smaller same-side target)
        if cur == 0:
            return cash, n_trades, trades
        tgt = pend_target[j]
        if side == 0 or (cur > 0 and side < 0) or (cur < 0 and side > 0):
            goal = 0.0
        elif tgt == tgt and abs(tgt) < abs(cur):
            goal = tgt
        else:
            return cash, n_trades, trades
        q = min(abs(cur - goal), cap)
        if q <= 0:
            return cash, n_trades, trades
        is_buy = cur < 0
        price, slip, imp = _price_moves(ref, q, is_buy, sigma[sig, j], adv[sig, j], o)
        fee = _fees(price * q, q, is_buy, o, fee_buf)
        cash += (-price * q if is_buy else price * q) - fee
        for k in range(N_FEES):
            t_fees[j, k] += fee_buf[k]
        t_slip[j] += slip
        t_imp[j] += imp
        t_close_qty[j] += q
        t_close_val[j] += price * q
        pos[j] = cur + q if is_buy else cur - q
        if abs(pos[j]) < 1e-12:
            pos[j] = 0.0
            trades = _grow(trades, n_trades)
            _record(trades, n_trades, j, i, reason, t_dir, t_entry_idx, t_open_qty, t_open_val,
                    t_close_qty, t_close_val, t_fees, t_slip, t_imp, t_lo, t_hi)
            n_trades += 1
            t_open[j] = False
            if side == 0 or forced:
                pend_side[j] = NO_PENDING if side == 0 else pend_side[j]
                pend_target[j] = np.nan
            elif pend_target[j] == pend_target[j] and pend_target[j] == 0:
                pend_side[j] = NO_PENDING
        elif goal != 0 and abs(pos[j] - goal) < 1e-12:
            pend_side[j] = NO_PENDING
            pend_target[j] = np.nan
        return cash, n_trades, trades

    # phase 1: open or increase towards the target side
    if side == 0 or side == NO_PENDING or forced:
        return cash, n_trades, trades
    if (cur > 0 and side < 0) or (cur < 0 and side > 0):
        return cash, n_trades, trades  # still closing the opposite side (capped): wait
    tgt = pend_target[j]
    if tgt != tgt:
        if cur != 0:  # already on that side: nothing to open
            pend_side[j] = NO_PENDING
            return cash, n_trades, trades
        units = _round_qty(_entry_units(i, j, sig, ref, cash, pos, prices, sigma, adv, o), o.whole_units)
        if units <= 0:
            pend_side[j] = NO_PENDING
            return cash, n_trades, trades
        tgt = units * side
        pend_target[j] = tgt
    need = abs(tgt) - abs(cur)
    if need <= 0:
        pend_side[j] = NO_PENDING
        pend_target[j] = np.nan
        return cash, n_trades, trades
    q = min(need, cap)
    is_buy = side > 0
    price, slip, imp = _price_moves(ref, q, is_buy, sigma[sig, j], adv[sig, j], o)
    if is_buy:  # longs are paid from cash: shrink to what cash affords
        afford = (cash - o.commission_fixed) / (price * (1 + o.commission_rate) * (1 + _stamp(o)))
        if q > afford:
            q = _round_qty(max(afford, 0.0), o.whole_units)
            if q <= 0:
                pend_side[j] = NO_PENDING
                pend_target[j] = np.nan
                return cash, n_trades, trades
            price, slip, imp = _price_moves(ref, q, is_buy, sigma[sig, j], adv[sig, j], o)
            pend_target[j] = cur + q  # cannot afford more: this is the target now
    fee = _fees(price * q, q, is_buy, o, fee_buf)
    cash += (-price * q if is_buy else price * q) - fee
    if not t_open[j]:
        t_open[j] = True
        t_dir[j] = 1.0 if side > 0 else -1.0
        t_entry_idx[j] = i
        t_open_qty[j] = 0.0
        t_open_val[j] = 0.0
        t_close_qty[j] = 0.0
        t_close_val[j] = 0.0
        for k in range(N_FEES):
            t_fees[j, k] = 0.0
        t_slip[j] = 0.0
        t_imp[j] = 0.0
        t_lo[j] = low[i, j] if o.fill_next_open else np.inf
        t_hi[j] = high[i, j] if o.fill_next_open else -np.inf
    for k in range(N_FEES):
        t_fees[j, k] += fee_buf[k]
    t_slip[j] += slip
    t_imp[j] += imp
    t_open_qty[j] += q
    t_open_val[j] += price * q
    pos[j] = cur + q * side
    if abs(abs(pos[j]) - abs(pend_target[j])) < 1e-12:
        pend_side[j] = NO_PENDING
        pend_target[j] = np.nan
    return cash, n_trades, trades


@njit(cache=True)
def _stamp(o: SimOptions) -> float:
    """Fees on a buy that scale with value, besides commission (for affordability)."""
    if o.market == MARKET_INDIA:
        return o.stt_rate + o.exchange_rate + o.sebi_rate + o.stamp_duty_rate + o.gst_rate * (
            o.commission_rate + o.exchange_rate + o.sebi_rate)
    return 0.0


@njit(cache=True)
def _record(trades, k, j, exit_idx, reason, t_dir, t_entry_idx, t_open_qty, t_open_val, t_close_qty,
            t_close_val, t_fees, t_slip, t_imp, t_lo, t_hi) -> None:
    d = t_dir[j]
    entry = t_open_val[j] / t_open_qty[j]
    exit_ = t_close_val[j] / t_close_qty[j] if t_close_qty[j] > 0 else entry
    fees = 0.0
    for f in range(N_FEES):
        fees += t_fees[j, f]
        trades[k, T_FEE0 + f] = t_fees[j, f]
    # long: sold - bought; short: sold (opening) - bought (closing)
    pnl = d * (t_close_val[j] - t_open_val[j]) - fees
    trades[k, T_ASSET] = j
    trades[k, T_DIR] = d
    trades[k, T_QTY] = t_open_qty[j]
    trades[k, T_ENTRY_IDX] = t_entry_idx[j]
    trades[k, T_ENTRY_PRICE] = entry
    trades[k, T_EXIT_IDX] = exit_idx
    trades[k, T_EXIT_PRICE] = exit_
    trades[k, T_PNL] = pnl
    trades[k, T_RET] = pnl / t_open_val[j]
    trades[k, T_FEES] = fees
    trades[k, T_BARS] = exit_idx - t_entry_idx[j]
    lo, hi = t_lo[j], t_hi[j]
    if not (lo < np.inf):
        lo, hi = entry, entry
    if d > 0:
        trades[k, T_MAE] = lo / entry - 1.0
        trades[k, T_MFE] = hi / entry - 1.0
    else:
        trades[k, T_MAE] = 1.0 - hi / entry
        trades[k, T_MFE] = 1.0 - lo / entry
    trades[k, T_REASON] = reason
    trades[k, T_SLIP] = t_slip[j]
    trades[k, T_IMPACT] = t_imp[j]


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
