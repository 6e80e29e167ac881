"""A report (tear sheet) shows its tables whole; the runs page scrolls long ones in a box."""

from __future__ import annotations

import pandas as pd
import pytest

import dashboards.details as details
from dashboards.details import FULL_TABLES, register, render
from dashboards.details.research import _html_table


@pytest.fixture
def table_kind():
    frame = pd.DataFrame({"window": range(20), "oos": [0.1] * 20})

    @register("test_tables")
    def view(store, run):
        return _html_table(frame, {"window": "count", "oos": "ratio"}, css_class="t", max_height=50)

    yield "test_tables"
    details._VIEWS.pop("test_tables", None)


def test_tables_scroll_on_the_page_and_show_whole_in_a_report(table_kind) -> None:
    on_page = render(None, {"kind": table_kind}).object
    assert "max-height:50px;overflow:auto" in on_page
    in_report = render(None, {"kind": table_kind}, full_tables=True).object
    assert "max-height" not in in_report and in_report.count("<tr") == 21  # the header and every row
    assert FULL_TABLES.get() is False  # set for that one view only


def test_the_report_builds_its_detail_with_full_tables(monkeypatch) -> None:
    from dashboards import report

    seen = {}

    def fake_render(store, run, **kw):
        seen.update(kw)
        return report.pn.pane.HTML("detail")

    monkeypatch.setattr(details, "render", fake_render)
    monkeypatch.setattr(report, "report_header", lambda run: report.pn.pane.HTML("head"))

    class Store:
        lake_uri = "/tmp/lake"

    report.report_view(Store(), {"run_id": "r1", "kind": "walk_forward"})
    assert seen == {"full_tables": True}
