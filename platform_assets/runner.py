"""Materialize the whole graph for a date range as one run on the platform's Dagster instance, headless."""

from __future__ import annotations

import datetime as dt
import threading
import time

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from platform_assets.progress import follow_run

QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def materialize_all_job() -> dg.JobDefinition:
    from platform_assets.definitions import defs  # noqa: PLC0415

    return defs.resolve_job_def("materialize_all")


def materialize_range(instance: dg.DagsterInstance, first_day: dt.date, last_day: dt.date,
                      show_progress: bool = True) -> dg.ExecutionResult:
    """One run of `materialize_all` over [first_day, last_day], with the multiprocess executor."""
    finished = threading.Event()
    follower = threading.Thread(target=follow_run, args=(instance, time.time() - 1, finished), daemon=True)
    if show_progress:
        follower.start()
    try:
        return dg.execute_job(
            dg.reconstructable(materialize_all_job),
            instance=instance,
            tags={ASSET_PARTITION_RANGE_START_TAG: first_day.isoformat(),
                  ASSET_PARTITION_RANGE_END_TAG: last_day.isoformat()},
            run_config=QUIET_LOGS,
            raise_on_error=False,
        )
    finally:
        finished.set()
        if show_progress:
            follower.join()
