"""The live vs backtest overlay's formulas and alert rules on hand-computed inputs
(backlake.analytics.live; no lake, no Prefect)."""

from __future__ import annotations

import datetime as dt
import math

import polars as pl
import pytest

from backlake.analytics.live import (
    OverlayConfig,
    _derive,
    compute_overlay,
    cumulative,
    daily_returns,
    divergence_start,
    rolling_tracking_error,
    tracking_error,
    validate_live,
    yellow_streaks,
)
from backlake.errors import ConfigError

SQ = math.sqrt(252)
D0 = dt.date(2024, 1, 1)


def days(n: int, start: dt.date = D0) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range(n)]


def frame(rets: list[float], dates: list[dt.date] | None = None) -> pl.DataFrame:
    return pl.DataFrame({"date": dates or days(len(rets)), "ret": rets}, schema={"date": pl.Date, "ret": pl.Float64})


# -- formulas ---------------------------------------------------------------------------------------
def test_cumulative_is_cumprod_of_one_plus_r_minus_one() -> None:
    assert cumulative([0.1, -0.5, 0.0]) == pytest.approx([0.1, -0.45, -0.45])
    assert cumulative([]) == []


def test_tracking_error_is_annualised_sample_std_of_the_difference() -> None:
    # diff [0.01, 0.03]: mean 0.02, sample variance (1e-4 + 1e-4) / 1 = 2e-4
    assert tracking_error([0.01, 0.03], [0.0, 0.0]) == pytest.approx(math.sqrt(2e-4) * SQ)
    # diff [0.01, -0.01, 0.0]: mean 0, variance (1e-4 + 1e-4 + 0) / 2 = 1e-4
    assert tracking_error([0.02, 0.0, 0.01], [0.01, 0.01, 0.01]) == pytest.approx(0.01 * SQ)
    assert tracking_error([0.01, 0.02, -0.03], [0.01, 0.02, -0.03]) == 0.0  # identical series
    assert tracking_error([0.05], [0.0]) is None  # below 2 dates
    assert tracking_error([], []) is None


def test_rolling_tracking_error_needs_a_full_window() -> None:
    te = rolling_tracking_error([0.0, 0.01, 0.02, 0.02], [0.0] * 4, 3)
    assert math.isnan(te[0]) and math.isnan(te[1])
    assert te[2] == pytest.approx(0.01 * SQ)  # std(0, .01, .02) = 0.01
    assert te[3] == pytest.approx(math.sqrt(((0.01 - 0.05 / 3) ** 2 + 2 * (0.02 - 0.05 / 3) ** 2) / 2) * SQ)


def test_divergence_start_is_the_end_of_the_first_full_window_over_the_threshold() -> None:
    d = days(5)
    gaps = [0.0, 0.05, 0.12, 0.08, 0.2]
    assert divergence_start(gaps, d, 2, 0.10) == d[2]
    assert divergence_start(gaps, d, 3, 0.10) == d[2]
    # a gap over the threshold on the first date: the first full window ends at date 3 (index 2)
    assert divergence_start([0.2, 0.0, 0.0, 0.0], d[:4], 3, 0.10) == d[2]
    assert divergence_start([0.2, 0.0], d[:2], 3, 0.10) is None  # no full window
    assert divergence_start([0.1, 0.1, 0.1], d[:3], 2, 0.10) is None  # equal is not above


def test_yellow_streak_skips_nan_days_without_resetting() -> None:
    nan = math.nan
    assert yellow_streaks([nan, 0.06, nan, 0.07, 0.04, 0.06], 0.05) == [0, 1, 1, 2, 0, 1]
    assert yellow_streaks([0.05, 0.051], 0.05) == [0, 1]  # at the threshold is not above


def test_daily_returns_compound_bars_per_utc_date() -> None:
    ts = [dt.datetime(2024, 1, 1, 10, tzinfo=dt.UTC), dt.datetime(2024, 1, 1, 11, tzinfo=dt.UTC),
          dt.datetime(2024, 1, 2, 10, tzinfo=dt.UTC)]
    out = daily_returns(pl.DataFrame({"ts": ts, "ret": [0.1, 0.1, None]}))
    assert out["date"].to_list() == [dt.date(2024, 1, 1), dt.date(2024, 1, 2)]
    assert out["ret"].to_list() == pytest.approx([0.21, 0.0])


# -- the overlay and its alert transitions ------------------------------------------------------------
CFG = OverlayConfig(tracking_error_threshold=0.05, divergence_threshold=0.10, consecutive_days_for_yellow=2,
                    rolling_window_days=3)


