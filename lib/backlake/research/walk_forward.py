"""Walk-forward analysis: optimise on a train window, trade the next test window, roll on.

Window sizes are bar counts (``int``) or calendar spans (``str``): ``"<n>d"`` days, ``"<n>w"``
weeks, ``"<n>m"`` months, ``"<n>y"`` years (case-insensitive, n >= 1). Calendar boundaries are
measured from the first bar's timestamp (``anchor + k * step``, month arithmetic clamps to the
month's last day) and resolved to the bars inside them, so a "1m" window holds the bars of one
calendar month from the anchor. train, test and step are all bar counts or all spans.

- ``rolling``: window k trains on ``[k*step, k*step + train)`` and tests on the ``test`` that
  follows; ``anchored``: the train window always starts at the first bar and grows.
- Only complete windows are kept. With bar counts a window is complete when its last test bar
  exists; with calendar spans when the data reaches the test span's end, give or take the
  largest gap between two bars (so a month ending on a weekend still counts).
- Test windows never overlap (``step >= test``); a ``step`` larger than ``test`` leaves gaps.

Fan-out: :func:`make_windows` plans, :func:`evaluate_window` is one window (picklable inputs, a
small result out), :func:`aggregate_windows` stitches them. :func:`walk_forward` runs all three
on this process.

Example::

    wf = walk_forward(cfg, {"fast": [5, 10, 20], "slow": [50, 100]}, bars, train="2y", test="6m")
    wf.oos_metrics["sharpe"], wf.equity, wf.windows_frame(parent_id="...")
"""

from __future__ import annotations

import calendar
import datetime as dt
import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

from backlake.calendars import calendar_of, periods_per_year
from backlake.config import BacktestConfig
from backlake.engine.core import prepare, run_backtest
from backlake.errors import ConfigError
from backlake.metrics import compute_metrics
from backlake.research.optimize import check_objective
from backlake.research.sweep import expand_grid, sweep

__all__ = [
    "Window", "WindowResult", "WalkForwardResult", "make_windows", "evaluate_window", "stitch",
    "aggregate_windows", "walk_forward", "MODES",
]

MODES = ("rolling", "anchored")
#: A calendar span at most this long (a longer one is no window of any data, and overflows dates).
MAX_SPAN_YEARS = 200
_SPAN = re.compile(r"^\s*(\d+)\s*([dwmy])\s*$", re.IGNORECASE)
_UTC = dt.UTC

Size = int | str


@dataclass(frozen=True)
class Window:
    """One walk-forward window. Timestamps are the first / last bar of each part (inclusive,
    UTC); ``train_idx`` / ``test_idx`` are half-open ``(start, stop)`` bar positions in the
    timestamps the windows were made from."""

    index: int
    train_start: dt.datetime
    train_end: dt.datetime
    test_start: dt.datetime
    test_end: dt.datetime
    train_idx: tuple[int, int]
    test_idx: tuple[int, int]


@dataclass(frozen=True)
class WindowResult:
    """A window's outcome. ``best_params``: the swept parameters chosen on the train window;
    ``is_score`` / ``oos_score``: the objective on the train / test segment of the run over
    [train_start, test_end]; ``is_sharpe`` / ``oos_sharpe`` likewise (annualised);
    ``degradation``: (is_sharpe - oos_sharpe) / |is_sharpe| (None when is_sharpe is 0 or None,
    or oos_sharpe is None). ``oos_ts`` / ``oos_ret``: the test bars' timestamps (datetime64[us],
    UTC) and per-bar returns of that run, the first one being the return from the last train
    bar into the test window; ``oos_trades``: its trades entered in the test window.
    ``n_combinations``: valid grid combinations swept."""

    window: Window
    best_params: dict[str, Any]
    is_score: float | None
    oos_score: float | None
    is_sharpe: float | None
    oos_sharpe: float | None
    degradation: float | None
    oos_ts: np.ndarray
    oos_ret: np.ndarray
    oos_trades: pl.DataFrame
    n_combinations: int


@dataclass(frozen=True)
class WalkForwardResult:
    """``windows``: one result per window, in order; ``equity``: the stitched out-of-sample
    curve (ts, equity, ret, window); ``oos_metrics``: ``compute_metrics`` of that curve."""

    windows: list[WindowResult]
    equity: pl.DataFrame
    oos_metrics: dict[str, float | None]
    objective: str

    def windows_frame(self, parent_id: str) -> pl.DataFrame:
        """The lake ``windows`` rows: parent_id, window, train/test bounds, best_params (JSON),
        is_sharpe, oos_sharpe, degradation."""
        rows = self.windows
        ts = pl.Datetime("us", "UTC")
        return pl.DataFrame({
            "parent_id": [parent_id] * len(rows),
            "window": [r.window.index for r in rows],
            "train_start": [r.window.train_start for r in rows],
            "train_end": [r.window.train_end for r in rows],
            "test_start": [r.window.test_start for r in rows],
            "test_end": [r.window.test_end for r in rows],
            "best_params": [json.dumps(r.best_params, sort_keys=True) for r in rows],
            "is_sharpe": [r.is_sharpe for r in rows],
            "oos_sharpe": [r.oos_sharpe for r in rows],
            "degradation": [r.degradation for r in rows],
        }, schema={"parent_id": pl.String, "window": pl.Int64, "train_start": ts, "train_end": ts,
                   "test_start": ts, "test_end": ts, "best_params": pl.String, "is_sharpe": pl.Float64,
                   "oos_sharpe": pl.Float64, "degradation": pl.Float64})


