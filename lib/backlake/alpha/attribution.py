"""Factor attribution of a return series: alpha, betas and R² against Fama-French factors.

:func:`attribute` regresses a strategy's monthly excess return on the factors of a model
(``capm``, ``ff3``, ``carhart4``, ``ff5``; see :mod:`backlake.alpha.factors`)::

    ret_t - RF_t = alpha + sum_f beta_f * F_t + e_t        (OLS with intercept, numpy lstsq)

- **Returns.** A frame with a date column (``date`` or ``ts``) and ``ret`` (a run's equity
  ``ret``) or ``equity``, one row per timestamp. Daily (or any sub-monthly: intraday rows
  are grouped by their UTC date's month) returns are compounded to calendar months,
  ``prod(1 + r) - 1``; a partial month at either end is dropped (the first month when the
  series starts after the 7th of it, the last when it ends more than 7 days before the month's
  end). Monthly returns (at most one row per month) are used as they are. Months are labelled
  by their last day, as the factors are.
- **Alignment.** Inner join with the factor months; fewer than ``min_months`` (12) common
  months is refused (ConfigError naming both date ranges).
- **Excess return** = ret - RF (``subtract_rf=False``: ret as it is, for a return that is
  already excess, e.g. a dollar-neutral long-short book).
- **Standard errors.** ``cov="classical"`` (default): s² (X'X)⁻¹ with s² = RSS / (n - k).
  ``cov="hac"``: Newey-West, Bartlett weights 1 - l / (L + 1), no small-sample correction (as
  statsmodels' ``cov_type="HAC"``), ``lags`` L defaulting to floor(4 (n / 100)^(2/9)).
  t = coefficient / standard error; p-values two-sided from Student's t with n - k degrees of
  freedom.
- **Alpha** is per month; ``alpha_annual`` compounds it: (1 + alpha)^12 - 1.
- **R²** is centred (1 - RSS / TSS), adjusted R² = 1 - (1 - R²)(n - 1) / (n - k); k counts
  the intercept.
- **Up and down markets.** Separate regressions of the same model on the months with
  MktRF > 0 (up) and MktRF <= 0 (down); the point estimates equal those of one pooled
  regression with every coefficient interacted with the regime. Classical standard errors
  (a regime's months are not consecutive, so HAC lags mean nothing there). A regime with fewer
  than k + 2 months has its figures None (its n_obs is still given).

:func:`rolling_exposures` gives the betas of OLS over every window of ``window`` consecutive
common months (rows only for window ends with a full window).

:func:`metrics` flattens an :class:`Attribution` for the ``metrics`` table (segment
``attribution:<model>``); the names are stable:

=====================  ======================================================================
``alpha``              monthly alpha (intercept), decimal
``alpha_annual``       (1 + alpha)^12 - 1
``alpha_t``            alpha's t-stat (``alpha_p``: its two-sided p-value)
``r2``, ``adj_r2``     R² and adjusted R²
``n_obs``              months in the regression
``beta_<f>``           the beta of factor f (``beta_MktRF``, ``beta_SMB``, ``beta_HML``, ``beta_Mom``, ...)
``t_<f>``              its t-stat
``up_alpha``           alpha in up months (``up_alpha_t`` its t-stat), ``up_beta_<f>`` the betas,
                       ``up_n`` the number of up months
``down_alpha``         the same for down months: ``down_alpha_t``, ``down_beta_<f>``, ``down_n``
=====================  ======================================================================

Non-finite values (an undefined R² of a constant series, a regime too short) are None.

Example::

    fw = read_factors(lake, "carhart4")
    attr = attribute(lake.read("equity", where={"run_id": rid}), fw, "carhart4")
    attr.alpha_annual, attr.alpha_t, attr.betas["MktRF"], attr.down.betas
    metrics(attr)["beta_SMB"]
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import polars as pl
from scipy import stats  # type: ignore[import-untyped, unused-ignore]  # scipy ships no stubs

from backlake.alpha.factors import model_factors
from backlake.errors import ConfigError

__all__ = ["Attribution", "Regime", "attribute", "metrics", "monthly_returns", "rolling_exposures"]

#: fewest common months :func:`attribute` accepts by default
MIN_MONTHS = 12
#: a partial first / last month of sub-monthly returns: first date after this day of its month,
#: or last date more than this many days before its month's end
PARTIAL_DAYS = 7
PERIODS_PER_YEAR = 12


@dataclass(frozen=True)
class Regime:
    """One market regime's regression (up: MktRF > 0; down: MktRF <= 0). Figures are None
    when the regime has too few months (fewer than the coefficients + 2)."""

    n_obs: int
    alpha: float | None = None
    alpha_t: float | None = None
    betas: dict[str, float] = field(default_factory=dict)
    beta_t: dict[str, float] = field(default_factory=dict)
    r2: float | None = None


@dataclass(frozen=True)
class Attribution:
    """The regression of monthly excess returns on a model's factors (see the module doc)."""

    model: str
    factors: tuple[str, ...]
    alpha: float
    alpha_annual: float
    alpha_se: float
    alpha_t: float
    alpha_p: float
    betas: dict[str, float]
    beta_se: dict[str, float]
    beta_t: dict[str, float]
    r2: float
    adj_r2: float
    n_obs: int
    start: dt.date
    end: dt.date
    cov: str
    lags: int | None
    up: Regime
    down: Regime


