"""Analytics over the lake's runs: compare, live vs backtest overlay, health (pure: no Prefect, no Panel)."""
