"""Strategies at the signal level (no engine): indicators against reference loops, each
strategy's rule on hand-made bars, parameter checks, and no look-ahead as a property."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from pydantic import ValidationError

import backlake as bl
from backlake.strategies import get_strategy, indicators as ind
from backlake.strategies.base import BarData, Signals

NEW_STRATEGIES = [
    "rsi_mean_reversion", "macd_crossover", "bollinger_bands", "momentum_breakout",
    "rsi_vol_filter", "dual_momentum", "opening_range_breakout",
]

# small windows so that random walks of ~100 bars give events
SMALL_PARAMS = {
    "rsi_mean_reversion": {"window": 5, "oversold": 40, "exit_level": 55, "max_hold_bars": 4},
    "macd_crossover": {"fast": 3, "slow": 8, "signal": 3},
    "bollinger_bands": {"window": 10, "num_std": 1.0},
    "momentum_breakout": {"window": 5, "exit_window": 3},
    "rsi_vol_filter": {"window": 5, "oversold": 40, "exit_level": 55, "atr_window": 5, "lookback": 20,
                       "max_atr_percentile": 0.8},
    "dual_momentum": {"lookback": 10, "rebalance_every": 5, "top_k": 1},
    "opening_range_breakout": {"range_bars": 3, "hold_bars": 4},
}

BAR_MINUTES = 5
BARS_PER_SESSION = 20


# ---------------------------------------------------------------- helpers


def intraday_ts(n: int, bars_per_session: int = BARS_PER_SESSION) -> np.ndarray:
    """Sessions of ``bars_per_session`` 5-minute bars from 14:30 UTC, one per calendar day."""
    i = np.arange(n)
    day = np.datetime64("2024-01-02T14:30", "us") + (i // bars_per_session) * np.timedelta64(1, "D")
    return day + (i % bars_per_session) * np.timedelta64(BAR_MINUTES, "m")


def bar_data(close, *, open_=None, high=None, low=None, ts=None) -> BarData:
    """BarData from arrays (1-D -> one asset); high/low default to close +/- 0.5."""
    def col(x):
        a = np.asarray(x, dtype=np.float64)
        return a[:, None] if a.ndim == 1 else a

    close = col(close)
    return BarData(
        open=col(close if open_ is None else open_),
        high=col(close + 0.5 if high is None else high),
        low=col(close - 0.5 if low is None else low),
        close=close, volume=np.full(close.shape, 1000.0),
        ts=intraday_ts(close.shape[0]) if ts is None else ts,
        symbols=[f"S{j}" for j in range(close.shape[1])], timeframe="5m",
    )


def random_bars(seed: int, n: int, m: int) -> BarData:
    """A seeded random walk of ``m`` assets with valid OHLC."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (n, m)), axis=0))
    open_ = np.vstack([close[:1], close[:-1]]) * np.exp(rng.normal(0, 0.005, (n, m)))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.01, (n, m))))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.01, (n, m))))
    return bar_data(close, open_=open_, high=high, low=low)


def perturb_after(data: BarData, cut: int, seed: int) -> BarData:
    """Every bar after ``cut`` gets new prices (random factors), OHLC kept valid."""
    rng = np.random.default_rng(seed)
    out = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in data.items()}
    shape = out["close"][cut + 1 :].shape
    f = lambda: np.exp(rng.normal(0, 0.1, shape))  # noqa: E731
    o = out["open"][cut + 1 :] * f()
    c = out["close"][cut + 1 :] * f()
    out["open"][cut + 1 :] = o
    out["close"][cut + 1 :] = c
    out["high"][cut + 1 :] = np.maximum(out["high"][cut + 1 :] * f(), np.maximum(o, c))
    out["low"][cut + 1 :] = np.minimum(out["low"][cut + 1 :] * f(), np.minimum(o, c))
    out["volume"][cut + 1 :] *= f()
    return BarData(**out)


def run(name: str, data: BarData, **params) -> Signals:
    spec = get_strategy(name)
    return spec.signal_fn(data, spec.params_model.model_validate(params))


def bars_where(a: np.ndarray, col: int = 0) -> list[int]:
    return np.flatnonzero(a[:, col]).tolist()


# ---------------------------------------------------------------- reference loops


def ref_ema(x: list[float], n: int, alpha: float | None = None) -> list[float]:
    alpha = 2 / (n + 1) if alpha is None else alpha
    out = [math.nan] * len(x)
    if len(x) >= n:
        out[n - 1] = sum(x[:n]) / n
        for t in range(n, len(x)):
            out[t] = out[t - 1] + alpha * (x[t] - out[t - 1])
    return out


