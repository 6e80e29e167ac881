"""The alpha registry: each alpha is a parameter model plus a point-in-time score function.

An alpha function takes a :class:`~backlake.alpha.panel.Panel` (dates x symbols) and its
validated parameters and returns an :class:`AlphaOutput`: one score per date and symbol (NaN =
not scored) and the named inputs (``features``) the score was computed from. Row ``t`` of every
output uses panel rows ``0..t`` only, and within those only the last ``lookback(params)`` rows
before ``t`` (a finite window), so a score never changes when later bars arrive and an
incremental refresh gives the same values as a full rebuild.

Example::

    spec = get_alpha("momentum_12_1")
    params = validate_alpha_params("momentum_12_1", {"lookback": 126})
    out = spec.fn(panel, params)           # out.scores (n, m), out.features["ret_12_1"]
    alpha_id("momentum_12_1", params)      # '5be0...' (16 hex), the same for the same params
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias, TypeVar, cast

import numpy as np
from pydantic import ValidationError

from backlake._model import StrictModel
from backlake._suggest import unknown_name_message
from backlake.config import _format_errors, canonical_hash
from backlake.errors import ConfigError

if TYPE_CHECKING:
    from backlake.alpha.panel import Panel

__all__ = [
    "AlphaParams", "AlphaOutput", "AlphaSpec", "AlphaFn", "register_alpha", "get_alpha", "list_alphas",
    "validate_alpha_params", "alpha_id", "check_alpha_data",
]


class AlphaParams(StrictModel):
    """Base of every alpha's parameter model: frozen, unknown keys rejected with the closest
    valid name, numbers taken only as numbers. Subclasses say how many bars of history before
    date t a score at t needs (:meth:`history_bars`)."""

    _what: ClassVar[str] = "parameter"

    def history_bars(self) -> int:
        """Bars of history before date t that the score at t reads (0: only bar t)."""
        return 0


@dataclass(frozen=True)
class AlphaOutput:
    """Scores ``(n, m)`` (NaN = not scored) and the named inputs, each ``(n, m)``."""

    scores: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)


P = TypeVar("P", bound=AlphaParams)

AlphaFn: TypeAlias = Callable[["Panel", AlphaParams], AlphaOutput]
"""An alpha function as the registry holds it (called with its spec's params model)."""


@dataclass(frozen=True)
class AlphaSpec:
    name: str
    params_model: type[AlphaParams]
    fn: AlphaFn
    description: str
    needs_volume: bool = False
    doc: str = ""

    def lookback(self, params: AlphaParams | Mapping[str, Any] | None = None) -> int:
        """Bars of history before date t that a score at t needs (default parameters if None)."""
        p = params if isinstance(params, AlphaParams) else validate_alpha_params(self.name, dict(params or {}))
        return int(p.history_bars())


_REGISTRY: dict[str, AlphaSpec] = {}


def register_alpha(
    name: str, params_model: type[P], *, description: str, needs_volume: bool = False
) -> Callable[[Callable[[Panel, P], AlphaOutput]], Callable[[Panel, P], AlphaOutput]]:
    """Register the decorated function as alpha ``name`` with its parameter model and a
    one-line ``description`` (the docstring holds the exact definition). ``needs_volume``:
    refused on symbols without volume (:func:`check_alpha_data`)."""

    def deco(fn: Callable[[Panel, P], AlphaOutput]) -> Callable[[Panel, P], AlphaOutput]:
        if name in _REGISTRY:
            raise ValueError(f"alpha {name!r} is registered twice")
        # the registry erases P: fn is only called with params validated by params_model
        _REGISTRY[name] = AlphaSpec(name, params_model, cast(AlphaFn, fn), description, needs_volume,
                                    (fn.__doc__ or "").strip())
        return fn

    return deco


def _ensure_loaded() -> None:
    import backlake.alpha.alphas  # noqa: F401 - registers the shipped alphas


def get_alpha(name: str) -> AlphaSpec:
    """The registered alpha ``name``; ConfigError naming the closest valid name otherwise."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(unknown_name_message("alpha", str(name), _REGISTRY)) from None


def list_alphas() -> list[str]:
    """Names of the registered alphas, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def validate_alpha_params(name: str, params: Mapping[str, Any] | AlphaParams | None = None) -> AlphaParams:
    """``params`` validated by alpha ``name``'s model (missing ones take their defaults).

    Raises ConfigError with one line naming the alpha, the parameter, the value and the fix:
    ``alpha momentum_12_1: params.skip: Input should be less than lookback ... (got 300)``."""
    spec = get_alpha(name)
    if isinstance(params, spec.params_model):
        return params
    if isinstance(params, AlphaParams):
        params = params.model_dump()
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"alpha {name}: params must be an object of parameter -> value, got {params!r}")
    try:
        return spec.params_model.model_validate(dict(params))
    except ValidationError as e:
        raise ConfigError(f"alpha {name}: {_format_errors(e, prefix='params')}") from None


def alpha_id(name: str, params: Mapping[str, Any] | AlphaParams | None = None) -> str:
    """Stable id of an alpha and its parameters: 16 hex of the sha256 of the canonical JSON of
    ``{"alpha": name, "params": <all parameters, defaults filled in>}``."""
    p = validate_alpha_params(name, params)
    return canonical_hash({"alpha": name, "params": p.model_dump(mode="json")})


def check_alpha_data(name: str, panel: Panel) -> None:
    """Refuse (ConfigError) a panel the alpha cannot score at all: a volume alpha on symbols
    that have bars but no volume (e.g. the close-only ``sp500_stocks`` panel)."""
    spec = get_alpha(name)
    if not spec.needs_volume:
        return
    has_bars = ~np.all(np.isnan(panel.close), axis=0)
    without = [s for j, s in enumerate(panel.symbols) if has_bars[j] and not panel.has_volume(j)]
    if without:
        shown = ", ".join(without[:8]) + (f" and {len(without) - 8} more" if len(without) > 8 else "")
        raise ConfigError(
            f"alpha {name} needs volume, but {len(without)} symbol(s) have bars without volume ({shown}; "
            "close-only data such as the sp500_stocks panel has none): choose symbols with volume "
            "(e.g. GOOG, SP500, NASDAQ) or an alpha that needs closes only")
