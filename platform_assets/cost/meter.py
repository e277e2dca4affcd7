"""What a step costs the machine, measured in the step's own process: wall time, CPU seconds (the process and the
children it waited for, such as dbt), the resident-memory high-water mark, and the DuckDB spill folder's size.

Each measure covers an interval: a step that materializes several assets one after another marks the interval
of each (`mark`). The peak is Linux's VmHWM of this process, reset at every mark (/proc/self/clear_refs, "5"),
and the VmHWM of its child processes, sampled twice a second (a child that grows in its last half second is
seen at its last sample). Where the high-water mark cannot be reset (not Linux) the peak is the process's
peak so far. Spill is the largest size of the warehouse's temporary folder seen by the same sampler: a lower
bound of what spilled."""

from __future__ import annotations

import os
import resource
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SAMPLE_SECONDS = 0.5
PROC = Path("/proc")


@dataclass(frozen=True)
class Reading:
    """The cost of one interval of a step."""

    wall_seconds: float
    cpu_seconds: float
    peak_memory_bytes: int | None
    spill_bytes: int | None


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _status_kib(pid: int | str, field: str) -> int | None:
    """A `kB` field of /proc/<pid>/status (VmHWM, VmRSS), or None when the process or the field is gone."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_high_water() -> bool:
    try:
        (PROC / "self" / "clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _own_peak_bytes() -> int:
    kib = _status_kib("self", "VmHWM")
    return (kib if kib is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _children(pid: int) -> list[int]:
    """Every descendant of `pid` (Linux: /proc/<pid>/task/*/children)."""
    found, pending = [], [pid]
    while pending:
        parent = pending.pop()
        for task in (PROC / str(parent) / "task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
            found += kids
            pending += kids
    return found


def folder_bytes(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*") if folder.is_dir() else ():
        try:
            total += path.stat().st_size if path.is_file() else 0
        except OSError:  # a spill file removed while we looked
            pass
    return total


class StepMeter:
    """Measures a step from `start` on; `mark()` ends an interval and starts the next one."""

    def __init__(self, spill_folder: Path | None = None):
        self.spill_folder = spill_folder
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._children_peak = 0
        self._spill_peak = 0

    def start(self) -> StepMeter:
        self._resettable = _reset_high_water()
        self._wall, self._cpu = time.perf_counter(), _cpu_seconds()
        self._thread = threading.Thread(target=self._sample, name="cost-meter", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        pid = os.getpid()
        while not self._stop.wait(SAMPLE_SECONDS):
            children = [_status_kib(child, "VmHWM") for child in _children(pid)]
            spill = folder_bytes(self.spill_folder) if self.spill_folder else 0
            with self._lock:
                self._children_peak = max([self._children_peak, *(kib * 1024 for kib in children if kib)])
                self._spill_peak = max(self._spill_peak, spill)

    def mark(self) -> Reading:
        wall, cpu = time.perf_counter(), _cpu_seconds()
        with self._lock:
            children_peak, spill = self._children_peak, self._spill_peak
            self._children_peak = self._spill_peak = 0
        reading = Reading(wall_seconds=wall - self._wall, cpu_seconds=max(0.0, cpu - self._cpu),
                          peak_memory_bytes=max(_own_peak_bytes(), children_peak),
                          spill_bytes=spill if self.spill_folder else None)
        self._wall, self._cpu = wall, cpu
        if self._resettable:
            _reset_high_water()
        return reading

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