def ref_rsi(close: list[float], n: int) -> list[float]:
    out = [math.nan] * len(close)
    if len(close) <= n:
        return out
    changes = [close[t] - close[t - 1] for t in range(1, len(close))]
    gain = sum(max(d, 0) for d in changes[:n]) / n
    loss = sum(max(-d, 0) for d in changes[:n]) / n

    def rsi(g, lo):
        return 50.0 if g + lo == 0 else 100 - 100 / (1 + g / lo) if lo > 0 else 100.0

    out[n] = rsi(gain, loss)
    for t in range(n + 1, len(close)):
        d = changes[t - 1]
        gain = (gain * (n - 1) + max(d, 0)) / n
        loss = (loss * (n - 1) + max(-d, 0)) / n
        out[t] = rsi(gain, loss)
    return out


def ref_atr(high: list[float], low: list[float], close: list[float], n: int) -> list[float]:
    tr = [high[0] - low[0]] + [
        max(high[t] - low[t], abs(high[t] - close[t - 1]), abs(low[t] - close[t - 1]))
        for t in range(1, len(close))
    ]
    return ref_ema(tr, n, alpha=1 / n)


def ref_rolling(x: list[float], n: int, fn, exclude_current: bool = False) -> list[float]:
    out = [math.nan] * len(x)
    for t in range(len(x)):
        end = t if exclude_current else t + 1
        if end - n >= 0:
            out[t] = fn(x[end - n : end])
    return out


def pstd(w: list[float]) -> float:
    mu = sum(w) / len(w)
    return math.sqrt(sum((v - mu) ** 2 for v in w) / len(w))


def prank(w: list[float]) -> float:
    return sum(v <= w[-1] for v in w) / len(w)


# ---------------------------------------------------------------- indicators: edge cases first


@pytest.mark.parametrize("fn", [
    lambda x: ind.ema(x, 3), lambda x: ind.wilder_ma(x, 3), lambda x: ind.wilder_rsi(x, 3),
    lambda x: ind.atr(x + 1, x - 1, x, 3), lambda x: ind.rolling_max(x, 3),
    lambda x: ind.rolling_min(x, 3, exclude_current=True), lambda x: ind.rolling_std(x, 3),
    lambda x: ind.rolling_percentile_rank(x, 3), lambda x: ind.pct_change(x, 3),
])
@pytest.mark.parametrize("x", [np.array([]), np.array([5.0]), np.full(6, np.nan), np.zeros((0, 2)), np.ones((2, 3))])
def test_indicators_on_empty_short_and_all_nan_inputs(fn, x):
    out = fn(x)
    assert out.shape == x.shape
    assert np.isnan(out).all()


def test_indicator_window_must_be_positive():
    with pytest.raises(ValueError, match="window=0 must be a whole number of bars >= 1"):
        ind.ema(np.ones(5), 0)
    with pytest.raises(ValueError, match="lookback=0"):
        ind.rolling_percentile_rank(np.ones(5), 0)


def test_ema_hand_values():
    # seed = mean(1, 2, 3) = 2 at bar 2; then 2 + 0.5 * (4 - 2) = 3, 3 + 0.5 * (5 - 3) = 4
    np.testing.assert_allclose(ind.ema(np.arange(1.0, 6.0), 3), [np.nan, np.nan, 2, 3, 4])


def test_ema_and_wilder_match_reference_loops_on_30_bars():
    x = random_bars(1, 30, 3)["close"]
    for n in (1, 3, 10):
        for j in range(3):
            np.testing.assert_allclose(ind.ema(x, n)[:, j], ref_ema(x[:, j].tolist(), n), rtol=1e-12)
            np.testing.assert_allclose(ind.wilder_ma(x, n)[:, j], ref_ema(x[:, j].tolist(), n, 1 / n), rtol=1e-12)
    np.testing.assert_allclose(ind.ema(x[:, 1], 5), ind.ema(x, 5)[:, 1])  # 1-D in, 1-D out


def test_ema_seed_waits_for_leading_nans_and_skips_gaps():
    x = np.arange(1.0, 11.0)
    late = np.concatenate([np.full(4, np.nan), x])  # an asset listed 4 bars later
    out = ind.ema(np.column_stack([np.concatenate([x, np.full(4, 99.0)]), late]), 3)
    np.testing.assert_allclose(out[4:, 1], ind.ema(x, 3))
    assert np.isnan(out[:6, 1]).all()
    gap = x.copy()
    gap[6] = np.nan  # NaN after the seed: NaN at that bar, the average carries on
    out = ind.ema(gap, 3)
    assert np.isnan(out[6])
    np.testing.assert_allclose(out[7:], ref_ema([v for v in gap.tolist() if not math.isnan(v)], 3)[6:])


