"""When a headless run (platform_assets/runner.py) may start: never while another run of the instance writes one
of the same assets for one of the same days. The instance's run queue (dagster.yaml, platform_assets/instance.py)
applies its limits only to runs submitted to it (the UI, sensors, `dagster job launch`); the runner creates and
executes its run directly, so it checks the instance's runs itself, under a lock only while it checks and creates
its run (one lock per target: a file on this machine for embedded, a PostgreSQL advisory lock in Dagster's database
for team, whose runners may be on other machines)."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import dagster as dg
import psutil
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from platform_assets.settings import Settings

# Runs that hold or will hold their assets and days: queued (the daemon will start them), created by a runner
# and not started yet, running.
ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
          dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
RUNNER_PROCESS_TAG = "platform/runner_process"  # host:pid of the runner that executes the run
POLL_SECONDS = 2.0
NOTICE_SECONDS = 30.0
LOCK_KEY = 0x706C6174666F726D  # "platform": the advisory lock's key in Dagster's database


class RunConflictError(RuntimeError):
    """Another run writes the same assets and days and did not finish in time; the message names it."""


@dataclass(frozen=True)
class Writes:
    """What a run writes: assets (None: every asset of its job) over days [first, last] (None: unpartitioned or
    unknown, taken as every day)."""

    assets: frozenset[dg.AssetKey] | None
    first: str | None
    last: str | None

    def overlaps(self, other: Writes) -> bool:
        assets = self.assets is None or other.assets is None or bool(self.assets & other.assets)
        days = None in (self.first, other.first) or (self.first <= other.last and other.first <= self.last)
        return assets and days


def run_writes(run: dg.DagsterRun) -> Writes:
    """A run's assets and days from the run itself: its asset selection, and its partition (a launched run) or
    partition range (a headless run, a backfill's run) tag."""
    tags = run.tags
    if PARTITION_NAME_TAG in tags:
        first = last = tags[PARTITION_NAME_TAG]
    else:
        first, last = tags.get(ASSET_PARTITION_RANGE_START_TAG), tags.get(ASSET_PARTITION_RANGE_END_TAG)
    return Writes(frozenset(run.asset_selection) if run.asset_selection else None, first, last)


def runner_tag() -> dict[str, str]:
    return {RUNNER_PROCESS_TAG: f"{socket.gethostname()}:{os.getpid()}"}


def runner_gone(run: dg.DagsterRun, created: float | None) -> bool:
    """Whether the run was executed by a runner on this machine whose process is gone (killed before it could
    mark its run failed): such a run writes nothing any more. Runs launched by the daemon are judged by its run
    monitoring; runners on other machines are not judged from here."""
    host, _, pid = run.tags.get(RUNNER_PROCESS_TAG, "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        process = psutil.Process(int(pid))
        return process.status() == psutil.STATUS_ZOMBIE or (created is not None and process.create_time() > created + 1)
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False


def conflicting_runs(instance: dg.DagsterInstance, writes: Writes) -> list[dg.DagsterRun]:
    records = instance.get_run_records(dg.RunsFilter(statuses=ACTIVE))
    return [record.dagster_run for record in records
            if run_writes(record.dagster_run).overlaps(writes)
            and not runner_gone(record.dagster_run, record.create_timestamp.timestamp())]


@contextlib.contextmanager
def _file_lock(settings: Settings) -> Iterator[None]:
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    with (settings.dagster_home / ".runner.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def _postgres_lock(settings: Settings) -> Iterator[None]:
    import psycopg2  # noqa: PLC0415  (team only)

    connection = psycopg2.connect(settings.dagster_pg_url.replace("postgresql+psycopg2://", "postgresql://", 1))
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))  # released with the session
        yield
    finally:
        connection.close()


ADMISSION_LOCKS: dict[str, Callable[[Settings], contextlib.AbstractContextManager]] = {
    "embedded": _file_lock, "team": _postgres_lock}


def describe(run: dg.DagsterRun) -> str:
    writes = run_writes(run)
    days = "every day" if writes.first is None else (
        writes.first if writes.first == writes.last else f"{writes.first}..{writes.last}")
    names = sorted(key.to_user_string() for key in writes.assets or ())
    assets = "every asset" if writes.assets is None else ", ".join(names[:4]) + (
        f" and {len(names) - 4} more" if len(names) > 4 else "")
    return f"run {run.run_id} ({run.status.value}: {assets} over {days})"


def create_admitted_run(instance: dg.DagsterInstance, settings: Settings, assets: Sequence[dg.AssetKey],
                        first_day: dt.date, last_day: dt.date, create: Callable[[], dg.DagsterRun],
                        wait_seconds: float | None = None, say: Callable[[str], None] = print) -> dg.DagsterRun:
    """Wait until no active run writes any of `assets` on a day of [first_day, last_day], then `create` the run
    (under the target's lock, so two runners never both pass the check). After `wait_seconds` (None: no limit)
    refuse with RunConflictError naming the run in the way."""
    writes = Writes(frozenset(assets), first_day.isoformat(), last_day.isoformat())
    began = time.monotonic()
    told = None
    while True:
        with ADMISSION_LOCKS[settings.target](settings):
            in_the_way = conflicting_runs(instance, writes)
            if not in_the_way:
                return create()
        waited = time.monotonic() - began
        reason = (f"{describe(in_the_way[0])} writes some of the same assets and days"
                  + (f" (and {len(in_the_way) - 1} more runs)" if len(in_the_way) > 1 else ""))
        if wait_seconds is not None and waited >= wait_seconds:
            raise RunConflictError(f"not started after {waited:.0f} s: {reason}; runs over the same asset and day "
                                   "go one at a time (wait for it, or cancel it in the UI)")
        if told is None or time.monotonic() - told >= NOTICE_SECONDS:
            say(f"waiting: {reason}; runs over the same asset and day go one at a time")
            told = time.monotonic()
        time.sleep(POLL_SECONDS)
