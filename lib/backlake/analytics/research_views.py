"""What the research run views compute from stored rows (pure functions, no I/O).

- :func:`heatmap_grid`: a metric over two parameters of a sweep's trials, the other
  parameters fixed at chosen values or aggregated (mean / max / min).
- :func:`best_so_far`: the running best of an objective in trial order.
- :func:`param_importance`: how much of the objective's variance each parameter explains
  (correlation ratio eta^2 over the parameter's values, numeric parameters with more than
  ``bins`` distinct values grouped into ``bins`` equal-count bins), with Spearman's rank
  correlation for the direction. A univariate screen: interactions are not attributed.
- :func:`mc_equity_paths` / :func:`fan_percentiles`: Monte Carlo paths regenerated from the
  stored base equity (or trade returns; for ``random_entry`` the trades' entry bars' low and
  high too) exactly as ``backlake.research.monte_carlo`` drew them (same seed, same
  chunking), and their percentile bands.
- :func:`prob_ruin`: share of paths whose max drawdown reaches a chosen drawdown.
- :func:`param_stability`: how often a walk-forward's chosen parameters change.

Example::

    xs, ys, z = heatmap_grid(rows, "fast", "slow", "sharpe", agg="max")
    param_importance([{"a": 1}, {"a": 2}], [0.1, 0.3])   # [Importance('a', 1.0, 1.0, 2)]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from backlake.errors import ConfigError
from backlake.research import monte_carlo as mc

__all__ = ["AGGREGATES", "FAN_PERCENTILES", "ENTRY_FIELDS", "Importance", "heatmap_grid", "best_so_far",
           "param_importance", "mc_equity_paths", "fan_percentiles", "prob_ruin", "param_stability"]

AGGREGATES = ("mean", "max", "min")
FAN_PERCENTILES = (5.0, 25.0, 50.0, 75.0, 95.0)
#: What ``random_entry`` paths need per trade (``mc_equity_paths(entries=...)``).
ENTRY_FIELDS = ("low", "high", "entry_price", "signed_qty", "bar_index")


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None if v is None else float(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _sort_key(v: Any) -> tuple[int, float, str]:
    f = _num(v)
    return (0, f, "") if f is not None else (1, 0.0, str(v))


def heatmap_grid(
    rows: Sequence[Mapping[str, Any]], x: str, y: str, metric: str, *,
    fixed: Mapping[str, Any] | None = None, agg: str = "mean",
) -> tuple[list[Any], list[Any], list[list[float | None]]]:
    """``metric`` over (``x``, ``y``): (x values, y values, z[y index][x index]).

    ``rows``: one mapping per trial with the parameters and the metric. Rows whose parameters
    differ from ``fixed`` (parameter -> value) are left out; the rest that share an (x, y) cell
    are combined by ``agg`` (mean, max or min; null metric values skipped; a cell with none is
    None). Axis values are sorted (numbers numerically).
    """
    if agg not in AGGREGATES:
        raise ConfigError(f"agg={agg!r} is not an aggregate: use one of {', '.join(AGGREGATES)}")
    if x == y:
        raise ConfigError(f"x={x!r} and y={y!r} are the same parameter: pick two different parameters")
    fixed = dict(fixed or {})
    cells: dict[tuple[Any, Any], list[float]] = {}
    xs: set[Any] = set()
    ys: set[Any] = set()
    for r in rows:
        if x not in r or y not in r:
            raise ConfigError(f"trial row {dict(r)!r} has no parameter {x!r} or {y!r}: pick parameters of the sweep")
        if any(r.get(k) != v for k, v in fixed.items()):
            continue
        xs.add(r[x])
        ys.add(r[y])
        v = _num(r.get(metric))
        cell = cells.setdefault((r[x], r[y]), [])
        if v is not None:
            cell.append(v)
    xv = sorted(xs, key=_sort_key)
    yv = sorted(ys, key=_sort_key)
    def combine(a: list[float]) -> float:
        return sum(a) / len(a) if agg == "mean" else (max(a) if agg == "max" else min(a))

    z = [[(combine(cells[(a, b)]) if cells.get((a, b)) else None) for a in xv] for b in yv]
    return xv, yv, z


def best_so_far(values: Sequence[float | None], *, maximize: bool = True) -> list[float | None]:
    """The running best of ``values`` (None until the first defined value; nulls skipped)."""
    out: list[float | None] = []
    best: float | None = None
    for v in values:
        f = _num(v)
        if f is not None and (best is None or (f > best if maximize else f < best)):
            best = f
        out.append(best)
    return out


@dataclass(frozen=True)
class Importance:
    """``eta2``: share of the objective's variance explained by the parameter's groups (0..1);
    ``spearman``: rank correlation of a numeric parameter with the objective (None when either
    is constant or the parameter is not numeric); ``n_levels``: groups used."""

    name: str
    eta2: float
    spearman: float | None
    n_levels: int


def _ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties averaged."""
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(a.size)
    sa = a[order]
    i = 0
    while i < a.size:
        j = i
        while j + 1 < a.size and sa[j + 1] == sa[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def _spearman(p: np.ndarray, o: np.ndarray) -> float | None:
    rp, ro = _ranks(p), _ranks(o)
    if np.std(rp) == 0 or np.std(ro) == 0:
        return None
    return float(np.corrcoef(rp, ro)[0, 1])


def param_importance(
    params: Sequence[Mapping[str, Any]], objective: Sequence[float | None], *, bins: int = 5,
) -> list[Importance]:
    """Each parameter's importance for ``objective``, most important first.

    Trials with a null objective are left out. eta^2 = between-group sum of squares / total
    sum of squares of the objective, the groups being the parameter's values (numeric
    parameters with more than ``bins`` distinct values: ``bins`` equal-count bins by rank).
    A constant objective gives 0 for every parameter.
    """
    if len(params) != len(objective):
        raise ConfigError(f"params has {len(params)} rows but objective {len(objective)}: pass one per trial")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ConfigError(f"bins={bins!r} must be a whole number >= 2, e.g. 5")
    keep = [(p, f) for p, o in zip(params, objective) if (f := _num(o)) is not None]
    names = sorted({k for p, _ in keep for k in p})
    if not keep:
        return [Importance(n, 0.0, None, 0) for n in names]
    obj = np.array([f for _, f in keep])
    total = float(((obj - obj.mean()) ** 2).sum())
    out: list[Importance] = []
    for name in names:
        vals = [p.get(name) for p, _ in keep]
        nums = [_num(v) for v in vals]
        numeric = all(v is not None for v in nums)
        if numeric:
            arr = np.array(nums, dtype=float)
            distinct = np.unique(arr)
            if distinct.size > bins:
                labels = np.minimum((_ranks(arr) - 1) * bins // arr.size, bins - 1).astype(int)
            else:
                labels = np.searchsorted(distinct, arr)
            spear = _spearman(arr, obj)
        else:
            keys = sorted({str(v) for v in vals})
            labels = np.array([keys.index(str(v)) for v in vals])
            spear = None
        levels = np.unique(labels)
        between = sum(float((labels == g).sum()) * (float(obj[labels == g].mean()) - float(obj.mean())) ** 2
                      for g in levels)
        eta2 = between / total if total > 0 else 0.0
        out.append(Importance(name, min(max(eta2, 0.0), 1.0), spear, int(levels.size)))
    return sorted(out, key=lambda i: (-i.eta2, i.name))


def mc_equity_paths(
    *, method: str, n_paths: int, seed: int, block_size: int = 20,
    equity: Sequence[float] | np.ndarray | None = None,
    trade_returns: Sequence[float] | np.ndarray | None = None, initial_cash: float | None = None,
    entries: Mapping[str, Sequence[float] | np.ndarray] | None = None,
) -> np.ndarray:
    """(n_paths, n_points) equity paths of one seed, drawn as ``monte_carlo.simulate_paths``
    draws them (same generator, same 256-path chunks), so path i here is path i there.

    ``return_shuffle`` / ``block_bootstrap``: from the base ``equity`` (per-bar returns, start
    at its first value). ``trade_bootstrap``: from the closed trades' ``trade_returns``
    compounded from ``initial_cash`` (one point per trade). ``random_entry``: the base
    ``equity`` shifted by re-priced entries; ``entries`` holds, per trade in trade order (every
    trade, as the base backtest made them), its entry bar's ``low`` and ``high``, its
    ``entry_price``, ``signed_qty`` (negative when short) and ``bar_index`` (the entry bar's
    position in ``equity``), see :data:`ENTRY_FIELDS`.
    """
    mc.check_whole_number("n_paths", n_paths, 1, "e.g. 1000")
    mc.check_whole_number("seed", seed, 0, "e.g. 0")
    rng = np.random.default_rng(seed)
    chunks = [min(256, n_paths - lo) for lo in range(0, n_paths, 256)]
    if method == "random_entry":
        return _random_entry_paths(equity, entries, chunks, rng)
    if method == "trade_bootstrap":
        if trade_returns is None or initial_cash is None or len(trade_returns) == 0:
            raise ConfigError("trade_bootstrap paths need trade_returns (at least one) and initial_cash")
        tr = np.asarray(trade_returns, dtype=float)
        return np.vstack([mc._compound(tr[rng.integers(0, tr.size, (k, tr.size))], initial_cash) for k in chunks])
    if method not in ("return_shuffle", "block_bootstrap"):
        raise ConfigError(f"method={method!r}: paths can be regenerated for trade_bootstrap, return_shuffle, "
                          "block_bootstrap and random_entry only")
    if equity is None or len(equity) < 3:
        raise ConfigError(f"{method} paths need the base equity (at least 3 bars)")
    eq = np.asarray(equity, dtype=float)
    r = eq[1:] / eq[:-1] - 1.0
    if method == "return_shuffle":
        return np.vstack([mc._compound(rng.permuted(np.tile(r, (k, 1)), axis=1), float(eq[0])) for k in chunks])
    mc.check_whole_number("block_size", block_size, 1, "returns per block, e.g. 20")
    if block_size > r.size:
        raise ConfigError(f"block_size={block_size} is longer than the {r.size} per-bar returns: use at most {r.size}")
    return np.vstack([mc._compound(r[mc._block_indices(r.size, block_size, k, rng)], float(eq[0]))
                      for k in chunks])


def _random_entry_paths(equity: Sequence[float] | np.ndarray | None,
                        entries: Mapping[str, Sequence[float] | np.ndarray] | None,
                        chunks: list[int], rng: np.random.Generator) -> np.ndarray:
    """``random_entry`` paths: each chunk draws every trade's entry uniformly in its entry bar's
    [low, high] (``monte_carlo``'s draw) and shifts the equity by the extra cost from that bar on."""
    if equity is None or len(equity) < 1:
        raise ConfigError("random_entry paths need the base equity")
    missing = [f for f in ENTRY_FIELDS if entries is None or f not in entries]
    if missing:
        raise ConfigError(f"random_entry paths need each trade's {', '.join(missing)} (entries)")
    assert entries is not None
    low, high, price, qty = (np.asarray(entries[f], dtype=float) for f in ENTRY_FIELDS[:4])
    idx = np.asarray(entries["bar_index"], dtype=np.int64)
    if low.size == 0:
        raise ConfigError("random_entry paths need at least one trade")
    if np.isnan(low).any() or np.isnan(high).any():
        raise ConfigError("an entry bar's low/high is missing: the bars the run read are not in the lake any more")
    eq = np.asarray(equity, dtype=float)
    if idx.min() < 0 or idx.max() >= eq.size:
        raise ConfigError("an entry bar lies outside the base equity: pass the run's own equity and trades")

    def draw(k: int) -> np.ndarray:
        prices = mc._random_prices(low, high, k, rng)
        out = np.zeros((k, eq.size))
        np.add.at(out, (slice(None), idx), qty[None, :] * (prices - price[None, :]))  # type: ignore[arg-type]
        shifted: np.ndarray = eq[None, :] - np.cumsum(out, axis=1)
        return shifted

    return np.vstack([draw(k) for k in chunks])


def fan_percentiles(paths: np.ndarray, percentiles: Sequence[float] = FAN_PERCENTILES) -> np.ndarray:
    """(len(percentiles), n_points): each percentile of the paths at every point (linear
    interpolation, numpy's default)."""
    a = np.asarray(paths, dtype=float)
    if a.ndim != 2 or a.shape[0] == 0:
        raise ConfigError(f"paths has shape {a.shape}: pass (n_paths >= 1, n_points)")
    out: np.ndarray = np.percentile(a, list(percentiles), axis=0)
    return out


def prob_ruin(max_drawdowns: Sequence[float | None], ruin_drawdown: float) -> float:
    """Share of paths with ``max_drawdown <= -ruin_drawdown`` (null drawdowns count as 0, as in
    ``monte_carlo.summarize``); ``ruin_drawdown`` a fraction in (0, 1]."""
    if isinstance(ruin_drawdown, bool) or not isinstance(ruin_drawdown, (int, float)) or not 0 < ruin_drawdown <= 1:
        raise ConfigError(f"ruin_drawdown={ruin_drawdown!r} must be a fraction in (0, 1], e.g. 0.5 for 50 %")
    if len(max_drawdowns) == 0:
        raise ConfigError("max_drawdowns is empty: pass the paths' max drawdowns")
    dd = np.array([_num(v) or 0.0 for v in max_drawdowns])
    return float(np.mean(dd <= -ruin_drawdown))


def param_stability(chosen: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per parameter over the windows in order: distinct values chosen, changes between
    consecutive windows, and the most frequent value with its share of windows."""
    names = sorted({k for c in chosen for k in c})
    out: dict[str, dict[str, Any]] = {}
    for n in names:
        vals = [c.get(n) for c in chosen]
        counts: dict[str, int] = {}
        for v in vals:
            counts[repr(v)] = counts.get(repr(v), 0) + 1
        top = max(counts.items(), key=lambda kv: kv[1])
        mode = next(v for v in vals if repr(v) == top[0])
        out[n] = {"distinct": len(counts), "changes": sum(a != b for a, b in itertools.pairwise(vals)),
                  "mode": mode, "mode_share": top[1] / len(vals)}
    return out
