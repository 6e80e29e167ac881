"""Causal indicators: the value at bar N uses bars 0..N only."""

from __future__ import annotations

import numpy as np


def sma(x: np.ndarray, window: int) -> np.ndarray:
    """Simple moving average; NaN until ``window`` values are available (or if any is NaN)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    if window <= 0 or x.size < window:
        return out
    c = np.cumsum(np.insert(x, 0, 0.0))
    out[window - 1 :] = (c[window:] - c[:-window]) / window
    return out