def test_levels_go_none_yellow_red_on_a_hand_computed_series() -> None:
    live = [0.0, 0.0, 0.0, 0.01, -0.01, 0.01, -0.01, 0.15]
    ov = compute_overlay(frame(live), frame([0.0] * 8), CFG)
    # rolling TE: NaN, NaN, 0 (streak 0), 0.0917 (1), 0.1587 (2: YELLOW), ... ; last day cum live 14.98% > 10%
    assert ov.frame["streak"].to_list() == [0, 0, 0, 1, 2, 3, 4, 5]
    assert ov.frame["level"].to_list() == ["NONE"] * 4 + ["YELLOW"] * 3 + ["RED"]
    assert ov.level == "RED"
    assert ov.divergence == pytest.approx(abs((1.01 * 0.99) ** 2 * 1.15 - 1))
    assert "cumulative divergence" in ov.reasons[0] and "rolling 3-day tracking error" in ov.reasons[1]
    assert ov.tracking_error == pytest.approx(tracking_error(live, [0.0] * 8))
    assert ov.divergence_start == days(8)[7]
    assert ov.rolling_te == pytest.approx(rolling_tracking_error(live, [0.0] * 8, 3)[-1])
    assert ov.enabled and ov.alerts_enabled and ov.basis == "net"


def test_yellow_clears_when_the_rolling_te_falls_back() -> None:
    live = [0.0, 0.0, 0.0, 0.01, -0.01, 0.0, 0.0, 0.0, 0.0]
    ov = compute_overlay(frame(live), frame([0.0] * 9), CFG)
    assert ov.frame["level"].to_list()[4] == "YELLOW"
    assert ov.level == "NONE" and ov.reasons[0].startswith("within thresholds")


def test_red_fires_from_two_aligned_dates_and_one_date_is_insufficient() -> None:
    ov = compute_overlay(frame([0.0, 0.2]), frame([0.0, 0.0]), CFG)
    assert ov.level == "RED" and ov.divergence == pytest.approx(0.2)
    one = compute_overlay(frame([0.5]), frame([0.0]), CFG)
    assert one.level == "NONE" and one.reasons == ["insufficient data: 1 aligned date (the divergence needs 2)"]
    assert one.tracking_error is None


def test_yellow_needs_the_minimum_sample_of_overlapping_dates() -> None:
    live = [0.0, 0.02, -0.02, 0.02, -0.02, 0.0]
    d = days(6)
    sparse = frame([0.0, 0.0], [d[0], d[5]])  # bars on the first and last date only: the rest zero-filled
    ov = compute_overlay(frame(live, d), sparse, CFG)
    assert ov.n_aligned == 6 and ov.n_overlap == 2
    assert ov.frame["backtest"].to_list() == [0.0] * 6 and ov.frame["bt_bar"].to_list() == [True] + [False] * 4 + [True]
    assert ov.frame["streak"].to_list()[-2] >= 2  # the TE streak is there ...
    # ... but too few dates overlap
    assert ov.level == "NONE" and ov.reasons[0].startswith("insufficient data: 2 overlapping date(s)")
    full = compute_overlay(frame(live, d), frame([0.0] * 6, d), CFG)
    assert full.n_overlap == 6 and "YELLOW" in full.frame["level"].to_list()


def test_basis_mismatch_compares_gross_with_alerts_disabled() -> None:
    ov = compute_overlay(frame([0.0, 0.3, 0.0]), frame([0.0, 0.0, 0.0]), CFG, has_costs=False)
    assert ov.basis == "gross" and not ov.alerts_enabled and ov.enabled
    assert ov.level == "NONE" and set(ov.frame["level"].to_list()) == {"NONE"}
    assert ov.reasons[0].startswith("alerts disabled (basis mismatch)") and "cumulative divergence" in ov.reasons[0]
    assert any(w.startswith("basis mismatch") for w in ov.warnings)
    assert ov.divergence == pytest.approx(0.3)  # the figures are still computed


def test_no_overlapping_dates_disables_the_overlay() -> None:
    ov = compute_overlay(frame([0.01, 0.02], days(2, dt.date(2025, 1, 1))), frame([0.0, 0.0]), CFG)
    assert not ov.enabled and ov.level == "NONE" and ov.frame.is_empty()
    assert ov.n_outside == 2 and any("no overlapping dates" in w for w in ov.warnings)
    empty = compute_overlay(frame([]), frame([0.0]), CFG)
    assert not empty.enabled and "no live returns" in empty.reasons[0]


def test_live_dates_outside_the_backtest_period_are_left_out_and_counted() -> None:
    d = days(4)
    ov = compute_overlay(frame([0.01, 0.0, 0.0, 0.05], d), frame([0.0, 0.0], d[1:3]), CFG)
    assert ov.frame["date"].to_list() == d[1:3] and ov.n_outside == 2
    assert any("2 live date(s) outside" in w for w in ov.warnings)


