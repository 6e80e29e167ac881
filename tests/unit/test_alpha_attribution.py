"""backlake.alpha.factors (the shipped Fama-French data, factor files) and
backlake.alpha.attribution, cross-checked against statsmodels OLS on real data: the S&P 500
index sample and a 20-stock equal-weight portfolio against the shipped French factors."""

from __future__ import annotations

import datetime as dt
import gzip
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import statsmodels.api as sm
from statsmodels.regression.rolling import RollingOLS

from backlake.alpha.attribution import (
    Attribution,
    attribute,
    default_hac_lags,
    metrics,
    monthly_returns,
    rolling_exposures,
)
from backlake.alpha.factors import MODELS, SHIPPED_FILE, load_french
from backlake.config import UNIVERSES
from backlake.data.samples import load_samples
from backlake.errors import ConfigError

TOL = 1e-10


# -- data ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def french() -> pl.DataFrame:
    """The shipped factors, wide (date, MktRF, SMB, HML, Mom, RF)."""
    return (load_french().pivot(on="factor", index="date", values="value")
            .select("date", "MktRF", "SMB", "HML", "Mom", "RF").sort("date"))


def month_end_returns(bars: pl.DataFrame) -> pl.DataFrame:
    """(symbol, date, ret): month-end close over the previous month-end close - 1, computed
    here independently of backlake (the first month of each symbol has none)."""
    return (bars.with_columns(pl.col("ts").dt.date().dt.month_end().alias("date"))
            .sort("symbol", "ts").group_by("symbol", "date", maintain_order=True).agg(pl.col("close").last())
            .with_columns((pl.col("close") / pl.col("close").shift(1).over("symbol") - 1).alias("ret"))
            .drop_nulls("ret").select("symbol", "date", "ret"))


@pytest.fixture(scope="module")
def sp500_daily() -> pl.DataFrame:
    """The S&P 500 index sample as a daily return series (ts, ret), like a run's equity."""
    bars = load_samples(["SP500"])
    return bars.select("ts", (pl.col("close") / pl.col("close").shift(1) - 1).alias("ret"))


@pytest.fixture(scope="module")
def sp500_monthly() -> pl.DataFrame:
    return month_end_returns(load_samples(["SP500"])).select("date", "ret")


@pytest.fixture(scope="module")
def ew20_monthly() -> pl.DataFrame:
    """A 20-stock equal-weight portfolio rebalanced monthly: the mean of the stocks' returns."""
    rets = month_end_returns(load_samples(list(UNIVERSES["sp500_stocks"])))
    return rets.group_by("date").agg(pl.col("ret").mean()).sort("date")


def reference(monthly: pl.DataFrame, french: pl.DataFrame, factors: tuple[str, ...], **fit: object):
    joined = monthly.join(french, on="date", how="inner").sort("date")
    y = (joined["ret"] - joined["RF"]).to_numpy()
    x = sm.add_constant(joined.select(*factors).to_numpy())
    return sm.OLS(y, x).fit(**fit), joined


def close(a: float | np.ndarray, b: float | np.ndarray, tol: float = TOL) -> None:
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def vector(attr: Attribution, what: str) -> np.ndarray:
    alpha = {"params": attr.alpha, "se": attr.alpha_se, "t": attr.alpha_t}[what]
    per = {"params": attr.betas, "se": attr.beta_se, "t": attr.beta_t}[what]
    return np.array([alpha, *[per[f] for f in attr.factors]])


# -- the shipped factor data -----------------------------------------------------------------
def test_shipped_file_equals_linearmodels_french_data():
    from linearmodels.datasets import french as lm_french  # test-only dependency

    ref = lm_french.load()
    got = load_french()
    assert set(got["model"]) == {"ff3", "mom"}
    assert got.group_by("model").agg(pl.col("factor").unique().sort())["factor"].to_list() in (
        [["HML", "MktRF", "RF", "SMB"], ["Mom"]], [["Mom"], ["HML", "MktRF", "RF", "SMB"]])
    for col in ("MktRF", "SMB", "HML", "Mom", "RF"):
        part = got.filter(pl.col("factor") == col).sort("date")
        assert part.height == len(ref) == 819
        assert part["value"].to_list() == ref[col].tolist()  # exact: the file holds the floats' repr
        # linearmodels dates each month by its first day; the lake by its last
        assert [(d.year, d.month) for d in part["date"]] == [(d.year, d.month) for d in ref["dates"]]
        assert all((d + dt.timedelta(days=1)).day == 1 for d in part["date"])
    assert got["freq"].unique().to_list() == ["monthly"]
    src = got["source"][0]
    assert "Ken French" in src and "linearmodels" in src and "1949-01..2017-03" in src