@dataclass(frozen=True)
class _Fit:
    params: np.ndarray
    se: np.ndarray
    t: np.ndarray
    p: np.ndarray
    r2: float
    adj_r2: float


def _month_end(d: dt.date) -> dt.date:
    return dt.date(d.year, d.month, calendar.monthrange(d.year, d.month)[1])


def monthly_returns(returns: pl.DataFrame, *, drop_partial: bool = True) -> pl.DataFrame:
    """``(date, ret)``: monthly returns labelled by month end, from ``returns`` (a ``date`` or
    ``ts`` column and ``ret`` or ``equity``; daily or monthly; see the module doc)."""
    if not isinstance(returns, pl.DataFrame):
        raise ConfigError(f"returns must be a polars DataFrame (date, ret), not {type(returns).__name__}")
    if returns.is_empty():
        raise ConfigError("returns are empty: nothing to attribute")
    date_col = next((c for c in ("date", "ts") if c in returns.columns), None)
    for c in ("ret", "equity"):
        if c in returns.columns and not returns.schema[c].is_numeric():
            raise ConfigError(f"returns column {c} is {returns.schema[c]}, not numbers")
    value_col = next((c for c in ("ret", "equity") if c in returns.columns
                      and returns[c].cast(pl.Float64).fill_nan(None).drop_nulls().len() > 0), None)
    if date_col is None or value_col is None:
        raise ConfigError(f"returns have columns {returns.columns}: attribution needs a date column "
                          "('date' or 'ts') and 'ret' (periodic returns) or 'equity' with values")
    dtype = returns.schema[date_col]
    if not (dtype == pl.Date or isinstance(dtype, pl.Datetime)):
        raise ConfigError(f"returns column {date_col} is {dtype}, not a date or datetime")
    # intraday rows (several per date) are fine: each timestamp once, months by UTC date
    frame = returns.select(
        pl.col(date_col).alias("key"),
        pl.col(date_col).cast(pl.Date).alias("date") if dtype == pl.Date
        else pl.col(date_col).dt.convert_time_zone("UTC").dt.date().alias("date")
        if getattr(dtype, "time_zone", None) else pl.col(date_col).dt.date().alias("date"),
        pl.col(value_col).cast(pl.Float64).fill_nan(None).alias("v"),
    ).drop_nulls("key").sort("key")
    if frame.is_empty():
        raise ConfigError(f"returns column {date_col} has no dates: nothing to attribute")
    dups = frame.filter(pl.col("key").is_duplicated())
    if dups.height:
        raise ConfigError(f"returns have more than one row for {date_col} {dups['key'][0]}: give one return "
                          "per date (one run's equity: a daily or monthly series)")
    first, last = frame["date"][0], frame["date"][-1]
    if value_col == "equity":
        frame = frame.with_columns((pl.col("v") / pl.col("v").shift(1) - 1.0).alias("v"))
    frame = frame.drop_nulls("v").with_columns(
        pl.col("date").dt.month_end().alias("month"))
    if frame.is_empty():
        raise ConfigError("returns have no values: nothing to attribute")
    if not frame["month"].is_duplicated().any():  # monthly already
        return frame.select(pl.col("month").alias("date"), pl.col("v").alias("ret"))
    out = (frame.group_by("month").agg(((pl.col("v") + 1.0).product() - 1.0).alias("ret"))
           .sort("month").rename({"month": "date"}))
    if drop_partial:
        if first.day > PARTIAL_DAYS:
            out = out.filter(pl.col("date") != _month_end(first))
        if (_month_end(last) - last).days > PARTIAL_DAYS:
            out = out.filter(pl.col("date") != _month_end(last))
    return out


