"""Live vs backtest: live P&L in the lake, linked to a completed backtest, and the overlay that
says how far live trading has drifted from it.

The overlay (:func:`compute_overlay`, pure: frames in, :class:`Overlay` out):

- live and backtest daily returns aligned on the live dates that fall in the backtest's period
  (a left join: a live date without a backtest bar, a no-trade day, counts as a backtest return
  of 0); live dates outside the backtest's period are counted and left out;
- cumulative returns ``cum = cumprod(1 + r) - 1`` of both;
- annualised tracking error ``std(live - bt, ddof=1) * sqrt(252)`` (None below 2 dates) and
  its rolling series over ``rolling_window_days`` with ``min_periods`` = the window;
- cumulative divergence ``|cum_live[-1] - cum_bt[-1]|``;
- divergence start date: the end date of the first (full) window of ``rolling_window_days``
  aligned dates whose maximum of ``|cum_live_t - cum_bt_t|`` exceeds ``divergence_threshold``;
- the alert level, RED > YELLOW > NONE: RED when the cumulative divergence exceeds
  ``divergence_threshold`` (from 2 aligned dates on); YELLOW when the rolling TE exceeds
  ``tracking_error_threshold`` on ``consecutive_days_for_yellow`` consecutive aligned dates up
  to the last one (dates where the rolling TE is NaN are skipped: they neither count nor reset
  the streak) and at least ``rolling_window_days`` live dates have a backtest bar; otherwise
  NONE, with the reason ("insufficient data" when too few dates overlap);
- basis: live P&L is net of costs, so the backtest's net returns are used; a backtest that
  recorded no per-bar costs (the ``equity`` cost columns absent or null) is compared as it is
  (gross) with a warning and its alerts disabled ("basis mismatch"). No overlapping dates: a
  warning and no overlay.

The level is also computed for every aligned date (the level the monitor would have raised
that day), so a page can show how it developed.

The lake side (:func:`ingest_live`, :func:`link_strategy`, :func:`load_overlay`,
:func:`record_alert`...) reads and writes ``live_pnl``, ``live_links`` and ``alerts``; it
needs no Prefect and no Panel either.

Example::

    cfg = OverlayConfig(tracking_error_threshold=0.04)
    ov = compute_overlay(live, backtest, cfg)          # frames of date, ret
    ov.level, ov.reasons, ov.tracking_error, ov.divergence_start
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import polars as pl
from pydantic import Field, ValidationError

from backlake._model import StrictModel
from backlake.errors import ConfigError, DataValidationError

if TYPE_CHECKING:
    from deltalake import DeltaTable

    from backlake.lake import Lake, LakeConnection

__all__ = [
    "OverlayConfig", "Overlay", "Level", "LEVELS", "TRADING_DAYS", "compute_overlay", "cumulative",
    "tracking_error", "rolling_tracking_error", "divergence_start", "yellow_streaks", "daily_returns",
    "LiveValidationReport", "LiveIngestReport", "read_live_file", "validate_live", "ingest_live",
    "link_strategy", "links", "live_strategies", "live_returns", "backtest_returns", "load_overlay",
    "alert_row", "record_alert", "alert_recorded", "alerts_history", "worse_fills_feed",
]

Level = Literal["NONE", "YELLOW", "RED"]
#: Alert levels, mildest first.
LEVELS: tuple[Level, ...] = ("NONE", "YELLOW", "RED")
#: Trading days per year: the annualisation of the daily tracking error.
TRADING_DAYS = 252


# -- the configuration ---------------------------------------------------------------------------
class OverlayConfig(StrictModel):
    """Thresholds of the live vs backtest overlay (fractions: 0.05 is 5 %)."""

    tracking_error_threshold: float = Field(
        default=0.05, gt=0, le=10,
        description="Annualised rolling tracking error above which days count toward YELLOW.")
    divergence_threshold: float = Field(
        default=0.10, gt=0, le=100, description="Cumulative return gap above which the level is RED.")
    consecutive_days_for_yellow: int = Field(
        default=5, ge=1, le=10_000, description="Consecutive days of rolling TE above its threshold for YELLOW.")
    rolling_window_days: int = Field(
        default=20, ge=2, le=10_000, description="Window of the rolling tracking error and of the divergence start.")

    @classmethod
    def parse(cls, data: Mapping[str, Any] | None = None, **overrides: Any) -> OverlayConfig:
        """A config from ``data`` and keyword overrides (None values ignored); a bad value is a
        ConfigError naming the field, the value and the allowed range."""
        values = {**dict(data or {}), **{k: v for k, v in overrides.items() if v is not None}}
        try:
            return cls.model_validate(values)
        except ValidationError as e:
            problems = []
            for err in e.errors():
                if not err["loc"]:  # the strict base's checks (unknown keys, strings for numbers) name the field
                    problems.append("overlay config " + str(err["msg"]).removeprefix("Value error, "))
                    continue
                name = ".".join(str(p) for p in err["loc"])
                f = cls.model_fields.get(name)
                bounds = ""
                if f is not None:
                    lo = [m for m in f.metadata if hasattr(m, "gt") or hasattr(m, "ge")]
                    hi = [m for m in f.metadata if hasattr(m, "lt") or hasattr(m, "le")]
                    parts = [f"> {m.gt}" if getattr(m, "gt", None) is not None else f">= {m.ge}" for m in lo]
                    parts += [f"< {m.lt}" if getattr(m, "lt", None) is not None else f"<= {m.le}" for m in hi]
                    bounds = f"; use a {'whole number' if f.annotation is int else 'number'} " + " and ".join(parts)
                    bounds += f" (default {f.default})"
                value = err.get("input")
                problems.append(f"overlay config {name}={value!r}: {err['msg']}{bounds}")
            raise ConfigError("; ".join(problems)) from None


# -- the formulas ----------------------------------------------------------------------------------
def cumulative(returns: Sequence[float] | pl.Series) -> list[float]:
    """``cumprod(1 + r) - 1``."""
    out: list[float] = []
    acc = 1.0
    for r in returns:
        acc *= 1.0 + float(r)
        out.append(acc - 1.0)
    return out


def _std(xs: Sequence[float]) -> float:
    n = len(xs)
    mean = math.fsum(xs) / n
    return math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))


def tracking_error(live: Sequence[float], backtest: Sequence[float]) -> float | None:
    """``std(live - bt, ddof=1) * sqrt(252)``; None below 2 dates."""
    if len(live) != len(backtest):
        raise ValueError(f"tracking_error: {len(live)} live vs {len(backtest)} backtest returns")
    if len(live) < 2:
        return None
    return _std([a - b for a, b in zip(live, backtest)]) * math.sqrt(TRADING_DAYS)


def rolling_tracking_error(live: Sequence[float], backtest: Sequence[float], window: int) -> list[float]:
    """The tracking error of each trailing ``window`` of dates (NaN until a full window:
    ``min_periods`` = the window)."""
    diff = [a - b for a, b in zip(live, backtest)]
    return [_std(diff[i + 1 - window: i + 1]) * math.sqrt(TRADING_DAYS) if i + 1 >= window else math.nan
            for i in range(len(diff))]


def divergence_start(gaps: Sequence[float], dates: Sequence[dt.date], window: int, threshold: float) -> dt.date | None:
    """The end date of the first full window of ``window`` dates whose largest gap
    ``|cum_live_t - cum_bt_t|`` exceeds ``threshold`` (None: no such window)."""
    for end in range(window - 1, len(gaps)):
        if max(gaps[end + 1 - window: end + 1]) > threshold:
            return dates[end]
    return None


def yellow_streaks(rolling_te: Sequence[float], threshold: float) -> list[int]:
    """The run of consecutive dates with rolling TE above ``threshold``, at each date: a date
    above adds one, a date at or below resets to 0, a NaN date leaves it as it was."""
    out: list[int] = []
    streak = 0
    for te in rolling_te:
        if te is None or (isinstance(te, float) and math.isnan(te)):
            pass
        elif te > threshold:
            streak += 1
        else:
            streak = 0
        out.append(streak)
    return out


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x * 100:.2f}%"


@dataclass(frozen=True)
class Overlay:
    """The live vs backtest overlay of one strategy (see the module docstring).

    ``frame``: one row per aligned date: date, live, backtest (daily returns), bt_bar (whether
    the backtest has a bar that date), cum_live, cum_bt, gap (``|cum_live - cum_bt|``),
    rolling_te, streak, level (the level as of that date).
    """

    config: OverlayConfig
    frame: pl.DataFrame
    level: Level
    reasons: list[str]
    enabled: bool
    alerts_enabled: bool
    basis: Literal["net", "gross"]
    warnings: list[str] = field(default_factory=list)
    tracking_error: float | None = None
    divergence: float | None = None
    divergence_start: dt.date | None = None
    rolling_te: float | None = None
    n_live: int = 0
    n_aligned: int = 0
    n_overlap: int = 0
    n_outside: int = 0
    cum_live: float | None = None
    cum_backtest: float | None = None
    strategy: str | None = None
    run_id: str | None = None
    live_last: dt.date | None = None

    @property
    def last_date(self) -> dt.date | None:
        return self.frame["date"][-1] if self.frame.height else None

    @property
    def start_date(self) -> dt.date | None:
        return self.frame["date"][0] if self.frame.height else None

    @property
    def message(self) -> str:
        return "; ".join([*self.reasons, *self.warnings])

    def to_dict(self) -> dict[str, Any]:
        """The figures (no frame) as JSON-ready values."""
        def iso(d: dt.date | None) -> str | None:
            return d.isoformat() if d else None

        return {
            "strategy": self.strategy, "run_id": self.run_id, "level": self.level, "reasons": self.reasons,
            "warnings": self.warnings, "enabled": self.enabled, "alerts_enabled": self.alerts_enabled,
            "basis": self.basis, "tracking_error": self.tracking_error, "rolling_te": self.rolling_te,
            "divergence": self.divergence, "divergence_start": iso(self.divergence_start),
            "cum_live": self.cum_live, "cum_backtest": self.cum_backtest, "start": iso(self.start_date),
            "end": iso(self.last_date), "n_live": self.n_live, "n_aligned": self.n_aligned,
            "n_overlap": self.n_overlap, "n_outside": self.n_outside, "config": self.config.model_dump(),
        }


_FRAME_SCHEMA = {
    "date": pl.Date, "live": pl.Float64, "backtest": pl.Float64, "bt_bar": pl.Boolean, "cum_live": pl.Float64,
    "cum_bt": pl.Float64, "gap": pl.Float64, "rolling_te": pl.Float64, "streak": pl.Int64, "level": pl.String,
}


def _as_returns(df: pl.DataFrame, what: str) -> pl.DataFrame:
    missing = [c for c in ("date", "ret") if c not in df.columns]
    if missing:
        raise ValueError(f"{what} returns need columns date, ret; missing {missing}")
    return (df.select(pl.col("date").cast(pl.Date), pl.col("ret").cast(pl.Float64))
            .filter(pl.col("date").is_not_null() & pl.col("ret").is_not_null() & pl.col("ret").is_finite())
            .unique("date", keep="first", maintain_order=True).sort("date"))


def compute_overlay(
    live: pl.DataFrame, backtest: pl.DataFrame, config: OverlayConfig | None = None, *, has_costs: bool = True,
    strategy: str | None = None, run_id: str | None = None,
) -> Overlay:
    """The overlay of ``live`` on ``backtest`` (frames of ``date, ret``: daily returns as
    fractions). ``has_costs``: whether the backtest recorded its costs (False: compared gross,
    alerts disabled)."""
    cfg = config or OverlayConfig()
    lv, bt = _as_returns(live, "live"), _as_returns(backtest, "backtest")
    basis: Literal["net", "gross"] = "net" if has_costs else "gross"
    warnings: list[str] = []
    common: dict[str, Any] = {"config": cfg, "basis": basis, "n_live": lv.height, "strategy": strategy,
                              "run_id": run_id, "live_last": lv["date"].max() if lv.height else None}
    if lv.height == 0 or bt.height == 0:
        what = "no live returns" if lv.height == 0 else "the backtest has no returns"
        warnings.append(f"no overlapping dates: {what}; overlay disabled")
        return Overlay(frame=pl.DataFrame(schema=_FRAME_SCHEMA), level="NONE", reasons=["overlay disabled: " + what],
                       enabled=False, alerts_enabled=False, warnings=warnings, **common)
    lo, hi = cast(dt.date, bt["date"].min()), cast(dt.date, bt["date"].max())
    lv_lo, lv_hi = cast(dt.date, lv["date"].min()), cast(dt.date, lv["date"].max())
    inside = lv.filter(pl.col("date").is_between(lo, hi))
    n_outside = lv.height - inside.height
    aligned = (inside.rename({"ret": "live"})
               .join(bt.rename({"ret": "backtest"}).with_columns(bt_bar=pl.lit(True)), on="date", how="left")
               .with_columns(pl.col("backtest").fill_null(0.0), pl.col("bt_bar").fill_null(False)).sort("date"))
    n_overlap = int(aligned["bt_bar"].sum())
    if n_outside:
        warnings.append(f"{n_outside} live date(s) outside the backtest's period {lo} to {hi} are left out")
    if n_overlap == 0:
        warnings.append(f"no overlapping dates: the live dates ({lv_lo} to {lv_hi}) and the "
                        f"backtest ({lo} to {hi}) have none in common; overlay disabled")
        return Overlay(frame=pl.DataFrame(schema=_FRAME_SCHEMA), level="NONE",
                       reasons=["overlay disabled: no overlapping dates"], enabled=False, alerts_enabled=False,
                       warnings=warnings, n_outside=n_outside, **common)
    if not has_costs:
        warnings.append("basis mismatch: the backtest recorded no costs, so it is compared gross against net "
                        "live P&L; alerts are disabled (rerun the backtest to record its costs)")

    dates: list[dt.date] = aligned["date"].to_list()
    live_r: list[float] = aligned["live"].to_list()
    bt_r: list[float] = aligned["backtest"].to_list()
    n = len(dates)
    w = cfg.rolling_window_days
    cum_l, cum_b = cumulative(live_r), cumulative(bt_r)
    gaps = [abs(a - b) for a, b in zip(cum_l, cum_b)]
    rte = rolling_tracking_error(live_r, bt_r, w)
    streaks = yellow_streaks(rte, cfg.tracking_error_threshold)
    overlap_so_far = list(aligned["bt_bar"].cast(pl.Int64).cum_sum())
    levels: list[Level] = []
    for i in range(n):
        if not has_costs:
            levels.append("NONE")
        elif i >= 1 and gaps[i] > cfg.divergence_threshold:
            levels.append("RED")
        elif overlap_so_far[i] >= w and streaks[i] >= cfg.consecutive_days_for_yellow:
            levels.append("YELLOW")
        else:
            levels.append("NONE")
    te = tracking_error(live_r, bt_r)
    div = gaps[-1]
    start = divergence_start(gaps, dates, w, cfg.divergence_threshold)
    last_rte = rte[-1] if not math.isnan(rte[-1]) else None

    reasons: list[str] = []
    level = levels[-1]
    red = n >= 2 and div > cfg.divergence_threshold
    yellow = n_overlap >= w and streaks[-1] >= cfg.consecutive_days_for_yellow
    if red:
        reasons.append(f"cumulative divergence {_pct(div)} > {_pct(cfg.divergence_threshold)} "
                       f"(live {_pct(cum_l[-1])} vs backtest {_pct(cum_b[-1])})")
    if yellow:
        reasons.append(f"rolling {w}-day tracking error above {_pct(cfg.tracking_error_threshold)} for "
                       f"{streaks[-1]} consecutive date(s) (latest {_pct(last_rte)})")
    if not red and not yellow:
        if n < 2:
            reasons.append(f"insufficient data: {n} aligned date (the divergence needs 2)")
        elif n_overlap < w:
            reasons.append(f"insufficient data: {n_overlap} overlapping date(s), the rolling tracking error needs "
                           f"{w}; divergence {_pct(div)} within {_pct(cfg.divergence_threshold)}")
        else:
            reasons.append(f"within thresholds: divergence {_pct(div)} <= {_pct(cfg.divergence_threshold)}; rolling "
                           f"TE {_pct(last_rte)} (threshold {_pct(cfg.tracking_error_threshold)}) above it on "
                           f"{streaks[-1]} consecutive date(s), YELLOW needs {cfg.consecutive_days_for_yellow}")
    if not has_costs:
        reasons = ["alerts disabled (basis mismatch): " + "; ".join(reasons)]
    frame = pl.DataFrame({
        "date": dates, "live": live_r, "backtest": bt_r, "bt_bar": aligned["bt_bar"].to_list(), "cum_live": cum_l,
        "cum_bt": cum_b, "gap": gaps, "rolling_te": rte, "streak": streaks, "level": [str(x) for x in levels],
    }, schema=_FRAME_SCHEMA).with_columns(pl.col("rolling_te").fill_nan(None))
    return Overlay(frame=frame, level=level, reasons=reasons, enabled=True, alerts_enabled=has_costs,
                   warnings=warnings, tracking_error=te, divergence=div, divergence_start=start, rolling_te=last_rte,
                   n_aligned=n, n_overlap=n_overlap, n_outside=n_outside, cum_live=cum_l[-1], cum_backtest=cum_b[-1],
                   **common)


def daily_returns(equity: pl.DataFrame) -> pl.DataFrame:
    """A backtest's per-bar returns (``ts``, ``ret``) compounded per UTC date: ``date, ret``."""
    if equity.height == 0:
        return pl.DataFrame(schema={"date": pl.Date, "ret": pl.Float64})
    return (equity.select(pl.col("ts").dt.date().alias("date"), pl.col("ret").fill_null(0.0).fill_nan(0.0))
            .group_by("date").agg(((pl.col("ret") + 1.0).product() - 1.0).alias("ret")).sort("date"))


