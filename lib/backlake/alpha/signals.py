"""Signals: an alpha's scores as rows of the lake's ``signals`` table, with a feature snapshot.

One row per scored (date, symbol): ``alpha``, ``alpha_id`` (:func:`~backlake.alpha.registry.alpha_id`),
``params`` (canonical JSON: sorted keys, no spaces, every parameter with defaults filled in),
``date``, ``symbol``, ``score`` and ``features``: a compact JSON object of the alpha's named
inputs for that row (``{"ret_12_1":0.2153,"close_t_skip":...}``), keys in the alpha's order,
floats at FULL precision (the shortest text that reads back to the same float64), null where an
input is missing. Symbols without a score that date have no row (missing is not a zero).

Example::

    sig = compute_signals(panel, "momentum_12_1", {}, start=dt.date(2020, 1, 1))
    coverage(sig, panel.symbols)      # date, n_scored, n_universe, coverage
    scores = score_matrix(sig, panel)  # (n, m), NaN where not scored
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from backlake.alpha.panel import Panel
from backlake.alpha.registry import (
    AlphaOutput,
    AlphaParams,
    alpha_id,
    check_alpha_data,
    get_alpha,
    validate_alpha_params,
)

__all__ = ["SIGNALS_COLUMNS", "compute_alpha", "compute_signals", "coverage", "score_matrix", "params_json"]

#: polars schema of a signals frame (the lake's ``signals`` table)
SIGNALS_COLUMNS: dict[str, pl.DataType] = {
    "alpha": pl.String(), "alpha_id": pl.String(), "params": pl.String(), "date": pl.Date(),
    "symbol": pl.String(), "score": pl.Float64(), "features": pl.String(),
}


def params_json(params: AlphaParams) -> str:
    """Canonical JSON of validated parameters (sorted keys, no spaces)."""
    return json.dumps(params.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def compute_alpha(
    panel: Panel, name: str, params: Mapping[str, Any] | AlphaParams | None = None
) -> tuple[AlphaParams, AlphaOutput]:
    """Validate ``params`` for alpha ``name``, check the panel can be scored (volume) and run
    the alpha: ``(validated params, output)``. ConfigError on bad input."""
    p = validate_alpha_params(name, params)
    check_alpha_data(name, panel)
    out = get_alpha(name).fn(panel, p)
    n, m = panel.shape
    if out.scores.shape != (n, m) or any(f.shape != (n, m) for f in out.features.values()):
        raise ValueError(f"alpha {name} returned arrays of the wrong shape (panel is {n} x {m})")
    return p, out


def compute_signals(
    panel: Panel, name: str, params: Mapping[str, Any] | AlphaParams | None = None, *,
    start: dt.date | None = None, end: dt.date | None = None,
) -> pl.DataFrame:
    """The signals rows of alpha ``name`` on ``panel`` for dates ``start .. end`` (inclusive;
    default all): only scored symbols, sorted by date then symbol (the panel's symbol order).

    The alpha is computed on the whole panel (rows before ``start`` serve as look-back)."""
    p, out = compute_alpha(panel, name, params)
    n = len(panel.dates)
    rows = np.ones(n, dtype=bool)
    if start is not None:
        rows &= panel.dates >= np.datetime64(start, "D")
    if end is not None:
        rows &= panel.dates <= np.datetime64(end, "D")
    scored = np.isfinite(out.scores) & rows[:, None]
    ti, sj = np.nonzero(scored)  # row-major: by date, then symbol
    frame = pl.DataFrame({
        "date": pl.Series(panel.dates[ti].astype("datetime64[D]"), dtype=pl.Date),
        "symbol": pl.Series(np.asarray(panel.symbols, dtype=object)[sj].tolist() if len(sj) else [], dtype=pl.String),
        "score": out.scores[ti, sj].astype(np.float64),
        **{f"__f_{k}": v[ti, sj].astype(np.float64) for k, v in out.features.items()},
    })
    fcols = [pl.col(f"__f_{k}").fill_nan(None).alias(k) for k in out.features]
    features = pl.struct(fcols).struct.json_encode() if fcols else pl.lit("{}")
    return frame.select(
        pl.lit(name, pl.String).alias("alpha"),
        pl.lit(alpha_id(name, p), pl.String).alias("alpha_id"),
        pl.lit(params_json(p), pl.String).alias("params"),
        "date", "symbol", "score",
        features.cast(pl.String).alias("features"),
    )


def coverage(signals_df: pl.DataFrame, universe: Sequence[str], *, dates: np.ndarray | None = None) -> pl.DataFrame:
    """Per date: ``n_scored`` (universe symbols with a finite score), ``n_universe`` and
    ``coverage = n_scored / n_universe``. Dates are those of ``signals_df``, or ``dates``
    (e.g. ``panel.dates``) so that dates without any score show coverage 0."""
    names = list(dict.fromkeys(universe))
    scored = (signals_df.lazy()
              .filter(pl.col("symbol").is_in(names) & pl.col("score").is_not_null() & pl.col("score").is_not_nan())
              .group_by("date").agg(pl.col("symbol").n_unique().cast(pl.Int64).alias("n_scored")))
    if dates is None:
        base = signals_df.lazy().select(pl.col("date").unique())
    else:
        base = pl.LazyFrame({"date": pl.Series(np.asarray(dates).astype("datetime64[D]"), dtype=pl.Date)}).unique()
    return (base.join(scored, on="date", how="left")
            .select("date", pl.col("n_scored").fill_null(0),
                    pl.lit(len(names), pl.Int64).alias("n_universe"))
            .with_columns((pl.col("n_scored") / pl.col("n_universe")).alias("coverage") if names
                          else pl.lit(None, pl.Float64).alias("coverage"))
            .sort("date").collect())


def score_matrix(signals_df: pl.DataFrame, panel: Panel) -> np.ndarray:
    """The scores of ``signals_df`` aligned on ``panel`` ``(n, m)``: NaN where a (date, symbol)
    has no row; rows of dates or symbols not in the panel are ignored. One alpha_id only."""
    if signals_df.height and signals_df["alpha_id"].n_unique() > 1:
        raise ValueError("score_matrix takes the signals of one alpha_id; filter the frame first")
    n, m = panel.shape
    out = np.full((n, m), np.nan)
    if not signals_df.height or not n or not m:
        return out
    col_of = {s: j for j, s in enumerate(panel.symbols)}
    f = signals_df.filter(pl.col("symbol").is_in(list(col_of)))
    d = f["date"].to_numpy().astype("datetime64[D]")
    i = np.searchsorted(panel.dates, d)
    inside = (i < n) & (panel.dates[np.minimum(i, n - 1)] == d)
    j = f["symbol"].replace_strict(col_of, return_dtype=pl.Int64).to_numpy()
    out[i[inside], j[inside]] = f["score"].to_numpy().astype(np.float64)[inside]
    return out
