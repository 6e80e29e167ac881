"""``backlake alpha``: cross-sectional alpha research.

    backlake alpha list [--format table|json|csv]
    backlake alpha refresh momentum_12_1 [--params lookback=126] [--universe sp500_stocks] [--full-rebuild]
    backlake alpha evaluate momentum_12_1 low_volatility [--horizons 1,5,10,21] [--quantiles 5]
    backlake alpha backtest momentum_12_1 [--weights top_n --quantile 0.2 --long-short] [--rebalance monthly]
    backlake alpha attribution RUN [--model ff3|carhart4|capm|ff5] [--window 36]
    backlake alpha factors [--path F-F_Research_Data_5_Factors_2x3.csv --units percent]

``evaluate`` and ``backtest`` run the ``alpha`` flow: the same options give the same run (one
run of kind ``alpha`` per alpha: its IC per horizon and its backtest); ``evaluate`` prints the
IC summary, ``backtest`` the backtest's figures. Every input is checked against the lake before
Prefect starts: one line per problem, exit 2.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from backlake.errors import ConfigError
from flows.cli.output import add_format_option, format_rows
from flows.cli.progress import add_progress_option, progress_bars

WEIGHT_METHODS = ("zscore", "rank", "top_n", "bottom_n")
REBALANCE = ("daily", "weekly", "monthly")


def add_alpha(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("alpha", help="alpha research: list, refresh signals, evaluate (IC), backtest, attribution")
    asub = s.add_subparsers(dest="alpha_command", required=True)

    ls = asub.add_parser("list", help="the registered alphas, their parameters and look-back")
    add_format_option(ls)
    ls.set_defaults(fn=cmd_list)

    r = asub.add_parser("refresh", help="compute an alpha's new signals into the lake (incremental)",
                        description="Append the alpha's scores and feature snapshots for the dates after the last "
                                    "stored one (with the look-back it needs); --full-rebuild recomputes every date "
                                    "as a new version. Both are idempotent.")
    r.add_argument("name", metavar="NAME", help="an alpha (backlake alpha list)")
    _add_params(r)
    _add_universe(r)
    r.add_argument("--full-rebuild", action="store_true", help="recompute every date (a new version of its rows)")
    r.add_argument("--end", help="last date to compute, YYYY-MM-DD (default: the last bar)")
    add_format_option(r)
    add_progress_option(r)
    r.set_defaults(fn=cmd_refresh)

    for name, what in (("evaluate", "IC / Rank IC per horizon, quantile returns, turnover, decay (a run of kind "
                                    "alpha)"),
                       ("backtest", "the alpha's weights through the engine (a run of kind alpha, with its IC)")):
        e = asub.add_parser(name, help=what)
        e.add_argument("names", nargs="+", metavar="NAME",
                       help="one alpha, or several evaluated together (their p-values adjusted jointly)")
        _add_params(e)
        _add_universe(e)
        _add_run_options(e)
        add_format_option(e)
        add_progress_option(e)
        e.set_defaults(fn=cmd_evaluate if name == "evaluate" else cmd_backtest)

    a = asub.add_parser("attribution", help="Fama-French attribution of a run's returns (stored with the run)")
    a.add_argument("run", metavar="RUN", help="a completed run with an equity curve")
    a.add_argument("--model", default="ff3",
                   help="ff3 (market, size, value; default), carhart4 (+ momentum), capm, or ff5 (needs a "
                        "5-factor file ingested)")
    a.add_argument("--window", type=int, default=36, help="months of the rolling exposures (default 36)")
    add_format_option(a)
    a.set_defaults(fn=cmd_attribution)

    f = asub.add_parser("factors", help="ingest Fama-French factors into the lake (the shipped set, or a file)",
                        description="Without --path: the shipped monthly Ken French factors (MktRF, SMB, HML, Mom, "
                                    "RF, 1949-01..2017-03). With --path: a monthly CSV from French's data library "
                                    "as downloaded, or any CSV with columns date, MktRF, SMB, HML[, Mom][, RMW, "
                                    "CMA], RF (RMW and CMA make model ff5). Idempotent: unchanged months write "
                                    "nothing, revised months replace the stored values as a new version.")
    f.add_argument("--path", help="a factor CSV (default: the shipped set)")
    f.add_argument("--units", choices=("percent", "decimal"),
                   help="the file's values: percent (French's files) or decimal; required with --path")
    add_format_option(f)
    f.set_defaults(fn=cmd_factors)


def _add_params(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--params", action="append", default=[], metavar="K=V",
                    help="an alpha parameter, e.g. --params lookback=126 (repeat for more; one alpha only)")


def _add_universe(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--universe", default="sp500_stocks",
                    help="a named universe (sp500_stocks) or symbols separated by commas (default sp500_stocks)")


def _add_run_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--horizons", default="1,5,10,21", help="forward horizons in trading days, e.g. 1,5,10,21")
    sp.add_argument("--quantiles", type=int, default=5, help="score quantiles (default 5)")
    sp.add_argument("--start", help="first date, YYYY-MM-DD (default: the data's)")
    sp.add_argument("--end", help="last date, YYYY-MM-DD (default: the data's)")
    sp.add_argument("--weights", choices=WEIGHT_METHODS, default="zscore",
                    help="zscore (default), rank, top_n or bottom_n")
    sp.add_argument("--n", type=int, help="names held by top_n / bottom_n")
    sp.add_argument("--quantile", type=float, help="fraction of the names held by top_n / bottom_n, e.g. 0.2")
    sp.add_argument("--long-short", action="store_true", help="top_n / bottom_n: short the other end too")
    sp.add_argument("--gross", type=float, default=1.0, help="gross exposure (default 1.0)")
    sp.add_argument("--net", type=float, help="net exposure target")
    sp.add_argument("--max-weight", type=float, help="largest absolute weight of one name")
    sp.add_argument("--rebalance", choices=REBALANCE, default="daily", help="rebalance cadence (default daily)")
    sp.add_argument("--initial-cash", type=float, default=1_000_000.0, help="starting cash (default 1,000,000)")
    sp.add_argument("--commission-bps", type=float, default=0.0, help="commission per side in bps (default 0)")
    sp.add_argument("--no-refresh", action="store_true", help="do not refresh the alphas' stored signals first")


# -- parsing ------------------------------------------------------------------------------------
def parse_params(specs: list[str]) -> dict[str, Any]:
    """``["lookback=126", "skip=21"]`` as a dict; values read as JSON numbers / booleans when
    they are, else as text. One-line errors for a spec without ``=`` or a key given twice."""
    out: dict[str, Any] = {}
    for spec in specs:
        key, eq, value = spec.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key or not value:
            raise ConfigError(f"--params {spec!r}: write NAME=VALUE, e.g. --params lookback=126")
        if key in out:
            raise ConfigError(f"--params {key} is given twice; give each parameter once")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def parse_horizons(text: str) -> list[int]:
    """``"1,5,10,21"`` as [1, 5, 10, 21] (the checks of the values: ``check_horizons``)."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise ConfigError(f"--horizons {text!r}: give whole numbers of trading days separated by commas, "
                          "e.g. 1,5,10,21") from None