def test_french_layout_in_percent_loads(tmp_path: Path):
    path = tmp_path / "F-F_Research_Data_Factors.csv"
    path.write_text(",Mkt-RF,SMB,HML,RF\n192607,   2.96,  -2.56,  -2.43,   0.22\n192608,2.64,-1.17,3.82,0.25\n")
    got = load_french(path, units="percent")
    wide = got.pivot(on="factor", index="date", values="value").sort("date")
    assert wide["date"].to_list() == [dt.date(1926, 7, 31), dt.date(1926, 8, 31)]
    assert wide["MktRF"].to_list() == [2.96 / 100, 2.64 / 100]
    assert wide["RF"].to_list() == [0.22 / 100, 0.25 / 100]
    assert set(got["model"]) == {"ff3"}
    assert got["source"][0] == "file F-F_Research_Data_Factors.csv (percent); monthly 1926-07..1926-08"


FRENCH_DOWNLOAD = """This file was created by CMPT_ME_BEME_RETS using the 202401 CRSP database.
The 1-month TBill return is from Ibbotson and Associates, Inc.

,Mkt-RF,SMB,HML,RF
192607,    2.96,   -2.56,   -2.43,    0.22
192608,    2.64,   -1.17,    3.82,    0.25

 Annual Factors: January-December
,Mkt-RF,SMB,HML,RF
  1927,   29.47,   -2.46,   -3.75,    3.12

Copyright 2024 Kenneth R. French
"""


def test_file_as_downloaded_from_french_loads(tmp_path: Path):
    """Description lines before the header and the annual section after the months are skipped."""
    path = tmp_path / "F-F_Research_Data_Factors.CSV"
    path.write_text(FRENCH_DOWNLOAD)
    got = load_french(path, units="percent")
    assert sorted(set(got["date"])) == [dt.date(1926, 7, 31), dt.date(1926, 8, 31)]
    assert got.height == 8
    gz = tmp_path / "ff.csv.gz"
    gz.write_bytes(gzip.compress(FRENCH_DOWNLOAD.encode()))
    assert load_french(gz, units="percent").drop("source").equals(got.drop("source"))


def test_unreadable_factor_file_refused(tmp_path: Path):
    path = tmp_path / "f.csv"
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ConfigError, match="is not a readable CSV"):
        load_french(path, units="percent")


def test_five_factor_file_is_model_ff5_and_mom_is_mom(tmp_path: Path):
    path = tmp_path / "ff5.csv.gz"
    path.write_bytes(gzip.compress(
        b"date,MktRF,SMB,HML,RMW,CMA,Mom,RF\n2020-01-31,-0.0011,-0.0311,-0.0625,-0.0123,-0.0232,0.05,0.0013\n"
        b"2020-02,-0.0813,0.0107,-0.0380,-0.0157,-0.0251,0.01,0.0012\n"))
    got = load_french(path, units="decimal", source="my data")
    ff5 = sorted(got.filter(pl.col("model") == "ff5")["factor"].unique())
    assert ff5 == ["CMA", "HML", "MktRF", "RF", "RMW", "SMB"]
    assert got.filter(pl.col("model") == "mom")["factor"].unique().to_list() == ["Mom"]
    assert "ff3" not in set(got["model"])
    assert got["source"][0] == "my data; monthly 2020-01..2020-02"
    assert got.filter(pl.col("factor") == "RMW").sort("date")["value"].to_list() == [-0.0123, -0.0157]


