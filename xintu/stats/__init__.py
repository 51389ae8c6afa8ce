"""Usage statistics: StatsService queries, the daily roll-up, report rendering and metrics."""