def test_wilder_rsi_matches_reference_loop_on_30_bars():
    close = random_bars(2, 30, 3)["close"]
    for n in (2, 5, 14):
        out = ind.wilder_rsi(close, n)
        for j in range(3):
            np.testing.assert_allclose(out[:, j], ref_rsi(close[:, j].tolist(), n), rtol=1e-10)
        assert np.isnan(out[:n]).all() and not np.isnan(out[n:]).any()


def test_wilder_rsi_extremes():
    assert ind.wilder_rsi(np.arange(10.0), 3)[-1] == 100.0  # only gains
    assert ind.wilder_rsi(np.arange(10.0)[::-1], 3)[-1] == 0.0  # only losses
    assert ind.wilder_rsi(np.full(10, 7.0), 3)[-1] == 50.0  # no move


def test_true_range_and_atr_match_reference_loop_on_30_bars():
    d = random_bars(3, 30, 2)
    tr = ind.true_range(d["high"], d["low"], d["close"])
    # bar 0 has no previous close: high - low
    np.testing.assert_allclose(tr[0], d["high"][0] - d["low"][0])
    # a gap up: the distance from the previous close counts
    np.testing.assert_allclose(
        ind.true_range(np.array([11.0, 15]), np.array([9.0, 14]), np.array([10.0, 14.5])), [2, 5]
    )
    for n in (1, 3, 14):
        out = ind.atr(d["high"], d["low"], d["close"], n)
        for j in range(2):
            ref = ref_atr(d["high"][:, j].tolist(), d["low"][:, j].tolist(), d["close"][:, j].tolist(), n)
            np.testing.assert_allclose(out[:, j], ref, rtol=1e-12)


def test_rolling_windows_match_reference_loops():
    x = random_bars(4, 30, 2)["close"]
    for n in (1, 4, 10):
        for j in range(2):
            col = x[:, j].tolist()
            np.testing.assert_allclose(ind.rolling_max(x, n)[:, j], ref_rolling(col, n, max))
            np.testing.assert_allclose(ind.rolling_min(x, n)[:, j], ref_rolling(col, n, min))
            np.testing.assert_allclose(ind.rolling_max(x, n, exclude_current=True)[:, j],
                                       ref_rolling(col, n, max, True))
            np.testing.assert_allclose(ind.rolling_min(x, n, exclude_current=True)[:, j],
                                       ref_rolling(col, n, min, True))
            np.testing.assert_allclose(ind.rolling_std(x, n)[:, j], ref_rolling(col, n, pstd), atol=1e-12)
            np.testing.assert_allclose(ind.rolling_percentile_rank(x, n)[:, j], ref_rolling(col, n, prank))
            ref_pct = [math.nan] * n + [col[t] / col[t - n] - 1 for t in range(n, 30)]
            np.testing.assert_allclose(ind.pct_change(x, n)[:, j], ref_pct)


def test_rolling_hand_values():
    x = np.array([1.0, 3, 2, 5, 4])
    np.testing.assert_allclose(ind.rolling_max(x, 2), [np.nan, 3, 3, 5, 5])
    np.testing.assert_allclose(ind.rolling_max(x, 2, exclude_current=True), [np.nan, np.nan, 3, 3, 5])
    np.testing.assert_allclose(ind.rolling_std(np.array([2.0, 4, 4, 4, 5, 5, 7, 9]), 8)[-1], 2.0)  # population
    np.testing.assert_allclose(ind.rolling_percentile_rank(np.arange(1.0, 6.0), 5)[-1], 1.0)
    np.testing.assert_allclose(ind.rolling_percentile_rank(np.arange(5.0, 0, -1), 5)[-1], 0.2)
    np.testing.assert_allclose(ind.pct_change(np.array([100.0, 110, 99]), 1), [np.nan, 0.1, -0.1])


def test_crosses_fire_once_per_cross():
    x = np.array([50.0, 40, 20, 25, 20, 30, 35, 30, 60])
    # below 30 from bar 2 to bar 4: one cross; touching 30 (bars 5, 7) is not below
    assert np.flatnonzero(ind.crosses_below(x, 30)).tolist() == [2]
    # above 30 on bars 6 and 8; bar 7 (exactly 30) ends the first stretch
    assert np.flatnonzero(ind.crosses_above(x, 30)).tolist() == [6, 8]
    assert np.flatnonzero(ind.crosses_above(x, np.full(9, 50.0))).tolist() == [8]
    assert not ind.crosses_below(np.array([np.nan, 10.0]), 30).any()