@pytest.mark.parametrize(("text", "kwargs", "message"), [
    ("date,MktRF,SMB,RF\n2020-01,1,2,0.1\n", {"units": "percent"},
     r"lacks column\(s\) HML .*needs date, MktRF, SMB, HML and RF"),
    ("MktRF,SMB,HML,RF\n1,2,3,0.1\n", {"units": "percent"}, "has no date column"),
    ("date,MktRF,SMB,HML,RF\n2020-01,1,2,3,0.1\n2020-13,1,2,3,0.1\n", {"units": "percent"},
     r"row 3: bad date '2020-13'; use YYYYMM, YYYY-MM or YYYY-MM-DD"),
    ("date,MktRF,SMB,HML,RF\n2020-02-30,1,2,3,0.1\n", {"units": "percent"}, "row 2: bad date '2020-02-30'"),
    ("date,MktRF,SMB,HML,RF\n2020-01-02,1,2,3,0.1\n2020-01-03,1,2,3,0.1\n", {"units": "percent"},
     r"has the month 2020-01 twice \(rows 2 and 3\): it must hold monthly data"),
    ("date,MktRF,SMB,HML,RF\n202001,1,x,3,0.1\n", {"units": "percent"}, "row 2 column SMB 'x' is not a number"),
    ("date,MktRF,SMB,HML,RF\n202001,1,,3,0.1\n", {"units": "percent"}, "row 2 column SMB is empty"),
    ("date,MktRF,SMB,HML,RF\n202001,1.5,2,3,0.1\n", {"units": "decimal"},
     "they look like percent; use units='percent'"),
    ("date,MktRF,SMB,HML,RF\n202001,1.5,2,3,0.1\n", {}, "units=None .*units='percent' or units='decimal'"),
    ("date,MktRF,SMB,HML,RMW,RF\n202001,1,2,3,4,0.1\n", {"units": "percent"}, "has RMW but not CMA"),
    ("date,MktRF,SMB,HML,RF\n", {"units": "percent"}, "has no rows"),
])
def test_bad_factor_files_refused_in_one_line(tmp_path: Path, text: str, kwargs: dict, message: str):
    path = tmp_path / "f.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_french(path, **kwargs)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_missing_factor_file_refused(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_french(tmp_path / "nope.csv", units="percent")


def test_shipped_file_is_where_the_code_reads_it():
    assert SHIPPED_FILE.name == "ff_factors_monthly.csv.gz" and SHIPPED_FILE.is_file()
    with gzip.open(SHIPPED_FILE, "rt") as f:
        assert f.readline().strip() == "date,MktRF,SMB,HML,Mom,RF"


# -- monthly returns -------------------------------------------------------------------------
def test_daily_returns_compound_to_month_end_close_ratios(sp500_daily: pl.DataFrame, sp500_monthly: pl.DataFrame):
    got = monthly_returns(sp500_daily)
    # 1999-01 starts on the 4th (kept; its return runs from the first close) and 2018-12 is full
    assert got["date"][0] == dt.date(1999, 1, 31) and got["date"][-1] == dt.date(2018, 12, 31)
    joined = got.join(sp500_monthly, on="date", suffix="_ref")
    assert joined.height == got.height - 1 == 239
    close(joined["ret"].to_numpy(), joined["ret_ref"].to_numpy(), 1e-12)


def test_equity_curve_gives_the_same_months_as_its_returns(sp500_daily: pl.DataFrame):
    bars = load_samples(["SP500"])
    from_equity = monthly_returns(bars.select("ts", (pl.col("close") * 1000).alias("equity")))
    from_ret = monthly_returns(sp500_daily)
    assert from_equity["date"].to_list() == from_ret["date"].to_list()
    close(from_equity["ret"].to_numpy(), from_ret["ret"].to_numpy(), 1e-12)


def test_partial_first_and_last_months_are_dropped():
    days = pl.date_range(dt.date(2020, 1, 15), dt.date(2020, 4, 10), "1d", eager=True)
    frame = pl.DataFrame({"date": days, "ret": np.full(len(days), 0.001)})
    got = monthly_returns(frame)
    assert got["date"].to_list() == [dt.date(2020, 2, 29), dt.date(2020, 3, 31)]
    close(got["ret"].to_numpy(), np.array([1.001**29 - 1, 1.001**31 - 1]), 1e-14)
    kept = monthly_returns(frame, drop_partial=False)
    assert kept["date"].to_list() == [dt.date(2020, 1, 31), dt.date(2020, 2, 29), dt.date(2020, 3, 31),
                                      dt.date(2020, 4, 30)]
    # a month that starts by the 7th and ends within 7 days of its end is whole
    near = pl.DataFrame({"date": [dt.date(2020, 1, 7), dt.date(2020, 1, 24), dt.date(2020, 2, 3),
                                  dt.date(2020, 2, 24)], "ret": [0.01, 0.02, 0.03, 0.04]})
    assert monthly_returns(near)["date"].to_list() == [dt.date(2020, 1, 31), dt.date(2020, 2, 29)]