def _aligned(
    returns: pl.DataFrame, factors_wide: pl.DataFrame, model: str, min_months: int, drop_partial: bool,
) -> tuple[pl.DataFrame, tuple[str, ...]]:
    """Monthly returns joined with the model's factors (date, ret, factors..., RF)."""
    factors = model_factors(model)
    lacking = [c for c in ("date", *factors, "RF") if c not in factors_wide.columns]
    if lacking:
        raise ConfigError(f"the factor frame lacks {', '.join(lacking)} for model {model!r} (it has "
                          f"{factors_wide.columns}): read it with read_factors(lake, {model!r})")
    if factors_wide.schema["date"] != pl.Date:
        raise ConfigError(f"the factor frame's date column is {factors_wide.schema['date']}, not a date")
    fw = (factors_wide.select("date", *factors, "RF").drop_nulls()
          .with_columns(pl.col("date").dt.month_end()).unique("date", keep="first").sort("date"))
    monthly = monthly_returns(returns, drop_partial=drop_partial)
    joined = monthly.join(fw, on="date", how="inner").sort("date")
    if joined.height < min_months:
        rng = (f"{monthly['date'][0]:%Y-%m}..{monthly['date'][-1]:%Y-%m} ({monthly.height} months)"
               if monthly.height else "no full month")
        frng = f"{fw['date'][0]:%Y-%m}..{fw['date'][-1]:%Y-%m}" if fw.height else "no months"
        raise ConfigError(
            f"the returns cover {rng} and the {model} factors {frng}: {joined.height} month(s) in common, "
            f"attribution needs at least {min_months}; attribute a longer run inside the factors' range or "
            "ingest newer factors (`backlake alpha factors --path FILE --units percent`)")
    return joined, factors


def _ols(y: np.ndarray, x: np.ndarray, cov: str = "classical", lags: int = 0) -> _Fit | None:
    """OLS of y on x (x includes the constant); None when x is rank deficient or n <= k."""
    n, k = x.shape
    if n <= k:
        return None
    params, _, rank, _ = np.linalg.lstsq(x, y, rcond=None)
    if rank < k:
        return None
    resid = y - x @ params
    rss = float(resid @ resid)
    centred = y - y.mean()
    tss = float(centred @ centred)
    xtx_inv = np.linalg.inv(x.T @ x)
    if cov == "hac":
        u = x * resid[:, None]
        s = u.T @ u
        for lag in range(1, lags + 1):
            g = u[lag:].T @ u[:-lag]
            s += (1.0 - lag / (lags + 1.0)) * (g + g.T)
        vcov = xtx_inv @ s @ xtx_inv
    else:
        vcov = xtx_inv * (rss / (n - k))
    se = np.sqrt(np.diag(vcov))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = params / se
    p = 2.0 * stats.t.sf(np.abs(t), n - k)
    r2 = 1.0 - rss / tss if tss > 0 else math.nan
    adj = 1.0 - (1.0 - r2) * (n - 1) / (n - k) if tss > 0 else math.nan
    return _Fit(params, se, t, p, r2, adj)


def _design(frame: pl.DataFrame, factors: tuple[str, ...], subtract_rf: bool) -> tuple[np.ndarray, np.ndarray]:
    y = frame["ret"].to_numpy().astype(np.float64)
    if subtract_rf:
        y = y - frame["RF"].to_numpy().astype(np.float64)
    x = np.column_stack([np.ones(frame.height), *[frame[f].to_numpy().astype(np.float64) for f in factors]])
    return y, x


def _regime(frame: pl.DataFrame, factors: tuple[str, ...], subtract_rf: bool) -> Regime:
    n = frame.height
    fit = _ols(*_design(frame, factors, subtract_rf)) if n >= len(factors) + 3 else None
    if fit is None:
        return Regime(n_obs=n)
    return Regime(
        n_obs=n, alpha=float(fit.params[0]), alpha_t=float(fit.t[0]),
        betas={f: float(fit.params[i + 1]) for i, f in enumerate(factors)},
        beta_t={f: float(fit.t[i + 1]) for i, f in enumerate(factors)},
        r2=fit.r2,
    )


def default_hac_lags(n: int) -> int:
    """Newey-West's (1994) rule of thumb: floor(4 (n / 100)^(2/9))."""
    lags: float = 4.0 * (n / 100.0) ** (2.0 / 9.0)
    return math.floor(lags)


