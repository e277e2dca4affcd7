"""Run a command as a child process and measure its wall time and the peak memory of its whole process tree."""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class Measurement:
    seconds: float
    peak_rss_mb: float
    returncode: int


def tree_rss_bytes(root: psutil.Process) -> int:
    """Resident memory of a process and all its descendants now. Pages shared between processes count once
    per process, so this is an upper bound of the tree's real footprint."""
    total = 0
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass  # ended between listing and sampling
    return total


class PeakRssSampler(threading.Thread):
    """Samples the tree's RSS every `interval` seconds until stopped; `peak_bytes` is the largest sample."""

    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_bytes = 0
        self._stop_requested = threading.Event()

    def run(self) -> None:
        while not self._stop_requested.is_set():
            self.peak_bytes = max(self.peak_bytes, tree_rss_bytes(self.root))
            self._stop_requested.wait(self.interval)

    def stop(self) -> int:
        self._stop_requested.set()
        self.join()
        return self.peak_bytes


def run_measured(command: list[str], env: dict[str, str], log_path: Path, cwd: Path) -> Measurement:
    """Run `command` to completion (output to `log_path`); wall time from start to exit, peak tree RSS."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        sampler = PeakRssSampler(process.pid)
        sampler.start()
        returncode = process.wait()
        seconds = time.perf_counter() - started
        peak = sampler.stop()
    return Measurement(seconds=seconds, peak_rss_mb=peak / 2**20, returncode=returncode)
