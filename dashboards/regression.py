"""The Regression page (``/regression``): every golden run's latest regression report — each
metric stored vs replayed against its tolerance, drift highlighted — and the history of reports.

Reads the lake tables ``goldens`` (the golden runs and their tolerances) and
``regression_reports`` (one row per golden x metric per report, written by ``backlake regress``
and the ``regression-nightly`` deployment). A golden's latest report is the newest report that
replayed it.
"""

from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd
import panel as pn

from backlake.errors import BacklakeError
from dashboards.details.backtest import run_title
from dashboards.details.research import CSS, parse_json
from dashboards.fmt import DASH, metric_text
from dashboards.layout import page, watch_versions
from dashboards.store import LakeStore

__all__ = ["RegressionPage", "golden_status", "diff_text"]

STATUS = {"PASS": ("#1a7f37", "#e6f4ea", "✔"), "DRIFT": ("#b3261e", "#fde7e7", "✖"),
          "ERROR": ("#8a5a00", "#fff4d6", "▲"), "NOT REPLAYED": ("#52606d", "#eef1f4", "•")}
PAGE_CSS = CSS + """
.bl-pill { display: inline-block; padding: 1px 10px; border-radius: 10px; font-weight: 600; font-size: 0.85rem; }
.bl-golden { border: 1px solid #d0d7de; border-radius: 8px; padding: 8px 14px; margin: 8px 0; background: #fff; }
.bl-golden.drift { border-color: #e15759; }
.bl-golden h4 { margin: 2px 0 4px 0; }
.bl-tbl tr.drift td { background: #fadbd8; color: #7f1d1d; font-weight: 600; }
"""
EMPTY = ("No golden runs yet. Make a completed backtest a golden with `backlake goldens add RUN --tol sharpe=1e-6`, "
         "then replay the goldens with `backlake regress` (the `regression-nightly` deployment does it every night).")


def diff_text(v: Any) -> str:
    """An absolute difference or tolerance: scientific when small."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return DASH
    f = float(v)
    return "0" if f == 0 else (f"{f:.3g}" if abs(f) >= 1e-3 else f"{f:.2e}")


def golden_status(rows: pd.DataFrame) -> str:
    """PASS / DRIFT / ERROR / NOT REPLAYED for one golden's rows of one report."""
    if rows.empty:
        return "NOT REPLAYED"
    if rows["error"].notna().any() and rows["metric"].isna().any():
        return "ERROR"
    return "PASS" if rows["ok"].fillna(False).astype(bool).all() else "DRIFT"


def pill(status: str) -> str:
    fg, bg, icon = STATUS[status]
    return f"<span class='bl-pill' style='color:{fg};background:{bg}'>{icon} {html.escape(status)}</span>"


def _when(ts: Any) -> str:
    return DASH if ts is None or pd.isna(ts) else pd.Timestamp(ts).strftime("%Y-%m-%d %H:%M:%S UTC")