# ---------------------------------------------------------------- registry and parameters


def test_every_new_strategy_is_registered_with_a_docstring():
    names = bl.list_strategies()
    for name in NEW_STRATEGIES:
        assert name in names
        spec = get_strategy(name)
        assert spec.doc and spec.params_model.__doc__ is not None
        assert spec.intraday_only == (name == "opening_range_breakout")
        for field in spec.params_model.model_fields.values():
            assert field.description, f"{name} parameter without a description"
    assert "sma_crossover" in names


DEFAULTS = {
    "rsi_mean_reversion": {"window": 14, "oversold": 30.0, "exit_level": 50.0, "max_hold_bars": 10},
    "macd_crossover": {"fast": 12, "slow": 26, "signal": 9},
    "bollinger_bands": {"window": 20, "num_std": 2.0},
    "momentum_breakout": {"window": 20, "exit_window": 10},
    "rsi_vol_filter": {"window": 14, "oversold": 30.0, "exit_level": 50.0, "max_hold_bars": 10,
                       "atr_window": 14, "lookback": 252, "max_atr_percentile": 0.8},
    "dual_momentum": {"lookback": 126, "rebalance_every": 21, "top_k": 1, "min_return": 0.0},
    "opening_range_breakout": {"range_bars": 6, "hold_bars": 12},
}


@pytest.mark.parametrize("name", NEW_STRATEGIES)
def test_defaults_validate_and_run_on_a_random_walk(name):
    params = get_strategy(name).params_model()
    assert params.model_dump() == DEFAULTS[name]
    data = random_bars(5, 400, 3)
    sig = get_strategy(name).signal_fn(data, params)
    if name == "dual_momentum":
        assert sig.weights.shape == (400, 3) and sig.entries is None
    else:
        assert sig.entries.shape == sig.exits.shape == (400, 3)
        assert sig.entries.dtype == sig.exits.dtype == bool
        assert not sig.entries[: sig.warmup].any() and not sig.exits[: sig.warmup].any()


@pytest.mark.parametrize(("name", "params", "fragments"), [
    ("rsi_mean_reversion", {"oversold": 60, "exit_level": 50},
     ["oversold=60 must be below exit_level=50", "lower oversold or raise exit_level"]),
    ("rsi_mean_reversion", {"oversold": 50, "exit_level": 50}, ["oversold=50 must be below exit_level=50"]),
    ("macd_crossover", {"fast": 26, "slow": 12},
     ["fast=26 must be smaller than slow=12", "lower fast or raise slow"]),
    ("macd_crossover", {"fast": 12, "slow": 12}, ["fast=12 must be smaller than slow=12"]),
    ("rsi_vol_filter", {"oversold": 55}, ["oversold=55 must be below exit_level=50"]),
    ("rsi_vol_filter", {"lookback": 10, "max_atr_percentile": 0.05},
     ["max_atr_percentile=0.05 is below 1/lookback=0.1", "(lookback=10)", "raise max_atr_percentile or lookback"]),
    ("rsi_mean_reversion", {"windw": 5}, ["unknown parameter 'windw'", "did you mean 'window'?"]),
    ("bollinger_bands", {"num_std": 0}, ["num_std", "greater than 0"]),
    ("rsi_vol_filter", {"max_atr_percentile": 80}, ["max_atr_percentile", "less than or equal to 1"]),
    ("dual_momentum", {"top_k": 0}, ["top_k", "greater than or equal to 1"]),
    ("opening_range_breakout", {"hold_bars": 0}, ["hold_bars", "greater than or equal to 1"]),
])
def test_parameter_checks_name_the_fields_values_and_fix(name, params, fragments):
    with pytest.raises(ValidationError) as e:
        get_strategy(name).params_model.model_validate(params)
    for fragment in fragments:
        assert fragment in str(e.value)


# ---------------------------------------------------------------- rsi_mean_reversion

