"""What the Alpha page reads: alpha runs, their IC rows and metric segments, weights turnover,
signal coverage, factor exposures and the signal correlation between alphas — every read a
DuckDB query over the lake's views, through the session's :class:`~dashboards.store.LakeStore`
(cached per session; ``LakeStore.refresh()`` drops the cache).

The tables are those of README "Alpha research": ``ic`` (run_id, date, horizon, ic, rank_ic),
``metrics`` segments ``ic:h{h}``, ``quantiles:h{h}``, ``decay`` and ``attribution:<model>``,
``weights`` (run_id, date, symbol, weight at the rebalance dates), ``signals`` (alpha, alpha_id,
params, date, symbol, score, features) and ``factor_exposures`` (run_id, model, date, factor,
beta). Frames are pandas; dates are naive ``datetime64`` (what bokeh takes).

Example::

    alpha = AlphaStore(LakeStore())
    runs = alpha.alpha_runs()                       # one row per completed alpha run
    alpha.ic_series(runs.run_id[0], 5)              # date, ic, rank_ic
    alpha.summary(runs.run_id[0])                   # horizon -> {mean_ic, icir, t_stat, ...}
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from backlake.errors import BacklakeError
from dashboards.details.research import parse_json
from dashboards.store import LakeStore

__all__ = ["AlphaStore", "AlphaRun", "CORRELATION_DAYS", "universe_label", "run_label", "horizon_of", "changed_params"]

#: The signal correlation uses the latest this many dates the alphas share (keeps it fast).
CORRELATION_DAYS = 252


@dataclass(frozen=True)
class AlphaRun:
    """One completed alpha run as the page names it (never by its hash)."""

    run_id: str
    alpha: str
    alpha_params: dict[str, Any]
    weights: dict[str, Any]  # method, rebalance, long_short, gross, ... as the run set them
    universe: str  # the universe's name ('sp500_stocks') or its symbols
    n_symbols: int
    start: pd.Timestamp | None  # first / last date with an IC row
    end: pd.Timestamp | None
    created_at: pd.Timestamp | None
    horizons: tuple[int, ...]
    n_quantiles: int | None

    @property
    def title(self) -> str:
        """``momentum_12_1 on sp500_stocks (20 symbols)`` (parameters that differ from the
        alpha's defaults in parentheses)."""
        return f"{self.alpha}{_params_text(changed_params(self.alpha, self.alpha_params), parens=True)} on " \
               f"{self.universe_text}"

    @property
    def short(self) -> str:
        """``momentum_12_1 on sp500_stocks``: what a chart title names."""
        return f"{self.alpha}{_params_text(changed_params(self.alpha, self.alpha_params), parens=True)} on " \
               f"{self.universe}"

    @property
    def universe_text(self) -> str:
        if self.universe.count(",") or self.universe.endswith(" symbols") or self.n_symbols <= 1:
            return self.universe
        return f"{self.universe} ({self.n_symbols} symbols)"

    @property
    def weights_text(self) -> str:
        """``zscore weights, monthly rebalance`` (non-default options appended)."""
        w = self.weights
        method = str(w.get("method") or "zscore")
        extra = [f"n={w['n']}" if w.get("n") else "", f"quantile={w['quantile']}" if w.get("quantile") else "",
                 "long-short" if w.get("long_short") else "",
                 f"gross {w['gross']:g}" if isinstance(w.get("gross"), (int, float)) and w["gross"] != 1 else "",
                 f"net {w['net']:g}" if isinstance(w.get("net"), (int, float)) else "",
                 f"max weight {w['max_weight']:g}" if isinstance(w.get("max_weight"), (int, float)) else ""]
        more = ", ".join(e for e in extra if e)
        return f"{method} weights{f' ({more})' if more else ''}, {w.get('rebalance') or 'daily'} rebalance"

    @property
    def dates_text(self) -> str:
        if self.start is None or self.end is None:
            return "no IC rows"
        return f"{self.start:%Y-%m-%d} – {self.end:%Y-%m-%d}"

    @property
    def option_label(self) -> str:
        """The run selector's entry: alpha, params, universe, weights, dates."""
        made = f" · run {self.created_at:%Y-%m-%d %H:%M}" if self.created_at is not None else ""
        params = _params_text(self.alpha_params) or "default parameters"
        return f"{self.alpha} ({params}) on {self.universe_text} · {self.weights_text} · {self.dates_text}{made}"


def _params_text(params: dict[str, Any], *, parens: bool = False) -> str:
    if not params:
        return ""
    text = ", ".join(f"{k}={v}" for k, v in params.items())
    return f" ({text})" if parens else text


def changed_params(alpha: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters that differ from alpha ``alpha``'s defaults (all of them for an alpha
    this checkout does not know)."""
    try:
        from backlake.alpha import get_alpha

        defaults = get_alpha(alpha).params_model().model_dump(mode="json")
    except (BacklakeError, ImportError, ValueError, KeyError, TypeError):
        return dict(params)
    return {k: v for k, v in params.items() if defaults.get(k) != v}


def universe_label(config: dict[str, Any], symbols: str | None) -> tuple[str, int]:
    """(the universe's name, or its symbols when few and unnamed; its size)."""
    syms = [s for s in str(symbols or "").split(",") if s]
    uni = config.get("universe")
    if isinstance(uni, str) and uni:
        return uni, len(syms)
    if len(syms) <= 4:
        return ", ".join(syms) or "?", len(syms)
    return f"{len(syms)} symbols", len(syms)


def run_label(row: dict[str, Any]) -> str:
    """Any run as the attribution selector lists it: ``<kind> · <strategy> on <universe> ...``."""
    cfg = parse_json(row.get("config"))
    params = parse_json(row.get("params"))
    uni, n = universe_label(cfg, row.get("symbols"))
    on = uni if uni.endswith("symbols") or n <= 1 or "," in uni else f"{uni} ({n} symbols)"
    what = str(row.get("strategy") or "?")
    if row.get("kind") == "alpha" or what == "alpha":
        what = str(params.get("alpha") or "alpha")
        shown = changed_params(what, dict(params.get("alpha_params") or {}))
    else:
        shown = params
    ptxt = _params_text(shown if isinstance(shown, dict) else {}, parens=True)
    created = row.get("created_at")
    when = f" · {pd.Timestamp(created):%Y-%m-%d %H:%M}" if created is not None and not pd.isna(created) else ""
    return f"{row.get('kind')} · {what}{ptxt} on {on}{when}"


def horizon_of(segment: str, prefix: str) -> int | None:
    """5 for ``ic:h5`` with prefix ``ic:h`` (None when it is not such a segment)."""
    if not segment.startswith(prefix):
        return None
    tail = segment[len(prefix):]
    return int(tail) if tail.isdigit() else None


#: Process-wide cache of signal correlations: (lake uri, signals version, days) -> frame.
_CORR_CACHE: dict[tuple[str, int, int], pd.DataFrame] = {}
_CORR_LOCK = threading.Lock()


class AlphaStore:
    """The Alpha page's queries over one session's :class:`LakeStore`."""

    def __init__(self, store: LakeStore) -> None:
        self.store = store

    @property
    def settings(self) -> Any:
        return self.store.settings

    def refresh(self) -> None:
        self.store.refresh()

    def _q(self, sql: str, params: list[Any] | None = None, key: Any = None) -> pd.DataFrame:
        return self.store.query(sql, params or [], key=("alpha", key) if key is not None else None)

    # -- runs --------------------------------------------------------------------------------
    def alpha_runs(self) -> list[AlphaRun]:
        """Completed alpha runs, newest first, with the dates their IC rows cover."""
        df = self._q(
            "SELECT r.run_id, r.params, r.config, r.symbols, timezone('UTC', r.created_at) AS created_at, "
            "d.start, d.end FROM runs r LEFT JOIN (SELECT run_id, min(date) AS start, max(date) AS \"end\" "
            "FROM ic GROUP BY run_id) d ON d.run_id = r.run_id "
            "WHERE r.kind = 'alpha' AND r.status = 'completed' ORDER BY r.created_at DESC, r.run_id",
            key="runs")
        out = []
        for r in df.to_dict("records"):
            params, cfg = parse_json(r["params"]), parse_json(r["config"])
            uni, n = universe_label(cfg, r["symbols"])
            weights = {k: v for k, v in params.items() if k not in ("alpha", "alpha_params")}
            hs = cfg.get("horizons") or []
            out.append(AlphaRun(
                run_id=str(r["run_id"]), alpha=str(params.get("alpha") or "?"),
                alpha_params=dict(params.get("alpha_params") or {}), weights=weights, universe=uni, n_symbols=n,
                start=None if pd.isna(r["start"]) else pd.Timestamp(r["start"]),
                end=None if pd.isna(r["end"]) else pd.Timestamp(r["end"]),
                created_at=None if pd.isna(r["created_at"]) else pd.Timestamp(r["created_at"]),
                horizons=tuple(sorted(int(h) for h in hs if isinstance(h, int))),
                n_quantiles=cfg.get("n_quantiles") if isinstance(cfg.get("n_quantiles"), int) else None))
        return out

    def runs_with_equity(self) -> pd.DataFrame:
        """Every completed run that has an equity curve (what attribution can regress): run_id,
        kind, strategy, symbols, params, config, created_at; newest first."""
        return self._q(
            "SELECT run_id, kind, strategy, symbols, params, config, timezone('UTC', created_at) AS created_at "
            "FROM runs WHERE status = 'completed' AND run_id IN (SELECT DISTINCT run_id FROM equity) "
            "ORDER BY created_at DESC, run_id", key="equity_runs")

    # -- IC ----------------------------------------------------------------------------------
    def horizons(self, run_id: str) -> list[int]:
        """The horizons the run has IC rows for, ascending."""
        df = self._q("SELECT DISTINCT horizon FROM ic WHERE run_id = ? ORDER BY horizon", [run_id],
                     key=("horizons", run_id))
        return [int(h) for h in df["horizon"]]

    def ic_series(self, run_id: str, horizon: int) -> pd.DataFrame:
        """The run's daily IC and Rank IC at ``horizon``: date, ic, rank_ic (ascending)."""
        df = self._q("SELECT date, ic, rank_ic FROM ic WHERE run_id = ? AND horizon = ? ORDER BY date",
                     [run_id, int(horizon)], key=("ic", run_id, int(horizon)))
        if len(df):
            df = df.assign(date=pd.to_datetime(df["date"]))
        return df

    def _segments(self, run_id: str, prefix: str) -> dict[str, dict[str, float | None]]:
        df = self._q("SELECT segment, name, value FROM metrics WHERE run_id = ? AND starts_with(segment, ?)",
                     [run_id, prefix], key=("segments", run_id, prefix))
        out: dict[str, dict[str, float | None]] = {}
        for s, n, v in zip(df["segment"], df["name"], df["value"]):
            out.setdefault(str(s), {})[str(n)] = None if v is None or pd.isna(v) else float(v)
        return out

    def summary(self, run_id: str) -> dict[int, dict[str, float | None]]:
        """horizon -> the stored IC summary (segment ``ic:h{h}``), ascending horizons."""
        segs = self._segments(run_id, "ic:h")
        by_h = {h: m for s, m in segs.items() if (h := horizon_of(s, "ic:h")) is not None}
        return dict(sorted(by_h.items()))

    def quantiles(self, run_id: str) -> dict[int, dict[int, float | None]]:
        """horizon -> quantile (1 = lowest scores) -> mean forward return."""
        segs = self._segments(run_id, "quantiles:h")
        out: dict[int, dict[int, float | None]] = {}
        for s, m in segs.items():
            h = horizon_of(s, "quantiles:h")
            if h is None:
                continue
            qs = {int(n[1:]): v for n, v in m.items() if n.startswith("q") and n[1:].isdigit()}
            out[h] = dict(sorted(qs.items()))
        return dict(sorted(out.items()))

    def decay(self, run_id: str) -> tuple[pd.DataFrame, float | None]:
        """(horizon, mean_ic, mean_rank_ic ascending by horizon; the half-life) from segment
        ``decay``."""
        m = self._segments(run_id, "decay").get("decay", {})
        hs = sorted({h for n in m if (h := horizon_of(n, "mean_ic_h")) is not None})
        df = pd.DataFrame({"horizon": hs, "mean_ic": [m.get(f"mean_ic_h{h}") for h in hs],
                           "mean_rank_ic": [m.get(f"mean_rank_ic_h{h}") for h in hs]}, dtype="float64")
        hl = m.get("half_life")
        return df, (None if hl is None or not math.isfinite(hl) else hl)

    # -- weights and signals -----------------------------------------------------------------
    def turnover(self, run_id: str) -> pd.DataFrame:
        """One row per rebalance after the first: date, turnover (½ Σ|w_t - w_prev| over the
        union of names, a name absent one side counting 0) and gross (Σ|w_t|)."""
        df = self._q("""
            WITH w AS (SELECT date, symbol, weight FROM weights WHERE run_id = ?),
            d AS (SELECT date, lag(date) OVER (ORDER BY date) AS prev FROM (SELECT DISTINCT date FROM w)),
            cur AS (SELECT d.date, w.symbol, w.weight FROM d JOIN w ON w.date = d.date WHERE d.prev IS NOT NULL),
            pre AS (SELECT d.date, w.symbol, w.weight FROM d JOIN w ON w.date = d.prev)
            SELECT coalesce(cur.date, pre.date) AS date,
                   0.5 * sum(abs(coalesce(cur.weight, 0) - coalesce(pre.weight, 0))) AS turnover,
                   sum(abs(coalesce(cur.weight, 0))) AS gross
            FROM cur FULL OUTER JOIN pre ON cur.date = pre.date AND cur.symbol = pre.symbol
            GROUP BY 1 ORDER BY 1""", [run_id], key=("turnover", run_id))
        if len(df):
            df = df.assign(date=pd.to_datetime(df["date"]))
        return df

    def n_rebalances(self, run_id: str) -> int:
        df = self._q("SELECT count(DISTINCT date) AS n FROM weights WHERE run_id = ?", [run_id],
                     key=("n_rebalances", run_id))
        return int(df["n"].iloc[0]) if len(df) else 0

    def coverage(self, run: AlphaRun, symbols: list[str]) -> pd.DataFrame | None:
        """Per date of the run's period: n_scored (universe names the alpha scored, from
        ``signals``), n_universe and coverage = n_scored / n_universe. None when the lake's
        signals hold no rows of the run's alpha and parameters (see :meth:`alpha_id`)."""
        aid = self.alpha_id(run)
        if aid is None or not symbols:
            return None
        marks = ", ".join("?" for _ in symbols)
        params: list[Any] = [aid, *symbols]
        where = ""
        if run.start is not None and run.end is not None:
            where = " AND date BETWEEN ? AND ?"
            params += [run.start.date(), run.end.date()]
        df = self._q(
            f"SELECT date, count(DISTINCT symbol) AS n_scored FROM signals WHERE alpha_id = ? AND symbol IN ({marks}) "
            f"AND score IS NOT NULL AND NOT isnan(score){where} GROUP BY date ORDER BY date", params,
            key=("coverage", aid, tuple(symbols), run.start, run.end))
        if df.empty:
            return None
        n = len(set(symbols))
        return df.assign(date=pd.to_datetime(df["date"]), n_universe=n, coverage=df["n_scored"] / n)

    def symbols(self, run_id: str) -> list[str]:
        df = self._q("SELECT symbols FROM runs WHERE run_id = ? LIMIT 1", [run_id], key=("symbols", run_id))
        return [s for s in str(df["symbols"].iloc[0] if len(df) else "").split(",") if s]

    @staticmethod
    def alpha_id(run: AlphaRun) -> str | None:
        """The ``signals`` id of the run's alpha and parameters (None for an unknown alpha)."""
        try:
            from backlake.alpha import alpha_id

            return alpha_id(run.alpha, run.alpha_params)
        except (BacklakeError, ImportError, ValueError, KeyError):
            return None

    def signal_alphas(self) -> pd.DataFrame:
        """The alphas in ``signals``: alpha_id, alpha, params, n_rows, first, last."""
        return self._q("SELECT alpha_id, any_value(alpha) AS alpha, any_value(params) AS params, count(*) AS n_rows, "
                       "min(date) AS first, max(date) AS last FROM signals GROUP BY alpha_id ORDER BY alpha, alpha_id",
                       key="signal_alphas")

    def signal_correlation(self, days: int = CORRELATION_DAYS) -> tuple[pd.DataFrame, list[str], str]:
        """The mean cross-sectional rank correlation between the lake's alphas (A2's
        ``backlake.alpha.ic.signal_correlation``) over the latest ``days`` dates any alpha
        scored: (alpha_a, alpha_b, corr; the labels in order; what the dates were). Cached per
        lake and ``signals`` version across sessions."""
        alphas = self.signal_alphas()
        labels = _labels(alphas)
        if len(alphas) < 2:
            return pd.DataFrame(columns=["alpha_a", "alpha_b", "corr"]), list(labels.values()), ""
        key = (self.settings.lake_uri, self._signals_version(), int(days))
        with _CORR_LOCK:
            if key in _CORR_CACHE:
                hit = _CORR_CACHE[key]
                return hit, list(hit.attrs["labels"]), str(hit.attrs["span"])
        rows = self.store.query(
            "WITH d AS (SELECT DISTINCT date FROM signals ORDER BY date DESC LIMIT ?) "
            "SELECT s.alpha_id, s.date, s.symbol, s.score FROM signals s JOIN d ON s.date = d.date",
            [int(days)])
        dates = np.sort(rows["date"].unique())
        syms = sorted(rows["symbol"].unique())
        di = {d: i for i, d in enumerate(dates)}
        sj = {s: j for j, s in enumerate(syms)}
        mats: dict[str, np.ndarray] = {}
        for aid, grp in rows.groupby("alpha_id", sort=True):
            mat = np.full((len(dates), len(syms)), np.nan)
            mat[grp["date"].map(di).to_numpy(), grp["symbol"].map(sj).to_numpy()] = grp["score"].to_numpy(float)
            mats[labels[str(aid)]] = mat
        from backlake.alpha.ic import signal_correlation

        frame = signal_correlation(mats).to_pandas()
        span = (f"{len(dates)} dates, {pd.Timestamp(dates[0]):%Y-%m-%d} – {pd.Timestamp(dates[-1]):%Y-%m-%d}, "
                f"{len(syms)} symbols" if len(dates) else "")
        order = [labels[a] for a in alphas["alpha_id"] if labels[a] in mats]
        frame.attrs.update(labels=order, span=span)
        with _CORR_LOCK:
            _CORR_CACHE[key] = frame
        return frame, order, span

    def _signals_version(self) -> int:
        """The ``signals`` table's latest version, read without creating anything (pages never
        write); -1 when there is no such table."""
        from deltalake import DeltaTable

        from backlake.lake import Lake

        lake = Lake(self.settings, check=False)
        if not lake.exists("signals"):
            return -1
        return int(DeltaTable(lake.uri("signals"), storage_options=lake.storage_options or None).version())

    # -- attribution -------------------------------------------------------------------------
    def attribution(self, run_id: str) -> dict[str, dict[str, float | None]]:
        """model -> the stored attribution metrics (segment ``attribution:<model>``)."""
        segs = self._segments(run_id, "attribution:")
        return {s.split(":", 1)[1]: m for s, m in sorted(segs.items())}

    def exposures(self, run_id: str, model: str) -> pd.DataFrame:
        """The run's rolling betas of ``model``: date, factor, beta."""
        df = self._q("SELECT date, factor, beta FROM factor_exposures WHERE run_id = ? AND model = ? "
                     "ORDER BY date, factor", [run_id, model], key=("exposures", run_id, model))
        if len(df):
            df = df.assign(date=pd.to_datetime(df["date"]))
        return df


def _labels(alphas: pd.DataFrame) -> dict[str, str]:
    """alpha_id -> a readable label: the alpha's name, with its params when one name has
    several parameter sets."""
    counts = alphas["alpha"].value_counts().to_dict() if len(alphas) else {}
    out = {}
    for aid, name, params in zip(alphas["alpha_id"], alphas["alpha"], alphas["params"]):
        label = str(name)
        if counts.get(name, 0) > 1:
            label += _params_text(parse_json(params), parens=True)
        out[str(aid)] = label
    return out
