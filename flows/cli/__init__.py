"""The ``backlake`` command line: demo, ingest, backtest, sweep, optimize, walk-forward,
monte-carlo, regress, goldens, maintain, sql, lake status, dashboard, schema, strategies,
users, server, s3.

    backlake demo
    backlake ingest --source samples --symbols GOOG SP500
    backlake backtest config.json
    backlake sql "SELECT run_id, sharpe FROM runs ORDER BY sharpe DESC" --format json
    backlake lake status --format json
    backlake dashboard --port 5006

Modules: ``entry`` (the parser and :func:`main`), one per command group (``data``: ingest;
``runs``: backtest, sweep, optimize, walk-forward, monte-carlo, regress; ``lake``: sql, lake
status, maintain; ``info``: schema, strategies; ``app``: demo, dashboard; ``goldens``: the
golden runs regress replays; ``users``: the dashboard's users; ``server``: the local Prefect
server; ``s3``: a local S3 server), and the helpers they share: ``output`` (tables, JSON, CSV;
reading JSON files) and ``progress`` (progress bars).
"""

from flows.cli.entry import build_parser, main
from flows.cli.progress import progress_bars

__all__ = ["build_parser", "main", "progress_bars"]
