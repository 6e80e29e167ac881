"""The ``factors`` table: ingesting the shipped Fama-French data (and user files) into a lake on
a local directory and on the moto S3 server, idempotently; reading models back wide; and
attribution from the lake's factors."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from backlake.alpha.attribution import attribute
from backlake.alpha.factors import ingest_factors, load_french, read_factors
from backlake.data.samples import load_samples
from backlake.errors import ConfigError
from backlake.lake import Lake
from backlake.settings import Settings

KEY = ["model", "factor", "date"]


def test_ingest_is_idempotent(lake_settings: Settings):
    lake = Lake(lake_settings)
    assert ingest_factors(lake) == 819 * 5
    v = lake.version("factors")
    assert ingest_factors(lake) == 0  # nothing written, no new version
    assert lake.version("factors") == v
    stored = lake.read("factors")
    assert stored.height == 4095 and stored.select(KEY).is_duplicated().sum() == 0
    assert stored.sort(KEY).equals(load_french().sort(KEY))  # values, freq and source as shipped
    first, last = stored["date"].min(), stored["date"].max()
    assert (first, last) == (dt.date(1949, 1, 31), dt.date(2017, 3, 31))


def test_revised_file_replaces_only_changed_values(lake_settings: Settings, tmp_path: Path):
    lake = Lake(lake_settings)
    ingest_factors(lake)
    v_before = lake.version("factors")
    # 2017-03: MktRF revised (0.17 % -> 0.50 %), SMB/HML/RF as shipped; 2017-04 is new
    path = tmp_path / "newer.csv"
    path.write_text("date,MktRF,SMB,HML,RF\n201703,0.50,1.13,-3.32,0.03\n201704,1.09,0.72,-1.87,0.05\n")
    assert ingest_factors(lake, path, units="percent") == 1 + 4
    assert ingest_factors(lake, path, units="percent") == 0
    stored = lake.read("factors")
    assert stored.height == 4095 + 4 and stored.select(KEY).is_duplicated().sum() == 0
    mar = stored.filter(pl.col("date") == dt.date(2017, 3, 31)).sort("factor")
    got = dict(zip(mar["factor"], mar["value"], strict=True))
    assert got["MktRF"] == 0.50 / 100 and got["SMB"] == 0.0113 and got["Mom"] == pytest.approx(-0.0093, abs=1e-15)
    src = dict(zip(mar["factor"], mar["source"], strict=True))
    assert src["MktRF"].startswith("file newer.csv (percent); monthly 2017-03..2017-04")
    assert "Ken French" in src["SMB"]  # an unchanged value keeps its source
    # the earlier version still has the old value (runs pinned to it replay)
    old = lake.read("factors", version=v_before).filter(
        (pl.col("date") == dt.date(2017, 3, 31)) & (pl.col("factor") == "MktRF"))
    assert old["value"].to_list() == [0.0017000000000000001]
    # carhart4 needs Mom, which 2017-04 lacks: ff3 has the new month, carhart4 does not
    assert read_factors(lake, "ff3")["date"].max() == dt.date(2017, 4, 30)
    assert read_factors(lake, "carhart4")["date"].max() == dt.date(2017, 3, 31)


def test_read_factors_models(lake_settings: Settings, tmp_path: Path):
    lake = Lake(lake_settings)
    with pytest.raises(ConfigError, match=r"no 'ff3' factors .*ingest them first"):
        read_factors(lake, "ff3")
    ingest_factors(lake)
    ff3 = read_factors(lake, "ff3")
    assert ff3.columns == ["date", "MktRF", "SMB", "HML", "RF"] and ff3.height == 819
    c4 = read_factors(lake, "carhart4")
    assert c4.columns == ["date", "MktRF", "SMB", "HML", "Mom", "RF"] and c4.height == 819
    assert read_factors(lake, "capm").columns == ["date", "MktRF", "RF"]
    wide = load_french().pivot(on="factor", index="date", values="value").sort("date")
    assert c4.equals(wide.select(c4.columns))
    with pytest.raises(ConfigError, match=r"no 'ff5' factors .*RMW, CMA"):
        read_factors(lake, "ff5")
    with pytest.raises(ConfigError, match="unknown factor model 'carhart'; did you mean 'carhart4'"):
        read_factors(lake, "carhart")
    # a 5-factor file (the layout of French's F-F_Research_Data_5_Factors_2x3.csv)
    rng = np.random.default_rng(5)
    months = [f"{y}{m:02d}" for y in (2015, 2016) for m in range(1, 13)]
    vals = rng.normal(0, 2, (len(months), 6)).round(2)
    vals[:, 5] = np.abs(vals[:, 5]) / 10
    body = [",".join([mo, *map(str, row)]) for mo, row in zip(months, vals, strict=True)]
    lines = [",Mkt-RF,SMB,HML,RMW,CMA,RF", *body]
    path = tmp_path / "F-F_Research_Data_5_Factors_2x3.csv"
    path.write_text("\n".join(lines) + "\n")
    assert ingest_factors(lake, path, units="percent") == 24 * 6
    ff5 = read_factors(lake, "ff5")
    assert ff5.columns == ["date", "MktRF", "SMB", "HML", "RMW", "CMA", "RF"] and ff5.height == 24
    np.testing.assert_array_equal(ff5["RMW"].to_numpy(), vals[:, 3] / 100)
    assert read_factors(lake, "ff3").height == 819  # the 3-factor rows are untouched


def test_concurrent_ingests_store_each_row_once(lake_settings: Settings):
    lake = Lake(lake_settings)
    results: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(ingest_factors(Lake(lake_settings)))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(results) == [0, 4095]
    stored = lake.read("factors")
    assert stored.height == 4095 and stored.select(KEY).is_duplicated().sum() == 0


def test_attribution_from_the_lake_factors(lake_settings: Settings):
    lake = Lake(lake_settings)
    ingest_factors(lake)
    bars = load_samples(["SP500"])
    equity = bars.select("ts", (pl.col("close") * 100).alias("equity"),
                         (pl.col("close") / pl.col("close").shift(1) - 1).fill_null(0.0).alias("ret"))
    from_lake = attribute(equity, read_factors(lake, "carhart4"), "carhart4")
    shipped = load_french().pivot(on="factor", index="date", values="value")
    assert from_lake == attribute(equity, shipped, "carhart4")
    assert from_lake.n_obs == 219 and from_lake.betas["MktRF"] > 0.95
