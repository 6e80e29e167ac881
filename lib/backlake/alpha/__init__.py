"""Alpha research: a registry of point-in-time cross-sectional signals (alphas), aligned
panels, signals with feature snapshots in the lake, and portfolio weight methods.

Example::

    from backlake.alpha import panel_from_bars, compute_signals, compute_weights, WeightOptions
    panel = panel_from_bars(bars)
    sig = compute_signals(panel, "momentum_12_1", {})
    w = compute_weights(score_matrix(sig, panel), panel.dates, WeightOptions(method="rank"))
"""

from backlake.alpha import alphas as _alphas  # noqa: F401 - registers the shipped alphas
from backlake.alpha.panel import Panel, panel_from_bars
from backlake.alpha.registry import (
    AlphaOutput,
    AlphaParams,
    AlphaSpec,
    alpha_id,
    check_alpha_data,
    get_alpha,
    list_alphas,
    register_alpha,
    validate_alpha_params,
)
from backlake.alpha.signals import compute_alpha, compute_signals, coverage, score_matrix
from backlake.alpha.weights import WeightOptions, check_weight_options, compute_weights, weights_frame

__all__ = [
    "Panel", "panel_from_bars", "AlphaOutput", "AlphaParams", "AlphaSpec", "alpha_id", "check_alpha_data",
    "get_alpha", "list_alphas", "register_alpha", "validate_alpha_params", "compute_alpha", "compute_signals",
    "coverage", "score_matrix", "WeightOptions", "check_weight_options", "compute_weights", "weights_frame",
]
