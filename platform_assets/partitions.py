"""The one partitioning of the platform: the data date."""

import datetime as dt

import dagster as dg

from platform_assets.settings import DATA_END, DATA_START

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=DATA_START, end_date=(dt.date.fromisoformat(DATA_END) + dt.timedelta(days=1)).isoformat()
)

# A backfill of any number of days runs as one run (one dbt invocation), not one run per day.
single_run = dg.BackfillPolicy.single_run()
# Dagster copies a range run's metadata onto each day's materialization: what grows with the run's days, or a plot,
# would be stored once per day (a 334-day run: 22 MB of drift plots in the event log). Such metadata is inlined for
# runs of up to INLINE_DAYS days; a longer run's is where the metadata points (its MLflow run, its lineage).
INLINE_DAYS = 7


def partition_dates(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """First and last data date (inclusive) of the partitions this run materializes."""
    window = context.partition_time_window
    return window.start.date(), (window.end - dt.timedelta(days=1)).date()


def backfill_runs(graph) -> list[set[dg.AssetKey]]:
    """The runs, in order, in which Dagster's backfill daemon materializes a backfill of every asset of `graph` over
    any range of days (launched from the UI or with GraphQL `launchPartitionBackfill`). The daemon puts an asset in
    its parent's run only when both have the same partitions and backfill policy (dagster/_core/execution/
    asset_backfill.py, `_get_cant_run_because_of_parent_reason`); otherwise the asset waits until the parent's run
    has succeeded, and starts a later run. Each asset's wave counts such boundaries on its way from the sources;
    a wave's assets run together, one run per partitioning (single_run: all days in one run)."""
    waves: dict[dg.AssetKey, int] = {}

    def wave(key: dg.AssetKey) -> int:
        if key not in waves:
            node = graph.get(key)
            waves[key] = max((wave(parent) + (graph.get(parent).partitions_def != node.partitions_def
                                              or graph.get(parent).backfill_policy != node.backfill_policy)
                              for parent in node.parent_keys), default=0)
        return waves[key]

    runs: dict[tuple[int, bool], set[dg.AssetKey]] = {}
    for key in graph.materializable_asset_keys:
        runs.setdefault((wave(key), graph.get(key).is_partitioned), set()).add(key)
    return [runs[run] for run in sorted(runs)]
