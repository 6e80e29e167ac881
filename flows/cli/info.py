"""Commands that describe what can be run: ``backlake schema`` and ``strategies``."""

from __future__ import annotations

import argparse
import json

from flows.cli.output import add_format_option, format_rows


def add_schema(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("schema", help="print the JSON Schema of a backtest config")
    s.set_defaults(fn=cmd_schema)


def cmd_schema(args: argparse.Namespace) -> int:
    from backlake.config import config_json_schema

    print(json.dumps(config_json_schema(), indent=2))
    return 0


def add_strategies(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("strategies", help="list the registered strategies and their parameters")
    add_format_option(s)
    s.set_defaults(fn=cmd_strategies)


def cmd_strategies(args: argparse.Namespace) -> int:
    from backlake.strategies import get_strategy, list_strategies

    rows = []
    for name in list_strategies():
        model = get_strategy(name).params_model
        params = ", ".join(f"{k}={f.default}" for k, f in model.model_fields.items())
        spec = get_strategy(name)
        rows.append((name, params, spec.rule or " ".join(spec.doc.split()).split(". ")[0]))
    print(format_rows(("strategy", "parameters (defaults)", "rule"), rows, args.format))
    return 0
