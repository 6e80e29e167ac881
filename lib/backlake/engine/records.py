"""Named state of the compiled engine (``engine/nb.py``, ``engine/nb_sweep.py``).

The kernels address no state by a bare position: options and market inputs are NamedTuples,
per-asset state and outputs are NumPy record arrays (structured dtypes, read and written by
field name in compiled code as in Python), and codes are ``IntEnum`` members, which numba
compiles as integer constants.

- :class:`Direction`, :class:`SizeMethod`, :class:`Market`, :class:`ExitReason`: the codes;
- :class:`MarketData`: the kernel's market inputs, ``(n_bars, n_assets)`` arrays;
- :data:`trade_dt`: one trade as ``simulate_nb`` returns it;
- :data:`open_trade_dt`, :data:`pending_dt`, :data:`account_dt`, :data:`fee_dt`: the mutable
  book of one simulation (:class:`Book`);
- :data:`metrics_dt`: one simulation's metrics, one field per name of :data:`SWEEP_METRICS`.

numba's on-disk cache (``cache=True``) is keyed on each kernel's own source file, and the
kernels compile these dtypes and codes in as constants: after changing anything here, clear
the cached kernels (``__pycache__/*.nbi``, ``*.nbc`` under ``engine/``) or touch ``nb.py``
and ``nb_sweep.py``.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Final, NamedTuple, TypeAlias

import numpy as np

__all__ = [
    "Direction", "SizeMethod", "Market", "ExitReason", "EXIT_REASONS", "FEE_NAMES", "COST_NAMES", "SWEEP_METRICS",
    "NO_PENDING", "MarketData", "Book", "Record", "fee_dt", "trade_dt", "open_trade_dt", "pending_dt", "account_dt",
    "metrics_dt",
]


# -- codes ------------------------------------------------------------------------------------
class Direction(IntEnum):
    """Which sides a strategy's events may open (``BacktestConfig.direction``)."""

    LONG_ONLY = 0
    SHORT_ONLY = 1
    LONG_SHORT = 2


class SizeMethod(IntEnum):
    """How an entry is sized (``sizing.method``)."""

    FIXED_FRACTION = 0
    FIXED_QUANTITY = 1
    EQUAL_WEIGHT = 2
    VOL_TARGET = 3


class Market(IntEnum):
    """Whose regulatory fees apply (``costs.market``)."""

    NONE = 0
    US = 1
    INDIA = 2


class ExitReason(IntEnum):
    """Why a trade was closed; ``EXIT_REASONS[reason]`` is its name in the trades frame."""

    SIGNAL = 0
    STOP_LOSS = 1
    TAKE_PROFIT = 2
    MAX_HOLD = 3
    END_OF_DATA = 4
    REBALANCE = 5


EXIT_REASONS: Final[tuple[str, ...]] = tuple(r.name.lower() for r in ExitReason)

# A pending order's target side is -1 / 0 / +1, or this when no order is waiting.
NO_PENDING: Final = 9

# The fee breakdown of a fill or a trade, in the order they are added up.
FEE_NAMES: Final = ("commission", "sec_fee", "finra_taf", "stt", "exchange_fee", "gst", "stamp_duty", "sebi_fee")

# What a sweep keeps of each simulation (NaN = undefined), as ``backlake.metrics`` defines them.
SWEEP_METRICS: Final = (
    "total_return", "cagr", "annual_return", "annual_volatility", "sharpe", "sortino", "calmar",
    "max_drawdown", "n_trades", "n_closed_trades", "win_rate", "profit_factor", "avg_trade_return",
    "exposure_time",
)


# -- inputs -----------------------------------------------------------------------------------
class MarketData(NamedTuple):
    """The kernel's market inputs: float64 ``(n_bars, n_assets)`` arrays, except ``tradable``."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    sigma: np.ndarray  # volatility of returns known at each close (impact, volatility targeting)
    adv: np.ndarray  # average volume known at each close (impact)
    # bool: False where the asset has no real bar (a carried-forward price): nothing fills
    # there; a (1, 1) array means every bar is tradable
    tradable: np.ndarray


# -- records ----------------------------------------------------------------------------------
Record: TypeAlias = Any
"""One element of a record array below (``np.void`` in Python, a numba Record in compiled
code), its fields read and written by name; NumPy's stubs cannot type the fields."""

