"""backlake: backtests whose every result lands in one versioned Delta lake.

    import backlake as bl
    cfg = bl.BacktestConfig.model_validate({...})
    res = bl.run_backtest(cfg, bars)
"""

from typing import TYPE_CHECKING

from backlake.config import BacktestConfig, Costs, Execution, Sizing
from backlake.engine import BacktestResult, run_backtest
from backlake.errors import (
    BacklakeError,
    BacktestError,
    ConfigError,
    DataValidationError,
    LakeConnectionError,
    LakeError,
)
from backlake.settings import Settings, get_settings
from backlake.strategies import list_strategies

if TYPE_CHECKING:  # at run time `sweep` loads on first use (see __getattr__)
    from backlake.research.sweep import sweep

__version__ = "0.1.0"

__all__ = [
    "BacktestConfig", "BacktestResult", "Costs", "Execution", "Sizing", "Settings",
    "BacklakeError", "BacktestError", "ConfigError", "DataValidationError", "LakeConnectionError",
    "LakeError", "get_settings", "list_strategies", "run_backtest", "sweep", "__version__",
]


def __getattr__(name: str) -> object:
    # the sweep machinery (parallel kernels) loads on first use, keeping `import backlake` light
    if name == "sweep":
        from backlake.research.sweep import sweep

        return sweep
    raise AttributeError(f"module 'backlake' has no attribute {name!r}")