def make_windows(
    ts: Iterable[Any],
    *,
    train: Size,
    test: Size,
    step: Size | None = None,
    mode: Literal["rolling", "anchored"] = "rolling",
) -> list[Window]:
    """Plan the windows over sorted bar timestamps ``ts`` (datetimes, naive = UTC).

    ``train`` / ``test`` / ``step``: bar counts (e.g. ``500``) or calendar spans (e.g. ``"2y"``,
    ``"6m"``, ``"13w"``, ``"30d"``); ``step`` defaults to ``test``. Raises ``ConfigError`` for
    a size that is zero, negative or malformed, a step shorter than the test window, or a
    first window longer than the data.

    Example::

        make_windows(bars["ts"], train=252, test=63)              # rolling, step 63 bars
        make_windows(bars["ts"], train="2y", test="3m", mode="anchored")
    """
    if mode not in MODES:
        raise ConfigError(f"mode={mode!r} must be one of {', '.join(MODES)}")
    step = test if step is None else step
    kinds = {isinstance(v, str) for v in (train, test, step)}
    if len(kinds) != 1:
        raise ConfigError(
            f"train={train!r}, test={test!r}, step={step!r}: use all bar counts (e.g. 252) "
            "or all calendar spans (e.g. '1y')"
        )
    t = _as_us(ts)
    if isinstance(train, str) and isinstance(test, str) and isinstance(step, str):  # all calendar spans
        tr_span, te_span, st_span = (_parse_span(n, v) for n, v in (("train", train), ("test", test), ("step", step)))
        bounds = _calendar_bounds(t, tr_span, te_span, st_span, mode)
        sizes = f"train={train!r} + test={test!r}"
    else:
        tr, te, st = _parse_bars("train", train, 2), _parse_bars("test", test, 1), _parse_bars("step", step, 1)
        if st < te:
            raise ConfigError(f"step={st} is shorter than test={te} bars: test windows would overlap; use step >= {te}")
        bounds = _bar_bounds(t.size, tr, te, st, mode)
        sizes = f"train={tr} + test={te} bars"
    if not bounds:
        span = f"{_fmt(t[0])} to {_fmt(t[-1])}" if t.size else "nothing"
        raise ConfigError(
            f"{sizes} is longer than the data ({t.size} bars, {span}): shorten train/test or use more data"
        )
    for (_, _, prev_stop), (_, start, _) in itertools.pairwise(bounds):
        if start < prev_stop:
            raise ConfigError(f"step={step!r} is shorter than test={test!r}: test windows would overlap")
    return [
        Window(k, _dt(t[a]), _dt(t[b - 1]), _dt(t[b]), _dt(t[c - 1]), (a, b), (b, c))
        for k, (a, b, c) in enumerate(bounds)
    ]


def evaluate_window(
    cfg: BacktestConfig, grid: Mapping[str, Iterable[Any]], bars: pl.DataFrame, window: Window, *,
    objective: str = "sharpe", validated: bool = False,
) -> WindowResult:
    """Optimise ``grid`` on the window's train bars (``backlake.sweep``), pick the best by
    ``objective`` (the first combination on ties; the first one if none has a score), then run
    those params over [train_start, test_end] with ``oos_start=test_start``.

    Indicators warm up on the train window (nothing before train_start is seen), and a
    position open at the split carries into the test window as it would in live trading.
    ``validated``: ``bars`` were read from the lake (see ``run_backtest``).

    Example::

        evaluate_window(cfg, {"fast": [5, 10], "slow": [30, 50]}, bars, make_windows(ts, train=300, test=100)[0])
    """
    check_objective(objective)
    grid = {k: list(v) for k, v in grid.items()}
    train_cfg, train_bars = _slice(cfg, bars, window.train_start, window.train_end)
    table = sweep(train_cfg, grid, train_bars, validated=validated)  # raises ConfigError for a bad grid
    scores = table[objective].to_list()
    valid = [i for i, s in enumerate(scores) if s is not None]
    pick = max(valid, key=lambda i: scores[i]) if valid else 0  # max() keeps the first on ties
    best = {k: table[k][pick] for k in grid}
    run_cfg, run_bars = _slice(cfg, bars, window.train_start, window.test_end)
    run_cfg = run_cfg.model_copy(update={"params": {**cfg.params, **best}})
    res = run_backtest(run_cfg, run_bars, oos_start=window.test_start, validated=validated)
    seg_is, seg_oos = res.segments["is"], res.segments["oos"]
    is_sh, oos_sh = seg_is["sharpe"], seg_oos["sharpe"]
    degradation = (is_sh - oos_sh) / abs(is_sh) if is_sh and oos_sh is not None else None
    oos = res.equity.filter(pl.col("ts") >= window.test_start)
    trades = res.trades.filter(pl.col("entry_ts") >= window.test_start)
    return WindowResult(
        window=window, best_params=best, is_score=seg_is[objective], oos_score=seg_oos[objective],
        is_sharpe=is_sh, oos_sharpe=oos_sh, degradation=degradation,
        oos_ts=oos["ts"].dt.replace_time_zone(None).to_numpy(), oos_ret=oos["ret"].to_numpy(),
        oos_trades=trades, n_combinations=table.height,
    )