# -- live P&L files: read and validate ------------------------------------------------------------
#: Column names accepted for each value, lower case (the first present is used).
VALUE_ALIASES: dict[str, tuple[str, ...]] = {
    "daily_pnl": ("daily_pnl", "pnl", "p&l", "daily pnl"),
    "ret": ("ret", "return", "returns", "daily_return"),
    "nav": ("nav", "equity", "net_asset_value"),
}
DATE_ALIASES = ("date", "day", "ts", "timestamp")
#: Rules that skip a row.
LIVE_RULES = ("bad_date", "missing_value", "non_positive_nav", "return_below_minus_100pct", "future_date",
              "duplicate")
MAX_EXAMPLES = 10


@dataclass
class LiveValidationReport:
    """What :func:`validate_live` found: rows in, valid, skipped, counts per rule in
    ``LIVE_RULES`` and up to 10 skipped rows (with their 0-based ``row`` and ``rule``)."""

    rows_in: int
    rows_valid: int
    rows_skipped: int
    counts: dict[str, int]
    columns: list[str]
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"rows_in": self.rows_in, "rows_valid": self.rows_valid, "rows_skipped": self.rows_skipped,
                "counts": dict(self.counts), "columns": list(self.columns), "examples": list(self.examples)}

    def summary(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.counts.items())
        lines = [f"validated {self.rows_in} row(s): {self.rows_valid} valid, {self.rows_skipped} skipped ({counts})"]
        for e in self.examples:
            values = ", ".join(f"{k}={e[k]}" for k in e if k not in ("row", "rule"))
            lines.append(f"  skipped row {e['row']}: {e['rule']} ({values})")
        return "\n".join(lines)


