"""Materialize the whole graph for a date range as one run on the platform's Dagster instance, headless."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Sequence

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from platform_assets.progress import follow_run

QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# Before the first step, Dagster records a planned-materialization event per asset AND partition (on sqlite
# two connections and commits each, 20-90 ms: 150 s and more for the demo's 334 days). With this setting, read
# by the instance when it creates the run, it records one event per asset carrying the partition range.
# Trade-off: until the run ends, the UI and declarative automation do not see its partitions as in progress,
# and a failed run's partitions show as missing rather than failed. Failed runs are still alerted
# (owner_alert_sensor reads runs, not partition status). Only these headless runs use it.
PLANNED_EVENTS_AS_RANGES = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"


def materialize_range(
    instance: dg.DagsterInstance, first_day: dt.date, last_day: dt.date, show_progress: bool = True,
    assets: Sequence[dg.AssetKey] | None = None,
) -> dg.ExecuteInProcessResult:
    """One run of `materialize_all` (or only `assets` of it) over [first_day, last_day], its steps in this
    process (the platform's executor), its resources bound to this process's settings now."""
    from platform_assets.definitions import build_definitions  # noqa: PLC0415  (loads the code location)

    job = build_definitions().resolve_job_def("materialize_all")
    finished = threading.Event()
    follower = threading.Thread(target=follow_run, args=(instance, time.time() - 1, finished), daemon=True)
    if show_progress:
        follower.start()
    previous = os.environ.get(PLANNED_EVENTS_AS_RANGES)
    os.environ[PLANNED_EVENTS_AS_RANGES] = "true"
    try:
        return job.execute_in_process(
            instance=instance,
            tags={ASSET_PARTITION_RANGE_START_TAG: first_day.isoformat(),
                  ASSET_PARTITION_RANGE_END_TAG: last_day.isoformat()},
            run_config=QUIET_LOGS,
            raise_on_error=False,
            asset_selection=assets,
        )
    finally:
        if previous is None:
            os.environ.pop(PLANNED_EVENTS_AS_RANGES)
        else:
            os.environ[PLANNED_EVENTS_AS_RANGES] = previous
        finished.set()
        if show_progress:
            follower.join()
