"""Research at scale, compute only: parameter sweeps, Optuna searches, walk-forward analysis,
Monte Carlo robustness and overfitting diagnostics. Writing a job to the lake is the run
protocol's part (``backlake.runs``).

One module per technique; its entry point has the module's name and is imported from the
module (the package does not re-export it, so ``backlake.research.sweep`` is always the module)::

    from backlake.research.sweep import sweep
    from backlake.research.optimize import optimize
    from backlake.research.walk_forward import walk_forward
    from backlake.research.monte_carlo import monte_carlo
"""

from backlake.research.monte_carlo import METHODS, McSummary, MonteCarloResult, simulate_paths, summarize
from backlake.research.optimize import OBJECTIVES, StudyResult, TrialRecord, evaluate_trial, summarize_trials
from backlake.research.overfitting import (
    PboResult,
    deflated_sharpe_from_returns,
    deflated_sharpe_ratio,
    probability_of_backtest_overfitting,
)
from backlake.research.sweep import SWEEP_METRICS, SweepReport, expand_grid
from backlake.research.walk_forward import (
    WalkForwardResult,
    Window,
    WindowResult,
    aggregate_windows,
    evaluate_window,
    make_windows,
    stitch,
)

__all__ = [
    "SweepReport", "expand_grid", "SWEEP_METRICS",
    "evaluate_trial", "summarize_trials", "StudyResult", "TrialRecord", "OBJECTIVES",
    "make_windows", "evaluate_window", "stitch", "aggregate_windows", "Window", "WindowResult",
    "WalkForwardResult",
    "simulate_paths", "summarize", "McSummary", "MonteCarloResult", "METHODS",
    "probability_of_backtest_overfitting", "deflated_sharpe_ratio", "deflated_sharpe_from_returns", "PboResult",
]
