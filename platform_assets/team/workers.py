"""Celery workers for the team target's executor (dagster-celery): each a `celery -A dagster_celery.app worker`
process on this machine listening on the `dagster` queue, one step at a time, with its pid file and log in a
folder. The broker and backend reach the workers through a generated `dagster_celery_config` module (what
`dagster-celery worker start` generates too), never on the command line where `ps` would show the password."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from platform_assets.settings import REPO_ROOT
from platform_assets.team.postgres import ServerError
from platform_assets.team.processes import wait_ended

START_TIMEOUT_SECONDS = 120.0  # a worker imports dagster before it says it is ready; slow on a busy machine
STOP_GRACE_SECONDS = 10.0  # a warm shutdown lets a running step finish; after this it is killed

# dagster-celery's app reads this module when it is importable; the executor sends the same settings (the
# platform's executor config, platform_assets/execution.py). One step per worker at a time, acknowledged when
# it ends: an idle worker takes the next step rather than a busy one holding it prefetched.
CELERY_CONFIG = """\
# Written by platform_assets.team.workers for the team target's Celery workers.
broker_url = {broker!r}
result_backend = {backend!r}
task_acks_late = True
worker_prefetch_multiplier = 1
"""


@dataclass(frozen=True)
class Worker:
    folder: Path  # holds worker-<n>.pid and worker-<n>.log
    number: int

    @property
    def name(self) -> str:
        return f"team-worker-{self.number}"

    @property
    def pid_file(self) -> Path:
        return self.folder / f"{self.name}.pid"

    @property
    def log(self) -> Path:
        return self.folder / f"{self.name}.log"

    def pid(self) -> int | None:
        """The worker's main process, if its pid file names a live celery worker of this name."""
        try:
            pid = int(self.pid_file.read_text().strip())
            process = psutil.Process(pid)
            command = " ".join(process.cmdline())
            alive = process.status() != psutil.STATUS_ZOMBIE and "celery" in command and f"{self.name}@" in command
        except (FileNotFoundError, ValueError, psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        return pid if alive else None


def workers(folder: Path, count: int) -> list[Worker]:
    return [Worker(folder, number) for number in range(1, count + 1)]


def write_celery_config(folder: Path, broker: str, backend: str) -> bool:
    """Write the workers' config module (0600: the broker URL holds a password); True if it changed."""
    path = folder / "celery" / "dagster_celery_config.py"
    text = CELERY_CONFIG.format(broker=broker, backend=backend)
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.write(text)
    return True


def start_workers(to_start: list[Worker], environment: Mapping[str, str]) -> None:
    """Start each worker in its own session (it outlives this process), all at once; wait until each says it is
    ready."""
    started = []
    for worker in to_start:
        worker.folder.mkdir(parents=True, exist_ok=True)
        # The config module first; this checkout's code next, so a worker runs the code of whoever started it.
        path = [str(worker.folder / "celery"), str(REPO_ROOT), environment.get("PYTHONPATH", "")]
        command = [sys.executable, "-m", "celery", "-A", "dagster_celery.app", "worker", "-n", f"{worker.name}@%h",
                   "-Q", "dagster", "--concurrency", "1", "--prefetch-multiplier", "1", "--loglevel", "INFO",
                   "--without-mingle", "--without-gossip"]
        log_start = worker.log.stat().st_size if worker.log.exists() else 0
        with worker.log.open("a") as log:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       cwd=worker.folder, start_new_session=True,
                                       env={**environment, "PYTHONPATH": os.pathsep.join(filter(None, path))})
        worker.pid_file.write_text(f"{process.pid}\n")
        started.append((worker, process, log_start))
    for worker, process, log_start in started:
        _wait_until_ready(worker, process, log_start)


def _wait_until_ready(worker: Worker, process: subprocess.Popen, log_start: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        with worker.log.open("rb") as log:
            log.seek(log_start)
            if b" ready." in log.read():
                return
        if process.poll() is not None:
            raise ServerError(f"Celery worker {worker.name} exited with {process.returncode} before it was ready "
                              f"(log: {worker.log})")
        if time.monotonic() > deadline:
            raise ServerError(f"Celery worker {worker.name} not ready after {START_TIMEOUT_SECONDS:.0f} s "
                              f"(log: {worker.log})")
        time.sleep(0.2)


def stop_workers(to_stop: list[Worker], grace: float = STOP_GRACE_SECONDS) -> list[str]:
    """Warm shutdown of each (a running step may finish), all at once, for `grace` seconds; then what still runs
    is killed with its pool. Returns the workers that were running."""
    running = {worker: pid for worker in to_stop if (pid := worker.pid()) is not None}
    for pid in running.values():
        os.kill(pid, signal.SIGTERM)
    processes = []
    for pid in running.values():
        try:
            processes.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    for process in wait_ended(processes, grace):
        os.killpg(process.pid, signal.SIGKILL)  # its own session: the pool's processes too
        wait_ended([process], grace)
    for worker in to_stop:
        worker.pid_file.unlink(missing_ok=True)
    return [f"{worker.name} (pid {pid})" for worker, pid in running.items()]
