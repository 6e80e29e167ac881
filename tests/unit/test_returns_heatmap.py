"""The monthly-returns heatmap of a run's page: labels that fit their cells and stay readable."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dashboards.details.backtest import _month_text, _returns_section


@pytest.mark.parametrize(("ret", "text"), [
    (-0.10944, "-10.9%"), (0.25918, "25.9%"), (0.0, "0.0%"), (-0.0004, "0.0%"), (0.0006, "0.1%"),
    (-1.2269, "-123%"), (2.5, "250%"), (float("nan"), ""), (None, ""),
])
def test_month_text_has_one_decimal_and_keeps_the_sign(ret, text) -> None:
    assert _month_text(ret) == text


def test_heatmap_labels_carry_the_sign_and_a_readable_colour() -> None:
    # month-end equity: +20 % in January, -10.94 % in February, +1 % in March (of 2021)
    ends = {"2020-12-31": 100.0, "2021-01-29": 120.0, "2021-02-26": 120.0 * (1 - 0.1094),
            "2021-03-31": 120.0 * (1 - 0.1094) * 1.01}
    equity = pd.DataFrame({"ts": pd.to_datetime(list(ends)), "equity": list(ends.values())})
    row = _returns_section(equity, "test")
    overlay = row[0].object  # heatmap * labels
    labels = next(el for el in overlay if type(el).__name__ == "Labels")
    data = labels.data.set_index("Month")
    assert data.loc["Feb", "text"] == "-10.9%"
    assert data.loc["Jan", "text"] == "20.0%"
    assert data.loc["Mar", "text"] == "1.0%"
    # white on the strong ends of the colour map, dark on its pale middle
    assert data.loc["Jan", "text_color"] == "#fff"
    assert data.loc["Mar", "text_color"] == "#222"
    assert math.isclose(float(np.nanmax(np.abs(labels.data["ret"]))), 0.2, rel_tol=1e-9)
