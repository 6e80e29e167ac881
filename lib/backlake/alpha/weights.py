"""Portfolio weights from alpha scores: one target-weight row per rebalance date.

Methods (``WeightOptions.method``), each on the names with a finite score that date:

- ``zscore`` (default): the cross-sectional z-score ``(s - mean) / std`` (population std),
  which is demeaned, so longs and shorts balance; scaled to ``gross``. Needs >= 2 names and a
  non-zero spread.
- ``rank``: the average ranks (ties share their mean rank) minus their mean: long the upper
  half, short the lower half, linear in rank; scaled to ``gross``. Needs >= 2 names.
- ``top_n`` / ``bottom_n``: the ``n`` highest / lowest scores (or ``quantile``: that fraction of
  the scored names, rounded down, at least 1), EQUAL weight among the selected (not score
  weighted). Long-only by default; with ``long_short=True`` long the selected end and short the
  same number at the other end. Ties at the cut are broken by symbol order (stable).
  Needs >= n names (2n long-short).

A rebalance date with too few scored names for the method (or no spread) gets NO position: a
row of zeros. Names without a score get 0.

Exposure: without ``net`` the raw weights are scaled so that ``sum |w| = gross`` (zscore and
rank then have net 0, long-only methods net = gross). With ``net``: the long side is scaled to
``(gross + net) / 2`` and the short side to ``(gross - net) / 2`` (a date that lacks a needed
side gets no position). ``max_weight`` caps ``|w|`` per name: names above it are set to the cap
and the excess is spread over the side's other names in proportion to their weights, repeated
until none exceeds it (each side keeps its total); when a side cannot hold its total under the
cap (too few names), every name of it sits at the cap and the exposure falls short of the target.

Rebalance (``rebalance``): ``daily`` every date; ``weekly`` the first date of each ISO week
(Monday-Sunday) among ``dates``; ``monthly`` the first date of each calendar month among
``dates``. The returned array has NaN rows on the other dates ("no rebalance": hold).

Point-in-time: the weights at date t use the scores at date t only.

Example::

    opts = WeightOptions(method="top_n", n=5, long_short=True, max_weight=0.2, rebalance="monthly")
    check_weight_options(opts, len(panel.symbols))   # ConfigError at planning time
    w = compute_weights(scores, panel.dates, opts)   # (n, m): NaN rows = no rebalance
"""

from __future__ import annotations

import math
from typing import Any, Literal, Self

import numpy as np
import polars as pl
from pydantic import Field, ValidationError, model_validator

from backlake._model import StrictModel
from backlake.config import _format_errors
from backlake.errors import ConfigError

__all__ = ["WeightOptions", "check_weight_options", "compute_weights", "rebalance_mask", "weights_frame",
           "WEIGHT_METHODS", "REBALANCE"]

WEIGHT_METHODS = ("zscore", "rank", "top_n", "bottom_n")
REBALANCE = ("daily", "weekly", "monthly")
_TOL = 1e-12


class WeightOptions(StrictModel):
    """How scores become weights. Construction raises ConfigError naming the field and the fix."""

    method: Literal["zscore", "rank", "top_n", "bottom_n"] = Field(
        default="zscore", description="zscore (demeaned z-score), rank (demeaned ranks), top_n / bottom_n "
                                      "(equal weight among the n highest / lowest scores).")
    n: int | None = Field(default=None, ge=1, description="top_n / bottom_n: how many names per side.")
    quantile: float | None = Field(default=None, gt=0, le=1,
                                   description="top_n / bottom_n: the fraction of scored names per side "
                                               "(rounded down, at least 1); instead of n.")
    long_short: bool = Field(default=False, description="top_n / bottom_n: also short the other end "
                                                        "(zscore and rank are always long-short).")
    gross: float = Field(default=1.0, gt=0, le=10, description="Target gross exposure sum |w| (1.0 = 100 %).")
    net: float | None = Field(default=None, description="Target net exposure sum w (None: as the method gives).")
    max_weight: float | None = Field(default=None, gt=0, le=10, description="Cap on |w| per name.")
    rebalance: Literal["daily", "weekly", "monthly"] = Field(
        default="daily", description="daily, weekly (first date of each ISO week) or monthly (first date of "
                                     "each month).")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        picks = self.method in ("top_n", "bottom_n")
        if picks and (self.n is None) == (self.quantile is None):
            raise ValueError(f"method={self.method!r} needs exactly one of n (a count) or quantile (a fraction), "
                             f"got n={self.n}, quantile={self.quantile}: give one, e.g. n=5 or quantile=0.2")
        if not picks:
            for name in ("n", "quantile"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}={getattr(self, name)} applies to top_n / bottom_n only, not "
                                     f"method={self.method!r}: drop it or use method='top_n'")
            if self.long_short:
                raise ValueError(f"long_short applies to top_n / bottom_n; method={self.method!r} is always "
                                 "long-short: drop long_short")
        if picks and self.long_short and self.quantile is not None and self.quantile > 0.5:
            raise ValueError(f"quantile={self.quantile} with long_short=True would long and short the same names: "
                             "use at most 0.5")
        if self.net is not None:
            if not math.isfinite(self.net) or abs(self.net) > self.gross + _TOL:
                raise ValueError(f"net={self.net} must lie within +-gross={self.gross}: lower |net| or raise gross")
            if picks and not self.long_short and abs(self.net - self.gross) > _TOL:
                raise ValueError(f"net={self.net} cannot differ from gross={self.gross} for a long-only "
                                 f"{self.method}: drop net or set long_short=True")
        if self.max_weight is not None and self.max_weight > self.gross + _TOL:
            raise ValueError(f"max_weight={self.max_weight} exceeds gross={self.gross}: lower it")
        return self

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise ConfigError(f"weight options: {_format_errors(e, prefix='weights')}") from None

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> WeightOptions:
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as e:
            raise ConfigError(f"weight options: {_format_errors(e, prefix='weights')}") from None

    def sides(self) -> tuple[float, float] | None:
        """(long total, short total) when ``net`` fixes them, else None."""
        if self.net is None:
            return None
        return (self.gross + self.net) / 2.0, (self.gross - self.net) / 2.0