def read_live_file(path: str | Path) -> pl.DataFrame:
    """A CSV or Parquet file of live results as a frame of ``date`` (as written, parsed by
    :func:`validate_live`) and the value columns it has (``daily_pnl``, ``ret``, ``nav``)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"live file {str(path)!r} does not exist; give a CSV or Parquet file")
    if p.is_dir():
        raise ConfigError(f"live file {str(path)!r} is a directory; give a CSV or Parquet file")
    try:
        parquet = p.suffix.lower() in (".parquet", ".pq")
        raw = pl.read_parquet(p) if parquet else pl.read_csv(p, infer_schema=False)
    except Exception as e:
        raise ConfigError(f"cannot read live file {p}: {str(e).splitlines()[0]} (give a CSV with a header row "
                          "or a Parquet file)") from None
    lower = {c.lower().strip(): c for c in raw.columns}
    date_col = next((lower[a] for a in DATE_ALIASES if a in lower), None)
    if date_col is None:
        raise ConfigError(f"live file {p} has no date column (columns: {', '.join(raw.columns)}); name one "
                          f"of {', '.join(DATE_ALIASES)}")
    picked: dict[str, str] = {}
    for name, aliases in VALUE_ALIASES.items():
        col = next((lower[a] for a in aliases if a in lower), None)
        if col is not None:
            picked[name] = col
    if not picked:
        raise ConfigError(f"live file {p} has no value column (columns: {', '.join(raw.columns)}); give one of "
                          "daily_pnl (or pnl), ret (or return), nav")
    return raw.select(pl.col(date_col).alias("date"), *[pl.col(c).alias(n) for n, c in picked.items()])


def _parse_dates(s: pl.Series) -> pl.Series:
    if s.dtype == pl.Date:
        return s
    if isinstance(s.dtype, pl.Datetime):
        return s.dt.date()
    text = s.cast(pl.String).str.strip_chars()
    out = text.str.to_date("%Y-%m-%d", strict=False)
    for fmt in ("%Y/%m/%d", "%m/%d/%Y", "%d.%m.%Y", "%Y%m%d"):
        out = out.fill_null(text.str.to_date(fmt, strict=False))
    return out.fill_null(text.str.to_datetime(strict=False, time_zone="UTC").dt.date())


def validate_live(raw: pl.DataFrame, *, today: dt.date | None = None) -> tuple[pl.DataFrame, LiveValidationReport]:
    """The valid rows of a live results frame (``date`` plus any of ``daily_pnl``, ``ret``,
    ``nav``) and the report. A bad row is skipped and counted once, under the first rule it
    breaks: ``bad_date`` (missing or unparseable), ``missing_value`` (a value missing, not a
    number or not finite), ``non_positive_nav``, ``return_below_minus_100pct`` (ret <= -1),
    ``future_date`` (after ``today``, UTC), ``duplicate`` (a date seen before; the first kept)."""
    today = today or dt.datetime.now(dt.UTC).date()
    values: list[str] = [c for c in ("daily_pnl", "ret", "nav") if c in raw.columns]
    df = raw.with_row_index("row").with_columns(_parse_dates(raw["date"]).alias("_date"))
    for c in values:
        df = df.with_columns(pl.col(c).cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False).alias("_" + c)
                             if raw[c].dtype in (pl.String, pl.Utf8) else pl.col(c).cast(pl.Float64, strict=False)
                             .alias("_" + c))
    bad_value = pl.lit(False)
    for c in values:
        bad_value = bad_value | pl.col("_" + c).is_null() | ~pl.col("_" + c).is_finite()
    checks: list[tuple[str, pl.Expr]] = [
        ("bad_date", pl.col("_date").is_null()),
        ("missing_value", bad_value),
        ("non_positive_nav", (pl.col("_nav") <= 0) if "nav" in values else pl.lit(False)),
        ("return_below_minus_100pct", (pl.col("_ret") <= -1) if "ret" in values else pl.lit(False)),
        ("future_date", pl.col("_date") > today),
    ]
    rule = pl.lit(None, dtype=pl.String)
    for name, cond in reversed(checks):
        rule = pl.when(cond.fill_null(False)).then(pl.lit(name)).otherwise(rule)
    df = df.with_columns(rule.alias("_rule"))
    ok = df.filter(pl.col("_rule").is_null())
    dup_rows = ok.filter(pl.col("_date").is_duplicated() & (pl.int_range(pl.len()).over("_date") > 0))["row"]
    df = df.with_columns(pl.when(pl.col("row").is_in(dup_rows.implode())).then(pl.lit("duplicate"))
                         .otherwise(pl.col("_rule")).alias("_rule"))
    skipped = df.filter(pl.col("_rule").is_not_null())
    counts = {r: int((skipped["_rule"] == r).sum()) for r in LIVE_RULES}
    examples = [{"row": int(r["row"]), "rule": r["_rule"], "date": r["date"], **{c: r[c] for c in values}}
                for r in skipped.head(MAX_EXAMPLES).iter_rows(named=True)]
    examples = [{k: (v if isinstance(v, (int, float, str)) or v is None else str(v)) for k, v in e.items()}
                for e in examples]
    valid = (df.filter(pl.col("_rule").is_null())
             .select(pl.col("_date").alias("date"), *[pl.col("_" + c).alias(c) for c in values]).sort("date"))
    report = LiveValidationReport(rows_in=raw.height, rows_valid=valid.height, rows_skipped=skipped.height,
                                  counts=counts, columns=values, examples=examples)
    return valid, report


# -- the lake: ingest, links, overlay inputs, alerts ----------------------------------------------
@dataclass
class LiveIngestReport:
    """What :func:`ingest_live` did."""

    strategy: str
    validation: LiveValidationReport
    rows_new: int
    rows_existing: int
    rows_revised: int
    first: dt.date | None
    last: dt.date | None

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "validation": self.validation.to_dict(), "rows_new": self.rows_new,
                "rows_existing": self.rows_existing, "rows_revised": self.rows_revised,
                "first": self.first.isoformat() if self.first else None,
                "last": self.last.isoformat() if self.last else None}

    def summary(self) -> str:
        span = f" ({self.first} to {self.last})" if self.first else ""
        return (f"live {self.strategy}: {self.rows_new} new day(s), {self.rows_revised} revised, "
                f"{self.rows_existing} already in the lake{span}\n{self.validation.summary()}")


def _check_strategy_name(strategy: str) -> str:
    name = (strategy or "").strip()
    if not name or len(name) > 100 or any(ch in name for ch in "'\"\n\r\t"):
        raise ConfigError(f"strategy name {strategy!r}: use a non-empty name of up to 100 characters without "
                          "quotes or line breaks, e.g. sma-live")
    return name


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


def ingest_live(
    lake: Lake, data: pl.DataFrame | str | Path, strategy: str, *, revise: bool = False,
    capital: float | None = None, source: str | None = None,
) -> LiveIngestReport:
    """Validate live results (a frame as :func:`read_live_file` returns, or a file) and add them
    to ``live_pnl`` for ``strategy``: new dates appended; dates already there with the same
    values skipped (re-ingesting a file adds nothing); dates there with a different value
    rejected unless ``revise`` (then replaced). Each row's ``ret`` is the given return, else
    ``nav / previous nav - 1``, else ``daily_pnl / previous nav`` (with ``nav`` reconstructed as
    previous nav + P&L from ``capital`` or the last stored NAV); null on a base day with no
    previous NAV. Raises DataValidationError when no row is valid or values changed."""
    name = _check_strategy_name(strategy)
    if capital is not None and not (math.isfinite(capital) and capital > 0):
        raise ConfigError(f"capital={capital}: give the positive starting NAV of the P&L, e.g. --capital 1000000")
    if isinstance(data, (str, Path)):
        source = source or Path(data).name
        data = read_live_file(data)
    valid, report = validate_live(data)
    if valid.height == 0:
        raise DataValidationError(f"no valid rows for live strategy {name!r}: {report.summary()}")
    given = report.columns
    now = dt.datetime.now(dt.UTC)
    result: dict[str, int] = {}

    def build(table: DeltaTable) -> pl.DataFrame | None:
        stored = (pl.scan_delta(table, storage_options=lake.storage_options or None)
                  .filter(pl.col("strategy") == name).select("date", "daily_pnl", "nav", "ret").collect()
                  .sort("date"))
        have = {r["date"]: r for r in stored.iter_rows(named=True)}
        rows = _derive(valid, given, stored, capital, name)
        new, changed, same = [], [], 0
        for r in rows:
            old = have.get(r["date"])
            if old is None:
                new.append(r)
            elif all(_same(r[c], old[c]) for c in given):
                same += 1
            else:
                changed.append((r, old))
        if changed and not revise:
            ex = "; ".join(f"{r['date']} " + ", ".join(f"{c} {old[c]} -> {r[c]}" for c in given
                                                       if not _same(r[c], old[c]))
                           for r, old in changed[:5])
            raise DataValidationError(
                f"{len(changed)} date(s) of live strategy {name!r} already in the lake have different values "
                f"(e.g. {ex}); nothing was written: rerun with --revise to replace them")
        result.update(new=len(new), same=same, revised=len(changed))
        out = new + [r for r, _ in changed]
        if not out:
            return None
        return pl.DataFrame(out, schema={"strategy": pl.String, "date": pl.Date, "daily_pnl": pl.Float64,
                                         "nav": pl.Float64, "ret": pl.Float64}).with_columns(
            source=pl.lit(source or "frame"), ingested_at=pl.lit(now).cast(pl.Datetime("us", "UTC")))

    lake.merge_checked("live_pnl", build, "t.strategy = s.strategy AND t.date = s.date",
                       f"ingest live P&L of {name}")
    return LiveIngestReport(strategy=name, validation=report, rows_new=result.get("new", 0),
                            rows_existing=result.get("same", 0), rows_revised=result.get("revised", 0),
                            first=valid["date"].min(), last=valid["date"].max())  # type: ignore[arg-type]


def _derive(valid: pl.DataFrame, given: list[str], stored: pl.DataFrame, capital: float | None,
            name: str) -> list[dict[str, Any]]:
    """The file's rows with ``nav`` and ``ret`` filled in where they follow from what is given
    and the NAV before each date (the file's own, else the stored one, else ``capital``)."""
    navs: dict[dt.date, float] = {d: v for d, v in zip(stored["date"], stored["nav"]) if v is not None}
    keys = sorted(navs)
    rows: list[dict[str, Any]] = []
    for r in valid.iter_rows(named=True):
        d = r["date"]
        i = bisect.bisect_left(keys, d)
        prev_nav = navs[keys[i - 1]] if i > 0 else capital
        pnl, nav, ret = r.get("daily_pnl"), r.get("nav"), r.get("ret")
        if nav is None and pnl is not None:
            if prev_nav is None:
                raise ConfigError(f"live strategy {name!r}: daily_pnl without nav needs the starting NAV: give "
                                  "--capital (e.g. --capital 1000000) or a nav column")
            nav = prev_nav + pnl
        if ret is None and nav is not None and prev_nav is not None:
            ret = nav / prev_nav - 1.0
        if nav is not None:
            if d not in navs:
                bisect.insort(keys, d)
            navs[d] = nav
        rows.append({"strategy": name, "date": d, "daily_pnl": pnl, "nav": nav, "ret": ret})
    return rows


def live_strategies(con: LakeConnection) -> pl.DataFrame:
    """One row per live strategy: strategy, days, first, last, run_id (its link, or null),
    linked_by, linked_at."""
    df: pl.DataFrame = con.execute("""
        SELECT p.strategy, count(*) AS days, min(p.date) AS first, max(p.date) AS last,
               any_value(l.run_id) AS run_id, any_value(l.linked_by) AS linked_by,
               any_value(l.linked_at) AS linked_at
        FROM live_pnl p LEFT JOIN live_links l USING (strategy)
        GROUP BY p.strategy ORDER BY p.strategy""").pl()
    return df


def links(con: LakeConnection) -> pl.DataFrame:
    """The ``live_links`` rows: strategy, run_id, linked_by, linked_at."""
    df: pl.DataFrame = con.execute(
        "SELECT strategy, run_id, linked_by, linked_at FROM live_links ORDER BY strategy").pl()
    return df


def link_strategy(lake: Lake, con: LakeConnection, strategy: str, run_id: str, user: str) -> str:
    """Link live ``strategy`` to the completed run ``run_id`` (replacing its link). Returns
    ``"linked"``, ``"relinked"`` or ``"unchanged"``. The strategy must have live P&L and the
    run must be a completed run with returns."""
    from backlake._suggest import unknown_name_message

    name = _check_strategy_name(strategy)
    known = [s for (s,) in con.execute("SELECT DISTINCT strategy FROM live_pnl").fetchall()]
    if name not in known:
        hint = unknown_name_message("live strategy", name, known) if known else f"unknown live strategy {name!r}"
        raise ConfigError(f"{hint}: ingest its P&L first with `backlake live ingest FILE --strategy {name}`")
    row = con.execute("SELECT status, kind FROM runs WHERE run_id = ? ORDER BY status = 'completed' DESC LIMIT 1",
                      [run_id]).fetchone()
    if row is None:
        ids = [r for (r,) in con.execute("SELECT run_id FROM runs WHERE status = 'completed' AND run_id LIKE ? "
                                         "LIMIT 5", [run_id[:4] + "%"]).fetchall()]
        near = f"; runs starting {run_id[:4]!r}: {', '.join(ids)}" if ids else ""
        raise ConfigError(f"run {run_id!r} is not in the lake{near}; list runs with "
                          "`backlake sql \"SELECT run_id, strategy FROM runs WHERE status = 'completed'\"`")
    if row[0] != "completed":
        raise ConfigError(f"run {run_id!r} is {row[0]}, not completed: link a completed run")
    n = con.execute("SELECT count(*) FROM equity WHERE run_id = ?", [run_id]).fetchone()
    if not n or not n[0]:
        raise ConfigError(f"run {run_id!r} ({row[1]}) has no equity rows, so no returns to compare: link a "
                          "backtest (or a walk-forward's stitched run)")
    outcome: dict[str, str] = {}

    def build(table: DeltaTable) -> pl.DataFrame | None:
        cur = (pl.scan_delta(table, storage_options=lake.storage_options or None)
               .filter(pl.col("strategy") == name).select("run_id").collect())
        if cur.height and cur["run_id"][0] == run_id:
            outcome["result"] = "unchanged"
            return None
        outcome["result"] = "relinked" if cur.height else "linked"
        return pl.DataFrame({"strategy": [name], "run_id": [run_id], "linked_by": [user],
                             "linked_at": [dt.datetime.now(dt.UTC)]})

    lake.merge_checked("live_links", build, "t.strategy = s.strategy", f"link live strategy {name}")
    return outcome["result"]


def live_returns(con: LakeConnection, strategy: str) -> pl.DataFrame:
    """The stored daily returns of a live strategy: date, ret (base days without one left out)."""
    df: pl.DataFrame = con.execute("SELECT date, ret FROM live_pnl WHERE strategy = ? AND ret IS NOT NULL "
                                   "ORDER BY date", [strategy]).pl()
    return df.with_columns(pl.col("date").cast(pl.Date))


def backtest_returns(con: LakeConnection, run_id: str) -> tuple[pl.DataFrame, bool]:
    """A run's daily returns (date, ret) and whether it recorded its costs (the ``equity``
    table's ``costs`` column present and set on the run's rows)."""
    cols = {r[0] for r in con.execute("DESCRIBE equity").fetchall()}
    cost = ", costs" if "costs" in cols else ""
    eq = con.execute(f"SELECT ts, ret{cost} FROM equity WHERE run_id = ? ORDER BY ts", [run_id]).pl()
    has_costs = bool("costs" in eq.columns and eq.height and eq["costs"].null_count() < eq.height)
    return daily_returns(eq.with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))), has_costs