def test_hourly_equity_compounds_by_utc_month():
    ts = pl.datetime_range(dt.datetime(2020, 1, 1), dt.datetime(2020, 4, 30, 23), "1h", time_zone="UTC",
                           eager=True)
    equity = 100 * np.exp(np.cumsum(np.sin(np.arange(len(ts)) / 50) * 1e-3))
    got = monthly_returns(pl.DataFrame({"ts": ts, "equity": equity}))
    assert got["date"].to_list() == [dt.date(2020, 1, 31), dt.date(2020, 2, 29), dt.date(2020, 3, 31),
                                     dt.date(2020, 4, 30)]
    last_of_month = pl.DataFrame({"ts": ts, "equity": equity}).group_by(pl.col("ts").dt.month()).agg(
        pl.col("equity").last()).sort("ts")["equity"].to_numpy()
    want = np.concatenate([[last_of_month[0] / equity[0] - 1], last_of_month[1:] / last_of_month[:-1] - 1])
    close(got["ret"].to_numpy(), want, 1e-12)
    with pytest.raises(ConfigError, match="more than one row for ts 2020-01-01 00:00:00"):
        monthly_returns(pl.DataFrame({"ts": [ts[0], ts[0]], "ret": [0.1, 0.2]}))


def test_monthly_returns_are_used_as_they_are():
    frame = pl.DataFrame({"date": [dt.date(2020, 1, 15), dt.date(2020, 2, 1)], "ret": [0.01, -0.02]})
    got = monthly_returns(frame)
    assert got["date"].to_list() == [dt.date(2020, 1, 31), dt.date(2020, 2, 29)]
    assert got["ret"].to_list() == [0.01, -0.02]


# -- attribution vs statsmodels --------------------------------------------------------------
@pytest.mark.parametrize("model", ["ff3", "carhart4", "capm"])
@pytest.mark.parametrize("series", ["sp500_monthly", "ew20_monthly"])
def test_matches_statsmodels_ols_on_real_data(model: str, series: str, french: pl.DataFrame,
                                              request: pytest.FixtureRequest):
    monthly: pl.DataFrame = request.getfixturevalue(series)
    ref, joined = reference(monthly, french, MODELS[model])
    got = attribute(monthly, french, model)
    assert got.n_obs == int(ref.nobs) == joined.height
    assert got.factors == MODELS[model]
    close(vector(got, "params"), ref.params)
    close(vector(got, "se"), ref.bse)
    close(vector(got, "t"), ref.tvalues)
    close(got.alpha_p, ref.pvalues[0])
    close(got.r2, ref.rsquared)
    close(got.adj_r2, ref.rsquared_adj)
    close(got.alpha_annual, (1 + ref.params[0]) ** 12 - 1)
    assert (got.start, got.end) == (joined["date"][0], joined["date"][-1])
    assert got.cov == "classical" and got.lags is None


def test_sp500_against_carhart4_is_the_market_with_a_dividend_gap(sp500_daily: pl.DataFrame, french: pl.DataFrame):
    """Daily input gives the months of the month-end ratios; the price index (no dividends) has
    a market beta near 1 and a negative alpha of about the dividend yield."""
    got = attribute(sp500_daily, french, "carhart4")
    assert (got.start, got.end, got.n_obs) == (dt.date(1999, 1, 31), dt.date(2017, 3, 31), 219)
    assert 0.95 < got.betas["MktRF"] < 1.0 and got.r2 > 0.99
    assert -0.03 < got.alpha_annual < -0.01 and got.alpha_t < -3


@pytest.mark.parametrize("lags", [None, 0, 3, 12])
def test_newey_west_matches_statsmodels_hac(lags: int | None, ew20_monthly: pl.DataFrame, french: pl.DataFrame):
    got = attribute(ew20_monthly, french, "carhart4", cov="hac", lags=lags)
    want_lags = default_hac_lags(got.n_obs) if lags is None else lags
    assert got.lags == want_lags and got.cov == "hac"
    ref, _ = reference(ew20_monthly, french, MODELS["carhart4"], cov_type="HAC", cov_kwds={"maxlags": want_lags})
    close(vector(got, "params"), ref.params)
    close(vector(got, "se"), ref.bse)
    close(vector(got, "t"), ref.tvalues)


def test_default_hac_lags_rule():
    assert [default_hac_lags(n) for n in (12, 100, 219, 327, 1000)] == [2, 4, 4, 5, 6]