# Wilder RSI(2) by hand: changes +1 +1 +1 -1 -1 -1 -1 -1 +1 +1 +1 +1 -1 -1 -1
#   bar 2: 100, 3: 100, 4: 50, 5: 25 (cross below 30), 6: 12.5, 7: 6.25, 8: 3.125,
#   9: 51.2 (cross above 50), 10: 75.5, 11: 87.7, 12: 93.9, 13: 47.0, 14: 23.5 (cross below 30)
RSI_CLOSE = [10.0, 11, 12, 13, 12, 11, 10, 9, 8, 9, 10, 11, 12, 11, 10, 9]


def test_rsi_mean_reversion_hand_checked_crosses():
    close = np.column_stack([RSI_CLOSE, np.full(len(RSI_CLOSE), 10.0)])  # asset 1 never moves: RSI 50
    np.testing.assert_allclose(ind.wilder_rsi(close[:, 0], 2)[2:7], [100, 100, 50, 25, 12.5])
    sig = run("rsi_mean_reversion", bar_data(close), window=2, oversold=30, exit_level=50, max_hold_bars=7)
    assert bars_where(sig.entries) == [5, 14]  # once per downward cross, not on bars 6, 7, 8, 15
    assert bars_where(sig.exits) == [9]
    assert not sig.entries[:, 1].any() and not sig.exits[:, 1].any()
    assert sig.max_hold_bars == 7
    assert sig.warmup == 3


def test_rsi_mean_reversion_max_hold_bars_is_the_parameter():
    assert run("rsi_mean_reversion", random_bars(6, 50, 2)).max_hold_bars == 10
    assert run("rsi_mean_reversion", random_bars(6, 50, 2), max_hold_bars=3).max_hold_bars == 3


def test_rsi_mean_reversion_matches_reference_rsi_crosses():
    data = random_bars(7, 200, 2)
    sig = run("rsi_mean_reversion", data, window=5, oversold=35, exit_level=55)
    for j in range(2):
        rsi = ref_rsi(data["close"][:, j].tolist(), 5)
        down = [t for t in range(1, 200) if rsi[t - 1] >= 35 and rsi[t] < 35]
        up = [t for t in range(1, 200) if rsi[t - 1] <= 55 and rsi[t] > 55]
        assert bars_where(sig.entries, j) == down and down
        assert bars_where(sig.exits, j) == up and up


# ---------------------------------------------------------------- macd_crossover


def test_macd_crossover_matches_reference_emas():
    data = random_bars(8, 150, 3)
    sig = run("macd_crossover", data, fast=3, slow=8, signal=4)
    assert sig.warmup == 11
    for j in range(3):
        c = data["close"][:, j].tolist()
        macd = [f - s for f, s in zip(ref_ema(c, 3), ref_ema(c, 8))]
        line = [math.nan] * 7 + ref_ema(macd[7:], 4)
        assert all(math.isnan(v) for v in line[:10]) and not math.isnan(line[10])
        up = [t for t in range(1, 150) if macd[t - 1] <= line[t - 1] and macd[t] > line[t]]
        down = [t for t in range(1, 150) if macd[t - 1] >= line[t - 1] and macd[t] < line[t]]
        assert bars_where(sig.entries, j) == up and up
        assert bars_where(sig.exits, j) == down and down
        assert min(up + down) >= sig.warmup


def test_macd_crossover_one_entry_and_one_exit_per_cycle_of_a_sine():
    close = 100 + 10 * np.sin(2 * np.pi * np.arange(200) / 40)  # period 40 bars
    sig = run("macd_crossover", bar_data(close), fast=3, slow=8, signal=3)
    entries, exits = bars_where(sig.entries), bars_where(sig.exits)
    assert np.diff(entries).tolist() == [40] * 4 and np.diff(exits).tolist() == [40] * 3
    assert all(x - e == 20 for e, x in zip(entries, exits))  # alternate, half a period apart


# ---------------------------------------------------------------- bollinger_bands

# window 3, num_std 1 (population std):
#   bar 4: closes 10 11 10 -> middle 10.333, lower 9.862; low 9.0 pierces, close 10.0 does not
#   bar 5: closes 11 10 9 -> middle 10, lower 9.184; close 9 < lower and close[4] >= lower[4]
#   bar 3 and bar 6: the close goes from <= middle to > middle
BB_CLOSE = np.array([10.0, 11, 10, 11, 10, 9, 11])


def test_bollinger_bands_entry_needs_the_close_below_the_band_not_the_low():
    low = BB_CLOSE - 0.5
    low[4] = 9.0
    sig = run("bollinger_bands", bar_data(BB_CLOSE, low=low), window=3, num_std=1.0)
    lower = ind.sma(BB_CLOSE, 3) - ind.rolling_std(BB_CLOSE, 3)
    np.testing.assert_allclose(lower[4:6], [31 / 3 - math.sqrt(2 / 9), 10 - math.sqrt(2 / 3)])
    assert low[4] < lower[4] < BB_CLOSE[4]
    assert bars_where(sig.entries) == [5]
    assert bars_where(sig.exits) == [3, 6]
    assert sig.warmup == 3


