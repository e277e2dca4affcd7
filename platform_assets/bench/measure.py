"""Running one measured side of the benchmark as a child process: its wall time, the peak of its process tree's
memory (the process and every descendant, sampled a few times a second) and the CPU time the tree used. On the
team target the servers the run works through (PostgreSQL, Redis, the Celery workers) are sampled with it: the
same samples, each group's memory and the sum of all of them at each sample."""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

RUN_GROUP = "run"  # the measured child process and its descendants


@dataclass(frozen=True)
class GroupMeasurement:
    peak_pss_mb: float
    peak_rss_mb: float
    cpu_seconds: float  # CPU time used while measured (a server's CPU time before the run is not counted)


@dataclass(frozen=True)
class Measurement:
    seconds: float
    # Peak of the summed proportional set size (PSS) of every sampled process: resident memory with pages shared
    # between processes (a forked step and its server, shared libraries) split among them instead of counted in
    # each. `peak_rss_sum_mb` is the plain RSS sum, which counts shared pages once per process. Both are the peak
    # of the sum over all groups at one sample, never a sum of each group's own peak.
    peak_rss_mb: float
    peak_rss_sum_mb: float
    # User + system time of every sampled process, sampled: less sensitive to a busy machine than wall time (a
    # process shorter than one sampling interval is missed).
    cpu_seconds: float
    returncode: int
    groups: dict[str, GroupMeasurement] = field(default_factory=dict)  # RUN_GROUP and each server group


@dataclass
class TreeSample:
    pss: int = 0
    rss: int = 0


def sample_tree(roots: list[psutil.Process], cpu_by_process: dict[tuple[int, float], float]) -> TreeSample:
    """Memory of processes and all their descendants now; records each process's CPU time so far."""
    sample = TreeSample()
    processes: dict[int, psutil.Process] = {}
    for root in roots:
        try:
            for process in (root, *root.children(recursive=True)):
                processes.setdefault(process.pid, process)
        except psutil.NoSuchProcess:
            continue
    for process in processes.values():
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


class _Group:
    def __init__(self, roots: list[psutil.Process]):
        self.roots = roots
        self.peak = TreeSample()
        self.cpu_by_process: dict[tuple[int, float], float] = {}
        self.cpu_before: dict[tuple[int, float], float] | None = None  # at the first sample: what ran before

    def cpu_seconds(self) -> float:
        before = self.cpu_before or {}
        return sum(seconds - before.get(identity, 0.0) for identity, seconds in self.cpu_by_process.items())


class TreeSampler(threading.Thread):
    """Samples the tree of `pid`, and the trees of `servers` (group name -> root pids) with it, every `interval`
    seconds until stopped, keeping each group's peaks and CPU times and the peak of their sum."""

    def __init__(self, pid: int, interval: float = 0.25, servers: dict[str, list[int]] | None = None):
        super().__init__(daemon=True)
        self.groups = {RUN_GROUP: _Group([psutil.Process(pid)])}
        for name, pids in (servers or {}).items():
            self.groups[name] = _Group([process for pid in pids if (process := _process(pid)) is not None])
        self.interval = interval
        self.peak = TreeSample()
        self._stop_requested = threading.Event()

    @property
    def cpu_by_process(self) -> dict[tuple[int, float], float]:
        return self.groups[RUN_GROUP].cpu_by_process

    def run(self) -> None:
        while not self._stop_requested.is_set():
            total = TreeSample()
            for name, group in self.groups.items():
                sample = sample_tree(group.roots, group.cpu_by_process)
                if group.cpu_before is None:
                    # A server's CPU time before the run is not the run's; the run's own tree starts with it.
                    group.cpu_before = {} if name == RUN_GROUP else dict(group.cpu_by_process)
                group.peak = TreeSample(max(group.peak.pss, sample.pss), max(group.peak.rss, sample.rss))
                total.pss += sample.pss
                total.rss += sample.rss
            self.peak = TreeSample(max(self.peak.pss, total.pss), max(self.peak.rss, total.rss))
            self._stop_requested.wait(self.interval)

    def stop(self) -> None:
        self._stop_requested.set()
        self.join()

    def measurements(self) -> dict[str, GroupMeasurement]:
        return {name: GroupMeasurement(group.peak.pss / 2**20, group.peak.rss / 2**20, group.cpu_seconds())
                for name, group in self.groups.items()}


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def run_measured(command: list[str], env: dict[str, str], log_path: Path, cwd: Path,
                 servers: dict[str, list[int]] | None = None) -> Measurement:
    """Run `command` to completion (output to `log_path`): wall time from start to exit, peak memory and CPU time
    of its process tree, and of `servers` (group name -> root pids, each with its descendants) sampled with it."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        sampler = TreeSampler(process.pid, servers=servers)
        sampler.start()
        returncode = process.wait()
        seconds = time.perf_counter() - started
        sampler.stop()
    groups = sampler.measurements()
    return Measurement(seconds=seconds, peak_rss_mb=sampler.peak.pss / 2**20, peak_rss_sum_mb=sampler.peak.rss / 2**20,
                       cpu_seconds=sum(group.cpu_seconds for group in groups.values()), returncode=returncode,
                       groups=groups)