def parse_universe(text: str) -> str | list[str]:
    from backlake.config import UNIVERSES

    text = text.strip()
    if text in UNIVERSES:
        return text
    symbols = [s.strip() for s in text.split(",") if s.strip()]
    if not symbols:
        raise ConfigError(f"--universe {text!r}: give a universe name ({', '.join(UNIVERSES)}) or symbols "
                          "separated by commas")
    return symbols


def _alphas(args: argparse.Namespace) -> list[Any]:
    params = parse_params(args.params)
    if params and len(args.names) > 1:
        raise ConfigError("--params applies to one alpha; evaluate alphas with their own parameters one at a time")
    return [{"name": n, "params": params} if params else n for n in args.names]


def _weights(args: argparse.Namespace) -> dict[str, Any]:
    w: dict[str, Any] = {"method": args.weights, "rebalance": args.rebalance, "gross": args.gross,
                         "long_short": args.long_short}
    for key in ("n", "quantile", "net", "max_weight"):
        if getattr(args, key) is not None:
            w[key] = getattr(args, key)
    return w


def _flow_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"alphas": _alphas(args), "universe": parse_universe(args.universe),
            "horizons": parse_horizons(args.horizons), "n_quantiles": args.quantiles, "weights": _weights(args),
            "start": args.start, "end": args.end, "initial_cash": args.initial_cash,
            "costs": {"commission_bps": args.commission_bps} if args.commission_bps else None,
            "refresh": not args.no_refresh}