def stitch(results: Sequence[WindowResult], initial_cash: float) -> pl.DataFrame:
    """The out-of-sample equity curve: every test bar in window order, ``ret`` its per-bar
    return under that window's parameters, ``equity`` = initial_cash chained through ``ret``.
    The curve starts at ``initial_cash`` on the first test bar (whose return is set to 0)."""
    if not results:
        raise ConfigError("results is empty: stitch needs at least one evaluated window")
    if not (isinstance(initial_cash, (int, float)) and math.isfinite(initial_cash) and initial_cash > 0):
        raise ConfigError(f"initial_cash={initial_cash!r} must be a finite amount > 0, e.g. 10000")
    ordered = sorted(results, key=lambda r: r.window.index)
    ts = np.concatenate([r.oos_ts for r in ordered]).astype("datetime64[us]")
    if ts.size > 1 and (np.diff(ts.astype(np.int64)) <= 0).any():
        raise ConfigError("the windows' test periods overlap or are out of order: plan them with make_windows")
    ret = np.concatenate([r.oos_ret for r in ordered]).astype(np.float64)
    ret[0] = 0.0
    return pl.DataFrame({
        "ts": pl.Series(ts).dt.replace_time_zone("UTC"),
        "equity": float(initial_cash) * np.cumprod(1.0 + ret),
        "ret": ret,
        "window": np.concatenate([np.full(r.oos_ts.size, r.window.index, dtype=np.int64) for r in ordered]),
    })


def aggregate_windows(
    cfg: BacktestConfig, results: Sequence[WindowResult], *, objective: str = "sharpe"
) -> WalkForwardResult:
    """Stitch evaluated windows (from any number of workers) and measure the stitched curve
    with ``compute_metrics`` (annualised for cfg's timeframe and first symbol's calendar);
    trade statistics cover the trades entered in the test windows."""
    curve = stitch(results, cfg.initial_cash)
    ppy = periods_per_year(cfg.timeframe, calendar_of(cfg.symbols[0]))
    ts = curve["ts"].dt.replace_time_zone(None).to_numpy()
    ordered = sorted(results, key=lambda r: r.window.index)
    trades = pl.concat([r.oos_trades for r in ordered], how="vertical_relaxed")
    metrics = compute_metrics(curve["equity"].to_numpy(), ts, trades, ppy, cfg.initial_cash)
    return WalkForwardResult(windows=ordered, equity=curve, oos_metrics=metrics, objective=objective)


def walk_forward(
    cfg: BacktestConfig,
    grid: Mapping[str, Iterable[Any]],
    bars: pl.DataFrame,
    *,
    train: Size,
    test: Size,
    step: Size | None = None,
    mode: Literal["rolling", "anchored"] = "rolling",
    objective: str = "sharpe",
    validated: bool = False,
) -> WalkForwardResult:
    """Plan the windows on cfg's bars, evaluate each in turn, stitch the test periods.
    ``validated``: ``bars`` were read from the lake (see ``run_backtest``).

    Example::

        walk_forward(cfg, {"fast": [5, 10, 20], "slow": [50, 100]}, bars, train=500, test=125).oos_metrics
    """
    check_objective(objective)
    grid = {k: list(v) for k, v in grid.items()}
    expand_grid(cfg, grid)  # bad grids fail before any window runs
    windows = make_windows(prepare(cfg, bars, validated=validated).ts, train=train, test=test, step=step, mode=mode)
    results = [evaluate_window(cfg, grid, bars, w, objective=objective, validated=validated) for w in windows]
    return aggregate_windows(cfg, results, objective=objective)


# ---------------------------------------------------------------------------------------------
# window arithmetic


