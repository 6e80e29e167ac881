"""Signals in the lake (local directory and moto S3): incremental refresh vs full rebuild,
idempotence, concurrent refreshes, other alphas untouched, bad input, and the replacement of
an empty ``signals`` table of the older schema."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from backlake.alpha import alpha_id, compute_signals, panel_from_bars
from backlake.alpha.store import read_signals, refresh_signals, stored_alphas
from backlake.data.ingest import ingest_bars
from backlake.data.synthetic import synthetic_bars
from backlake.errors import ConfigError, LakeError
from backlake.lake import Lake
from backlake.settings import Settings
from tests.conftest import REPO, wait_until

KEY = ["alpha_id", "date", "symbol"]
UNIVERSE = ["A", "B", "C", "D"]
PARAMS = {"lookback": 30, "skip": 5}


def universe_bars() -> pl.DataFrame:
    """A, B for 300 days; C enters 120 days in; D leaves after 200 days, and misses a day."""
    base = synthetic_bars(("A", "B", "C", "D"), start="2021-01-04", periods=300, seed=5)
    first_ts = base.filter(pl.col("symbol") == "A")["ts"].sort()
    c_start, d_end, d_gap = first_ts[120], first_ts[200], first_ts[150]
    return base.filter(
        ~((pl.col("symbol") == "C") & (pl.col("ts") < c_start))
        & ~((pl.col("symbol") == "D") & ((pl.col("ts") > d_end) | (pl.col("ts") == d_gap))))


def expected(bars: pl.DataFrame, name: str, params: dict, end: dt.date | None = None) -> pl.DataFrame:
    return compute_signals(panel_from_bars(bars), name, params, end=end).sort("date", "symbol")


def assert_unique_keys(df: pl.DataFrame) -> None:
    dup = df.group_by(KEY).len().filter(pl.col("len") > 1)
    assert dup.is_empty(), dup


def test_refresh_in_steps_equals_full_rebuild(lake_settings: Settings):
    lake = Lake(lake_settings)
    bars = universe_bars()
    first_part = bars.filter(pl.col("ts") < dt.datetime(2021, 9, 1, tzinfo=dt.UTC))
    ingest_bars(lake, first_part)
    aid = alpha_id("momentum_12_1", PARAMS)

    r1 = refresh_signals(lake, "momentum_12_1", PARAMS, UNIVERSE, end=dt.date(2021, 6, 30))
    assert r1.rows_added > 0 and r1.last_date is not None and r1.last_date <= dt.date(2021, 6, 30)
    r2 = refresh_signals(lake, "momentum_12_1", PARAMS, UNIVERSE)
    assert r2.first_date is not None and r2.first_date > r1.last_date
    # refresh again: nothing added, no new version
    r3 = refresh_signals(lake, "momentum_12_1", PARAMS, UNIVERSE)
    assert (r3.rows_added, r3.version) == (0, r2.version)

    # new bars arrive: only the new dates are computed, from the look-back they need
    ingest_bars(lake, bars)
    r4 = refresh_signals(lake, "momentum_12_1", PARAMS, UNIVERSE)
    assert r4.first_date is not None and r4.first_date > (r2.last_date or dt.date.min)
    stored = read_signals(lake, aid)
    assert_unique_keys(stored)
    assert stored.height == r1.rows_added + r2.rows_added + r4.rows_added
    assert stored.equals(expected(bars, "momentum_12_1", PARAMS))  # bit-identical to one computation
    # entering / leaving: C only after it entered (plus look-back), D absent after it left and on its gap
    c_first = stored.filter(pl.col("symbol") == "C")["date"].min()
    assert c_first is not None and c_first > dt.date(2021, 6, 1)
    d_dates = stored.filter(pl.col("symbol") == "D")["date"]
    assert d_dates.max() is not None and d_dates.max() < stored["date"].max()

    # a full rebuild recomputes the same rows: nothing to write, same version
    rb = refresh_signals(lake, "momentum_12_1", PARAMS, UNIVERSE, full_rebuild=True)
    assert (rb.rows_added, rb.version, rb.full_rebuild) == (0, r4.version, True)
    assert read_signals(lake, aid).equals(stored)


def test_full_rebuild_replaces_one_alpha_as_a_new_version(lake_settings: Settings):
    lake = Lake(lake_settings)
    bars = universe_bars()
    ingest_bars(lake, bars)
    other = refresh_signals(lake, "reversal_5d", {}, UNIVERSE)
    mine = refresh_signals(lake, "high_52w", {"window": 20}, UNIVERSE)
    before = read_signals(lake, mine.alpha_id)
    other_rows = read_signals(lake, other.alpha_id)
    # damage the stored rows: a stray duplicate and a wrong score
    bad = before.head(2).with_columns(pl.lit(123.0).alias("score"))
    lake.append("signals", bad)
    assert read_signals(lake, mine.alpha_id).height == before.height + 2
    v = lake.version("signals")

    rb = refresh_signals(lake, "high_52w", {"window": 20}, UNIVERSE, full_rebuild=True)
    assert rb.version == v + 1 and rb.rows_added == before.height
    assert read_signals(lake, mine.alpha_id).equals(before)
    assert read_signals(lake, other.alpha_id).equals(other_rows)  # other alphas untouched
    # the damaged version stays readable (time travel)
    assert read_signals(lake, mine.alpha_id, version=v).height == before.height + 2
    # a rebuild up to a date: the alpha_id's rows end there
    cut = refresh_signals(lake, "high_52w", {"window": 20}, UNIVERSE, full_rebuild=True, end=dt.date(2021, 8, 31))
    assert read_signals(lake, mine.alpha_id)["date"].max() == cut.last_date
    assert cut.last_date is not None and cut.last_date <= dt.date(2021, 8, 31)
    # and an incremental refresh brings it back to the same rows
    refresh_signals(lake, "high_52w", {"window": 20}, UNIVERSE)
    assert read_signals(lake, mine.alpha_id).equals(before)
    got = read_signals(lake, mine.alpha_id, start=dt.date(2021, 9, 1), end=dt.date(2021, 9, 30))
    assert got["date"].min() >= dt.date(2021, 9, 1) and got["date"].max() <= dt.date(2021, 9, 30)
    summary = stored_alphas(lake)
    assert set(summary["alpha"]) == {"reversal_5d", "high_52w"}
    assert summary.filter(pl.col("alpha_id") == mine.alpha_id)["rows"].item() == before.height


def test_full_rebuild_of_a_smaller_universe_keeps_the_other_symbols_rows(lake_settings: Settings):
    """The rows of one alpha_id may come from several universes: a rebuild on two of the
    symbols replaces those two symbols' rows only (and adds nothing when they are unchanged)."""
    lake = Lake(lake_settings)
    ingest_bars(lake, universe_bars())
    full = refresh_signals(lake, "reversal_5d", {}, UNIVERSE)
    before = read_signals(lake, full.alpha_id)
    assert set(before["symbol"]) == set(UNIVERSE)
    v = lake.version("signals")
    same = refresh_signals(lake, "reversal_5d", {}, ["A", "C"], full_rebuild=True)
    assert same.rows_added == 0 and lake.version("signals") == v  # idempotent on the subset
    lake.delete("signals", "symbol = 'A'", "damage A's rows")  # A's rows lost: the rebuild restores them
    rb = refresh_signals(lake, "reversal_5d", {}, ["A", "C"], full_rebuild=True)
    assert rb.rows_added == before.filter(pl.col("symbol").is_in(["A", "C"])).height
    after = read_signals(lake, full.alpha_id)
    assert after.equals(before), "the rebuild of A, C changed or dropped the rows of B, D"


