"""Materialize the whole graph for a date range as one run on the platform's Dagster instance, headless."""

from __future__ import annotations

import datetime as dt
import threading
import time

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
_PROGRESS_EVENTS = {
    dg.DagsterEventType.STEP_START: "started",
    dg.DagsterEventType.STEP_SUCCESS: "done",
    dg.DagsterEventType.STEP_FAILURE: "FAILED",
}


def materialize_all_job() -> dg.JobDefinition:
    from platform_assets.definitions import defs  # noqa: PLC0415

    return defs.resolve_job_def("materialize_all")


def _print_progress(instance: dg.DagsterInstance, started_after: float, finished: threading.Event) -> None:
    """Follow the newest run's step events until the run ends."""
    seen = 0
    run_id = None
    while True:
        done = finished.wait(2)
        if run_id is None:
            runs = [r for r in instance.get_runs(limit=1) if (r.run_id and instance.get_run_record_by_id(
                r.run_id).create_timestamp.timestamp() >= started_after)]
            run_id = runs[0].run_id if runs else None
        if run_id is not None:
            records = instance.all_logs(run_id, of_type=set(_PROGRESS_EVENTS))
            for record in records[seen:]:
                event = record.get_dagster_event()
                print(f"  {time.strftime('%H:%M:%S')}  {_PROGRESS_EVENTS[event.event_type]:8} {event.step_key}",
                      flush=True)
            seen = len(records)
        if done:
            return


def materialize_range(instance: dg.DagsterInstance, first_day: dt.date, last_day: dt.date,
                      show_progress: bool = True) -> dg.ExecutionResult:
    """One run of `materialize_all` over [first_day, last_day], with the multiprocess executor."""
    finished = threading.Event()
    follower = threading.Thread(target=_print_progress, args=(instance, time.time() - 1, finished), daemon=True)
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