def _lake():
    from backlake.lake import Lake
    from flows.cli.lake import require_lake

    require_lake()
    return Lake()


# -- commands -----------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    from backlake.alpha.registry import get_alpha, list_alphas

    rows = []
    for name in list_alphas():
        spec = get_alpha(name)
        defaults = spec.params_model().model_dump(mode="json")
        params: Any = defaults if args.format == "json" else " ".join(f"{k}={v}" for k, v in defaults.items())
        rows.append([name, spec.description, params, spec.lookback(), "yes" if spec.needs_volume else "no"])
    print(format_rows(["alpha", "description", "params", "lookback", "needs_volume"], rows, args.format))
    return 0


def cmd_refresh(args: argparse.Namespace) -> int:
    from backlake import progress
    from backlake.alpha import store
    from backlake.alpha.registry import alpha_id
    from backlake.runs.alpha import alpha_config, check_dates
    from backlake.runs.checks import check_configs

    params = parse_params(args.params)
    cfg = alpha_config(args.name, params, universe=parse_universe(args.universe), end=args.end)  # names, params
    lake = _lake()
    check_dates(lake, cfg)  # one line for dates outside the data (not one per symbol)
    check_configs(lake, [cfg])  # the universe's symbols have daily bars in the lake
    job = f"refresh {args.name}"
    with progress_bars(args.progress):
        progress.report(job, 0, 1, "alpha")
        res = store.refresh_signals(lake, args.name, params, cfg.symbols, full_rebuild=args.full_rebuild,
                                    end=cfg.end)
        progress.report(job, 1, 1, "alpha")
    aid = alpha_id(args.name, params)
    cols = ["alpha", "alpha_id", "rows_added", "first_date", "last_date", "version"]
    print(format_rows(cols, [[args.name, aid, res.rows_added, res.first_date, res.last_date, res.version]],
                      args.format))
    if args.format == "table" and res.rows_added == 0:
        stored = lake.read("signals", columns=["date"], where={"alpha_id": aid, "symbol": cfg.symbols})
        print(f"\nnothing new: the stored {args.name} signals of these symbols reach {stored['date'].max()}"
              if stored.height else "\nnothing new: no date has enough history to score yet")
    if args.format == "table":
        print(f"\nsignals:  backlake sql \"SELECT date, symbol, score, features FROM signals WHERE alpha_id = "
              f"'{aid}' ORDER BY date DESC, score DESC LIMIT 20\"")
    return 0


def _run_flow(args: argparse.Namespace) -> tuple[dict, list[Any]]:
    """The flow's result and the planned jobs (one per alpha, in the order given)."""
    from flows.alpha import plan
    from flows.cli.server import use_prefect_api

    kw = _flow_kwargs(args)
    _lake()
    jobs = plan(kw["alphas"], universe=kw["universe"], horizons=kw["horizons"], n_quantiles=kw["n_quantiles"],
                weights=kw["weights"], start=kw["start"], end=kw["end"], initial_cash=kw["initial_cash"],
                costs=kw["costs"])  # every check, before Prefect starts
    use_prefect_api()
    from flows.alpha import alpha_flow

    with progress_bars(args.progress):
        return alpha_flow(**kw), jobs


#: the IC summary columns ``evaluate`` prints (metrics names of segment ``ic:h{h}``)
IC_COLUMNS = ("mean_ic", "icir", "t_stat", "hit_rate", "mean_rank_ic", "coverage", "turnover", "spread", "p_value",
              "p_bonferroni", "p_bh")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from backlake.runs.alpha import stored_summary

    out, jobs = _run_flow(args)
    runs = out["runs"]
    label = {r["run_id"]: r["alpha"] for r in runs}
    summary = stored_summary(_lake(), [r["run_id"] for r in runs])
    cols = [c for c in IC_COLUMNS if c in summary.columns]
    rows = [[label[r["run_id"]], r["run_id"], r["horizon"], *(r[c] for c in cols)]
            for r in summary.iter_rows(named=True)]
    print(format_rows(["alpha", "run_id", "horizon", *cols], rows, args.format))
    if args.format == "table":
        if len(jobs) > 1:
            _print_correlation(jobs)
        _print_runs_footer(runs)
    return 0


