"""Research at scale: parameter sweeps (compute only; the flows write results to the lake)."""

from backlake.research.sweep import SWEEP_METRICS, SweepReport, expand_grid, sweep

__all__ = ["sweep", "SweepReport", "expand_grid", "SWEEP_METRICS"]