def test_synthetic_known_betas_are_recovered(french: pl.DataFrame):
    rng = np.random.default_rng(2026)
    f = french.filter(pl.col("date") >= dt.date(1970, 1, 1))
    betas = {"MktRF": 1.2, "SMB": 0.5, "HML": -0.3, "Mom": 0.25}
    alpha = 0.002
    systematic = alpha + sum(b * f[k].to_numpy() for k, b in betas.items())
    # exact: no noise, every coefficient to rounding, R² = 1
    exact = attribute(pl.DataFrame({"date": f["date"], "ret": f["RF"].to_numpy() + systematic}), french, "carhart4")
    close(exact.alpha, alpha, 1e-12)
    for k, b in betas.items():
        close(exact.betas[k], b, 1e-12)
    close(exact.r2, 1.0, 1e-12)
    # with noise: within a few standard errors, and the t-stats say so
    noise = rng.normal(0, 0.01, f.height)
    noisy = attribute(pl.DataFrame({"date": f["date"], "ret": f["RF"].to_numpy() + systematic + noise}),
                      french, "carhart4")
    assert abs(noisy.alpha - alpha) < 3 * noisy.alpha_se
    for k, b in betas.items():
        assert abs(noisy.betas[k] - b) < 3 * noisy.beta_se[k], k
    assert noisy.alpha_t > 3 and noisy.beta_t["MktRF"] > 50
    # subtract_rf=False regresses the returns as given
    given = attribute(pl.DataFrame({"date": f["date"], "ret": systematic}), french, "carhart4", subtract_rf=False)
    close(given.alpha, alpha, 1e-12)


# -- up and down markets ---------------------------------------------------------------------
def test_up_down_split_by_hand(ew20_monthly: pl.DataFrame, french: pl.DataFrame):
    got = attribute(ew20_monthly, french, "ff3")
    joined = ew20_monthly.join(french, on="date").sort("date")
    up = joined.filter(pl.col("MktRF") > 0)
    down = joined.filter(pl.col("MktRF") <= 0)
    assert got.up.n_obs == up.height and got.down.n_obs == down.height
    assert up.height + down.height == got.n_obs
    assert joined.filter(pl.col("MktRF") == 0).height >= 0  # a zero month counts as down (none here)
    for regime, part in ((got.up, up), (got.down, down)):
        ref, _ = reference(part.select("date", "ret"), french, MODELS["ff3"])
        assert regime.alpha is not None and regime.alpha_t is not None
        close(np.array([regime.alpha, *[regime.betas[f] for f in MODELS["ff3"]]]), ref.params)
        close(np.array([regime.alpha_t, *[regime.beta_t[f] for f in MODELS["ff3"]]]), ref.tvalues)
        assert regime.r2 is not None
        close(regime.r2, ref.rsquared)
    # the same point estimates as one pooled regression with every coefficient interacted
    y = (joined["ret"] - joined["RF"]).to_numpy()
    d = (joined["MktRF"] > 0).to_numpy().astype(float)
    f = joined.select(*MODELS["ff3"]).to_numpy()
    x = np.column_stack([d, d[:, None] * f, 1 - d, (1 - d)[:, None] * f])
    pooled = sm.OLS(y, x).fit().params
    close(pooled[:4], [got.up.alpha, *got.up.betas.values()])
    close(pooled[4:], [got.down.alpha, *got.down.betas.values()])


def test_zero_market_month_is_down_and_short_regime_is_none(french: pl.DataFrame):
    f = french.filter(pl.col("date") >= dt.date(2000, 1, 1)).head(24)
    f = f.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(0.0).otherwise(pl.col("MktRF").abs()).alias("MktRF"))
    rets = pl.DataFrame({"date": f["date"], "ret": np.linspace(-0.02, 0.03, f.height)})
    got = attribute(rets, f, "ff3")
    assert (got.up.n_obs, got.down.n_obs) == (23, 1)
    assert got.down.alpha is None and got.down.betas == {}
    m = metrics(got)
    assert m["down_n"] == 1.0 and m["down_alpha"] is None and m["down_beta_MktRF"] is None
    assert m["up_alpha"] is not None


# -- rolling exposures -----------------------------------------------------------------------
@pytest.mark.parametrize(("model", "window"), [("ff3", 36), ("carhart4", 24)])
def test_rolling_exposures_match_statsmodels_rolling_ols(model: str, window: int, ew20_monthly: pl.DataFrame,
                                                         french: pl.DataFrame):
    got = rolling_exposures(ew20_monthly, french, model, window)
    joined = ew20_monthly.join(french, on="date").sort("date")
    y = (joined["ret"] - joined["RF"]).to_numpy()
    x = sm.add_constant(joined.select(*MODELS[model]).to_numpy())
    ref = RollingOLS(y, x, window=window).fit().params[window - 1:]
    factors = MODELS[model]
    assert got.height == len(ref) * len(factors)
    assert got["factor"].to_list()[: len(factors)] == list(factors)
    dates = got["date"].unique(maintain_order=True).to_list()
    assert dates == joined["date"].to_list()[window - 1:]
    wide = got.pivot(on="factor", index="date", values="beta").sort("date")
    close(wide.select(*factors).to_numpy(), ref[:, 1:])
    # and the last window is the plain OLS of the last `window` months
    last = attribute(joined.tail(window).select("date", "ret"), french, model)
    close(wide.tail(1).select(*factors).to_numpy()[0], np.array([last.betas[f] for f in factors]))