_FEE_FIELDS = [(name, np.float64) for name in FEE_NAMES]

fee_dt: Final = np.dtype(_FEE_FIELDS, align=True)
"""The fee breakdown of one fill (one field per name of FEE_NAMES)."""

trade_dt: Final = np.dtype([
    ("asset", np.int64),  # column of the asset
    ("direction", np.int64),  # +1 long, -1 short
    ("qty", np.float64),  # units opened (bought for a long, sold for a short)
    ("entry_idx", np.int64),  # bar of the first opening fill
    ("entry_price", np.float64),  # average price of the opening fills
    ("exit_idx", np.int64),  # bar of the fill that closed it (the last bar if still open)
    ("exit_price", np.float64),  # average price of the closing fills
    ("pnl", np.float64),  # net of every cost
    ("ret", np.float64),  # pnl / value opened
    ("fees", np.float64),  # sum of the fee breakdown
    ("bars_held", np.int64),
    ("mae", np.float64),  # maximum adverse / favourable excursion, from the entry price
    ("mfe", np.float64),
    ("exit_reason", np.int64),  # ExitReason
    ("slippage_cost", np.float64),
    ("impact_cost", np.float64),
    *_FEE_FIELDS,
], align=True)
"""One closed (or open-at-end) trade."""

open_trade_dt: Final = np.dtype([
    ("direction", np.int64),  # +1 long, -1 short
    ("entry_idx", np.int64),
    ("open_qty", np.float64),  # units bought (long) / sold (short) to open or increase
    ("open_val", np.float64),  # their value at the fill prices
    ("close_qty", np.float64),  # units sold (long) / bought (short) to reduce or close
    ("close_val", np.float64),
    ("slippage_cost", np.float64),
    ("impact_cost", np.float64),
    ("low", np.float64),  # lowest low / highest high since the entry (MAE / MFE)
    ("high", np.float64),
    *_FEE_FIELDS,
    ("is_open", np.bool_),
], align=True)
"""The accumulators of the trade an asset has open (kept after it closes, until the next)."""

pending_dt: Final = np.dtype([
    ("side", np.int64),  # target side -1 / 0 / +1, or NO_PENDING
    ("target", np.float64),  # signed target units once sized (partial fills); NaN before
    ("signal_idx", np.int64),  # bar whose close decided the order
    ("reason", np.int64),  # ExitReason recorded if the order closes a trade
], align=True)
"""The order an asset has waiting."""

account_dt: Final = np.dtype([
    ("cash", np.float64), ("n_trades", np.int64),
    # the costs charged on the bar being simulated (money): reset at each bar, written per bar
    ("bar_commission", np.float64), ("bar_fees", np.float64), ("bar_slippage", np.float64),
    ("bar_impact", np.float64),
], align=True)
"""Shared cash, the number of trades recorded so far and the current bar's costs (commission,
market fees besides commission, slippage and impact, in the order of :data:`COST_NAMES`)."""

# The per-bar cost split the engine records with the equity (money charged that bar).
COST_NAMES: Final = ("commission", "fees", "slippage", "impact")

metrics_dt: Final = np.dtype([(name, np.float64) for name in SWEEP_METRICS])
"""One simulation's metrics; counts are floats too (NaN = undefined, as the sweep frame has them)."""


class Book(NamedTuple):
    """The mutable state of one simulation."""

    pos: np.ndarray  # float64 (n_assets,): signed units held
    pending: np.ndarray  # pending_dt (n_assets,)
    open_trade: np.ndarray  # open_trade_dt (n_assets,)
    account: np.ndarray  # account_dt (1,)
    fill_fees: np.ndarray  # fee_dt (1,): the breakdown of the fill being worked
