"""Check a backtest config while someone edits it: errors per field, advisory warnings, and
the form <-> JSON mapping of the config editor (the dashboard's ``/editor``; usable by a CLI).

- :func:`check_config` takes the config as a JSON-like dict and returns a :class:`ConfigReport`:
  every error of :class:`~backlake.config.BacktestConfig` at the dotted path of its field
  (``params.fast``, ``costs.commission_bps``; an unknown key names the closest valid one), plus,
  given a lake, the planning step's checks (:func:`backlake.runs.checks.config_problems`: symbols,
  timeframes, dates against the lake's coverage). Errors block a submission; warnings do not:
  no costs set, a period under one year, a universe with data gaps.
- :func:`form_fields` lists the editable fields of a config for a strategy (generated from the
  pydantic models: kind, default, choices, bounds, description); :func:`form_values` flattens a
  config dict into ``path -> value`` (and says what a form cannot show), :func:`config_from_values`
  nests the values back, folding defaults away, so ``config_from_values(form_values(fold(c)))
  == fold(c)``. :func:`fold` keeps only the keys that differ from the defaults.

Example::

    report = check_config({"strategy": "sma_crossover", "universe": ["GOOG"],
                           "costs": {"comision_bps": 5}}, lake=lake)
    report.errors[0]     # Issue('costs.comision_bps', "unknown key ...; did you mean 'commission_bps'? ...")
    report.ok            # False
"""

from __future__ import annotations

import datetime as dt
import math
import re
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

import polars as pl
from pydantic import BaseModel, ValidationError

from backlake._model import StrictModel, _number_problem, _scalar_kind, shorten
from backlake._suggest import unknown_name_message
from backlake.calendars import bar_duration_seconds
from backlake.config import TIMEFRAMES, UNIVERSES, BacktestConfig, Costs
from backlake.data.schema import date_filter
from backlake.errors import ConfigError
from backlake.lake.store import Lake
from backlake.runs.checks import Coverage, config_problems, coverage
from backlake.strategies import get_strategy, list_strategies

__all__ = [
    "Issue", "ConfigReport", "check_config", "FormField", "form_fields", "form_values", "config_from_values",
    "fold", "REQUIRED",
]

#: Keys a config always carries (everything else has a default and is folded away when equal to it).
REQUIRED = ("strategy", "universe")

Kind = Literal["int", "float", "bool", "choice", "text", "date", "universe", "toggle", "json"]


