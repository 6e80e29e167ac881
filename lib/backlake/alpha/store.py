"""Signals in the lake: incremental refresh, full rebuild, reads.

``refresh_signals`` computes an alpha on the universe's daily bars from the lake and writes the
``signals`` rows of its ``alpha_id`` (name + parameters; the table is partitioned by it):

- incremental (default): only dates after the last date stored for the alpha_id and the
  universe's symbols are computed (reading the bars from far enough back for the alpha's
  look-back) and appended; a universe symbol with no row yet gets its whole history. The commit
  is conditional: rows whose key (alpha_id, date, symbol) the table already holds are dropped,
  and a commit that raced another is re-decided on the table's new version, so re-running, or
  two refreshes at once, never duplicate a row.
- ``full_rebuild=True``: every date is recomputed and the alpha_id's rows of the universe's
  symbols replaced in one commit (a new table version; other alphas, and this alpha's rows of
  symbols outside the universe, e.g. another universe's, untouched; earlier versions stay
  readable by time travel). When the stored rows already equal the recomputed ones nothing is
  written.

Scores depend on a finite look-back window only, so both give identical rows for the same dates
(the tests check it). A symbol added to the universe later gets its history with the next
refresh. Bars revised in the lake after their dates were scored are picked up by a full rebuild
only.

Example::

    res = refresh_signals(lake, "momentum_12_1", {}, list(UNIVERSES["sp500_stocks"]))
    res.rows_added, res.first_date, res.last_date, res.version
    read_signals(lake, res.alpha_id, start=dt.date(2020, 1, 1))
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from deltalake import DeltaTable

from backlake.alpha.panel import panel_from_bars
from backlake.alpha.registry import AlphaParams, alpha_id, get_alpha, validate_alpha_params
from backlake.alpha.signals import compute_signals
from backlake.errors import ConfigError
from backlake.lake.store import Lake

__all__ = ["RefreshResult", "refresh_signals", "read_signals", "load_panel_bars", "stored_alphas"]

_KEY = ["alpha_id", "date", "symbol"]


@dataclass(frozen=True)
class RefreshResult:
    """What a refresh wrote: ``rows_added`` (0: nothing new), the first / last date of those
    rows (None when none), the ``signals`` table version after it."""

    alpha: str
    alpha_id: str
    rows_added: int
    first_date: dt.date | None
    last_date: dt.date | None
    version: int
    full_rebuild: bool = False


def _scan(lake: Lake, table: str, version: int | None = None) -> pl.LazyFrame:
    return pl.scan_delta(lake.table(table, version), storage_options=lake.storage_options or None)


def _scan_table(lake: Lake, dt_: DeltaTable) -> pl.LazyFrame:
    return pl.scan_delta(dt_, storage_options=lake.storage_options or None)


def _check_universe(universe: Sequence[str]) -> list[str]:
    if isinstance(universe, str):
        raise ConfigError(f"universe={universe!r} must be a list of symbols, e.g. ['AAPL', 'MSFT']")
    symbols = [str(s).strip() for s in universe]
    if not symbols or any(not s for s in symbols):
        raise ConfigError(f"universe={list(universe)!r} must list at least one non-empty symbol, e.g. ['AAPL', 'MSFT']")
    if len(set(symbols)) != len(symbols):
        raise ConfigError(f"universe={symbols!r} lists a symbol twice")
    return symbols


def load_panel_bars(
    lake: Lake, symbols: Sequence[str], *, timeframe: str = "1d", since: dt.date | None = None,
    end: dt.date | None = None,
) -> pl.DataFrame:
    """The bars of ``symbols`` at ``timeframe`` from one read of ``bars`` (latest version),
    with dates ``since .. end`` (UTC dates, inclusive; None: unbounded)."""
    lf = _scan(lake, "bars").filter(pl.col("symbol").is_in(list(symbols)) & (pl.col("timeframe") == timeframe))
    if since is not None:
        lf = lf.filter(pl.col("ts") >= dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC))
    if end is not None:
        lf = lf.filter(pl.col("ts") < dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC))
    return lf.select("symbol", "ts", "timeframe", "open", "high", "low", "close", "volume").collect()


def _missing_symbols(lake: Lake, symbols: list[str]) -> list[str]:
    """Symbols with no file in ``bars`` (from the table's metadata; the table is partitioned by symbol)."""
    adds = pa.table(lake.table("bars").get_add_actions(flatten=True))
    col = "partition.symbol"
    have = set(adds[col].to_pylist()) if col in adds.column_names else set()
    return [s for s in symbols if s not in have]


def _last_date(lake: Lake, aid: str, symbols: Sequence[str]) -> dt.date | None:
    """The last stored date of ``aid`` over ``symbols``; None when one of them has no row yet (a
    symbol new to this alpha, e.g. another universe's: the whole history is computed and only
    the rows not stored are appended)."""
    got = (_scan(lake, "signals").filter((pl.col("alpha_id") == aid) & pl.col("symbol").is_in(list(symbols)))
           .group_by("symbol").agg(pl.col("date").max()).collect())
    if got.height < len(set(symbols)):
        return None
    value = got["date"].max()
    return value if isinstance(value, dt.date) else None


def _sorted(df: pl.DataFrame) -> pl.DataFrame:
    return df.sort("date", "symbol")


def refresh_signals(
    lake: Lake, name: str, params: Mapping[str, Any] | AlphaParams | None, universe: Sequence[str], *,
    full_rebuild: bool = False, end: dt.date | None = None, timeframe: str = "1d",
) -> RefreshResult:
    """Compute alpha ``name`` (``params`` validated) on ``universe``'s bars from the lake and
    write its ``signals`` rows: incrementally (dates after the last stored one of the universe's
    symbols, up to ``end``; a symbol with no row yet gets its whole history) or, with
    ``full_rebuild``, all dates up to ``end`` replacing the alpha_id's rows of the universe's
    symbols (other symbols' rows stay). Both are
    idempotent and safe to run concurrently. ConfigError on bad input, before anything is read
    beyond the bars table's metadata."""
    p = validate_alpha_params(name, params)
    get_alpha(name)
    aid = alpha_id(name, p)
    symbols = _check_universe(universe)
    missing = _missing_symbols(lake, symbols)
    if missing:
        raise ConfigError(f"universe symbol(s) {missing} have no bars in the lake ({lake.root}): ingest them first "
                          "(backlake ingest / the demo) or drop them from the universe")
    lookback = p.history_bars()
    what = f"signals of {name} ({aid})"

    if full_rebuild:
        bars = load_panel_bars(lake, symbols, timeframe=timeframe, end=end)
        if bars.height == 0:
            raise ConfigError(f"no {timeframe} bars for {symbols} in the lake up to {end}: ingest daily bars first")
        rows = _sorted(compute_signals(panel_from_bars(bars, timeframe, symbols=symbols), name, p, end=end))

        def build_replace(table: DeltaTable) -> pl.DataFrame | None:
            stored = _sorted(_scan_table(lake, table).filter(
                (pl.col("alpha_id") == aid) & pl.col("symbol").is_in(symbols)).collect())
            return None if stored.select(rows.columns).equals(rows) else rows

        # only this universe's rows: the alpha's rows of other symbols (another universe) stay
        listed = ", ".join("'" + s.replace("'", "''") + "'" for s in symbols)
        written = lake.replace_checked("signals", build_replace, f"alpha_id = '{aid}' AND symbol IN ({listed})",
                                       f"rebuild {what}")
        return _result(lake, name, aid, rows if written else rows.clear(), full_rebuild=True)

    last = _last_date(lake, aid, symbols)
    if last is not None and end is not None and last >= end:
        return _result(lake, name, aid, None)
    # calendar days that surely hold `lookback` trading days before the first new date
    margin = dt.timedelta(days=math.ceil(lookback * 1.6) + 20)
    since = None if last is None else last - margin
    bars = load_panel_bars(lake, symbols, timeframe=timeframe, since=since, end=end)
    start = None if last is None else last + dt.timedelta(days=1)
    panel = panel_from_bars(bars, timeframe, symbols=symbols)
    if start is not None and since is not None:
        first_new = int((panel.dates < np.datetime64(start, "D")).sum())
        if first_new < len(panel.dates) and first_new < lookback:  # not enough history in the margin: read it all
            bars = load_panel_bars(lake, symbols, timeframe=timeframe, end=end)
            panel = panel_from_bars(bars, timeframe, symbols=symbols)
    if last is None and bars.height == 0:
        raise ConfigError(f"no {timeframe} bars for {symbols} in the lake: ingest daily bars first")
    rows = _sorted(compute_signals(panel, name, p, start=start, end=end))

    def build_append(table: DeltaTable) -> pl.DataFrame | None:
        if rows.height == 0:
            return None
        first = rows["date"].min()
        stored = (_scan_table(lake, table)
                  .filter((pl.col("alpha_id") == aid) & (pl.col("date") >= first))
                  .select(_KEY).collect())
        return rows.join(stored, on=_KEY, how="anti") if stored.height else rows

    written_rows: list[pl.DataFrame] = []

    def build(table: DeltaTable) -> pl.DataFrame | None:
        new = build_append(table)
        written_rows[:] = [new] if new is not None else []
        return new

    lake.append_checked("signals", build, f"refresh {what}")
    added = written_rows[0] if written_rows else None
    return _result(lake, name, aid, added)


def _result(
    lake: Lake, name: str, aid: str, added: pl.DataFrame | None, *, full_rebuild: bool = False
) -> RefreshResult:
    n = 0 if added is None else added.height
    first = added["date"].min() if added is not None and n else None
    last = added["date"].max() if added is not None and n else None
    return RefreshResult(name, aid, n, first if isinstance(first, dt.date) else None,
                         last if isinstance(last, dt.date) else None, lake.version("signals"), full_rebuild)


def read_signals(
    lake: Lake, alpha_id: str, start: dt.date | None = None, end: dt.date | None = None, version: int | None = None,
) -> pl.DataFrame:
    """The stored signals of ``alpha_id`` (dates ``start .. end`` inclusive; the table at
    ``version``, latest by default), sorted by date then symbol."""
    lf = _scan(lake, "signals", version).filter(pl.col("alpha_id") == alpha_id)
    if start is not None:
        lf = lf.filter(pl.col("date") >= start)
    if end is not None:
        lf = lf.filter(pl.col("date") <= end)
    return lf.sort("date", "symbol").collect()


def stored_alphas(lake: Lake) -> pl.DataFrame:
    """One row per stored alpha_id: alpha, alpha_id, params, first_date, last_date, rows, symbols."""
    return (_scan(lake, "signals")
            .group_by("alpha", "alpha_id", "params")
            .agg(pl.col("date").min().alias("first_date"), pl.col("date").max().alias("last_date"),
                 pl.len().cast(pl.Int64).alias("rows"), pl.col("symbol").n_unique().cast(pl.Int64).alias("symbols"))
            .sort("alpha", "alpha_id").collect())