def test_incremental_refresh_of_a_wider_universe_adds_the_new_symbols_history(lake_settings: Settings):
    """Signals of A, B stored up to the last day; a refresh on A..D (e.g. the evaluate of another
    universe) computes C's and D's whole history and appends only the rows not stored."""
    lake = Lake(lake_settings)
    bars = universe_bars()
    ingest_bars(lake, bars)
    two = refresh_signals(lake, "reversal_5d", {}, ["A", "B"])
    assert set(read_signals(lake, two.alpha_id)["symbol"]) == {"A", "B"}
    wide = refresh_signals(lake, "reversal_5d", {}, UNIVERSE)
    want = expected(bars, "reversal_5d", {})
    assert wide.rows_added == want.filter(pl.col("symbol").is_in(["C", "D"])).height > 0
    got = read_signals(lake, two.alpha_id)
    assert_unique_keys(got)
    assert got.select(want.columns).equals(want)
    v = lake.version("signals")
    assert refresh_signals(lake, "reversal_5d", {}, UNIVERSE).rows_added == 0 and lake.version("signals") == v


def test_bad_input_refused_before_writing(lake_settings: Settings):
    lake = Lake(lake_settings)
    ingest_bars(lake, universe_bars())
    cases = [
        (("momentm_12_1", {}, UNIVERSE), "did you mean 'momentum_12_1'"),
        (("momentum_12_1", {"lookbak": 3}, UNIVERSE), "unknown parameter 'lookbak'; did you mean 'lookback'"),
        (("momentum_12_1", {}, ["A", "NOPE"]), "universe symbol(s) ['NOPE'] have no bars in the lake"),
        (("momentum_12_1", {}, []), "must list at least one non-empty symbol"),
        (("momentum_12_1", {}, ["A", "A"]), "lists a symbol twice"),
    ]
    for (name, params, universe), needle in cases:
        with pytest.raises(ConfigError) as e:
            refresh_signals(lake, name, params, universe)
        assert needle in str(e.value) and "\n" not in str(e.value)
    assert lake.read("signals").height == 0