def test_alignment_is_a_left_join_on_the_live_dates_with_no_trade_days_zero_filled() -> None:
    d = days(4)
    bt = frame([0.01, 0.02, 0.03], [d[0], d[2], d[3]])  # no bar on d[1]
    live = frame([0.0, 0.0, 0.0], [d[0], d[1], d[3]])  # no live day on d[2]: left out
    ov = compute_overlay(live, bt, CFG)
    assert ov.frame["date"].to_list() == [d[0], d[1], d[3]]
    assert ov.frame["backtest"].to_list() == [0.01, 0.0, 0.03]
    assert ov.cum_backtest == pytest.approx(1.01 * 1.03 - 1)


# -- the configuration ------------------------------------------------------------------------------
def test_overlay_config_defaults_and_validation() -> None:
    c = OverlayConfig()
    assert (c.tracking_error_threshold, c.divergence_threshold, c.consecutive_days_for_yellow,
            c.rolling_window_days) == (0.05, 0.10, 5, 20)
    assert OverlayConfig.parse({"rolling_window_days": 10}, tracking_error_threshold=None).rolling_window_days == 10
    with pytest.raises(ConfigError, match=r"tracking_error_threshold=-0.1: .*greater than 0; use a number > 0"):
        OverlayConfig.parse(tracking_error_threshold=-0.1)
    with pytest.raises(ConfigError, match=r"rolling_window_days=1: .*use a whole number >= 2"):
        OverlayConfig.parse(rolling_window_days=1)
    with pytest.raises(ConfigError, match=r"consecutive_days_for_yellow: must be a number, not the string '5'"):
        OverlayConfig.parse({"consecutive_days_for_yellow": "5"})
    with pytest.raises(ConfigError, match=r"did you mean 'divergence_threshold'"):
        OverlayConfig.parse({"divergence_treshold": 0.2})


# -- live files -------------------------------------------------------------------------------------
def test_validate_live_skips_and_counts_every_bad_row() -> None:
    raw = pl.DataFrame({
        "date": ["2024-01-02", "not a date", "2024-01-03", "2024-01-04", "2024-01-02", "2024-01-05", "2999-01-01",
                 "01/08/2024"],
        "nav": ["100", "101", "NaN", "-5", "102", "", "103", "104.5"],
    })
    valid, rep = validate_live(raw, today=dt.date(2024, 6, 1))
    assert rep.rows_in == 8 and rep.rows_valid == 2 and rep.rows_skipped == 6
    assert rep.counts == {"bad_date": 1, "missing_value": 2, "non_positive_nav": 1, "return_below_minus_100pct": 0,
                          "future_date": 1, "duplicate": 1}
    assert valid["date"].to_list() == [dt.date(2024, 1, 2), dt.date(2024, 1, 8)]
    assert valid["nav"].to_list() == [100.0, 104.5]
    assert {e["rule"] for e in rep.examples} == {"bad_date", "missing_value", "non_positive_nav", "future_date",
                                                 "duplicate"}
    _, r2 = validate_live(pl.DataFrame({"date": ["2024-01-02"], "ret": [-1.0]}), today=dt.date(2024, 6, 1))
    assert r2.counts["return_below_minus_100pct"] == 1


def test_returns_derive_from_nav_and_from_pnl_with_the_capital() -> None:
    empty = pl.DataFrame(schema={"date": pl.Date, "nav": pl.Float64})
    nav = pl.DataFrame({"date": days(3), "nav": [100.0, 110.0, 99.0]})
    rows = _derive(nav, ["nav"], empty, None, "s")
    assert [r["ret"] for r in rows] == [None, pytest.approx(0.1), pytest.approx(-0.1)]
    pnl = pl.DataFrame({"date": days(2), "daily_pnl": [10.0, -11.0]})
    rows = _derive(pnl, ["daily_pnl"], empty, 100.0, "s")
    assert [r["nav"] for r in rows] == [110.0, 99.0]
    assert [r["ret"] for r in rows] == [pytest.approx(0.1), pytest.approx(-0.1)]
    # a later file continues from the stored NAV
    stored = pl.DataFrame({"date": [D0], "nav": [200.0]})
    rows = _derive(pl.DataFrame({"date": [days(2)[1]], "daily_pnl": [20.0]}), ["daily_pnl"], stored, None, "s")
    assert rows[0]["nav"] == 220.0 and rows[0]["ret"] == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="--capital"):
        _derive(pnl, ["daily_pnl"], empty, None, "s")
