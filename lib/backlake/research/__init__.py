"""Research at scale: parameter sweeps, Optuna searches, walk-forward analysis, Monte Carlo
robustness and overfitting diagnostics (compute only; the flows write results to the lake)."""

from backlake.research.monte_carlo import METHODS, McSummary, MonteCarloResult, monte_carlo, simulate_paths, summarize
from backlake.research.optimize import OBJECTIVES, StudyResult, TrialRecord, evaluate_trial, optimize, summarize_trials
from backlake.research.overfitting import (
    PboResult,
    deflated_sharpe_from_returns,
    deflated_sharpe_ratio,
    probability_of_backtest_overfitting,
)
from backlake.research.sweep import SWEEP_METRICS, SweepReport, expand_grid, sweep
from backlake.research.walk_forward import (
    WalkForwardResult,
    Window,
    WindowResult,
    aggregate_windows,
    evaluate_window,
    make_windows,
    stitch,
    walk_forward,
)

__all__ = [
    "sweep", "SweepReport", "expand_grid", "SWEEP_METRICS",
    "optimize", "evaluate_trial", "summarize_trials", "StudyResult", "TrialRecord", "OBJECTIVES",
    "walk_forward", "make_windows", "evaluate_window", "stitch", "aggregate_windows", "Window", "WindowResult",
    "WalkForwardResult",
    "monte_carlo", "simulate_paths", "summarize", "McSummary", "MonteCarloResult", "METHODS",
    "probability_of_backtest_overfitting", "deflated_sharpe_ratio", "deflated_sharpe_from_returns", "PboResult",
]
