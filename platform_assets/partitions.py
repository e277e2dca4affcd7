"""The one partitioning of the platform: the data date."""

import datetime as dt

import dagster as dg

from platform_assets.settings import DATA_END, DATA_START

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=DATA_START, end_date=(dt.date.fromisoformat(DATA_END) + dt.timedelta(days=1)).isoformat()
)

# A backfill of any number of days runs as one run (one dbt invocation), not one run per day.
single_run = dg.BackfillPolicy.single_run()


def partition_dates(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """First and last data date (inclusive) of the partitions this run materializes."""
    window = context.partition_time_window
    return window.start.date(), (window.end - dt.timedelta(days=1)).date()