@dataclass(frozen=True)
class Issue:
    """One problem of a config: ``field`` is the dotted path (``""``: the config as a whole)."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


@dataclass(frozen=True)
class ConfigReport:
    """The result of :func:`check_config`: the validated config (None when it has errors)."""

    config: BacktestConfig | None
    errors: tuple[Issue, ...]
    warnings: tuple[Issue, ...]

    @property
    def ok(self) -> bool:
        return self.config is not None and not self.errors

    def errors_at(self, field: str) -> list[Issue]:
        return [i for i in self.errors if i.field == field]

    def warnings_at(self, field: str) -> list[Issue]:
        return [i for i in self.warnings if i.field == field]


# -- form fields ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class FormField:
    """One editable value of a config. ``kind`` says which control shows it; ``toggle`` is an
    optional section (``costs.impact``: off = ``null``)."""

    path: str
    kind: Kind
    default: Any
    optional: bool = False
    choices: tuple[str, ...] = ()
    description: str = ""
    bounds: str = ""

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1]

    @property
    def section(self) -> str:
        return self.path.rsplit(".", 1)[0] if "." in self.path else ""


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without ``None``, whether None is allowed)."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        optional = len(args) < len(get_args(annotation))
        if len(args) == 1:
            return args[0], optional
        return annotation, optional
    return annotation, False


def _bounds(metadata: Sequence[Any]) -> str:
    parts = []
    for m in metadata:
        for attr, sign in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
            value = getattr(m, attr, None)
            if value is not None:
                parts.append(f"{sign} {value:g}")
    return ", ".join(parts)


def _model_fields(model: type[BaseModel], prefix: str) -> list[FormField]:
    out: list[FormField] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        inner, optional = _unwrap(info.annotation)
        default = info.get_default(call_default_factory=True)
        description = info.description or ""
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            if optional:
                out.append(FormField(path, "toggle", None, True, description=description))
            out.extend(_model_fields(inner, f"{path}."))
            continue
        if isinstance(default, BaseModel):
            default = default.model_dump(mode="json")
        if get_origin(inner) is Literal:
            out.append(FormField(path, "choice", default, optional, tuple(str(a) for a in get_args(inner)),
                                 description))
        elif inner is bool:
            out.append(FormField(path, "bool", default, optional, description=description))
        elif inner in (int, float):
            out.append(FormField(path, "int" if inner is int else "float", default, optional,
                                 description=description, bounds=_bounds(info.metadata)))
        elif inner is dt.date:
            out.append(FormField(path, "date", default, optional, description=description))
        elif inner is dict or get_origin(inner) is dict:  # an object-valued parameter, edited as JSON
            out.append(FormField(path, "json", default, optional, description=description))
        else:
            out.append(FormField(path, "text", default, optional, description=description))
    return out


_TOP_SPECIAL: dict[str, tuple[Kind, tuple[str, ...]]] = {
    "timeframe": ("choice", TIMEFRAMES),
}


def form_fields(strategy: str) -> list[FormField]:
    """The editable fields of a config of ``strategy`` in form order: strategy, its parameters
    (from its params model), universe, dates, timeframe, cash, direction, benchmark, seed, then
    the sizing, costs and execution sections (ConfigError for an unknown strategy)."""
    spec = get_strategy(strategy)
    out: list[FormField] = [FormField("strategy", "choice", None, choices=tuple(list_strategies()),
                                      description=BacktestConfig.model_fields["strategy"].description or "")]
    out.extend(_model_fields(spec.params_model, "params."))
    universe = BacktestConfig.model_fields["universe"]
    out.append(FormField("universe", "universe", None, choices=tuple(UNIVERSES),
                         description=universe.description or ""))
    for f in _model_fields(BacktestConfig, ""):
        if f.section or f.path in ("strategy", "params", "universe"):
            continue
        kind, choices = _TOP_SPECIAL.get(f.path, (f.kind, f.choices))
        out.append(FormField(f.path, kind, f.default, f.optional, choices, f.description, f.bounds))
    out.extend(f for f in _model_fields(BacktestConfig, "") if f.section)
    return out


# -- form <-> JSON -------------------------------------------------------------------------------
def _get(data: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _plain(value: Any) -> Any:
    """JSON-ready: dates as ISO text, whole floats as ints (``10000.0`` -> ``10000``)."""
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _same(a: Any, b: Any) -> bool:
    return bool(_plain(a) == _plain(b)) and isinstance(a, bool) == isinstance(b, bool)


def _fits(f: FormField, value: Any) -> str | None:
    """Why the control of ``f`` cannot show ``value`` (None: it can)."""
    if value is None:
        return None if f.optional or f.kind in ("int", "float", "text") else "must be set"
    if f.kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"must be a whole number, not {shorten(value)}"
    if f.kind == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else f"must be a number, not {shorten(value)}"
    if f.kind in ("bool", "toggle"):
        ok = isinstance(value, bool) if f.kind == "bool" else isinstance(value, Mapping)
        return None if ok else f"must be {'true or false' if f.kind == 'bool' else 'an object or null'}"
    if f.kind == "choice":
        return None if value in f.choices else unknown_name_message("value", str(value), f.choices)
    if f.kind == "date":
        try:
            dt.date.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            return f"{shorten(value)} is not a date: write YYYY-MM-DD, e.g. \"2010-01-04\""
        return None if isinstance(value, str) else "must be a date written YYYY-MM-DD"
    if f.kind == "json":
        ok = isinstance(value, Mapping)
        return None if ok else f'must be an object such as {{"lookback": 126}}, not {shorten(value)}'
    if f.kind == "universe":
        if isinstance(value, str):
            return None if value in f.choices else unknown_name_message("universe", value, f.choices)
        if isinstance(value, list) and all(isinstance(s, str) for s in value):
            return None
        return 'must be a list of symbols such as ["GOOG"] or a universe name'
    return None if isinstance(value, str) else f"must be text, not {shorten(value)}"


def _unknown_keys(data: Mapping[str, Any], fields: Sequence[FormField], prefix: str = "") -> list[Issue]:
    """Keys of ``data`` (at any depth) that no field holds, each naming the closest valid key."""
    names: dict[str, str] = {}  # key at this level -> its full path
    for f in fields:
        if f.path.startswith(prefix):
            head = f.path[len(prefix):].split(".", 1)[0]
            names.setdefault(head, prefix + head)
    issues = []
    for key, value in data.items():
        if key not in names:
            what = "parameter" if prefix == "params." else "key"
            issues.append(Issue(prefix + str(key), unknown_name_message(what, str(key), names)))
        elif isinstance(value, Mapping) and any(f.path.startswith(f"{prefix}{key}.") for f in fields):
            issues.extend(_unknown_keys(value, fields, f"{prefix}{key}."))
    return issues


def form_values(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[Issue]]:
    """``path -> value`` for every form field of the config ``data`` (defaults where a key is
    absent; dates as ``datetime.date``), and what the form cannot show: an unknown key (naming
    the closest valid one), a value of the wrong type, an unknown strategy."""
    strategy = data.get("strategy")
    try:
        fields = form_fields(strategy if isinstance(strategy, str) else "")
    except ConfigError as e:
        return {}, [Issue("strategy", str(e) if strategy else "is required: pick a registered strategy")]
    issues = _unknown_keys(data, fields)
    params = get_strategy(str(strategy)).params_model
    values: dict[str, Any] = {}
    for f in fields:
        present, value = _get(data, f.path)
        if f.kind == "toggle":
            values[f.path] = present and value is not None
            if present and value is not None and not isinstance(value, Mapping):
                issues.append(Issue(f.path, "must be an object of settings or null"))
            continue
        if not present:
            value = params.model_fields[f.name].default if f.section == "params" else f.default
        elif (problem := _fits(f, value)) is not None:
            issues.append(Issue(f.path, problem))
            continue
        if f.kind == "date" and isinstance(value, str):
            value = dt.date.fromisoformat(value)
        if f.kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        values[f.path] = value
    return values, issues


def config_from_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The config (JSON-ready dict) that form values describe, defaults folded away (inverse of
    :func:`form_values` on a folded config)."""
    strategy = str(values.get("strategy") or "")
    fields = form_fields(strategy)
    off = {f.path for f in fields if f.kind == "toggle" and not values.get(f.path)}
    data: dict[str, Any] = {}
    for f in fields:
        if f.kind == "toggle":
            if values.get(f.path):
                _set(data, f.path, {})
            continue
        if f.section in off or f.path not in values:
            continue
        _set(data, f.path, _plain(values[f.path]))
    return fold(data)


