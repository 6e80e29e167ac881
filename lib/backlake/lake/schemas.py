"""Explicit schemas of the lake's Delta tables (see DESIGN.md, "The lake").

Timestamps are UTC microseconds. JSON columns are strings holding canonical JSON.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

RUN_STATUSES = ("pending", "running", "completed", "failed", "cancelled", "crashed")

SCHEMAS: dict[str, pa.Schema] = {
    "bars": pa.schema([
        ("symbol", pa.string()), ("ts", TS), ("timeframe", pa.string()),
        ("open", pa.float64()), ("high", pa.float64()), ("low", pa.float64()),
        ("close", pa.float64()), ("volume", pa.float64()), ("source", pa.string()),
        ("ingested_at", TS),
    ]),
    "runs": pa.schema([
        ("run_id", pa.string()), ("parent_id", pa.string()), ("kind", pa.string()),
        ("strategy", pa.string()), ("symbols", pa.string()), ("timeframe", pa.string()),
        ("params", pa.string()), ("config", pa.string()), ("config_id", pa.string()),
        ("data_versions", pa.string()), ("code_version", pa.string()),
        ("created_by", pa.string()), ("created_at", TS), ("finished_at", TS),
        ("status", pa.string()), ("error", pa.string()),
        ("total_return", pa.float64()), ("cagr", pa.float64()), ("sharpe", pa.float64()),
        ("sortino", pa.float64()), ("max_drawdown", pa.float64()), ("n_trades", pa.int64()),
        # the fingerprint of the bars the run read (part of its id; see backlake.runs.data)
        ("data_fingerprint", pa.string()),
        # cost summary (money over the run: the sums of equity's per-bar costs; null = none recorded)
        ("total_costs", pa.float64()), ("cost_commission", pa.float64()), ("cost_fees", pa.float64()),
        ("cost_slippage", pa.float64()), ("cost_impact", pa.float64()),
    ]),
    "run_events": pa.schema([
        ("run_id", pa.string()), ("status", pa.string()), ("ts", TS), ("message", pa.string()),
        # the attempt (one execution: a Prefect flow run id or a fresh id) and where it ran
        ("attempt", pa.string()), ("host", pa.string()), ("pid", pa.int64()),
    ]),
    "equity": pa.schema([
        ("run_id", pa.string()), ("ts", TS), ("equity", pa.float64()), ("cash", pa.float64()),
        ("gross_exposure", pa.float64()), ("net_exposure", pa.float64()),
        ("drawdown", pa.float64()), ("ret", pa.float64()), ("benchmark_equity", pa.float64()),
        # costs charged that bar (money; null = the run recorded none): the total and its split
        # into commission, market fees besides commission, slippage and impact; gross = net + costs
        ("costs", pa.float64()), ("cost_commission", pa.float64()), ("cost_fees", pa.float64()),
        ("cost_slippage", pa.float64()), ("cost_impact", pa.float64()),
    ]),
    "trades": pa.schema([
        ("run_id", pa.string()), ("trade_id", pa.int64()), ("symbol", pa.string()),
        ("direction", pa.string()), ("qty", pa.float64()),
        ("entry_ts", TS), ("entry_price", pa.float64()), ("exit_ts", TS), ("exit_price", pa.float64()),
        ("pnl", pa.float64()), ("return_pct", pa.float64()), ("fees", pa.float64()),
        ("bars_held", pa.int64()), ("mae", pa.float64()), ("mfe", pa.float64()),
        ("exit_reason", pa.string()),
        # cost breakdown (currency units): price effects, then commission and market fees
        ("slippage_cost", pa.float64()), ("impact_cost", pa.float64()), ("commission", pa.float64()),
        ("sec_fee", pa.float64()), ("finra_taf", pa.float64()), ("stt", pa.float64()),
        ("exchange_fee", pa.float64()), ("gst", pa.float64()), ("stamp_duty", pa.float64()),
        ("sebi_fee", pa.float64()),
    ]),
    "metrics": pa.schema([
        ("run_id", pa.string()), ("segment", pa.string()), ("name", pa.string()), ("value", pa.float64()),
    ]),
    # alpha scores: one row per alpha_id (name + canonical params) x date x scored symbol;
    # features is a JSON map of the named inputs the score was computed from (backlake.alpha)
    "signals": pa.schema([
        ("alpha", pa.string()), ("alpha_id", pa.string()), ("params", pa.string()), ("date", pa.date32()),
        ("symbol", pa.string()), ("score", pa.float64()), ("features", pa.string()),
    ]),
    # an alpha run's target weights at its rebalance dates (0 = not held)
    "weights": pa.schema([
        ("run_id", pa.string()), ("date", pa.date32()), ("symbol", pa.string()), ("weight", pa.float64()),
    ]),
    # an alpha run's daily IC / rank IC per forward horizon (trading days)
    "ic": pa.schema([
        ("run_id", pa.string()), ("date", pa.date32()), ("horizon", pa.int64()),
        ("ic", pa.float64()), ("rank_ic", pa.float64()),
    ]),
    # factor returns (decimal: 0.0194 = 1.94 %), e.g. Fama-French; monthly dates are month ends
    "factors": pa.schema([
        ("model", pa.string()), ("factor", pa.string()), ("date", pa.date32()), ("value", pa.float64()),
        ("freq", pa.string()), ("source", pa.string()),
    ]),
    # a run's rolling factor betas (date = the window's end)
    "factor_exposures": pa.schema([
        ("run_id", pa.string()), ("model", pa.string()), ("date", pa.date32()), ("factor", pa.string()),
        ("beta", pa.float64()),
    ]),
    "trials": pa.schema([
        ("parent_id", pa.string()), ("trial", pa.int64()), ("params", pa.string()),
        ("objective", pa.float64()), ("is_score", pa.float64()), ("oos_score", pa.float64()),
        # extras: overfitting (optimize) and headline metrics (sweeps), all metrics as JSON
        ("overfit_score", pa.float64()), ("flagged", pa.bool_()),
        ("total_return", pa.float64()), ("sharpe", pa.float64()), ("max_drawdown", pa.float64()),
        ("n_trades", pa.int64()), ("metrics", pa.string()),
    ]),
    "windows": pa.schema([
        ("parent_id", pa.string()), ("window", pa.int64()),
        ("train_start", TS), ("train_end", TS), ("test_start", TS), ("test_end", TS),
        ("best_params", pa.string()), ("is_sharpe", pa.float64()), ("oos_sharpe", pa.float64()),
        ("degradation", pa.float64()),
    ]),
    "live_pnl": pa.schema([
        ("strategy", pa.string()), ("date", pa.date32()), ("daily_pnl", pa.float64()), ("nav", pa.float64()),
        # the day's return (given, or derived from nav / daily_pnl at ingest; null on a base day),
        # the file it came from and when (see backlake.analytics.live)
        ("ret", pa.float64()), ("source", pa.string()), ("ingested_at", TS),
    ]),
    # the backtest each live strategy is watched against: one row per strategy (relinking replaces it)
    "live_links": pa.schema([
        ("strategy", pa.string()), ("run_id", pa.string()), ("linked_by", pa.string()), ("linked_at", TS),
    ]),
    # alerts: kind "live" (source = live strategy; one row per strategy x date, levels NONE /
    # YELLOW / RED) or another monitor's kind; figures is JSON of anything else worth keeping
    "alerts": pa.schema([
        ("source", pa.string()), ("kind", pa.string()), ("run_id", pa.string()), ("date", pa.date32()),
        ("level", pa.string()), ("tracking_error", pa.float64()), ("rolling_te", pa.float64()),
        ("divergence", pa.float64()), ("divergence_start", pa.date32()), ("figures", pa.string()),
        ("message", pa.string()), ("created_at", TS),
    ]),
    # what each freshness check found: one row per source (status OK / STALE / ERROR), all rows
    # of one check under its check_id (see backlake.analytics.health)
    "health_checks": pa.schema([
        ("check_id", pa.string()), ("ts", TS), ("source", pa.string()), ("category", pa.string()),
        ("table_name", pa.string()), ("status", pa.string()), ("last_update", TS),
        ("age_seconds", pa.float64()), ("threshold_seconds", pa.int64()), ("message", pa.string()),
    ]),
    # golden runs replayed by the regression flow: one row per run (re-adding one updates it)
    "goldens": pa.schema([
        ("run_id", pa.string()),
        # JSON object metric -> absolute tolerance; metrics not in it use default_tolerance
        ("tolerances", pa.string()), ("default_tolerance", pa.float64()),
        ("added_by", pa.string()), ("added_at", TS), ("note", pa.string()),
    ]),
    # what each regression run found: one row per golden x metric (metric null and error set
    # when a golden could not be replayed), all rows of one report under its report_id
    "regression_reports": pa.schema([
        ("report_id", pa.string()), ("ts", TS), ("source", pa.string()),
        ("run_id", pa.string()), ("metric", pa.string()),
        ("stored", pa.float64()), ("replayed", pa.float64()), ("abs_diff", pa.float64()),
        ("tolerance", pa.float64()), ("ok", pa.bool_()), ("error", pa.string()),
    ]),
    # progress of running runs (backlake.runs.progress): done of total units (chunks, trials,
    # windows, seeds) as reported by an attempt, a row every few seconds at most; the latest counts
    "run_progress": pa.schema([
        ("run_id", pa.string()), ("attempt", pa.string()), ("ts", TS), ("done", pa.int64()),
        ("total", pa.int64()), ("unit", pa.string()),
    ]),
}

#: Columns every write must carry; the other columns of a table may be absent (written as null).
REQUIRED: dict[str, tuple[str, ...]] = {
    "bars": ("symbol", "ts", "timeframe", "open", "high", "low", "close", "volume"),
    "runs": ("run_id", "kind", "status"),
    "run_events": ("run_id", "status", "ts"),
    "equity": ("run_id", "ts", "equity"),
    "trades": ("run_id", "trade_id", "symbol"),
    "metrics": ("run_id", "segment", "name", "value"),
    "signals": ("alpha", "alpha_id", "date", "symbol", "score"),
    "weights": ("run_id", "date", "symbol", "weight"),
    "ic": ("run_id", "date", "horizon"),
    "factors": ("model", "factor", "date", "value"),
    "factor_exposures": ("run_id", "model", "date", "factor", "beta"),
    "trials": ("parent_id", "trial", "params"),
    "windows": ("parent_id", "window"),
    "live_pnl": ("strategy", "date"),
    "live_links": ("strategy", "run_id", "linked_at"),
    "alerts": ("source", "kind", "level", "created_at"),
    "health_checks": ("check_id", "ts", "source", "status"),
    "goldens": ("run_id", "tolerances", "default_tolerance", "added_by", "added_at"),
    "regression_reports": ("report_id", "ts", "run_id", "ok"),
    "run_progress": ("run_id", "attempt", "ts", "done", "total"),
}

#: Partition columns per table (others are unpartitioned).
PARTITIONS: dict[str, list[str]] = {"bars": ["symbol"], "signals": ["alpha_id"]}

#: The columns that identify one row of a table (writers never store two rows with the same key).
KEYS: dict[str, tuple[str, ...]] = {
    "signals": ("alpha_id", "date", "symbol"),
    "weights": ("run_id", "date", "symbol"),
    "ic": ("run_id", "date", "horizon"),
    "factors": ("model", "factor", "date"),
    "factor_exposures": ("run_id", "model", "date", "factor"),
}

TABLES: tuple[str, ...] = tuple(SCHEMAS)
