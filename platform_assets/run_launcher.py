"""The instance's run launcher: each run in a process forked by the run server (platform_assets/run_server.py) when
one runs for the data folder, as under `make dev`, otherwise in a process started by its code server (Dagster's
default). It can also tell run monitoring whether a run's process is still alive. Without that, a run whose process
died (killed, out of memory, the machine or `make dev` stopped) stays STARTED forever and holds the one-run queue."""

from __future__ import annotations

import json
import os
import signal

import psutil
from dagster import DagsterEventType, DagsterRun, DefaultRunLauncher
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, WorkerStatus
from dagster._core.storage.runs.sqlite import SqliteRunStorage
from dagster._core.storage.tags import GRPC_INFO_TAG

from platform_assets.run_server import RunServerError, hand_over
from platform_assets.settings import load_settings

THIS_MACHINE = {"localhost", "127.0.0.1", "::1"}
RUN_SERVER_TAG = "platform/run_server_pid"  # the run's process, forked by the run server of this machine
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
    """DefaultRunLauncher that hands runs to the data folder's run server when one answers, and whose run health
    check looks at the run's process on this machine."""

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        if run.job_code_origin is not None:
            try:
                pid = hand_over(load_settings().data_dir, self._instance.root_directory, run.run_id)
            except OSError:
                pass  # no run server for this data folder: through the code server
            except RunServerError as error:
                self._instance.report_engine_event(f"The run server refused the run ({error}): launched through the "
                                                   "code server instead.", run, cls=self.__class__)
            else:
                self._instance.add_run_tags(run.run_id, {RUN_SERVER_TAG: str(pid)})
                return
        super().launch_run(context)

    def terminate(self, run_id: str) -> bool:
        """A run on the run server is interrupted as Dagster interrupts a run's process (SIGINT): its steps stop, and
        the run ends CANCELED."""
        run = self._instance.get_run_by_id(run_id)
        if run is None or RUN_SERVER_TAG not in run.tags:
            return super().terminate(run_id)
        if run.is_finished:
            return False
        self._instance.report_run_canceling(run)
        pid = int(run.tags[RUN_SERVER_TAG])
        record = self._instance.get_run_record_by_id(run_id)
        if not process_alive(pid, record.start_time if record else None):
            return False
        os.kill(pid, signal.SIGINT)
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        if not self._runs_here(run):
            return CheckRunHealthResult(WorkerStatus.RUNNING, "its process may run on another machine: not checked")
        pid = int(run.tags[RUN_SERVER_TAG]) if RUN_SERVER_TAG in run.tags else run_process_id(self._instance, run.run_id)
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
        if RUN_SERVER_TAG in run.tags:
            return True  # forked by the run server of the machine its launcher runs on
        return bool(grpc_info) and json.loads(grpc_info).get("host") in THIS_MACHINE