def attribute(
    returns: pl.DataFrame, factors_wide: pl.DataFrame, model: str = "ff3", *,
    cov: Literal["classical", "hac"] = "classical", lags: int | None = None, min_months: int = MIN_MONTHS,
    subtract_rf: bool = True, drop_partial: bool = True,
) -> Attribution:
    """Regress the monthly excess returns of ``returns`` on ``model``'s factors from
    ``factors_wide`` (:func:`~backlake.alpha.factors.read_factors`); see the module doc for
    every convention. ConfigError (one line) for bad input or too few common months."""
    if cov not in ("classical", "hac"):
        raise ConfigError(f"cov={cov!r}: use 'classical' or 'hac' (Newey-West)")
    if lags is not None and (isinstance(lags, bool) or not isinstance(lags, int) or lags < 0):
        raise ConfigError(f"lags={lags!r}: give a whole number of months >= 0 (or None for the default rule)")
    k = len(model_factors(model)) + 1
    if isinstance(min_months, bool) or not isinstance(min_months, int) or min_months < k + 1:
        raise ConfigError(f"min_months={min_months!r}: give a whole number >= {k + 1} for model {model!r}")
    frame, factors = _aligned(returns, factors_wide, model, min_months, drop_partial)
    n = frame.height
    hac_lags = (default_hac_lags(n) if lags is None else lags) if cov == "hac" else None
    fit = _ols(*_design(frame, factors, subtract_rf), cov=cov, lags=hac_lags or 0)
    if fit is None:
        raise ConfigError(f"the {model} factors are collinear over the {n} common months "
                          f"({frame['date'][0]:%Y-%m}..{frame['date'][-1]:%Y-%m}): cannot attribute")
    up = frame.filter(pl.col("MktRF") > 0)
    down = frame.filter(pl.col("MktRF") <= 0)
    alpha = float(fit.params[0])
    return Attribution(
        model=model, factors=factors, alpha=alpha,
        alpha_annual=(1.0 + alpha) ** PERIODS_PER_YEAR - 1.0,
        alpha_se=float(fit.se[0]), alpha_t=float(fit.t[0]), alpha_p=float(fit.p[0]),
        betas={f: float(fit.params[i + 1]) for i, f in enumerate(factors)},
        beta_se={f: float(fit.se[i + 1]) for i, f in enumerate(factors)},
        beta_t={f: float(fit.t[i + 1]) for i, f in enumerate(factors)},
        r2=fit.r2, adj_r2=fit.adj_r2, n_obs=n, start=frame["date"][0], end=frame["date"][-1],
        cov=cov, lags=hac_lags,
        up=_regime(up, factors, subtract_rf), down=_regime(down, factors, subtract_rf),
    )


def rolling_exposures(
    returns: pl.DataFrame, factors_wide: pl.DataFrame, model: str = "ff3", window: int = 36, *,
    subtract_rf: bool = True, drop_partial: bool = True,
) -> pl.DataFrame:
    """``(date, factor, beta)``: the betas of OLS (with intercept) of the monthly excess return
    on ``model``'s factors over each ``window`` consecutive common months, dated at the window's
    last month end; one row per full window and factor (none when the common months are fewer
    than ``window``). Sorted by date, then the model's factor order."""
    factors = model_factors(model)
    k = len(factors) + 1
    if isinstance(window, bool) or not isinstance(window, int) or window < k + 2:
        raise ConfigError(f"window={window!r}: give a whole number of months >= {k + 2} for model {model!r}")
    frame, _ = _aligned(returns, factors_wide, model, 0, drop_partial)
    schema = {"date": pl.Date, "factor": pl.String, "beta": pl.Float64}
    if frame.height < window:
        return pl.DataFrame(schema=schema)
    y, x = _design(frame, factors, subtract_rf)
    dates = frame["date"].to_list()
    out_dates: list[dt.date] = []
    out_factors: list[str] = []
    out_betas: list[float] = []
    for end in range(window, frame.height + 1):
        xs, ys = x[end - window:end], y[end - window:end]
        params, _, rank, _ = np.linalg.lstsq(xs, ys, rcond=None)
        for i, f in enumerate(factors):
            out_dates.append(dates[end - 1])
            out_factors.append(f)
            out_betas.append(float(params[i + 1]) if rank == k else math.nan)
    return pl.DataFrame({"date": out_dates, "factor": out_factors, "beta": out_betas}, schema=schema)


def _finite(x: float | int | None) -> float | None:
    if x is None:
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def metrics(attr: Attribution) -> dict[str, float | None]:
    """The flat metric names of the module doc -> values (None where not finite / not fitted)."""
    out: dict[str, float | None] = {
        "alpha": _finite(attr.alpha), "alpha_annual": _finite(attr.alpha_annual),
        "alpha_t": _finite(attr.alpha_t), "alpha_p": _finite(attr.alpha_p),
        "r2": _finite(attr.r2), "adj_r2": _finite(attr.adj_r2), "n_obs": float(attr.n_obs),
    }
    for f in attr.factors:
        out[f"beta_{f}"] = _finite(attr.betas[f])
        out[f"t_{f}"] = _finite(attr.beta_t[f])
    for name, reg in (("up", attr.up), ("down", attr.down)):
        out[f"{name}_alpha"] = _finite(reg.alpha)
        out[f"{name}_alpha_t"] = _finite(reg.alpha_t)
        for f in attr.factors:
            out[f"{name}_beta_{f}"] = _finite(reg.betas.get(f))
        out[f"{name}_n"] = float(reg.n_obs)
    return out