def _slice(
    cfg: BacktestConfig, bars: pl.DataFrame, first: dt.datetime, last: dt.datetime
) -> tuple[BacktestConfig, pl.DataFrame]:
    """cfg with start/end on the window's dates, and the bars inside [first, last] exactly
    (dates alone would leak the rest of an intraday day)."""
    sub = cfg.model_copy(update={"start": first.date(), "end": last.date()})
    return sub, bars.filter(pl.col("ts").is_between(first, last))


def _bar_bounds(n: int, train: int, test: int, step: int, mode: str) -> list[tuple[int, int, int]]:
    """(train start, test start, test stop) bar positions of each complete window."""
    out: list[tuple[int, int, int]] = []
    k = 0
    while True:
        a = 0 if mode == "anchored" else k * step
        b = k * step + train
        c = b + test
        if c > n:
            return out
        out.append((a, b, c))
        k += 1


def _calendar_bounds(
    t: np.ndarray, train: tuple[int, int], test: tuple[int, int], step: tuple[int, int], mode: str
) -> list[tuple[int, int, int]]:
    """Like _bar_bounds, for (months, days) spans measured from the first bar."""
    if t.size < 2:
        return []
    anchor = _dt(t[0])
    slack = int(np.diff(t).max())  # the largest gap between bars, in microseconds
    last = int(t[-1])
    out: list[tuple[int, int, int]] = []
    k = 0
    while True:
        offset = (k * step[0], k * step[1])
        a_ts = anchor if mode == "anchored" else _shift(anchor, offset)
        b_ts = _shift(anchor, (offset[0] + train[0], offset[1] + train[1]))
        c_ts = _shift(anchor, (offset[0] + train[0] + test[0], offset[1] + train[1] + test[1]))
        if _us(c_ts) > last + slack:
            return out
        a, b, c = (int(np.searchsorted(t, _us(x), side="left")) for x in (a_ts, b_ts, c_ts))
        if b - a >= 2 and c - b >= 1:  # a hole in the data can leave a window without bars
            out.append((a, b, c))
        k += 1


def _parse_span(name: str, value: str) -> tuple[int, int]:
    """'3m' -> (months, days) = (3, 0); '2w' -> (0, 14)."""
    m = _SPAN.match(value)
    if not m or int(m.group(1)) < 1:
        raise ConfigError(
            f"{name}={value!r} is not a calendar span: use '<n>d' days, '<n>w' weeks, '<n>m' months "
            "or '<n>y' years with n >= 1, e.g. '6m', or a bar count such as 126"
        )
    n, unit = int(m.group(1)), m.group(2).lower()
    months, days = {"d": (0, n), "w": (0, 7 * n), "m": (n, 0), "y": (12 * n, 0)}[unit]
    if months > 12 * MAX_SPAN_YEARS or days > 366 * MAX_SPAN_YEARS:
        raise ConfigError(f"{name}={value!r} is longer than {MAX_SPAN_YEARS} years: use a span your bars can "
                          "hold, e.g. '4y'")
    return months, days


def _parse_bars(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(
            f"{name}={value!r} must be a bar count >= {minimum} (e.g. 252) or a calendar span such as '1y'"
        )
    return int(value)


def _shift(anchor: dt.datetime, offset: tuple[int, int]) -> dt.datetime:
    months, days = offset
    y, m = divmod(anchor.month - 1 + months, 12)
    year, month = anchor.year + y, m + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day) + dt.timedelta(days=days)


def _as_us(ts: Iterable[Any]) -> np.ndarray:
    """Timestamps as int64 microseconds since the epoch (UTC), checked sorted and unique."""
    if isinstance(ts, pl.Series):
        dtype = ts.dtype
        if isinstance(dtype, pl.Datetime) and dtype.time_zone:
            ts = ts.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        arr = ts.to_numpy()
    else:
        items = list(ts)
        arr = np.array([
            x.astimezone(_UTC).replace(tzinfo=None) if isinstance(x, dt.datetime) and x.tzinfo else x for x in items
        ]) if items else np.array([], dtype="datetime64[us]")
    try:
        t = np.asarray(arr).astype("datetime64[us]").astype(np.int64)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"ts must be bar timestamps (datetimes): {e}") from None
    if t.size and (np.diff(t) <= 0).any():
        raise ConfigError("ts must be sorted ascending without duplicates: sort the bars by ts first")
    return t


def _us(x: dt.datetime) -> int:
    return int((x - dt.datetime(1970, 1, 1, tzinfo=_UTC)) // dt.timedelta(microseconds=1))


def _dt(us: int | np.integer) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=_UTC) + dt.timedelta(microseconds=int(us))


def _fmt(us: int | np.integer) -> str:
    return _dt(us).strftime("%Y-%m-%d %H:%M")