def load_overlay(con: LakeConnection, strategy: str, run_id: str | None = None,
                 config: OverlayConfig | None = None) -> Overlay:
    """The overlay of live ``strategy`` on ``run_id`` (default: its linked run)."""
    if run_id is None:
        row = con.execute("SELECT run_id FROM live_links WHERE strategy = ?", [strategy]).fetchone()
        if row is None:
            known = [s for (s,) in con.execute("SELECT strategy FROM live_links").fetchall()]
            live = [s for (s,) in con.execute("SELECT DISTINCT strategy FROM live_pnl").fetchall()]
            if strategy in live:
                raise ConfigError(f"live strategy {strategy!r} is not linked to a run: "
                                  f"`backlake live link {strategy} RUN`, or give --run RUN")
            from backlake._suggest import unknown_name_message

            raise ConfigError(unknown_name_message("live strategy", strategy, sorted(set(known) | set(live)))
                              + f"; ingest it with `backlake live ingest FILE --strategy {strategy}`")
        run_id = str(row[0])
    bt, has_costs = backtest_returns(con, run_id)
    if bt.height == 0:
        row = con.execute("SELECT status FROM runs WHERE run_id = ? LIMIT 1", [run_id]).fetchone()
        if row is None:
            raise ConfigError(f"run {run_id!r} is not in the lake; link a completed run")
    return compute_overlay(live_returns(con, strategy), bt, config, has_costs=has_costs, strategy=strategy,
                           run_id=run_id)