def test_bollinger_bands_match_reference_bands():
    data = random_bars(9, 150, 2)
    sig = run("bollinger_bands", data, window=10, num_std=1.5)
    for j in range(2):
        c = data["close"][:, j].tolist()
        mid = ref_rolling(c, 10, lambda w: sum(w) / len(w))
        lower = [m - 1.5 * s for m, s in zip(mid, ref_rolling(c, 10, pstd))]
        down = [t for t in range(1, 150) if c[t - 1] >= lower[t - 1] and c[t] < lower[t]]
        up = [t for t in range(1, 150) if c[t - 1] <= mid[t - 1] and c[t] > mid[t]]
        assert bars_where(sig.entries, j) == down and down
        assert bars_where(sig.exits, j) == up and up


# ---------------------------------------------------------------- momentum_breakout


def test_momentum_breakout_channel_excludes_the_current_bar():
    high = np.array([10.0, 12, 11, 11.5, 13, 12.5, 12, 11.6])
    close = np.array([9.5, 11, 10.5, 11.8, 12.5, 12.4, 10.2, 11.0])
    low = np.array([9.0, 10, 10, 11, 12, 11.5, 10, 10.5])
    sig = run("momentum_breakout", bar_data(close, high=high, low=low), window=3, exit_window=2)
    # bar 3: max(10, 12, 11) = 12 > 11.8: no entry; bar 4: max(12, 11, 11.5) = 12 < 12.5: entry,
    # although bar 4's own high (13) is above its close
    np.testing.assert_allclose(ind.rolling_max(high, 3, exclude_current=True)[3:6], [12, 12, 13])
    assert bars_where(sig.entries) == [4]
    # bar 6: min(low[4], low[5]) = 11.5 > 10.2: exit; bar 7: min(11.5, 10) = 10 < 11.0: none
    assert bars_where(sig.exits) == [6]
    assert sig.warmup == 2  # the first possible exit (bar exit_window) comes before the first entry


def test_momentum_breakout_close_equal_to_the_channel_is_no_entry():
    high = np.array([10.0, 10, 10, 10])
    close = np.array([9.0, 9, 9, 10])
    assert not run("momentum_breakout", bar_data(close, high=high), window=3).entries.any()


# ---------------------------------------------------------------- rsi_vol_filter


def rsi_vol_bars(bar5_half_range: float) -> BarData:
    """RSI_CLOSE with high/low = close +/- a half-range: 1.0 on bars 3, 4, the given one on
    bar 5, 2.0 on bars 12, 13 and 0.5 elsewhere."""
    close = np.array(RSI_CLOSE)
    r = np.full(len(close), 0.5)
    r[3:5] = 1.0
    r[5] = bar5_half_range
    r[12:14] = 2.0
    return bar_data(close, high=close + r, low=close - r)


def test_rsi_vol_filter_no_entry_while_atr_percentile_is_above_the_threshold():
    p = {"window": 2, "oversold": 30, "exit_level": 50, "atr_window": 1, "lookback": 3}
    data = rsi_vol_bars(bar5_half_range=3.0)
    # ATR(1) = true range: bars 3, 4, 5 = 2, 2, 6 -> rank at bar 5 = 3/3 = 1.0;
    # bars 12, 13, 14 = 4, 4, 1.5 -> rank at bar 14 = 1/3
    rank = ind.rolling_percentile_rank(ind.atr(data["high"], data["low"], data["close"], 1), 3)[:, 0]
    np.testing.assert_allclose(rank[[5, 14]], [1.0, 1 / 3])
    sig = run("rsi_vol_filter", data, max_atr_percentile=0.5, **p)
    assert bars_where(sig.entries) == [14]  # the RSI entry at bar 5 is dropped, not delayed
    assert bars_where(sig.exits) == [9]  # exits are rsi_mean_reversion's
    assert sig.max_hold_bars == 10
    unfiltered = run("rsi_vol_filter", data, max_atr_percentile=1.0, **p)
    assert bars_where(unfiltered.entries) == [5, 14]
    # a calm bar 5 (true range 1.5 after 2, 2: rank 1/3) keeps its entry
    calm = run("rsi_vol_filter", rsi_vol_bars(bar5_half_range=0.5), max_atr_percentile=0.5, **p)
    assert bars_where(calm.entries) == [5, 14]