def _count(opts: WeightOptions, k: int) -> int:
    """Names per side for top_n / bottom_n among k scored names."""
    if opts.n is not None:
        return opts.n
    return max(1, math.floor((opts.quantile or 0.0) * k + 1e-9))


def check_weight_options(opts: WeightOptions, n_symbols: int) -> None:
    """Refuse (ConfigError) options the universe of ``n_symbols`` names can never satisfy:
    more picks than names, a quantile that picks nobody... and a max_weight under which the
    exposure target is unreachable. Call it when planning, before any work starts."""
    if n_symbols < 1:
        raise ConfigError("the universe is empty: list at least one symbol")
    if opts.method in ("zscore", "rank"):
        if n_symbols < 2:
            raise ConfigError(f"method={opts.method!r} ranks names against each other and needs at least 2 symbols, "
                              f"the universe has {n_symbols}: add symbols")
        per_side = n_symbols - 1
    else:
        sides = 2 if opts.long_short else 1
        if opts.n is not None and opts.n * sides > n_symbols:
            most = n_symbols // sides
            raise ConfigError(f"weights.n={opts.n} {'per side ' if sides == 2 else ''}needs {opts.n * sides} symbols, "
                              f"the universe has {n_symbols}: lower n to at most {most}")
        if opts.quantile is not None and math.floor(opts.quantile * n_symbols + 1e-9) < 1:
            raise ConfigError(f"weights.quantile={opts.quantile} selects no name of {n_symbols} symbols: "
                              f"raise it to at least {1 / n_symbols:.4g}")
        per_side = _count(opts, n_symbols)
    if opts.max_weight is not None:
        sides_t = opts.sides()
        two_sided = opts.method in ("zscore", "rank") or opts.long_short
        side_total = max(sides_t) if sides_t else (opts.gross / 2 if two_sided else opts.gross)
        if side_total / per_side > opts.max_weight + _TOL:
            raise ConfigError(
                f"weights.max_weight={opts.max_weight} cannot reach an exposure of {side_total:g} per side with "
                f"at most {per_side} names: raise max_weight to at least {side_total / per_side:.4g} or lower gross")


def rebalance_mask(dates: np.ndarray, rebalance: str) -> np.ndarray:
    """Which ``dates`` (ascending) are rebalance dates for ``rebalance``."""
    d = np.asarray(dates).astype("datetime64[D]")
    n = len(d)
    if rebalance == "daily" or n == 0:
        return np.ones(n, dtype=bool)
    if rebalance == "weekly":
        key = (d.astype(np.int64) + 3) // 7  # 1970-01-01 was a Thursday: weeks from Monday
    elif rebalance == "monthly":
        key = d.astype("datetime64[M]").astype(np.int64)
    else:
        raise ConfigError(f"rebalance={rebalance!r} is not one of {', '.join(REBALANCE)}")
    mask = np.ones(n, dtype=bool)
    mask[1:] = key[1:] != key[:-1]
    return mask


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..k of ``x`` (finite), ties sharing the mean of their ranks."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(xs)]
    mean_rank = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def _fill_side(raw: np.ndarray, total: float, cap: float | None) -> np.ndarray:
    """Magnitudes ``raw`` (> 0) scaled to ``total``, each capped at ``cap`` with the excess
    spread over the uncapped names in proportion (repeated until none exceeds the cap)."""
    w: np.ndarray = raw / raw.sum() * total
    if cap is None:
        return w
    fixed = np.zeros(len(w), dtype=bool)
    for _ in range(len(w)):
        over = (w > cap + _TOL) & ~fixed
        if not over.any():
            break
        fixed |= over
        w[fixed] = cap
        free = ~fixed
        rest = total - cap * fixed.sum()
        if not free.any():
            break
        w[free] = raw[free] / raw[free].sum() * max(rest, 0.0)
    return w