def alert_row(ov: Overlay, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """The ``alerts`` row of an overlay (kind ``live``; dated by its last live date)."""
    figures = {k: v for k, v in ov.to_dict().items() if k in ("basis", "n_aligned", "n_overlap", "cum_live",
                                                              "cum_backtest", "alerts_enabled", "config")}
    return {
        "source": ov.strategy, "kind": "live", "run_id": ov.run_id, "date": ov.last_date or ov.live_last,
        "level": ov.level, "tracking_error": ov.tracking_error, "rolling_te": ov.rolling_te,
        "divergence": ov.divergence, "divergence_start": ov.divergence_start, "figures": json.dumps(figures),
        "message": ov.message, "created_at": now or dt.datetime.now(dt.UTC),
    }


ALERT_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "source": pl.String, "kind": pl.String, "run_id": pl.String, "date": pl.Date, "level": pl.String,
    "tracking_error": pl.Float64, "rolling_te": pl.Float64, "divergence": pl.Float64, "divergence_start": pl.Date,
    "figures": pl.String, "message": pl.String, "created_at": pl.Datetime("us", "UTC"),
}


def record_alert(lake: Lake, row: Mapping[str, Any]) -> bool:
    """Append an ``alerts`` row unless one for the same source, kind and date is there
    (idempotent per strategy and date). Returns whether it was written."""
    written: dict[str, bool] = {}

    def build(table: DeltaTable) -> pl.DataFrame | None:
        have = (pl.scan_delta(table, storage_options=lake.storage_options or None)
                .filter((pl.col("source") == row["source"]) & (pl.col("kind") == row["kind"])
                        & (pl.col("date") == row["date"])).select(pl.len()).collect().item())
        written["ok"] = not have
        return None if have else pl.DataFrame([dict(row)], schema=ALERT_SCHEMA)

    lake.append_checked("alerts", build, f"record the alert of {row['source']}")
    return written.get("ok", False)