def _print_correlation(jobs: list[Any]) -> None:
    """The alphas' signal correlation matrix (mean cross-sectional rank correlation of their
    scores over their common dates), below the IC summary of several alphas."""
    from backlake.runs.alpha import score_correlation

    corr = score_correlation(jobs)
    names = list(dict.fromkeys(corr["alpha_a"].to_list()))
    value = {(a, b): c for a, b, c in corr.iter_rows()}
    rows = [[a, *(value.get((a, b)) for b in names)] for a in names]
    print("\nsignal correlation (mean cross-sectional rank correlation of the scores over their common dates):")
    print(format_rows(["alpha", *names], rows, "table"))


def cmd_backtest(args: argparse.Namespace) -> int:
    from backlake.runs.alpha import stored_summary

    out, _ = _run_flow(args)
    runs = out["runs"]
    ids = [r["run_id"] for r in runs]
    lake = _lake()
    figures = lake.read("runs", columns=["run_id", "total_return", "cagr", "sharpe", "max_drawdown", "n_trades"],
                        where={"run_id": ids, "status": "completed"})
    by_id = {r["run_id"]: r for r in figures.iter_rows(named=True)}
    summary = stored_summary(lake, ids)
    first_h = min(parse_horizons(args.horizons))
    ic = {r["run_id"]: r for r in summary.iter_rows(named=True) if r["horizon"] == first_h}
    cols = ["alpha", "run_id", "total_return", "cagr", "sharpe", "max_drawdown", "trades", f"mean_ic_h{first_h}",
            "turnover"]
    rows = []
    for r in runs:
        f, s = by_id.get(r["run_id"], {}), ic.get(r["run_id"], {})
        rows.append([r["alpha"], r["run_id"], f.get("total_return"), f.get("cagr"), f.get("sharpe"),
                     f.get("max_drawdown"), f.get("n_trades"), s.get("mean_ic"), s.get("turnover")])
    print(format_rows(cols, rows, args.format))
    if args.format == "table":
        _print_runs_footer(runs)
    return 0


def _print_runs_footer(runs: list[dict]) -> None:
    new = sum(r["status"] == "completed" for r in runs)
    print(f"\n{len(runs)} alpha run(s), {new} new, {len(runs) - new} already in the lake")
    if len(runs) == 1:
        rid = runs[0]["run_id"]
        print(f"IC:       backlake sql \"SELECT date, horizon, ic, rank_ic FROM ic WHERE run_id = '{rid}' "
              "ORDER BY date DESC LIMIT 20\"")
        print(f"weights:  backlake sql \"SELECT date, symbol, weight FROM weights WHERE run_id = '{rid}' "
              "ORDER BY date DESC, weight DESC LIMIT 20\"")
        print(f"attribute it:  backlake alpha attribution {rid}")


def cmd_attribution(args: argparse.Namespace) -> int:
    from backlake.runs.alpha import attribute_run

    res = attribute_run(_lake(), args.run, model=args.model, window=args.window)
    rows = [[k, v] for k, v in res.metrics.items()]
    print(format_rows(["metric", "value"], rows, args.format))
    if args.format == "table":
        what = "stored" if res.written else "unchanged (the lake already holds it)"
        print(f"\nattribution:{res.model} of {res.run_id}: {what}; {res.exposures.height} rolling exposure row(s) "
              f"({res.window}-month window)")
        print(f"exposures:  backlake sql \"SELECT date, factor, beta FROM factor_exposures WHERE run_id = "
              f"'{res.run_id}' AND model = '{res.model}' ORDER BY date, factor\"")
    return 0


def cmd_factors(args: argparse.Namespace) -> int:
    import polars as pl

    from backlake.alpha.factors import ingest_factors

    if args.path and not args.units:
        raise ConfigError(f"--path {args.path!r} needs --units percent (French's files) or --units decimal")
    if args.units and not args.path:
        raise ConfigError("--units applies to a file: give --path FILE, or drop --units for the shipped set")
    lake = _lake()
    written = ingest_factors(lake, args.path, units=args.units)
    stored = lake.read("factors").group_by("model", "factor").agg(
        pl.col("date").min().alias("first"), pl.col("date").max().alias("last"), pl.len().alias("months"),
        pl.col("source").last().alias("source")).sort("model", "factor")
    print(format_rows(["model", "factor", "first", "last", "months", "source"], stored.rows(), args.format))
    if args.format == "table":
        print(f"\n{written} row(s) written" + ("" if written else " (the lake already holds them)")
              + f"; factors is at version {lake.version('factors')}")
    return 0