class RegressionPage:
    """The goldens' latest reports and the report history, re-read by :meth:`reload`."""

    def __init__(self, store: LakeStore) -> None:
        self.store = store
        self.body = pn.Column(sizing_mode="stretch_width", css_classes=["regression-page"])
        self.reload()

    def reload(self) -> None:
        self.store.refresh()
        self.body.loading = True
        try:
            self.body[:] = self._build()
        except BacklakeError as e:
            msg = str(e)
            if "goldens" in msg or "regression_reports" in msg:
                self.body[:] = [pn.pane.Alert(EMPTY, alert_type="info", css_classes=["regression-empty"])]
            else:
                self.body[:] = [pn.pane.Alert(f"Could not read the regression tables: {msg}", alert_type="danger")]
        finally:
            self.body.loading = False

    def _reports(self) -> pd.DataFrame:
        try:
            return self.store.query(
                "SELECT report_id, timezone('UTC', ts) AS ts, source, run_id, metric, stored, replayed, abs_diff, "
                "tolerance, ok, error FROM regression_reports ORDER BY ts DESC, report_id, run_id, metric",
                key=("regression.reports",))
        except BacklakeError as e:
            if "regression_reports" not in str(e):
                raise
            return pd.DataFrame(columns=["report_id", "ts", "source", "run_id", "metric", "stored", "replayed",
                                         "abs_diff", "tolerance", "ok", "error"])

    def _build(self) -> list[Any]:
        goldens = self.store.query(
            "SELECT g.run_id, g.tolerances, g.default_tolerance, g.added_by, timezone('UTC', g.added_at) AS added_at, "
            "g.note, r.strategy, r.symbols, r.params FROM goldens g LEFT JOIN runs r ON r.run_id = g.run_id "
            "AND r.status = 'completed' ORDER BY g.added_at, g.run_id", key=("regression.goldens",))
        reports = self._reports()
        if goldens.empty and reports.empty:
            return [pn.pane.Alert(EMPTY, alert_type="info", css_classes=["regression-empty"])]
        sections, counts = [], {k: 0 for k in STATUS}
        for g in goldens.to_dict("records"):
            mine = reports[reports["run_id"] == g["run_id"]]
            latest = mine[mine["report_id"] == mine.iloc[0]["report_id"]] if len(mine) else mine
            status = golden_status(latest)
            counts[status] += 1
            sections.append(self._golden(g, latest, status))
        last = _when(reports["ts"].iloc[0]) if len(reports) else "never"
        cards = "".join(
            f"<div class='bl-card {'bad' if k in ('DRIFT', 'ERROR') and n else ('good' if k == 'PASS' and n else '')}'>"
            f"<div class='l'>{html.escape(k.lower())}</div><div class='n'>{n}</div></div>"
            for k, n in counts.items())
        summary = pn.pane.HTML(
            "<div class='bl-cards'><div class='bl-card'><div class='l'>goldens</div>"
            f"<div class='n'>{len(goldens)}</div>"
            f"</div>{cards}<div class='bl-card'><div class='l'>last report</div><div class='n' style='font-size:1rem'>"
            f"{html.escape(last)}</div></div></div>", stylesheets=[PAGE_CSS], sizing_mode="stretch_width",
            css_classes=["regression-summary"])
        return [summary, pn.pane.Markdown("### Golden runs: latest report"), *sections,
                pn.pane.Markdown("### Report history"), self._history(reports)]

    def _golden(self, g: dict[str, Any], rows: pd.DataFrame, status: str) -> pn.pane.HTML:
        params = ", ".join(f"{k}={v}" for k, v in parse_json(g.get("params")).items())
        title = run_title(g) if g.get("strategy") else "(run not in the lake) on ?"
        tols = parse_json(g.get("tolerances"))
        tol_text = ", ".join(f"{k} ± {diff_text(v)}" for k, v in tols.items())
        head = (f"<h4>{html.escape(title)} {pill(status)}</h4><div class='bl-sub'>{html.escape(params)} · run "
                f"<code>{html.escape(g['run_id'])}</code> · tolerances: {html.escape(tol_text or 'none')}, others ± "
                f"{html.escape(diff_text(g.get('default_tolerance')))} · added by {html.escape(str(g.get('added_by')))}"
                + (f" · {html.escape(str(g['note']))}" if g.get("note") else "") + "</div>")
        if rows.empty:
            body = "<p class='bl-note'>Not replayed yet: run <code>backlake regress</code>.</p>"
        else:
            r0 = rows.iloc[0]
            err = rows[rows["metric"].isna() & rows["error"].notna()]
            metric_rows = rows[rows["metric"].notna()].copy()
            metric_rows["_drift"] = ~metric_rows["ok"].fillna(False).astype(bool)
            metric_rows = metric_rows.sort_values(["_drift", "metric"], ascending=[False, True])
            trs = "".join(
                f"<tr class='{'drift' if d else ''}'><td class='l'>{html.escape(str(m))}</td>"
                f"<td>{html.escape(metric_text(m, s))}</td><td>{html.escape(metric_text(m, rp))}</td>"
                f"<td>{html.escape(diff_text(ad))}</td><td>{html.escape(diff_text(t))}</td>"
                f"<td class='l'>{'drift' if d else 'ok'}</td></tr>"
                for m, s, rp, ad, t, d in zip(metric_rows["metric"], metric_rows["stored"], metric_rows["replayed"],
                                              metric_rows["abs_diff"], metric_rows["tolerance"], metric_rows["_drift"]))
            n_drift = int(metric_rows["_drift"].sum())
            body = (f"<div class='bl-sub'>report <code>{html.escape(str(r0['report_id']))}</code> · "
                    f"{html.escape(_when(r0['ts']))} · {html.escape(str(r0['source']))} · {len(metric_rows)} metrics, "
                    f"{n_drift} out of tolerance</div>"
                    + "".join(f"<p style='color:#b3261e'>replay failed: {html.escape(str(e))}</p>"
                              for e in err["error"])
                    + ("<div style='max-height:320px;overflow:auto'><table class='bl-tbl'><thead><tr>"
                       "<th class='l'>metric</th><th>stored</th><th>replayed</th><th>abs diff</th><th>tolerance</th>"
                       f"<th class='l'>status</th></tr></thead><tbody>{trs}</tbody></table></div>" if trs else ""))
        cls = "drift" if status in ("DRIFT", "ERROR") else ""
        return pn.pane.HTML(f"<div class='bl-golden {cls}'>{head}{body}</div>", stylesheets=[PAGE_CSS],
                            sizing_mode="stretch_width", css_classes=["golden-report", f"golden-{g['run_id']}"])

    def _history(self, reports: pd.DataFrame) -> pn.pane.HTML:
        if reports.empty:
            return pn.pane.HTML("<p class='bl-note'>No report yet: run <code>backlake regress</code>.</p>",
                                stylesheets=[PAGE_CSS], sizing_mode="stretch_width", css_classes=["regression-history"])
        trs = []
        for rid, grp in reports.groupby("report_id", sort=False):
            metric_rows = grp[grp["metric"].notna()]
            n_drift = int((~metric_rows["ok"].fillna(False).astype(bool)).sum())
            n_err = int((grp["metric"].isna() & grp["error"].notna()).sum())
            status = "ERROR" if n_err else ("DRIFT" if n_drift else "PASS")
            drifted = ", ".join(sorted({f"{r} {m}" for r, m, ok in zip(metric_rows["run_id"], metric_rows["metric"],
                                                                         metric_rows["ok"]) if not ok}))
            trs.append(
                f"<tr class='{'drift' if status != 'PASS' else ''}'>"
                f"<td class='l'>{html.escape(_when(grp['ts'].iloc[0]))}"
                f"</td><td class='l'><code>{html.escape(str(rid))}</code></td><td class='l'>"
                f"{html.escape(str(grp['source'].iloc[0]))}</td><td>{grp['run_id'].nunique()}</td>"
                f"<td>{len(metric_rows)}</td><td>{n_drift}</td><td>{n_err}</td><td class='l'>{pill(status)}</td>"
                f"<td class='l'>{html.escape(drifted[:200])}</td></tr>")
        return pn.pane.HTML(
            "<div style='max-height:420px;overflow:auto'><table class='bl-tbl'><thead><tr><th class='l'>time</th>"
            "<th class='l'>report</th><th class='l'>source</th><th>goldens</th><th>metrics</th><th>drifted</th>"
            "<th>errors</th><th class='l'>result</th><th class='l'>out of tolerance</th></tr></thead><tbody>"
            f"{''.join(trs)}</tbody></table></div>", stylesheets=[PAGE_CSS], sizing_mode="stretch_width",
            css_classes=["regression-history"])


def main() -> None:
    tpl, identity = page("regression", "Regression")
    if identity is not None:
        store = LakeStore()
        view = RegressionPage(store)
        tpl.main.append(view.body)
        watch_versions(tpl, store, ("goldens", "regression_reports"), on_refresh=view.reload)
    tpl.servable(title="backlake — regression")


if __name__.startswith("bokeh_app") or __name__ == "__main__":
    main()
