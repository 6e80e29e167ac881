"""IC analytics of an alpha: forward returns, daily IC / Rank IC, summaries, quantile returns,
turnover, decay, signal correlation and multiple-testing correction.

Everything is vectorised over dates with numpy (no Python loop per date). Conventions:

- **Forward return** of horizon ``h`` at row ``t``: ``close[t + h] / close[t] - 1`` over the
  panel's rows (trading days), alphalens' convention; NaN when either close is missing or
  ``t + h`` is past the data (no forward fill: a name without a bar is not a flat return).
- **IC** of date ``t``: the Pearson correlation between the scores at ``t`` and the forward
  returns from ``t``, over the names that have both; **Rank IC**: the same on their ranks
  (Spearman; tied values get the average of their ranks). NaN when fewer than ``min_names``
  (default 3) names have both, or when either side is constant.
- **Summary** per horizon (:func:`summarize`): ``mean_ic``, ``ic_std`` (sample std, ddof 1),
  ``icir`` = mean / std * sqrt(252 / h) -- annualised with the number of non-overlapping
  ``h``-day periods in a 252-day year; the per-date (non-annualised) ratio is
  ``icir / sqrt(252 / h)``. ``t_stat`` = mean / se with a Newey-West (Bartlett) standard error
  of lag ``h - 1``: ``h``-day forward returns of consecutive dates overlap by ``h - 1`` days,
  so their ICs are autocorrelated and the plain ``mean / (std / sqrt(n))`` overstates
  significance by up to ~sqrt(h). Autocovariances are divided by ``n - 1``, so for ``h = 1``
  the t-stat is exactly ``mean / (std / sqrt(n))``. ``hit_rate`` = share of dates with IC > 0
  (Pearson IC; IC = 0 is not a hit). The ``rank_*`` keys are the same on Rank IC. ``n_dates``
  counts the dates with an IC. ``coverage`` = mean over the dates where any name is scored of
  (names scored / names with a close that date). ``turnover`` (only with weights): mean over
  rebalances after the first of ``sum |w_t - w_prev| / 2`` between consecutive target
  weights (rows with any finite weight are rebalances; NaN inside such a row = 0; drift
  between rebalances is not counted), else None.
- **Quantiles**: each date's scored names are binned into ``n_quantiles`` by score like
  ``pandas.qcut`` (alphalens): edges at the linearly interpolated quantiles of that date's
  scores, bins ``(e_{k-1}, e_k]``, the lowest bin including the minimum. Tied scores always
  share a bin (the bin of the tie group's lowest position); where pandas would refuse
  duplicate edges (and alphalens then drops the date) the date is kept and some bins are
  simply empty. Dates with fewer scored names than ``n_quantiles`` are left out. Quantile
  ``k``'s ``mean_return`` is the mean over dates of that date's mean forward return in the
  bin (alphalens' ``mean_return_by_quantile(demeaned=False)``); ``count`` = the
  (date, name) observations; ``spread`` = mean_return(top) - mean_return(bottom).
- **Decay**: mean IC and Rank IC per horizon; the half-life is fitted on the mean **Rank IC**:
  ``|RIC(h)| = |RIC(h0)| * exp(-lambda (h - h0))`` by least squares on ``log |RIC(h)|``
  against ``h`` over the horizons with a mean Rank IC; ``half_life = ln 2 / lambda`` in
  trading days. None when fewer than 2 horizons have one, when one is 0 or the sign flips
  between horizons, or when ``lambda <= 0`` (the IC does not decay).

Example::

    ev = evaluate(panel, scores, horizons=(1, 5, 10, 21), n_quantiles=5)
    ev.summary[5]["mean_rank_ic"], ev.half_life, ev.quantiles
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from scipy import stats  # type: ignore[import-untyped, unused-ignore]  # scipy ships no stubs

from backlake.errors import ConfigError

if TYPE_CHECKING:
    from backlake.alpha.panel import Panel

__all__ = [
    "AlphaEvaluation", "evaluate", "forward_returns", "daily_ic", "average_ranks", "summarize",
    "quantile_returns", "quantile_labels", "quantile_turnover", "weight_turnover", "decay_half_life",
    "signal_correlation", "adjust_pvalues", "newey_west_t", "validate_horizons", "DEFAULT_HORIZONS",
    "TRADING_DAYS",
]

DEFAULT_HORIZONS: tuple[int, ...] = (1, 5, 10, 21)
TRADING_DAYS = 252


# -- validation -----------------------------------------------------------------------------------
def validate_horizons(horizons: Iterable[Any], n_dates: int | None = None) -> tuple[int, ...]:
    """Sorted distinct positive integer horizons; ConfigError naming the bad value otherwise.
    With ``n_dates``, a horizon needs more than ``h`` dates."""
    try:
        hs = list(horizons)
    except TypeError:
        raise ConfigError(
            f"horizons={horizons!r} is not a list; give trading-day horizons like [1, 5, 10, 21]") from None
    if not hs:
        raise ConfigError("horizons=[] is empty; give at least one trading-day horizon, e.g. [1, 5, 10, 21]")
    out: list[int] = []
    for h in hs:
        ok = isinstance(h, (int, np.integer)) and not isinstance(h, (bool, np.bool_))
        if not ok and isinstance(h, float) and h.is_integer():
            ok, h = True, int(h)
        if not ok or int(h) <= 0:
            raise ConfigError(
                f"horizons: {h!r} is not a positive whole number of trading days; "
                "use integers >= 1, e.g. [1, 5, 10, 21]")
        out.append(int(h))
    result = tuple(sorted(set(out)))
    if n_dates is not None and result[-1] >= n_dates:
        raise ConfigError(
            f"horizons: {result[-1]} needs more than {result[-1]} dates but the data has {n_dates}; "
            "use a shorter horizon or a longer date range")
    return result


def _check_quantiles(n_quantiles: Any, n_symbols: int) -> int:
    if isinstance(n_quantiles, bool) or not isinstance(n_quantiles, (int, np.integer)) or int(n_quantiles) < 2:
        raise ConfigError(f"n_quantiles={n_quantiles!r} must be a whole number >= 2; use e.g. 5 (quintiles)")
    if n_symbols < int(n_quantiles):
        raise ConfigError(
            f"n_quantiles={int(n_quantiles)} needs at least {int(n_quantiles)} symbols but the universe has "
            f"{n_symbols}; lower n_quantiles or add symbols")
    return int(n_quantiles)


def _check_min_names(min_names: Any) -> int:
    if isinstance(min_names, bool) or not isinstance(min_names, (int, np.integer)) or int(min_names) < 2:
        raise ConfigError(
            f"min_names={min_names!r} must be a whole number >= 2 (a correlation needs 2 names); use e.g. 3")
    return int(min_names)


# -- forward returns and IC -----------------------------------------------------------------------
def forward_returns(close: np.ndarray, horizons: Iterable[int] = DEFAULT_HORIZONS) -> dict[int, np.ndarray]:
    """``{h: fwd}`` with ``fwd[t, j] = close[t + h, j] / close[t, j] - 1`` (rows = trading days);
    NaN where either close is missing / not finite or ``t + h`` is past the last row."""
    c = np.asarray(close, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"close must be 2-d (dates, symbols), got shape {c.shape}")
    hs = validate_horizons(horizons)
    n = c.shape[0]
    c = np.where(np.isfinite(c), c, np.nan)
    out: dict[int, np.ndarray] = {}
    for h in hs:
        fwd = np.full(c.shape, np.nan)
        if h < n:
            with np.errstate(divide="ignore", invalid="ignore"):
                fwd[: n - h] = c[h:] / c[: n - h] - 1.0
            fwd[~np.isfinite(fwd)] = np.nan
        out[h] = fwd
    return out


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Row-wise ranks 1..k of the finite values of ``x`` (n, m), ties getting the average of
    their ranks (Spearman's convention); NaN where ``x`` is not finite."""
    a = np.asarray(x, dtype=np.float64)
    order, _, start = _sorted_groups(a)
    n, m = a.shape
    last = np.ones((n, m), dtype=bool)
    last[:, :-1] = start[:, 1:] != start[:, :-1]
    cols = np.broadcast_to(np.arange(m), (n, m))
    end = np.minimum.accumulate(np.where(last, cols, m)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty((n, m))
    np.put_along_axis(ranks, order, (start + end) / 2.0 + 1.0, axis=1)
    ranks[~np.isfinite(a)] = np.nan
    return ranks


def _sorted_groups(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: the sort order (non-finite last), the sorted values and, for each sorted
    position, the 0-based position where its tie group starts."""
    a = np.where(np.isfinite(a), a, np.inf)
    n, m = a.shape
    order = np.argsort(a, axis=1)  # stability is irrelevant: ties share their group's values
    srt = np.take_along_axis(a, order, axis=1)
    new = np.ones((n, m), dtype=bool)
    new[:, 1:] = srt[:, 1:] != srt[:, :-1]
    start = np.maximum.accumulate(np.where(new, np.arange(m), 0), axis=1)
    return order, srt, start


def _group_starts(x: np.ndarray) -> np.ndarray:
    """0-based position of each finite value's tie group in its row's ascending order; -1 where not finite."""
    a = np.asarray(x, dtype=np.float64)
    order, _, start = _sorted_groups(a)
    starts = np.empty(a.shape, dtype=np.int64)
    np.put_along_axis(starts, order, start, axis=1)
    starts[~np.isfinite(a)] = -1
    return starts


def _row_corr(x: np.ndarray, y: np.ndarray, mask: np.ndarray, min_names: int) -> np.ndarray:
    """Pearson correlation per row over ``mask``; NaN with < min_names or a constant side."""
    cnt = mask.sum(axis=1)
    safe = np.maximum(cnt, 1)
    xm = np.where(mask, x, 0.0)
    ym = np.where(mask, y, 0.0)
    dx = np.where(mask, xm - (xm.sum(axis=1) / safe)[:, None], 0.0)
    dy = np.where(mask, ym - (ym.sum(axis=1) / safe)[:, None], 0.0)
    sxy = np.einsum("ij,ij->i", dx, dy)
    sxx = np.einsum("ij,ij->i", dx, dx)
    syy = np.einsum("ij,ij->i", dy, dy)
    den = np.sqrt(sxx * syy)
    # a side is constant when its spread is at rounding level of its values
    tol_x = 1e-20 * np.maximum(np.abs(xm).max(axis=1, initial=0.0), 1e-300) ** 2 * safe
    tol_y = 1e-20 * np.maximum(np.abs(ym).max(axis=1, initial=0.0), 1e-300) ** 2 * safe
    ok = (cnt >= min_names) & (sxx > tol_x) & (syy > tol_y)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(ok, sxy / np.where(ok, den, 1.0), np.nan)
    return np.clip(r, -1.0, 1.0)


def daily_ic(scores: np.ndarray, fwd: np.ndarray, *, min_names: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(IC, Rank IC) per date (row): Pearson and Spearman (average ranks for ties) correlation of
    ``scores[t]`` with ``fwd[t]`` over the names where both are finite; NaN when fewer than
    ``min_names`` names, or when scores or returns are constant across them."""
    s = np.asarray(scores, dtype=np.float64)
    f = np.asarray(fwd, dtype=np.float64)
    if s.shape != f.shape or s.ndim != 2:
        raise ValueError(f"scores {s.shape} and forward returns {f.shape} must be 2-d arrays of the same shape")
    k = _check_min_names(min_names)
    mask = np.isfinite(s) & np.isfinite(f)
    ic = _row_corr(s, f, mask, k)
    rs = average_ranks(np.where(mask, s, np.nan))
    rf = average_ranks(np.where(mask, f, np.nan))
    ric = _row_corr(rs, rf, mask, k)
    return ic, ric


# -- summaries ------------------------------------------------------------------------------------
def newey_west_t(x: np.ndarray, lags: int) -> float | None:
    """t-stat of the mean of ``x`` (NaN dropped, remaining values taken as consecutive) with a
    Newey-West (Bartlett) long-run variance of ``lags`` lags; autocovariances / (n - 1), so
    ``lags = 0`` is the plain ``mean / (std / sqrt(n))``. None with < 2 values or zero variance."""
    v = np.asarray(x, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = len(v)
    if n < 2:
        return None
    d = v - v.mean()
    lrv = float(d @ d)
    for lag in range(1, min(int(lags), n - 1) + 1):
        lrv += 2.0 * (1.0 - lag / (lags + 1.0)) * float(d[lag:] @ d[:-lag])
    lrv /= n - 1
    if not lrv > 0:
        return None
    return float(v.mean() / math.sqrt(lrv / n))


def _series_stats(x: np.ndarray, h: int) -> dict[str, float | None]:
    v = x[np.isfinite(x)]
    n = len(v)
    mean = float(v.mean()) if n else None
    std = float(v.std(ddof=1)) if n >= 2 else None
    ir = (mean / std * math.sqrt(TRADING_DAYS / h)) if (mean is not None and std) else None
    hit = float(np.mean(v > 0)) if n else None
    return {"mean": mean, "std": std, "ir": ir, "t": newey_west_t(v, h - 1), "hit": hit, "n": float(n)}


def weight_turnover(weights: np.ndarray | None) -> float | None:
    """Mean over rebalances after the first of ``sum |w_t - w_prev| / 2`` (a row with any finite
    weight is a rebalance; NaN inside it = 0 = not held). None without 2 rebalances."""
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    reb = np.isfinite(w).any(axis=1)
    if reb.sum() < 2:
        return None
    ww = np.nan_to_num(w[reb], nan=0.0, posinf=0.0, neginf=0.0)
    return float((np.abs(np.diff(ww, axis=0)).sum(axis=1) / 2.0).mean())


def coverage(scores: np.ndarray, close: np.ndarray) -> float | None:
    """Mean over dates with any score of (names scored / names with a close that date)."""
    s = np.isfinite(np.asarray(scores, dtype=np.float64))
    listed = np.isfinite(np.asarray(close, dtype=np.float64)) | s
    rows = s.any(axis=1)
    if not rows.any():
        return None
    return float((s[rows].sum(axis=1) / listed[rows].sum(axis=1)).mean())


def quantile_labels(scores: np.ndarray, n_quantiles: int) -> np.ndarray:
    """Quantile 1..n_quantiles of every finite score per date (pandas.qcut's bins, ties in one
    bin), 0 where not scored or the date has fewer than ``n_quantiles`` scored names."""
    s = np.asarray(scores, dtype=np.float64)
    q = int(n_quantiles)
    start = _group_starts(s)
    cnt = np.isfinite(s).sum(axis=1)
    denom = np.maximum(cnt - 1, 1)[:, None]
    lab = np.maximum(1, -((-start * q) // denom))  # ceil(start * q / (cnt - 1)), at least 1
    lab = np.where((start >= 0) & (cnt >= q)[:, None], lab, 0)
    return lab.astype(np.int64)


def _quantile_means(labels: np.ndarray, fwd: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean over dates of the per-date mean forward return per quantile, observation count)."""
    n = labels.shape[0]
    ok = (labels > 0) & np.isfinite(fwd)
    rows = np.nonzero(ok)[0]
    idx = rows * q + labels[ok] - 1
    sums = np.bincount(idx, weights=fwd[ok], minlength=n * q).reshape(n, q)
    cnts = np.bincount(idx, minlength=n * q).reshape(n, q)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_date = sums / cnts
    has = cnts > 0
    ndates = has.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(ndates > 0, np.where(has, per_date, 0.0).sum(axis=0) / np.maximum(ndates, 1), np.nan)
    return means, cnts.sum(axis=0)


def quantile_returns(scores: np.ndarray, fwd_by_h: Mapping[int, np.ndarray], n_quantiles: int = 5) -> pl.DataFrame:
    """Frame (horizon, quantile, mean_return, count): quantile 1 = lowest scores; see module doc."""
    q = int(n_quantiles)
    labels = quantile_labels(scores, q)
    hs, qs, ms, cs = [], [], [], []
    for h, fwd in fwd_by_h.items():
        means, cnts = _quantile_means(labels, np.asarray(fwd, dtype=np.float64), q)
        hs += [h] * q
        qs += list(range(1, q + 1))
        ms += [None if not np.isfinite(v) else float(v) for v in means]
        cs += [int(c) for c in cnts]
    schema = {"horizon": pl.Int64, "quantile": pl.Int64, "mean_return": pl.Float64, "count": pl.Int64}
    return pl.DataFrame({"horizon": hs, "quantile": qs, "mean_return": ms, "count": cs}, schema=schema)


def quantile_turnover(scores: np.ndarray, n_quantiles: int = 5, period: int = 1) -> np.ndarray:
    """(n, n_quantiles): share of the names in quantile k at date t that were not in quantile k
    ``period`` dates earlier (alphalens' ``quantile_turnover``); NaN on the first ``period``
    dates and where a quantile is empty."""
    q = int(n_quantiles)
    lab = quantile_labels(scores, q)
    n = lab.shape[0]
    out = np.full((n, q), np.nan)
    if n <= period:
        return out
    cur, prev = lab[period:], lab[:-period]
    for k in range(1, q + 1):  # loop over quantiles, vectorised over dates
        inq = cur == k
        size = inq.sum(axis=1)
        new = (inq & (prev != k)).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[period:, k - 1] = np.where(size > 0, new / np.maximum(size, 1), np.nan)
    return out


def summarize(ic: np.ndarray, rank_ic: np.ndarray, horizon: int) -> dict[str, float | None]:
    """The IC keys of one horizon's summary (mean_ic ... rank_t_stat, n_dates); see module doc."""
    a = _series_stats(np.asarray(ic, dtype=np.float64), horizon)
    b = _series_stats(np.asarray(rank_ic, dtype=np.float64), horizon)
    return {
        "mean_ic": a["mean"], "ic_std": a["std"], "icir": a["ir"], "t_stat": a["t"], "hit_rate": a["hit"],
        "mean_rank_ic": b["mean"], "rank_ic_std": b["std"], "rank_icir": b["ir"], "rank_t_stat": b["t"],
        "n_dates": a["n"],
    }


def decay_half_life(horizons: Sequence[int], mean_ic: Sequence[float | None]) -> float | None:
    """Half-life in trading days of ``|IC(h)| = |IC(h0)| exp(-lambda (h - h0))`` fitted by least
    squares on ``log |IC|``; None with < 2 usable horizons, a zero or sign flip, or lambda <= 0."""
    pts = [(float(h), float(v)) for h, v in zip(horizons, mean_ic, strict=True) if v is not None and math.isfinite(v)]
    if len(pts) < 2:
        return None
    vals = np.array([v for _, v in pts])
    if np.any(vals == 0) or not (np.all(vals > 0) or np.all(vals < 0)):
        return None
    x = np.array([h for h, _ in pts])
    if np.ptp(x) == 0:
        return None
    slope = float(np.polyfit(x, np.log(np.abs(vals)), 1)[0])
    lam = -slope
    if not lam > 1e-12:  # flat up to rounding: no decay
        return None
    return math.log(2.0) / lam


# -- evaluation -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class AlphaEvaluation:
    """``ic_frame`` (date, horizon, ic, rank_ic; rows with an IC or Rank IC, NaN -> null),
    ``summary`` {h: {mean_ic, ic_std, icir, t_stat, hit_rate, mean_rank_ic, rank_ic_std,
    rank_icir, rank_t_stat, coverage, turnover, spread, n_dates}}, ``quantiles`` (horizon,
    quantile, mean_return, count), ``decay`` (horizon, mean_ic, mean_rank_ic), ``half_life``."""

    ic_frame: pl.DataFrame
    summary: dict[int, dict[str, float | None]]
    quantiles: pl.DataFrame
    decay: pl.DataFrame
    half_life: float | None
    horizons: tuple[int, ...] = ()
    n_quantiles: int = 5


def evaluate(
    panel: Panel,
    scores: np.ndarray,
    horizons: Iterable[int] = DEFAULT_HORIZONS,
    n_quantiles: int = 5,
    weights: np.ndarray | None = None,
    *,
    min_names: int = 3,
) -> AlphaEvaluation:
    """IC analytics of ``scores`` (n, m) on ``panel`` (a :class:`~backlake.alpha.panel.Panel`:
    its ``dates``, ``symbols`` and ``close``) for each horizon; see the module doc for every
    definition. Bad input raises ConfigError (one line naming the field, value and fix)."""
    dates = np.asarray(panel.dates).astype("datetime64[D]")
    close = np.asarray(panel.close, dtype=np.float64)
    n, m = close.shape
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (n, m):
        raise ConfigError(f"scores has shape {s.shape} but the panel is {(n, m)} (dates x symbols); "
                          "compute the scores on the same panel")
    hs = validate_horizons(horizons, n)
    q = _check_quantiles(n_quantiles, m)
    k = _check_min_names(min_names)
    if weights is not None and np.asarray(weights).shape != (n, m):
        raise ConfigError(f"weights has shape {np.asarray(weights).shape} but the panel is {(n, m)}; "
                          "compute the weights from these scores")
    s = np.where(np.isfinite(s), s, np.nan)
    if not np.isfinite(s).any():
        raise ConfigError("scores: no date has a score; use a longer date range (the alpha needs its look-back) "
                          "or check the universe has data")
    fwd = forward_returns(close, hs)
    cov = coverage(s, close)
    turn = weight_turnover(weights)
    qframe = quantile_returns(s, fwd, q)
    summary: dict[int, dict[str, float | None]] = {}
    frames = []
    date_col = pl.Series("date", dates, dtype=pl.Date)
    for h in hs:
        ic, ric = daily_ic(s, fwd[h], min_names=k)
        row = summarize(ic, ric, h)
        qm = qframe.filter(pl.col("horizon") == h).sort("quantile")["mean_return"].to_list()
        spread = qm[-1] - qm[0] if qm[-1] is not None and qm[0] is not None else None
        row.update({"coverage": cov, "turnover": turn, "spread": spread})
        summary[h] = row
        keep = np.isfinite(ic) | np.isfinite(ric)
        frames.append(pl.DataFrame({
            "date": date_col.filter(pl.Series(keep)),
            "horizon": pl.Series(np.full(int(keep.sum()), h, dtype=np.int64)),
            "ic": pl.Series(ic[keep], dtype=pl.Float64).fill_nan(None),
            "rank_ic": pl.Series(ric[keep], dtype=pl.Float64).fill_nan(None),
        }))
    ic_frame = pl.concat(frames) if frames else pl.DataFrame(
        schema={"date": pl.Date, "horizon": pl.Int64, "ic": pl.Float64, "rank_ic": pl.Float64})
    decay = pl.DataFrame({
        "horizon": list(hs),
        "mean_ic": [summary[h]["mean_ic"] for h in hs],
        "mean_rank_ic": [summary[h]["mean_rank_ic"] for h in hs],
    }, schema={"horizon": pl.Int64, "mean_ic": pl.Float64, "mean_rank_ic": pl.Float64})
    half = decay_half_life(hs, [summary[h]["mean_rank_ic"] for h in hs])
    return AlphaEvaluation(ic_frame, summary, qframe, decay, half, hs, q)


# -- several alphas -------------------------------------------------------------------------------
def signal_correlation(scores_by_alpha: Mapping[str, np.ndarray], *, min_names: int = 3) -> pl.DataFrame:
    """(alpha_a, alpha_b, corr) for every ordered pair (diagonal included, input order): the mean
    over dates of the cross-sectional rank (Spearman) correlation of the two alphas' scores over
    the names both score (dates with fewer than ``min_names`` such names are skipped); null when
    no date qualifies."""
    names = list(scores_by_alpha)
    arrs = {a: np.asarray(v, dtype=np.float64) for a, v in scores_by_alpha.items()}
    shapes = {a: v.shape for a, v in arrs.items()}
    if len(set(shapes.values())) > 1:
        raise ConfigError(f"scores_by_alpha: shapes differ {shapes}; compute every alpha on the same panel")
    k = _check_min_names(min_names)
    rows_a, rows_b, vals = [], [], []
    cache: dict[tuple[str, str], float | None] = {}
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            key = (a, b) if i <= j else (b, a)
            if key not in cache:
                x, y = arrs[key[0]], arrs[key[1]]
                mask = np.isfinite(x) & np.isfinite(y)
                rx, ry = average_ranks(np.where(mask, x, np.nan)), average_ranks(np.where(mask, y, np.nan))
                r = _row_corr(rx, ry, mask, k)
                r = r[np.isfinite(r)]
                cache[key] = float(r.mean()) if len(r) else None
            rows_a.append(a)
            rows_b.append(b)
            vals.append(cache[key])
    return pl.DataFrame({"alpha_a": rows_a, "alpha_b": rows_b, "corr": vals},
                        schema={"alpha_a": pl.String, "alpha_b": pl.String, "corr": pl.Float64})


def adjust_pvalues(t_stats: Mapping[str, float | None], n_obs: Mapping[str, int]) -> pl.DataFrame:
    """(alpha, t_stat, p_value, p_bonferroni, p_bh): two-sided p of each t-stat with ``n - 1``
    degrees of freedom, Bonferroni (p * k, capped at 1) and Benjamini-Hochberg (step-up,
    ``min over j >= i of p_(j) k / j``, capped at 1) over the k alphas with a p-value. An alpha
    without a t-stat (None / NaN) or with n_obs < 2 gets nulls and does not count in k."""
    names = list(t_stats)
    missing = [a for a in names if a not in n_obs]
    if missing:
        raise ConfigError(f"n_obs lacks {missing}; give the number of IC dates of every alpha in t_stats")
    p = np.full(len(names), np.nan)
    for i, a in enumerate(names):
        t, nn = t_stats[a], int(n_obs[a])
        if t is not None and math.isfinite(t) and nn >= 2:
            p[i] = 2.0 * float(stats.t.sf(abs(t), nn - 1))
    ok = np.isfinite(p)
    kk = int(ok.sum())
    bonf = np.where(ok, np.minimum(p * kk, 1.0), np.nan)
    bh = np.full(len(names), np.nan)
    if kk:
        idx = np.nonzero(ok)[0]
        order = idx[np.argsort(p[idx], kind="stable")]
        ranked = p[order] * kk / np.arange(1, kk + 1)
        bh[order] = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)

    def opt(v: float) -> float | None:
        return float(v) if math.isfinite(v) else None

    return pl.DataFrame({
        "alpha": names,
        "t_stat": [opt(float(t)) if (t := t_stats[a]) is not None else None for a in names],
        "p_value": [opt(v) for v in p], "p_bonferroni": [opt(v) for v in bonf], "p_bh": [opt(v) for v in bh],
    }, schema={"alpha": pl.String, "t_stat": pl.Float64, "p_value": pl.Float64, "p_bonferroni": pl.Float64,
               "p_bh": pl.Float64})
