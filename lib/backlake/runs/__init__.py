"""The run protocol: one way for every kind of run to be named, started, written and ended.

- ``ids``: a run's id = hash(kind, request, fingerprint of the data it read); code version.
- ``data``: the bars a run reads, pinned to a ``bars`` version, and their fingerprint.
- ``events``: attempts, claims (one live attempt per run), end events, reaping the dead.
- ``commit``: child rows, then the ``runs`` row, then the end event, for a batch of runs.
- ``backtest``: plan and execute backtests.
- ``sweep``: a parameter sweep as one run (chunks, trial batches, parent row last).
- ``jobs``: optimize, walk-forward and Monte Carlo jobs (checked and pinned before any task).
- ``alpha``: alpha runs (IC per horizon + the alpha's backtest, kind ``alpha``) and the
  Fama-French attribution of any run (:func:`backlake.runs.alpha.attribute_run`).
"""

from backlake.runs.backtest import PlannedRun, RunOutcome, commit_outcomes, execute_run, plan_runs
from backlake.runs.commit import RunRecord, commit, completed_runs
from backlake.runs.data import Pinned, fingerprint, load_bars, pin
from backlake.runs.events import Attempt, Claimed, End, claim, finish, reap
from backlake.runs.ids import RUN_KINDS, code_version, run_id

__all__ = [
    "RUN_KINDS", "run_id", "code_version", "Pinned", "pin", "load_bars", "fingerprint",
    "Attempt", "Claimed", "End", "claim", "finish", "reap", "RunRecord", "commit", "completed_runs",
    "PlannedRun", "RunOutcome", "plan_runs", "execute_run", "commit_outcomes",
]
