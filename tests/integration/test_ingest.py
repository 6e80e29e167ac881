"""Ingest on a local lake: idempotent re-ingest, changed values rejected (nothing written)
unless ``revise=True``, which replaces exactly the changed bars in one new version while
earlier versions keep the old values. Concurrent writers: test_concurrent_ingest.py."""

from __future__ import annotations

import polars as pl
import pytest

from backlake.data.ingest import ingest_bars
from backlake.data.synthetic import synthetic_bars
from backlake.errors import ChangedBarsError, DataValidationError
from backlake.lake import Lake
from backlake.settings import Settings

KEY = ["symbol", "timeframe", "ts"]
VALUES = ["open", "high", "low", "close", "volume"]


@pytest.fixture
def lake(local_settings: Settings) -> Lake:
    return Lake(local_settings)


def bars(symbols=("SYN0", "SYN1"), periods: int = 200, seed: int = 1, first: int | None = None) -> pl.DataFrame:
    """Synthetic bars sorted by key (row i of a symbol: its i-th bar); ``first``: only each
    symbol's first bars (the same values as in the full frame)."""
    out = synthetic_bars(symbols, periods=periods, seed=seed).sort(KEY)
    return out if first is None else out.filter(pl.int_range(pl.len()).over("symbol") < first)


def change(df: pl.DataFrame, rows: dict[int, dict[str, float]]) -> pl.DataFrame:
    """``df`` with the values at row index -> {column: new value} replaced."""
    out = df.to_dicts()
    for i, cols in rows.items():
        out[i] = {**out[i], **cols}
    return pl.DataFrame(out, schema=df.schema)


def stored(lake: Lake, version: int | None = None) -> pl.DataFrame:
    return lake.read("bars", version=version).select(*KEY, *VALUES, "source").sort(KEY)


def test_identical_reingest_writes_nothing_and_makes_no_version(lake: Lake):
    first = ingest_bars(lake, bars())
    assert (first.rows_new, first.rows_existing, first.rows_revised) == (400, 0, 0)
    v = lake.version("bars")
    assert first.bars_version == v
    before = stored(lake)
    for revise in (False, True):
        again = ingest_bars(lake, bars(), revise=revise)
        assert (again.rows_new, again.rows_existing, again.rows_revised) == (0, 400, 0)
        assert again.bars_version == v == lake.version("bars")
    assert stored(lake).equals(before)
    # a subset, and the same values under another source label, are identical too
    relabelled = bars().filter(pl.col("symbol") == "SYN1").head(50).with_columns(pl.lit("vendor-b").alias("source"))
    assert ingest_bars(lake, relabelled).rows_existing == 50
    assert lake.version("bars") == v
    assert (d := ingest_bars(lake, bars()).to_dict())["rows_revised"] == 0 and d["rows_existing"] == 400


def test_changed_values_are_rejected_with_counts_and_sample_and_nothing_written(lake: Lake):
    base = bars()
    ingest_bars(lake, base)
    v = lake.version("bars")
    before = stored(lake)
    # (changes keep the bars valid: low <= open/close <= high)
    # 3 changed bars of SYN0 (one in two columns), 1 of SYN1 (a tiny change: exact comparison),
    # plus new bars of a third symbol: the whole ingest is rejected
    syn1_row = base["symbol"].to_list().index("SYN1") + 7
    changed = change(base, {
        3: {"high": base["high"][3] * 1.01, "volume": base["volume"][3] + 1},
        10: {"high": base["high"][10] + 0.5},
        11: {"low": base["low"][11] - 0.25},
        syn1_row: {"open": base["open"][syn1_row] + 1e-9},
    })
    incoming = pl.concat([changed, bars(("SYN2",), periods=30, seed=5)])
    with pytest.raises(ChangedBarsError) as info:
        ingest_bars(lake, incoming)
    err = info.value
    assert isinstance(err, DataValidationError)
    first, *rest = str(err).splitlines()
    assert first.startswith("4 re-ingested bar(s) differ") and "(SYN0: 3, SYN1: 1)" in first
    assert "nothing was ingested. Re-run with --revise" in first
    assert "to replace them as a new version of bars; runs pinned to earlier versions still replay" in first
    assert err.changed == {"SYN0": 3, "SYN1": 1}
    # the sample: the differing columns of the first bars, stored and new value each, exact
    ts3 = base["ts"][3]
    assert {(d["symbol"], d["ts"], d["column"]) for d in err.sample} == {
        ("SYN0", ts3, "high"), ("SYN0", ts3, "volume"), ("SYN0", base["ts"][10], "high"),
        ("SYN0", base["ts"][11], "low"), ("SYN1", base["ts"][syn1_row], "open"),
    }
    d_open = next(d for d in err.sample if d["column"] == "open")
    assert d_open["stored"] == base["open"][syn1_row] and d_open["new"] == base["open"][syn1_row] + 1e-9
    assert any(f"SYN0 1d {ts3.isoformat()}" in line and f"high: {base['high'][3]!r} -> " in line
               for line in rest)
    assert lake.version("bars") == v and stored(lake).equals(before)

    # the sample is capped at 5 bars
    many = change(base, {i: {"volume": base["volume"][i] * 2} for i in range(20)})
    with pytest.raises(ChangedBarsError, match=r"^20 re-ingested bar\(s\) differ .*\(SYN0: 20\)") as info:
        ingest_bars(lake, many)
    assert len(info.value.sample) == 5 and len(str(info.value).splitlines()) == 2 + 5
    assert lake.version("bars") == v