def fold(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` without the keys equal to their default (the strategy's parameter defaults
    included); ``strategy`` and ``universe`` always kept, first. Keys no field knows are kept
    as they are (so validation can name them)."""
    strategy = data.get("strategy")
    try:
        fields = {f.path: f for f in form_fields(strategy if isinstance(strategy, str) else "")}
    except ConfigError:
        return dict(data)
    params = get_strategy(str(strategy)).params_model

    def walk(node: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in node.items():
            path = prefix + str(key)
            f = fields.get(path)
            if f is not None and f.kind == "toggle":
                if value is not None:
                    out[key] = walk(value, f"{path}.") if isinstance(value, Mapping) else value
                continue
            if f is None and isinstance(value, Mapping) and any(p.startswith(f"{path}.") for p in fields):
                sub = walk(value, f"{path}.")
                if sub:
                    out[key] = sub
                continue
            if f is not None and path not in REQUIRED:
                default = params.model_fields[f.name].default if f.section == "params" else f.default
                if _same(value, default):
                    continue
            out[key] = _plain(value)
        return out

    folded = walk(data, "")
    first: dict[str, Any] = {k: folded[k] for k in ("strategy", "params", "universe") if k in folded}
    return {**first, **folded}


# -- validation ----------------------------------------------------------------------------------
class _Unwrapped(BacktestConfig):
    """BacktestConfig whose validation raises pydantic's own errors (with their locations)
    rather than one ConfigError sentence."""

    __init__ = BaseModel.__init__


_PATH_PREFIX = re.compile(r"^([A-Za-z_][\w.]*)\s*[:=]")


def _field_of(loc: Sequence[int | str], model: type[BaseModel], prefix: str) -> tuple[str, type[BaseModel] | None]:
    """The dotted path of a pydantic error location (union tags and list indexes dropped) and
    the model at its end (None when it ends at a value)."""
    path = prefix.rstrip(".")
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None or not isinstance(part, str) or part not in current.model_fields:
            break
        path = f"{path}.{part}" if path else part
        inner, _ = _unwrap(current.model_fields[part].annotation)
        current = inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None
    return path, current


def _issues_of(err: ValidationError, model: type[BaseModel], prefix: str = "") -> list[Issue]:
    issues = []
    for e in err.errors():
        path, at_model = _field_of(e["loc"], model, prefix)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "missing":
            msg = "is required"
        elif path == "universe" and e["type"] in ("list_type", "string_type"):  # the two arms of its union
            msg = f'must be a list of symbols such as ["GOOG"] or a universe name (got {shorten(e.get("input"))})'
        elif e["type"] != "value_error" and "input" in e:
            msg = f"{msg} (got {shorten(e['input'])})"
        m = _PATH_PREFIX.match(msg)
        if at_model is not None and m:  # a model-level check naming its field: "fast=50 must ..."
            name = m.group(1)
            rel = name.removeprefix(f"{path}.") if path else name
            if rel.split(".")[0] in at_model.model_fields:
                path = f"{path}.{rel}" if path else rel
                if msg[len(name):].lstrip().startswith(":"):
                    msg = msg[len(name):].lstrip()[1:].lstrip()
        if Issue(path, msg) not in issues:
            issues.append(Issue(path, msg))
    return issues


def _strip_bad_scalars(data: Mapping[str, Any], model: type[BaseModel], prefix: str,
                       issues: list[Issue]) -> dict[str, Any]:
    """``data`` without unknown keys and wrongly typed numbers (each reported in ``issues``), so
    that validation reports every other problem instead of stopping at the first of these."""
    out: dict[str, Any] = {}
    what = getattr(model, "_what", "key") if issubclass(model, StrictModel) else "key"
    for key, value in data.items():
        info = model.model_fields.get(key)
        if info is None:
            issues.append(Issue(prefix + str(key), unknown_name_message(str(what), str(key), model.model_fields)))
            continue
        kind = _scalar_kind(info.annotation)
        problem = _number_problem(kind, value) if kind is not None else None
        if problem:
            issues.append(Issue(prefix + key, problem))
            continue
        inner, _ = _unwrap(info.annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel) and isinstance(value, Mapping):
            value = _strip_bad_scalars(value, inner, f"{prefix}{key}.", issues)
        out[key] = value
    return out


def _structural(data: Mapping[str, Any]) -> tuple[BacktestConfig | None, list[Issue]]:
    issues: list[Issue] = []
    clean = _strip_bad_scalars(data, BacktestConfig, "", issues)
    strategy = clean.get("strategy")
    params = clean.get("params")
    if isinstance(strategy, str) and isinstance(params, Mapping):
        try:
            model = get_strategy(strategy).params_model
        except ConfigError:
            clean.pop("params")  # the strategy's error says it all
        else:
            n = len(issues)
            p = _strip_bad_scalars(params, model, "params.", issues)
            try:
                model.model_validate(p)
            except ValidationError as e:
                issues.extend(_issues_of(e, model, "params."))
            if len(issues) > n:
                clean["params"] = {}  # reported per parameter above; check the rest
    try:
        _Unwrapped.__pydantic_validator__.validate_python(clean)
    except ValidationError as e:
        issues.extend(_issues_of(e, BacktestConfig))
        return None, issues
    if issues:
        return None, issues
    return BacktestConfig.model_validate(data), []


def _lake_field(problem: str) -> str:
    word = re.match(r"[a-z_]+", problem)
    name = word.group(0) if word else ""
    return name if name in BacktestConfig.model_fields else ""


def _warnings(cfg: BacktestConfig, cov: Coverage | None) -> list[Issue]:
    out: list[Issue] = []
    if cfg.costs == Costs():
        out.append(Issue("costs", "no costs set: commission, slippage and fees are all zero, so the results are "
                                  "gross of costs; set costs.commission_bps (e.g. 5) and costs.slippage_bps"))
    spans = {s: cov.spans[(s, cfg.timeframe)] for s in cfg.symbols
             if cov is not None and (s, cfg.timeframe) in cov.spans}
    first = cfg.start or (min(lo.date() for lo, _, _ in spans.values()) if spans else None)
    last = cfg.end or (max(hi.date() for _, hi, _ in spans.values()) if spans else None)
    if spans:
        first = max(first, min(lo.date() for lo, _, _ in spans.values())) if first else first
        last = min(last, max(hi.date() for _, hi, _ in spans.values())) if last else last
    if first and last and last >= first and (last - first).days < 365:
        out.append(Issue("start", f"the period {first} to {last} is {(last - first).days} days, under one year: "
                                  "annualised figures (CAGR, Sharpe) are noisy; widen start/end to a year or more"))
    if cov is not None and spans:
        out.extend(_gap_warnings(cfg, cov, spans))
    return out


def _gap_warnings(cfg: BacktestConfig, cov: Coverage,
                  spans: Mapping[str, tuple[dt.datetime, dt.datetime, int]]) -> list[Issue]:
    from backlake.data.validate import _find_gaps  # the ingest's gap rule, per calendar

    slack = dt.timedelta(seconds=max(5 * 86_400, 3 * bar_duration_seconds(cfg.timeframe)))
    late = [f"{s} starts {lo:%Y-%m-%d}" for s, (lo, _, _) in spans.items()
            if cfg.start and lo.date() - cfg.start > slack]
    early = [f"{s} ends {hi:%Y-%m-%d}" for s, (_, hi, _) in spans.items()
             if cfg.end and cfg.end - hi.date() > slack]
    out = []
    if late or early:
        out.append(Issue("universe", f"the data does not cover the whole period: {'; '.join(late + early)} "
                                     f"({cfg.timeframe} bars); those symbols trade only where they have bars"))
    if len(spans) > 1 and not cfg.start:
        los = {s: lo for s, (lo, _, _) in spans.items()}
        if max(los.values()) - min(los.values()) > slack:
            s = max(los, key=lambda k: los[k])
            out.append(Issue("universe", f"the symbols' histories start on different dates ({s} only from "
                                         f"{los[s]:%Y-%m-%d}); set start to align them"))
    rows = cov.rows.filter((pl.col("timeframe") == cfg.timeframe) & pl.col("symbol").is_in(list(spans))
                           & date_filter(cfg.start, cfg.end)).sort("symbol", "timeframe", "ts")
    gaps = _find_gaps(rows, {}) if rows.height else rows
    if gaps.height:
        first = gaps.row(0, named=True)
        per = ", ".join(f"{s} {n}" for s, n in gaps.group_by("symbol").len().sort("symbol").iter_rows())
        out.append(Issue("universe", f"{gaps.height} stretch(es) without bars inside the period ({per}), the first "
                                     f"{first['symbol']} {first['from']:%Y-%m-%d} to {first['to']:%Y-%m-%d}: "
                                     "trading sessions without a bar (exchange holidays and closures are not "
                                     "counted); see the Health page's coverage"))
    return out


#: The fields the lake checks look at: while one of them has an error, the lake is not asked.
LAKE_FIELDS = frozenset({"strategy", "universe", "timeframe", "start", "end", "benchmark"})


def check_config(data: Any, *, lake: Lake | None = None, cov: Coverage | None = None,
                 coverage_of: Callable[[list[str]], Coverage] | None = None) -> ConfigReport:
    """Every error of the config ``data`` (a JSON-like dict) at its field, and the advisory
    warnings. The lake-aware checks of the planning step run too when the lake's coverage is at
    hand: ``cov`` (read before), ``coverage_of(symbols)`` (e.g. a cached reader), or ``lake``.
    They run even while other fields have errors (those sections taken at their defaults), as
    long as the fields they look at (:data:`LAKE_FIELDS`) are valid."""
    if not isinstance(data, Mapping):
        return ConfigReport(None, (Issue("", f"a config is a JSON object of key -> value, not {shorten(data)}"),), ())
    cfg, issues = _structural(data)
    subject = cfg
    if cfg is None:
        broken = {i.field.split(".")[0] for i in issues}
        if broken & LAKE_FIELDS or "" in broken:
            return ConfigReport(None, tuple(issues), ())
        subject, _ = _structural({k: v for k, v in data.items() if k not in broken})
    if subject is None:
        return ConfigReport(None, tuple(issues), ())
    if cov is None:
        symbols = sorted(set(subject.symbols) | ({subject.benchmark} if subject.benchmark else set()))
        if coverage_of is not None:
            cov = coverage_of(symbols)
        elif lake is not None:
            cov = coverage(lake, symbols)
    problems = [Issue(_lake_field(p), p) for p in config_problems(subject, cov)] if cov is not None else []
    if cfg is None:
        return ConfigReport(None, (*issues, *problems), ())
    return ConfigReport(None if problems else cfg, tuple(problems), tuple(_warnings(cfg, cov)))
