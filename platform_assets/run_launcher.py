"""The instance's run launcher: Dagster's default one (each run in a process started by its code server) that can
also tell run monitoring whether a run's process is still alive. Without it, a run whose process died (killed,
out of memory, the machine or `make dev` stopped) stays STARTED forever and holds the one-run queue."""

from __future__ import annotations

import json

import psutil
from dagster import DagsterEventType, DagsterRun, DefaultRunLauncher
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.runs.sqlite import SqliteRunStorage
from dagster._core.storage.tags import GRPC_INFO_TAG

THIS_MACHINE = {"localhost", "127.0.0.1", "::1"}
CLOCK_SLACK_SECONDS = 1.0  # a process's start time and the run's are read from two clocks


def run_process_id(instance, run_id: str) -> int | None:
    """The process that runs `run_id`: the first engine event with a pid is the run worker's ("Started process for
    run", when launched) or the in-process executor's (a headless run); later ones may be step processes."""
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT, limit=50).records
    for record in records:
        pid = record.event_log_entry.dagster_event.engine_event_data.metadata.get("pid")
        if pid is not None:
            return int(pid.value)
    return None


def process_alive(pid: int, run_started: float | None) -> bool:
    """Whether process `pid` exists and is the one that started the run (not a later process given the same pid)."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and (
            run_started is None or process.create_time() <= run_started + CLOCK_SLACK_SECONDS)
    except psutil.NoSuchProcess:  # a zombie too: it has exited
        return False
    except psutil.AccessDenied:  # another user's process: it exists, and no run is failed on a guess
        return True


class LocalRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher whose run health check looks at the run's process on this machine."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        if not self._runs_here(run):
            return CheckRunHealthResult(WorkerStatus.RUNNING, "its process may run on another machine: not checked")
        pid = run_process_id(self._instance, run.run_id)
        if pid is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no process recorded yet")
        record = self._instance.get_run_record_by_id(run.run_id)
        if process_alive(pid, record.start_time if record else None):
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"process {pid} is running")
        return CheckRunHealthResult(WorkerStatus.FAILED, f"the run's process {pid} is gone (killed, or the machine "
                                                         "or `make dev` stopped); re-run its partitions")

    def _runs_here(self, run: DagsterRun) -> bool:
        """Local sqlite storage is only written from this machine; with shared storage (PostgreSQL), only runs this
        machine's code servers launched are judged by their process."""
        if isinstance(self._instance.run_storage, SqliteRunStorage):
            return True
        grpc_info = run.tags.get(GRPC_INFO_TAG)
        return bool(grpc_info) and json.loads(grpc_info).get("host") in THIS_MACHINE
