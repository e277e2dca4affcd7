"""Run a command as a child process and measure its wall time, the peak memory of its whole process tree and
the CPU time the tree used."""

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
    # Peak of the tree's summed proportional set size (PSS): resident memory with pages shared between
    # processes (a forked step and its server, shared libraries) split among them instead of counted in
    # each. `peak_rss_sum_mb` is the plain RSS sum, which counts shared pages once per process.
    peak_rss_mb: float
    peak_rss_sum_mb: float
    # User + system time of every process of the tree, sampled: less sensitive to a busy machine than wall
    # time (a process shorter than one sampling interval is missed).
    cpu_seconds: float
    returncode: int


@dataclass
class TreeSample:
    pss: int = 0
    rss: int = 0


def sample_tree(root: psutil.Process, cpu_by_process: dict[tuple[int, float], float]) -> TreeSample:
    """Memory of a process and all its descendants now; records each process's CPU time so far."""
    sample = TreeSample()
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return sample
    for process in processes:
        try:
            with process.oneshot():
                memory = process.memory_full_info()
                times = process.cpu_times()
                identity = (process.pid, process.create_time())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # ended between listing and sampling
        sample.rss += memory.rss
        sample.pss += getattr(memory, "pss", memory.rss)
        cpu_by_process[identity] = times.user + times.system
    return sample


class TreeSampler(threading.Thread):
    """Samples the tree every `interval` seconds until stopped, keeping the peaks and CPU times."""

    def __init__(self, pid: int, interval: float = 0.25):
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak = TreeSample()
        self.cpu_by_process: dict[tuple[int, float], float] = {}
        self._stop_requested = threading.Event()

    def run(self) -> None:
        while not self._stop_requested.is_set():
            sample = sample_tree(self.root, self.cpu_by_process)
            self.peak = TreeSample(max(self.peak.pss, sample.pss), max(self.peak.rss, sample.rss))
            self._stop_requested.wait(self.interval)

    def stop(self) -> None:
        self._stop_requested.set()
        self.join()


def run_measured(command: list[str], env: dict[str, str], log_path: Path, cwd: Path) -> Measurement:
    """Run `command` to completion (output to `log_path`): wall time from start to exit, peak memory and
    CPU time of its process tree."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        sampler = TreeSampler(process.pid)
        sampler.start()
        returncode = process.wait()
        seconds = time.perf_counter() - started
        sampler.stop()
    return Measurement(seconds=seconds, peak_rss_mb=sampler.peak.pss / 2**20, peak_rss_sum_mb=sampler.peak.rss / 2**20,
                       cpu_seconds=sum(sampler.cpu_by_process.values()), returncode=returncode)