def alert_recorded(lake: Lake, source: str, date: dt.date, kind: str = "live") -> bool:
    """Whether ``alerts`` holds a row of ``source`` and ``kind`` dated ``date``."""
    if not lake.exists("alerts"):
        return False
    return lake.read("alerts", columns=["date"], where={"source": source, "kind": kind}).filter(
        pl.col("date") == date).height > 0


def alerts_history(con: LakeConnection, strategy: str | None = None, limit: int = 500) -> pl.DataFrame:
    """Live alerts, newest date first (one strategy's, or all)."""
    where = "kind = 'live'" + (" AND source = ?" if strategy else "")
    df: pl.DataFrame = con.execute(
        f"SELECT date, source AS strategy, run_id, level, tracking_error, rolling_te, divergence, divergence_start, "
        f"message, created_at FROM alerts WHERE {where} ORDER BY date DESC, source LIMIT {int(limit)}",
        [strategy] if strategy else []).pl()
    return df




# -- a live feed for demos and tests ----------------------------------------------------------------
def worse_fills_feed(config: Any, bars: pl.DataFrame, *, extra_slippage_bps: float = 10.0) -> pl.DataFrame:
    """What trading ``config`` live would plausibly have given: the same signals filled at the
    next bar's close instead of its open, with ``extra_slippage_bps`` more slippage. Returns
    ``date, nav, daily_pnl`` (a :func:`ingest_live` frame; the first day is the base NAV)."""
    from backlake.config import BacktestConfig
    from backlake.engine.core import run_backtest

    cfg = config if isinstance(config, BacktestConfig) else BacktestConfig.model_validate(config)
    costs = cfg.costs.model_copy(update={"slippage_bps": cfg.costs.slippage_bps + extra_slippage_bps})
    live_cfg = cfg.model_copy(update={"costs": costs})
    late = bars.with_columns(open=pl.col("close"))  # the next bar's "open" fill happens at its close
    eq = run_backtest(live_cfg, late).equity
    return (eq.select(pl.col("ts").dt.date().alias("date"), pl.col("equity").alias("nav"))
            .group_by("date", maintain_order=True).last()
            .with_columns(daily_pnl=pl.col("nav").diff().fill_null(0.0)))


def seed_live_feed(lake: Lake, config: Any, run_id: str, strategy: str, *, user: str,
                   extra_slippage_bps: float = 10.0) -> LiveIngestReport:
    """Ingest :func:`worse_fills_feed` of ``config`` (on the lake's bars of its universe and
    timeframe) as live strategy ``strategy`` and link it to ``run_id``, the backtest of the
    same config: the demo's live feed. Idempotent (a second call adds nothing)."""
    from backlake.config import BacktestConfig
    from backlake.lake import connect

    cfg = config if isinstance(config, BacktestConfig) else BacktestConfig.model_validate(config)
    symbols = [cfg.universe] if isinstance(cfg.universe, str) else list(cfg.universe)
    bars = lake.read("bars", where={"symbol": symbols}).filter(pl.col("timeframe") == cfg.timeframe)
    feed = worse_fills_feed(cfg, bars.drop("ingested_at", strict=False), extra_slippage_bps=extra_slippage_bps)
    report = ingest_live(lake, feed.select("date", "nav"), strategy, source="demo: worse fills")
    with connect(lake=lake) as con:
        link_strategy(lake, con, strategy, run_id, user)
    return report