def test_rsi_vol_filter_no_entry_before_the_atr_rank_exists():
    p = {"window": 2, "oversold": 30, "exit_level": 50, "atr_window": 1, "max_atr_percentile": 1.0}
    data = rsi_vol_bars(bar5_half_range=0.5)
    sig = run("rsi_vol_filter", data, lookback=10, **p)  # first rank at bar 9
    assert bars_where(sig.entries) == [14]
    assert bars_where(sig.exits) == [9]
    assert sig.warmup == 3  # the first bar an event (here the exit) can fire
    assert not run("rsi_vol_filter", data, lookback=40, **p).entries.any()


def test_rsi_vol_filter_entries_are_the_rsi_entries_where_calm():
    data = random_bars(10, 300, 3)
    rsi = {"window": 5, "oversold": 35, "exit_level": 55, "max_hold_bars": 5}
    base = run("rsi_mean_reversion", data, **rsi)
    sig = run("rsi_vol_filter", data, atr_window=5, lookback=30, max_atr_percentile=0.5, **rsi)
    rank = ind.rolling_percentile_rank(ind.atr(data["high"], data["low"], data["close"], 5), 30)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(sig.entries, base.entries & (rank <= 0.5))
    np.testing.assert_array_equal(sig.exits, base.exits)
    assert 0 < sig.entries.sum() < base.entries.sum()


# ---------------------------------------------------------------- dual_momentum

DM_CLOSE = np.array([
    # A     B     C
    [100, 100, 100],
    [100, 100, 100],
    [100, 100, 100],
    [110, 120, 105],  # bar 3: returns over 2 bars .10 .20 .05 -> B
    [110, 120, 105],
    [110, 120, 105],
    [110, 110, 130],  # bar 6: 0, -.083, .238 -> C
    [110, 110, 130],
    [110, 110, 130],
    [100, 90, 95],  # bar 9: all negative -> cash
    [100, 90, 95],
], dtype=np.float64)


