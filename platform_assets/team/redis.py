"""A local Redis server for the team target's Celery broker and result backend: on 127.0.0.1 and a free port,
protected mode and a password (any local user could otherwise queue work for the workers), nothing persisted
(a queued step lives as long as the run that waits for it). Its config file is its state: port and password."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from platform_assets.team.postgres import ServerError, free_port
from platform_assets.team.processes import wait_ended

REDIS_SERVER = os.environ.get("PLATFORM_REDIS_SERVER", "/usr/bin/redis-server")
START_TIMEOUT_SECONDS = 20.0

CONFIG = """\
# Written by platform_assets.team.redis: the team target's Celery broker on this machine.
bind 127.0.0.1
port {port}
protected-mode yes
requirepass {password}
daemonize yes
pidfile {folder}/redis.pid
logfile {folder}/redis.log
dir {folder}
save ""
appendonly no
"""


@dataclass(frozen=True)
class RedisServer:
    folder: Path  # holds redis.conf (0600: it holds the password), redis.pid and redis.log
    port: int
    password: str

    def url(self, database: int = 0) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/{database}"

    @property
    def config(self) -> Path:
        return self.folder / "redis.conf"

    @property
    def log(self) -> Path:
        return self.folder / "redis.log"

    @property
    def pid_file(self) -> Path:
        return self.folder / "redis.pid"


def _read_config(folder: Path) -> RedisServer | None:
    try:
        lines = (folder / "redis.conf").read_text().splitlines()
    except FileNotFoundError:
        return None
    values = dict(line.split(" ", 1) for line in lines if line and not line.startswith("#"))
    return RedisServer(folder, int(values["port"]), values["requirepass"])


def _server_pid(server: RedisServer) -> int | None:
    """The pid of the redis-server this folder's pidfile names, if that process is alive and is a redis-server."""
    try:
        pid = int(server.pid_file.read_text().strip())
        process = psutil.Process(pid)
        alive = process.status() != psutil.STATUS_ZOMBIE and "redis-server" in process.name()
    except (FileNotFoundError, ValueError, psutil.NoSuchProcess):
        return None
    return pid if alive else None


def _answers(server: RedisServer) -> bool:
    import redis  # noqa: PLC0415

    try:
        return redis.Redis(host="127.0.0.1", port=server.port, password=server.password, socket_timeout=1).ping()
    except redis.RedisError:
        return False


def running_redis(folder: Path) -> RedisServer | None:
    """The server this folder's config describes, if it is running and answers with its password."""
    server = _read_config(folder)
    return server if server is not None and _server_pid(server) and _answers(server) else None


def start_redis(folder: Path, port: int | None = None) -> RedisServer:
    """Start a redis-server for `folder` on 127.0.0.1:`port` (a free one by default) with a new password."""
    if not Path(REDIS_SERVER).exists() and not shutil.which(REDIS_SERVER):
        raise ServerError(f"{REDIS_SERVER} not found: `make redis` installs it (PLATFORM_REDIS_SERVER)")
    folder.mkdir(parents=True, exist_ok=True)
    server = RedisServer(folder, port or free_port(), secrets.token_hex(24))
    server.config.unlink(missing_ok=True)
    descriptor = os.open(server.config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as config:
        config.write(CONFIG.format(port=server.port, password=server.password, folder=folder))
    started = subprocess.run([REDIS_SERVER, str(server.config)], capture_output=True, text=True)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not (started.returncode == 0 and _server_pid(server) and _answers(server)):
        if started.returncode or time.monotonic() > deadline:
            reason = (started.stderr or started.stdout).strip() or "did not answer"
            raise ServerError(f"Redis in {folder} failed to start: {reason} (log: {server.log})")
        time.sleep(0.05)
    return server


def stop_redis(server: RedisServer, timeout: float = 10.0) -> None:
    pid = _server_pid(server)
    if pid is None:
        return
    try:
        process = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    os.kill(pid, signal.SIGTERM)  # nothing to save: it exits at once
    if wait_ended([process], timeout):
        raise ServerError(f"Redis (pid {pid}) did not stop within {timeout:.0f} s (log: {server.log})") from None