def test_volume_alpha_refused_on_close_only_bars(lake_settings: Settings):
    lake = Lake(lake_settings)
    ingest_bars(lake, universe_bars().with_columns(pl.lit(0.0).alias("volume")))
    with pytest.raises(ConfigError, match="alpha volume_momentum needs volume, but 4 symbol"):
        refresh_signals(lake, "volume_momentum", {}, UNIVERSE)


def test_empty_signals_table_of_the_old_schema_is_replaced(lake_settings: Settings):
    lake = Lake(lake_settings)
    ts = pa.timestamp("us", tz="UTC")
    old = pa.schema([("run_id", pa.string()), ("ts", ts), ("symbol", pa.string()), ("value", pa.float64())])
    DeltaTable.create(lake.uri("signals"), schema=old, storage_options=lake.storage_options or None)
    DeltaTable.create(lake.uri("ic"), schema=pa.schema([("run_id", pa.string()), ("ts", ts), ("ic", pa.float64()),
                                                        ("rank_ic", pa.float64())]),
                      storage_options=lake.storage_options or None)
    write_deltalake(lake.uri("ic"), pa.table({"run_id": ["r"], "ts": pa.array([0], ts), "ic": [0.1],
                                              "rank_ic": [0.2]}),
                    mode="append", storage_options=lake.storage_options or None)
    fresh = Lake(lake_settings)
    table = fresh.ensure("signals")
    assert [f.name for f in table.schema().fields] == ["alpha", "alpha_id", "params", "date", "symbol", "score",
                                                       "features"]
    assert table.metadata().partition_columns == ["alpha_id"] and table.version() == 1
    with pytest.raises(LakeError, match=r"table ic .* has an older schema \(column ts is not in the schema.*\) "
                                        r"and 1 rows"):
        fresh.ensure("ic")
    ingest_bars(fresh, universe_bars())
    assert refresh_signals(fresh, "reversal_5d", {}, UNIVERSE).rows_added > 0


# -- two refreshes at once, in two processes ------------------------------------------------------
REFRESHER = r"""
import json, sys, time
from pathlib import Path
from backlake.alpha.store import refresh_signals
from backlake.lake import Lake
sync = Path(sys.argv[1]); me = sys.argv[2]; full = sys.argv[3] == "full"
lake = Lake()
lake.ensure("signals"); lake.ensure("bars")
(sync / f"ready-{me}").touch()
deadline = time.monotonic() + 120
while not (sync / "go").exists():
    if time.monotonic() > deadline:
        raise SystemExit("no go signal")
    time.sleep(0.01)
started = time.time()
r = refresh_signals(lake, "momentum_12_1", {"lookback": 30, "skip": 5}, ["A", "B", "C", "D"], full_rebuild=full)
print("RESULT " + json.dumps({"rows": r.rows_added, "started": started, "finished": time.time()}), flush=True)
"""


def run_refreshers(tmp_path: Path, modes: list[str]) -> list[dict]:
    sync = tmp_path / "sync"
    sync.mkdir()
    env = {**{k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_API_KEY")},
           "PYTHONUNBUFFERED": "1"}
    logs = [tmp_path / f"refresh-{i}.log" for i in range(len(modes))]
    procs = []
    try:
        for i, (mode, log) in enumerate(zip(modes, logs)):
            with open(log, "wb") as out:
                procs.append(subprocess.Popen([sys.executable, "-c", REFRESHER, str(sync), str(i), mode], cwd=REPO,
                                              env=env, stdout=out, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, start_new_session=True))
        wait_until(lambda: len(list(sync.glob("ready-*"))) == len(modes)
                   or any(p.poll() is not None for p in procs), 120, "refreshers ready")
        (sync / "go").touch()
        for p, log in zip(procs, logs):
            rc = p.wait(timeout=180)
            assert rc == 0, log.read_text()[-4000:]
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=15)
    out = []
    for log in logs:
        (line,) = [x for x in log.read_text().splitlines() if x.startswith("RESULT ")]
        out.append(json.loads(line.removeprefix("RESULT ")))
    return out


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_concurrent_refreshes_never_duplicate(lake_settings: Settings, tmp_path: Path):
    lake = Lake(lake_settings)
    bars = universe_bars()
    ingest_bars(lake, bars)
    t0 = time.monotonic()
    results = run_refreshers(tmp_path, ["incremental", "incremental", "full"])
    want = expected(bars, "momentum_12_1", PARAMS)
    stored = read_signals(lake, alpha_id("momentum_12_1", PARAMS))
    assert_unique_keys(stored)
    assert stored.equals(want)
    # the incremental writers between them added every row once (the rebuild may rewrite them)
    inc = [r["rows"] for r in results[:2]]
    assert sorted(inc)[0] in (0, want.height) and max(inc) in (0, want.height)
    print(f"\nconcurrent refreshes: {results} in {time.monotonic() - t0:.1f}s")