def test_dual_momentum_rebalances_only_every_n_bars_to_the_best_asset():
    sig = run("dual_momentum", bar_data(DM_CLOSE), lookback=2, rebalance_every=3, top_k=1)
    w = sig.weights
    assert np.isnan(w[[0, 1, 2, 4, 5, 7, 8, 10]]).all()  # bar 0 is a multiple of 3 but before warm-up
    np.testing.assert_array_equal(w[[3, 6, 9]], [[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    assert sig.warmup == 2 and sig.entries is None


def test_dual_momentum_top_k_and_absolute_filter():
    w = run("dual_momentum", bar_data(DM_CLOSE), lookback=2, rebalance_every=3, top_k=2).weights
    # bar 6: only C beats min_return=0 (A's return is exactly 0): half in C, half in cash
    np.testing.assert_array_equal(w[[3, 6, 9]], [[0.5, 0.5, 0], [0, 0, 0.5], [0, 0, 0]])
    # a floor below every return: bar 9 holds the least bad asset (A, -9.1%)
    w = run("dual_momentum", bar_data(DM_CLOSE), lookback=2, rebalance_every=3, min_return=-0.5).weights
    np.testing.assert_array_equal(w[9], [1, 0, 0])
    # an asset without a price (not listed yet) is never held
    close = DM_CLOSE.copy()
    close[:2, 1] = np.nan
    np.testing.assert_array_equal(
        run("dual_momentum", bar_data(close), lookback=2, rebalance_every=3).weights[3], [1, 0, 0]
    )


def test_dual_momentum_matches_a_reference_loop():
    close = random_bars(11, 200, 3)["close"]
    w = run("dual_momentum", bar_data(close), lookback=15, rebalance_every=7, top_k=2, min_return=0.01).weights
    for t in range(200):
        if t < 15 or t % 7:
            assert np.isnan(w[t]).all()
            continue
        ret = close[t] / close[t - 15] - 1
        best = sorted(range(3), key=lambda j: -ret[j])[:2]
        expect = [0.5 if j in best and ret[j] > 0.01 else 0.0 for j in range(3)]
        np.testing.assert_array_equal(w[t], expect)


# ---------------------------------------------------------------- opening_range_breakout


def test_opening_range_breakout_range_from_each_sessions_first_bars():
    # two sessions of 8 bars; range_bars=3
    close = np.array([
        10.0, 12.5, 11, 11.5, 12.6, 12.0, 13, 12,  # session 1: range high max(10.5, 13, 11.5) = 13
        15.0, 14, 14.5, 13.6, 15.6, 16, 15, 17,  # session 2: range high max(15.5, 14.5, 15) = 15.5
    ])
    high = close + 0.5
    ts = intraday_ts(16, bars_per_session=8)
    sig = run("opening_range_breakout", bar_data(close, high=high, ts=ts), range_bars=3, hold_bars=5)
    # session 1: bar 1 closes above bar 0's high but is inside the range; bar 4 (12.6) < 13;
    # bar 6 (13.0) is not above 13; no entry. Session 2: 13.6 would beat session 1's range,
    # but session 2's range high is 15.5: first close above it is bar 12; bars 13 and 15 are
    # above too but only one entry per session
    assert bars_where(sig.entries) == [12]
    close[7] = 13.2
    sig = run("opening_range_breakout", bar_data(close, high=close + 0.5, ts=ts), range_bars=3, hold_bars=5)
    assert bars_where(sig.entries) == [7, 12]
    assert not sig.exits.any() and sig.exits.shape == sig.entries.shape
    assert sig.max_hold_bars == 5
    assert sig.warmup == 3


def test_opening_range_breakout_one_entry_per_session_per_asset_on_a_random_walk():
    data = random_bars(12, 200, 3)  # 10 sessions of 20 bars
    sig = run("opening_range_breakout", data, range_bars=4, hold_bars=6)
    assert sig.max_hold_bars == 6
    for j in range(3):
        per_session = sig.entries[:, j].reshape(10, 20)
        assert per_session.sum(axis=1).max() == 1 and per_session.sum() >= 3
        assert not per_session[:, :4].any()
        for s in range(10):
            hi = data["high"][s * 20 : s * 20 + 4, j].max()
            above = np.flatnonzero(data["close"][s * 20 + 4 : (s + 1) * 20, j] > hi)
            assert np.flatnonzero(per_session[s]).tolist() == ([above[0] + 4] if above.size else [])


def test_opening_range_breakout_sessions_are_utc_calendar_days():
    # 3 bars at 21:00-23:00 UTC then 3 bars from midnight: two sessions, not one
    ts = np.datetime64("2024-01-02T21:00", "us") + np.arange(6) * np.timedelta64(1, "h")
    close = np.array([10.0, 10, 12, 10, 10, 12])
    sig = run("opening_range_breakout", bar_data(close, ts=ts), range_bars=2)
    assert bars_where(sig.entries) == [2, 5]


def test_opening_range_breakout_needs_timestamps():
    data = random_bars(13, 40, 2)
    data["ts"] = data["ts"][:10]
    with pytest.raises(ValueError, match="needs data\\['ts'\\] with one timestamp per bar"):
        run("opening_range_breakout", data)


def test_opening_range_breakout_on_no_bars():
    sig = run("opening_range_breakout", bar_data(np.zeros((0, 2)), ts=intraday_ts(0)))
    assert sig.entries.shape == (0, 2)


# ---------------------------------------------------------------- no look-ahead (property)


def test_small_params_give_events_on_random_walks():
    """So that the no-look-ahead property below compares something."""
    data = random_bars(0, 160, 3)
    for name in NEW_STRATEGIES:
        sig = run(name, data, **SMALL_PARAMS[name])
        if sig.weights is not None:
            assert (np.nan_to_num(sig.weights) > 0).any(), name
        else:
            assert sig.entries.any() and (sig.exits.any() or sig.max_hold_bars), name


@pytest.mark.parametrize("name", NEW_STRATEGIES)
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(30, 160),
    m=st.integers(2, 3),
    cut_frac=st.floats(0.0, 1.0),
)
def test_changing_bars_after_n_changes_nothing_up_to_n(name, seed, n, m, cut_frac):
    cut = min(n - 1, int(cut_frac * n))
    data = random_bars(seed, n, m)
    before = run(name, data, **SMALL_PARAMS[name])
    after = run(name, perturb_after(data, cut, seed + 1), **SMALL_PARAMS[name])
    assert (before.warmup, before.max_hold_bars) == (after.warmup, after.max_hold_bars)
    if before.weights is not None:
        np.testing.assert_array_equal(before.weights[: cut + 1], after.weights[: cut + 1])  # NaN == NaN
    else:
        np.testing.assert_array_equal(before.entries[: cut + 1], after.entries[: cut + 1])
        np.testing.assert_array_equal(before.exits[: cut + 1], after.exits[: cut + 1])