def _raw(s: np.ndarray, opts: WeightOptions) -> np.ndarray | None:
    """Unscaled signed weights for the scored names ``s`` (finite), or None: no position."""
    k = len(s)
    if opts.method == "zscore":
        sd = float(s.std()) if k >= 2 else 0.0
        if not sd > 0 or not math.isfinite(sd):
            return None
        return np.asarray((s - s.mean()) / sd)
    if opts.method == "rank":
        if k < 2:
            return None
        r = average_ranks(s)
        raw = r - r.mean()
        return raw if np.any(raw != 0) else None
    cnt = _count(opts, k)
    if k < (2 * cnt if opts.long_short else cnt) or k == 0:
        return None
    order = np.argsort(-s if opts.method == "top_n" else s, kind="stable")  # the wanted end first
    raw = np.zeros(k)
    raw[order[:cnt]] = 1.0
    if opts.long_short:
        raw[order[k - cnt:]] = -1.0
    return raw


def _weights_row(scores: np.ndarray, opts: WeightOptions) -> np.ndarray:
    w = np.zeros(len(scores))
    ok = np.isfinite(scores)
    raw = _raw(scores[ok], opts)
    if raw is None:
        return w
    pos, neg = raw > 0, raw < 0
    sides = opts.sides()
    if sides is None:
        gross_raw = np.abs(raw).sum()
        long_t = opts.gross * raw[pos].sum() / gross_raw
        short_t = opts.gross * -raw[neg].sum() / gross_raw
    else:
        long_t, short_t = sides
        if (long_t > _TOL and not pos.any()) or (short_t > _TOL and not neg.any()):
            return w
    out = np.zeros(len(raw))
    if pos.any() and long_t > 0:
        out[pos] = _fill_side(raw[pos], long_t, opts.max_weight)
    if neg.any() and short_t > 0:
        out[neg] = -_fill_side(-raw[neg], short_t, opts.max_weight)
    w[ok] = out
    return w


def compute_weights(scores: np.ndarray, dates: np.ndarray, opts: WeightOptions) -> np.ndarray:
    """Target weights ``(n, m)`` from ``scores`` ``(n, m)`` (NaN = not scored): a row per
    rebalance date (0 = not held), NaN rows elsewhere (no rebalance). See the module doc."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != len(dates):
        raise ValueError(f"scores of shape {s.shape} do not match {len(dates)} dates")
    w = np.full(s.shape, np.nan)
    for t in np.flatnonzero(rebalance_mask(dates, opts.rebalance)):
        w[t] = _weights_row(s[t], opts)
    return w


def weights_frame(run_id: str, w: np.ndarray, dates: np.ndarray, symbols: list[str]) -> pl.DataFrame:
    """Rows for the lake's ``weights`` table: every symbol at every rebalance date (rows of
    ``w`` that are not all NaN), 0 for names not held; sorted by date then symbol order."""
    w = np.asarray(w, dtype=np.float64)
    reb = ~np.all(np.isnan(w), axis=1) if w.size else np.zeros(len(dates), dtype=bool)
    ti = np.repeat(np.flatnonzero(reb), len(symbols))
    sj = np.tile(np.arange(len(symbols)), int(reb.sum()))
    vals = np.nan_to_num(w[ti, sj], nan=0.0) if len(ti) else np.zeros(0)
    return pl.DataFrame({
        "run_id": pl.Series([run_id] * len(ti), dtype=pl.String),
        "date": pl.Series(np.asarray(dates).astype("datetime64[D]")[ti], dtype=pl.Date),
        "symbol": pl.Series(np.asarray(symbols, dtype=object)[sj].tolist() if len(sj) else [], dtype=pl.String),
        "weight": pl.Series(vals, dtype=pl.Float64),
    })
