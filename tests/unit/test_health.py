"""The health monitor's rules on hand-made sources and a fake clock: statuses, thresholds and
overrides, the TTL cache, human ages, a raising check, version-change messages."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from backlake.analytics.health import (
    FAST_TTL,
    SLOW_TTL,
    HealthMonitor,
    VersionChange,
    alert_rows,
    check_rows,
    exit_code,
    human_age,
    human_span,
    overall_status,
    threshold_for,
)
from backlake.errors import ConfigError
from backlake.settings import HealthThresholds, get_settings

T0 = dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.UTC)


class FakeClock:
    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def ago(seconds: float) -> dt.datetime:
    return T0 - dt.timedelta(seconds=seconds)


# -- human ages --------------------------------------------------------------------------------
@pytest.mark.parametrize(("seconds", "text"), [
    (None, "never"), (-3, "just now"), (0, "just now"), (0.9, "just now"), (1, "1s ago"), (59, "59s ago"),
    (60, "1m 00s ago"), (332, "5m 32s ago"), (3599, "59m 59s ago"), (3600, "1h 00m ago"),
    (3 * 3600 + 5 * 60 + 9, "3h 05m ago"), (86399, "23h 59m ago"), (86400, "1d 0h ago"),
    (2 * 86400 + 4 * 3600 + 59, "2d 4h ago"), (400 * 86400, "400d 0h ago"),
])
def test_human_age(seconds, text):
    assert human_age(seconds) == text


@pytest.mark.parametrize(("seconds", "text"), [
    (1, "1s"), (12, "12s"), (60, "1m"), (900, "15m"), (5400, "90m"), (3600, "1h"), (86400, "1d"),
    (93600, "26h"), (172800, "2d"), (61, "1m 01s"),
])
def test_human_span(seconds, text):
    assert human_span(seconds) == text


# -- thresholds --------------------------------------------------------------------------------
def test_threshold_defaults():
    t = HealthThresholds()
    assert (t.price, t.volume, t.signal, t.fundamental) == (900, 900, 600, 86400)
    assert threshold_for(t, "bars/x/SP500", "bars", "price") == 900
    assert threshold_for(t, "signals/mom", "signals", "signal") == 600
    assert threshold_for(t, "live_pnl/demo", "live_pnl", "fundamental") == 86400
    assert threshold_for(t, "runs", "runs", None) is None  # informational


def test_threshold_overrides_source_then_glob_then_table_then_category():
    t = HealthThresholds(price=100, overrides={"bars/a/SP500": 7, "bars/*/GOOG": 8, "bars": 9, "runs": 10})
    assert threshold_for(t, "bars/a/SP500", "bars", "price") == 7
    assert threshold_for(t, "bars/b/GOOG", "bars", "price") == 8
    assert threshold_for(t, "bars/b/AAPL", "bars", "price") == 9  # the table's override
    assert threshold_for(t, "runs", "runs", None) == 10
    assert threshold_for(HealthThresholds(price=100), "bars/b/AAPL", "bars", "price") == 100


@pytest.mark.parametrize("bad", [{"price": 0}, {"signal": -5}, {"overrides": {"runs": 0}}])
def test_thresholds_must_be_positive(bad):
    with pytest.raises(ValueError, match="must be a positive number of seconds"):
        HealthThresholds(**bad)


def test_thresholds_from_the_environment(monkeypatch):
    monkeypatch.setenv("BACKLAKE_HEALTH_THRESHOLDS", '{"price": 93600, "overrides": {"live_pnl": 172800}}')
    t = get_settings().health_thresholds
    assert t.price == 93600 and t.volume == 900 and t.overrides == {"live_pnl": 172800}
    monkeypatch.setenv("BACKLAKE_HEALTH_THRESHOLDS", '{"price": -1}')
    with pytest.raises(ConfigError, match=r"BACKLAKE_HEALTH_THRESHOLDS: price=-1 must be a positive"):
        get_settings()
    monkeypatch.setenv("BACKLAKE_HEALTH_THRESHOLDS", '{"prize": 60}')
    with pytest.raises(ConfigError, match=r"unknown key 'prize'; did you mean 'price'\?"):
        get_settings()
    monkeypatch.setenv("BACKLAKE_HEALTH_THRESHOLDS", "price=60")
    with pytest.raises(ConfigError, match=r"BACKLAKE_HEALTH_THRESHOLDS takes JSON, e.g."):
        get_settings()


# -- statuses ----------------------------------------------------------------------------------
def test_statuses_ok_stale_error():
    clock = FakeClock()
    m = HealthMonitor(HealthThresholds(price=900), clock=clock)
    m.register("fresh", lambda: ago(899), category="price")
    m.register("exactly", lambda: ago(900), category="price")
    m.register("old", lambda: ago(901), category="price")
    m.register("never", lambda: None, category="price")
    m.register("naive", lambda: ago(10).replace(tzinfo=None), category="price")  # naive = UTC
    by = {r.source: r for r in m.results()}
    assert by["fresh"].status == "OK" and by["exactly"].status == "OK"
    assert by["old"].status == "STALE" and by["old"].age_seconds == 901
    assert "15m 01s ago" in by["old"].message
    assert by["never"].status == "ERROR" and by["never"].message == "no heartbeat recorded"
    assert by["naive"].status == "OK" and by["naive"].age_seconds == 10
    assert all(r.checked_at == T0 for r in by.values())
    assert [r.status for r in m.results()][:2] == ["ERROR", "STALE"]  # worst first
    assert overall_status(m.results()) == "ERROR"


def test_no_threshold_is_informational_never_stale():
    m = HealthMonitor(clock=FakeClock())
    m.register("runs", lambda: ago(10 * 86400), table="runs")
    (r,) = m.results()
    assert r.status == "OK" and r.threshold_seconds is None and "informational" in r.message


def test_a_raising_check_is_an_error_and_the_others_still_run():
    m = HealthMonitor(clock=FakeClock())
    seen = []

    def broken():
        raise OSError("connection refused by s3://lake")

    def fine():
        seen.append(1)
        return ago(5)

    m.register("broken", broken, category="price")
    m.register("fine", fine, category="price")
    m.register_group("group", lambda: 1 / 0, category="price")
    by = {r.source: r for r in m.results()}
    assert by["broken"].status == "ERROR" and by["broken"].message == "OSError: connection refused by s3://lake"
    assert by["group"].status == "ERROR" and "ZeroDivisionError" in by["group"].message
    assert by["fine"].status == "OK" and seen == [1]


def test_group_check_returns_many_sources():
    m = HealthMonitor(HealthThresholds(price=60), clock=FakeClock())
    m.register_group("bars", lambda: {"bars/s/A": ago(30), "bars/s/B": ago(90), "bars/s/C": None},
                     category="price", table="bars")
    by = {r.source: r.status for r in m.results()}
    assert by == {"bars/s/A": "OK", "bars/s/B": "STALE", "bars/s/C": "ERROR"}


def test_overall_and_exit_codes():
    assert overall_status([]) == "OK"
    assert [exit_code(s) for s in ("OK", "STALE", "ERROR")] == [0, 1, 2]


# -- the TTL cache -----------------------------------------------------------------------------
def test_ttl_cache_one_read_per_ttl_and_ages_move_on():
    clock = FakeClock()
    m = HealthMonitor(HealthThresholds(price=100), clock=clock)
    calls = {"fast": 0, "slow": 0}

    def counted(name: str, when: dt.datetime):
        def check():
            calls[name] += 1
            return when
        return check

    m.register("fast", counted("fast", ago(50)), category="price")          # 10 s
    m.register("slow", counted("slow", ago(50)), category="fundamental")    # 60 s
    for _ in range(20):
        m.results()
    assert calls == {"fast": 1, "slow": 1}
    clock.advance(FAST_TTL - 0.001)
    by = {r.source: r for r in m.results()}
    assert calls == {"fast": 1, "slow": 1}
    assert by["fast"].checked_at == T0 and by["fast"].age_seconds == pytest.approx(60 - 0.001)
    clock.advance(0.001)
    m.results()
    assert calls == {"fast": 2, "slow": 1}
    clock.advance(45)  # 55 s in: "fast" is 105 s old > 100 (STALE), "slow" still cached
    by = {r.source: r for r in m.results()}
    assert calls == {"fast": 3, "slow": 1} and by["fast"].status == "STALE"
    clock.advance(SLOW_TTL - 55)
    m.results()
    assert calls["slow"] == 2
    m.results(force=True)
    assert calls == {"fast": 4, "slow": 3}
    assert m.reads() == {"fast": 4, "slow": 3}


def test_errors_are_cached_too_and_retried_after_the_ttl():
    clock = FakeClock()
    m = HealthMonitor(clock=clock)
    state = {"n": 0}

    def flaky():
        state["n"] += 1
        if state["n"] == 1:
            raise TimeoutError("lake slow")
        return ago(1)

    m.register("flaky", flaky, category="signal")
    assert m.results()[0].status == "ERROR"
    assert m.results()[0].status == "ERROR" and state["n"] == 1
    clock.advance(FAST_TTL)
    assert m.results()[0].status == "OK" and state["n"] == 2


def test_concurrent_callers_share_one_read():
    m = HealthMonitor(clock=lambda: dt.datetime.now(dt.UTC))
    calls = []
    gate = threading.Event()

    def slow():
        calls.append(1)
        gate.wait(2)
        return dt.datetime.now(dt.UTC)

    m.register("slow", slow, category="price")
    threads = [threading.Thread(target=m.results) for _ in range(16)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in threads:
        t.join(5)
    assert len(calls) == 1


def test_negative_ttl_is_refused():
    with pytest.raises(ValueError, match="ttl=-1"):
        HealthMonitor().register("x", lambda: None, ttl=-1)


# -- rows and version changes ------------------------------------------------------------------
def test_check_and_alert_rows():
    m = HealthMonitor(HealthThresholds(price=60), clock=FakeClock())
    m.register("ok", lambda: ago(1), category="price", table="bars")
    m.register("stale", lambda: ago(120), category="price", table="bars")
    m.register("err", lambda: None, category="price")
    results = m.results()
    rows = check_rows(results, "c1")
    assert rows.height == 3 and set(rows["status"]) == {"OK", "STALE", "ERROR"}
    alerts = alert_rows(results, now=T0)
    assert sorted(alerts["level"]) == ["ERROR", "STALE"] and set(alerts["kind"]) == {"health"}
    assert alerts.filter(alerts["source"] == "stale")["message"].item().startswith("stale is STALE: last update 2m")


def test_version_change_messages():
    c = VersionChange("runs", 12, 15, {"WRITE": 2, "MERGE": 1}, None)
    assert c.commits == 3
    assert c.message == "runs v12 shown, v15 in the lake: 3 commits (2 WRITE, 1 MERGE)"
    one = VersionChange("bars", 0, 1, {"WRITE": 1}, None)
    assert one.message == "bars v0 shown, v1 in the lake: 1 commit (1 WRITE)"
    assert VersionChange("alerts", -1, 0, {"CREATE TABLE": 1}, None).message == \
        "alerts created in the lake since: 1 commit (1 CREATE TABLE)"
