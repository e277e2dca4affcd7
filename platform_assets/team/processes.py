"""Waiting for a server process to end. A daemonized server's parent is the machine's init process, which may
reap it seconds after it exited: a zombie counts as ended."""

from __future__ import annotations

import time

import psutil


def ended(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_ended(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to `timeout` seconds for `processes` to end; return those still running."""
    deadline = time.monotonic() + timeout
    alive = [process for process in processes if not ended(process)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [process for process in alive if not ended(process)]
    for process in processes:  # reap our own children (the tests start the workers themselves)
        try:
            if process.ppid() == psutil.Process().pid:
                process.wait(0)
        except (psutil.NoSuchProcess, psutil.TimeoutExpired):
            pass
    return alive