def test_rolling_exposures_empty_when_no_full_window(french: pl.DataFrame):
    f = french.head(30)
    rets = pl.DataFrame({"date": f["date"], "ret": np.linspace(-0.02, 0.03, 30)})
    got = rolling_exposures(rets, french, "ff3", window=36)
    assert got.is_empty() and got.columns == ["date", "factor", "beta"]
    assert rolling_exposures(rets, french, "ff3", window=30).height == 3


# -- metrics ---------------------------------------------------------------------------------
def test_metric_names_are_stable(ew20_monthly: pl.DataFrame, french: pl.DataFrame):
    attr = attribute(ew20_monthly, french, "carhart4")
    m = metrics(attr)
    fs = ["MktRF", "SMB", "HML", "Mom"]
    assert list(m) == [
        "alpha", "alpha_annual", "alpha_t", "alpha_p", "r2", "adj_r2", "n_obs",
        *[n for f in fs for n in (f"beta_{f}", f"t_{f}")],
        "up_alpha", "up_alpha_t", *[f"up_beta_{f}" for f in fs], "up_n",
        "down_alpha", "down_alpha_t", *[f"down_beta_{f}" for f in fs], "down_n",
    ]
    assert m["alpha"] == attr.alpha and m["beta_SMB"] == attr.betas["SMB"] and m["t_HML"] == attr.beta_t["HML"]
    assert m["n_obs"] == float(attr.n_obs) and m["up_n"] + m["down_n"] == m["n_obs"]
    assert all(v is None or math.isfinite(v) for v in m.values())


# -- bad input -------------------------------------------------------------------------------
def test_too_few_common_months_names_both_ranges(french: pl.DataFrame):
    days = pl.date_range(dt.date(2016, 6, 1), dt.date(2019, 12, 31), "1d", eager=True)
    rets = pl.DataFrame({"date": days, "ret": np.full(len(days), 0.0005)})
    with pytest.raises(ConfigError) as err:
        attribute(rets, french, "ff3")
    msg = str(err.value)
    assert "2016-06..2019-12 (43 months)" in msg and "1949-01..2017-03" in msg
    assert "10 month(s) in common, attribution needs at least 12" in msg and "\n" not in msg
    assert attribute(rets, french, "ff3", min_months=10).n_obs == 10


@pytest.mark.parametrize(("call", "message"), [
    (lambda r, f: attribute(r, f, "ff4"), "unknown factor model 'ff4'; did you mean 'ff5'?"),
    (lambda r, f: attribute(r, f.drop("Mom"), "carhart4"), r"the factor frame lacks Mom for model 'carhart4'"),
    (lambda r, f: attribute(r.rename({"ret": "x"}), f), "attribution needs a date column .*'ret'.*or 'equity'"),
    (lambda r, f: attribute(r.rename({"date": "when"}), f), "attribution needs a date column"),
    (lambda r, f: attribute(pl.concat([r, r]), f), "more than one row for"),
    (lambda r, f: attribute(r, f, cov="robust"), "cov='robust': use 'classical' or 'hac'"),
    (lambda r, f: attribute(r, f, cov="hac", lags=-1), "lags=-1: give a whole number"),
    (lambda r, f: attribute(r, f, min_months=3), "min_months=3: give a whole number >= 5"),
    (lambda r, f: rolling_exposures(r, f, "ff3", window=4), "window=4: give a whole number of months >= 6"),
    (lambda r, f: attribute(r.with_columns(pl.col("date").cast(pl.String)), f), "column date is String"),
    (lambda r, f: attribute(r.head(0), f), "returns are empty"),
])
def test_bad_attribution_input_refused_in_one_line(call, message: str, ew20_monthly: pl.DataFrame,
                                                   french: pl.DataFrame):
    with pytest.raises(ConfigError, match=message) as err:
        call(ew20_monthly, french)
    assert "\n" not in str(err.value)
