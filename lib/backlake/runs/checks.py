"""Checks of configs against what the lake holds, made before any flow, task or write.

For each config: every universe symbol has bars of the config's timeframe (else: which
timeframes it has, or the closest symbol the lake has), the dates overlap the data with at
least two bars, the benchmark symbol (when one is named) covers the period, and a strategy
that needs intraday bars gets them. Problems of a list of configs are reported together,
each prefixed by its position, as one :class:`~backlake.errors.ConfigError`.

Example::

    check_configs(lake, configs)   # raises ConfigError listing every problem, or returns
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from backlake._suggest import closest
from backlake.config import INTRADAY_TIMEFRAMES, BacktestConfig
from backlake.data.schema import date_filter
from backlake.errors import ConfigError
from backlake.lake.store import Lake
from backlake.strategies import get_strategy

__all__ = ["Coverage", "coverage", "config_problems", "check_configs"]

_BENCHMARK_KEYWORDS = ("asset", "equal_weight")


@dataclass
class Coverage:
    """What the lake holds of the symbols asked about: their (symbol, timeframe, ts) rows, read
    once, and each (symbol, timeframe)'s (first ts, last ts, bars); every symbol of the lake
    is looked up only when a message needs it (a missing symbol's closest name)."""

    rows: pl.DataFrame
    spans: dict[tuple[str, str], tuple[dt.datetime, dt.datetime, int]]
    lake_symbols: Callable[[], list[str]]

    def has(self, symbol: str) -> bool:
        return any(s == symbol for s, _ in self.spans)

    def timeframes(self, symbol: str) -> list[str]:
        return sorted(tf for s, tf in self.spans if s == symbol)

    def bars_within(self, cfg: BacktestConfig, symbol: str) -> int:
        return self.rows.filter((pl.col("symbol") == symbol) & (pl.col("timeframe") == cfg.timeframe)
                                & date_filter(cfg.start, cfg.end)).height


def coverage(lake: Lake, symbols: Sequence[str], version: int | None = None) -> Coverage:
    """The rows and spans of ``symbols`` in ``bars`` (at ``version``, the latest by default)."""
    if not lake.exists("bars"):
        return Coverage(pl.DataFrame(), {}, list)
    rows = lake.read("bars", version=version, columns=["symbol", "timeframe", "ts"],
                     where={"symbol": sorted(set(symbols))})
    spans = {
        (s, tf): (lo, hi, int(n))
        for s, tf, lo, hi, n in rows.group_by("symbol", "timeframe").agg(
            pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi"), pl.len().alias("n")).iter_rows()
    }

    def lake_symbols() -> list[str]:  # from the files' partition values: no data read
        adds = pa.table(lake.table("bars", version).get_add_actions(flatten=True))
        return sorted(set(adds["partition.symbol"].to_pylist())) if adds.num_rows else []

    return Coverage(rows, spans, lake_symbols)


def _missing_symbol(what: str, symbol: str, cov: Coverage) -> str:
    known = cov.lake_symbols()
    hint = closest(symbol, known)
    did = f"did you mean {hint!r}? Otherwise " if hint else ""
    return (f"{what} {symbol!r} is not in the lake: {did}ingest it (`backlake ingest`) or pick one of the "
            f"{len(known)} symbol(s) it holds")


def config_problems(cfg: BacktestConfig, cov: Coverage) -> list[str]:
    """Every problem of ``cfg`` against the lake's coverage (empty: fine)."""
    problems: list[str] = []
    spec = get_strategy(cfg.strategy)
    if spec.intraday_only and cfg.timeframe not in INTRADAY_TIMEFRAMES:
        problems.append(f"timeframe={cfg.timeframe!r}: strategy {cfg.strategy!r} needs intraday bars; "
                        f"use one of {', '.join(INTRADAY_TIMEFRAMES)}")
    if cfg.strategy == "alpha":  # daily bars only; a long-short alpha needs direction long_short
        from backlake.strategies.alpha import AlphaStrategyParams, config_problems as alpha_problems

        params = cfg.strategy_params()
        if isinstance(params, AlphaStrategyParams):
            problems += alpha_problems(cfg.timeframe, cfg.direction, params)
    for s in cfg.symbols:
        if not cov.has(s):
            problems.append(_missing_symbol("universe symbol", s, cov))
            continue
        span = cov.spans.get((s, cfg.timeframe))
        if span is None:
            tfs = cov.timeframes(s)
            problems.append(f"timeframe={cfg.timeframe!r} but {s} has {', '.join(tfs)} bars: set timeframe to "
                            f"{tfs[0]!r} or ingest {cfg.timeframe} bars of {s}")
            continue
        lo, hi, n = span
        within = n if not (cfg.start or cfg.end) else cov.bars_within(cfg, s)
        if (cfg.start and cfg.start > hi.date()) or (cfg.end and cfg.end < lo.date()):
            problems.append(f"start={cfg.start}, end={cfg.end}: {s} {cfg.timeframe} bars cover {lo:%Y-%m-%d} to "
                            f"{hi:%Y-%m-%d}; move the dates inside that range")
        elif within < 2:
            problems.append(f"start={cfg.start}, end={cfg.end}: fewer than 2 {s} {cfg.timeframe} bars in that "
                            f"range (the data covers {lo:%Y-%m-%d} to {hi:%Y-%m-%d}); widen the dates")
    b = cfg.benchmark
    if b and b not in _BENCHMARK_KEYWORDS and b not in cfg.symbols:
        if not cov.has(b):
            problems.append(_missing_symbol("benchmark", b, cov) + " (or use 'asset' or 'equal_weight')")
        elif (b, cfg.timeframe) not in cov.spans:
            problems.append(f"benchmark {b!r} has no {cfg.timeframe} bars (it has {', '.join(cov.timeframes(b))}); "
                            "choose a benchmark with bars of the config's timeframe")
        else:
            lo, _, _ = cov.spans[(b, cfg.timeframe)]
            first = cfg.start or min((cov.spans[(s, cfg.timeframe)][0].date() for s in cfg.symbols
                                      if (s, cfg.timeframe) in cov.spans), default=None)
            if first is not None and lo.date() > first:
                problems.append(f"benchmark {b!r} starts {lo:%Y-%m-%d}, after the backtest's first bar "
                                f"({first}); choose a benchmark that covers the backtest or set start")
    return problems


def check_configs(lake: Lake, configs: Sequence[BacktestConfig], *, version: int | None = None) -> None:
    """Raise one ConfigError listing every problem of ``configs`` against the lake (each
    prefixed with ``configs[i]`` when there are several); return when there is none."""
    symbols = {s for c in configs for s in c.symbols} | {c.benchmark for c in configs if c.benchmark}
    cov = coverage(lake, sorted(symbols), version)
    lines: list[str] = []
    for i, cfg in enumerate(configs):
        for p in config_problems(cfg, cov):
            lines.append(f"configs[{i}]: {p}" if len(configs) > 1 else p)
    if lines:
        shown = lines[:20] + ([f"... and {len(lines) - 20} more"] if len(lines) > 20 else [])
        raise ConfigError("\n".join(shown))