def test_revise_replaces_exactly_the_changed_bars_in_one_version(lake: Lake):
    base = bars()
    ingest_bars(lake, base)
    v = lake.version("bars")
    before = stored(lake)
    changed = change(base, {0: {"close": base["close"][0] + 1.0, "high": base["high"][0] + 1.0},
                            150: {"volume": 0.0}, 399: {"low": base["low"][399] * 0.9}})
    report = ingest_bars(lake, changed, revise=True)
    assert report.validation.rows_skipped == 0
    assert (report.rows_new, report.rows_revised, report.rows_existing) == (0, 3, 397)
    assert report.bars_version == lake.version("bars") == v + 1
    assert "0 new bar(s), 3 revised, 397 already in the lake" in report.summary()
    assert report.to_dict()["rows_revised"] == 3
    (commit,) = lake.table("bars").history(1)
    assert commit["operation"] == "MERGE"

    now = stored(lake)
    assert now.height == 400 and now.select(KEY).n_unique() == 400
    assert now.drop("source").equals(changed.select(*KEY, *VALUES).sort(KEY))
    # exactly those three rows differ from before; the rest are untouched
    diff = now.join(before, on=KEY, suffix="_old").filter(
        pl.any_horizontal([pl.col(c).ne_missing(pl.col(f"{c}_old")) for c in VALUES]))
    assert sorted(diff["ts"].to_list()) == sorted(base["ts"][i] for i in (0, 150, 399))
    # the earlier version still holds the old values (runs pinned to it replay)
    assert stored(lake, version=v).equals(before)
    # revising again with the same data: nothing left to do, no new version
    again = ingest_bars(lake, changed, revise=True)
    assert (again.rows_new, again.rows_revised, again.rows_existing) == (0, 0, 400)
    assert lake.version("bars") == v + 1
    # and a plain ingest of the old data is now the one rejected
    with pytest.raises(ChangedBarsError, match=r"^3 re-ingested bar\(s\) differ"):
        ingest_bars(lake, base)


def test_revise_with_new_and_changed_bars_is_one_commit(lake: Lake):
    base = bars(periods=130, first=100)
    ingest_bars(lake, base)
    v = lake.version("bars")
    before = stored(lake)
    longer = bars(periods=130)  # the same 100 bars per symbol, then 30 more
    assert longer.join(base, on=KEY, how="semi").select(*KEY, *VALUES).sort(KEY).equals(
        base.select(*KEY, *VALUES).sort(KEY))
    i_syn1 = longer["symbol"].to_list().index("SYN1")
    incoming = pl.concat([
        change(longer, {5: {"high": 1.0 + longer["high"][5]}, i_syn1 + 99: {"open": longer["open"][i_syn1 + 99] / 2,
                                                                              "low": longer["low"][i_syn1 + 99] / 2}}),
        bars(("SYN3",), periods=20, seed=9),
    ])
    with pytest.raises(ChangedBarsError, match=r"\(SYN0: 1, SYN1: 1\)"):
        ingest_bars(lake, incoming)
    assert lake.version("bars") == v

    report = ingest_bars(lake, incoming, revise=True)
    assert report.validation.rows_skipped == 0
    assert (report.rows_new, report.rows_revised, report.rows_existing) == (2 * 30 + 20, 2, 198)
    assert report.symbols == ["SYN0", "SYN1", "SYN3"]
    assert lake.version("bars") == report.bars_version == v + 1  # one commit for both
    now = stored(lake)
    assert now.height == 280 and now.select(KEY).n_unique() == 280
    assert now.drop("source").equals(incoming.select(*KEY, *VALUES).sort(KEY))
    assert stored(lake, version=v).equals(before)
    # new bars are stamped, and only the changed old bars were re-stamped
    stamps = lake.read("bars").join(lake.read("bars", version=v), on=KEY, how="left", suffix="_old")
    restamped = stamps.filter(pl.col("ingested_at") != pl.col("ingested_at_old"))
    assert restamped.height == 2
    assert stamps.filter(pl.col("ingested_at_old").is_null()).height == 80


def test_plain_ingest_adds_only_new_bars(lake: Lake):
    ingest_bars(lake, bars(periods=150, first=100))
    report = ingest_bars(lake, bars(periods=150))
    assert (report.rows_new, report.rows_existing, report.rows_revised) == (100, 200, 0)
    assert lake.read("bars").select(KEY).n_unique() == lake.read("bars").height == 300


@pytest.mark.prefect
def test_ingest_flow_rejects_changed_bars_without_retrying_and_revises_on_request(prefect_harness, lake: Lake):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.ingest import ingest_flow

    args = {"source": "synthetic", "symbols": ["SYN0"], "periods": 50}
    first = ingest_flow(**args, seed=0)
    assert (first["rows_new"], first["rows_revised"]) == (50, 0)
    v = lake.version("bars")
    # other values for the same bars: the flow fails with the rejection, and its task is not
    # retried (the data would be rejected again)
    state = ingest_flow(**args, seed=1, return_state=True)
    assert state.is_failed()
    with pytest.raises(ChangedBarsError, match=r"^\d+ re-ingested bar\(s\) differ .*--revise") as info:
        state.result()
    this_run = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=this_run)
    assert {r.name.split("-")[0]: r.run_count for r in runs} == {"load_bars_task": 1, "ingest_task": 1}
    assert lake.version("bars") == v
    # revise=True replaces them
    out = ingest_flow(**args, seed=1, revise=True)
    assert (out["rows_new"], out["rows_revised"], out["rows_existing"]) == (0, info.value.changed["SYN0"],
                                                                           50 - info.value.changed["SYN0"])
    assert out["bars_version"] == lake.version("bars") == v + 1
