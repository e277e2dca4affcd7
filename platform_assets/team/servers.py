"""The team target's servers on one machine, as one: PostgreSQL (the warehouse, Dagster's and MLflow's databases),
Redis (the Celery broker and result backend) and Celery workers, all under <data>/team/, and the settings that
point the platform at them in <data>/team/team.env. `up` reuses what already runs; `down` stops everything."""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from platform_assets.settings import TEAM_VARIABLES, Settings
from platform_assets.team.postgres import PostgresServer, ServerError, running_postgres, start_postgres, stop_postgres
from platform_assets.team.redis import RedisServer, running_redis, start_redis, stop_redis
from platform_assets.team.workers import Worker, start_workers, stop_workers, workers, write_celery_config

DATABASES = ("warehouse", "dagster", "mlflow")
PRIVATE_DATABASES = ("dagster", "mlflow")  # the instance's and MLflow's: no consumer login connects to them
WORKER_COUNT = 2
ENV_HEADER = """\
# The team target's settings for the servers `make team-up` started on this machine (platform_assets.team);
# `make team-down` stops them and removes this file. The Makefile reads it when PLATFORM_TARGET=team.
"""


def team_folder(data_dir: Path) -> Path:
    return data_dir / "team"


def team_env_file(data_dir: Path) -> Path:
    return team_folder(data_dir) / "team.env"


@dataclass
class TeamServers:
    data_dir: Path
    postgres: PostgresServer
    redis: RedisServer
    workers: list[Worker]
    seconds: dict[str, float] = field(default_factory=dict)  # what `up` started, and how long it took

    def settings(self) -> dict[str, str]:
        """The environment that points the platform at these servers: PLATFORM_TARGET and TEAM_VARIABLES."""
        urls = {
            "warehouse_url": self.postgres.url("warehouse"),
            "dagster_pg_url": self.postgres.url("dagster", driver="postgresql+psycopg2"),
            # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg (v3), which is not installed: name the driver
            "mlflow_tracking_url": self.postgres.url("mlflow", driver="postgresql+psycopg2"),
            "celery_broker": self.redis.url(0),
            "celery_backend": self.redis.url(1),
        }
        return {"PLATFORM_TARGET": "team", **{TEAM_VARIABLES[name]: url for name, url in urls.items()}}

    @property
    def dagster_home(self) -> Path:
        return Settings(data_dir=self.data_dir, seed=0, scale=1.0, target="team").dagster_home


def _unreachable_by_postgres(folder: Path) -> Path | None:
    """The first folder on the way to `folder` that the `postgres` user may not enter (the server runs as that
    user when this process is root); None when there is none."""
    if os.geteuid() != 0:
        return None
    for path in [*reversed(folder.parents), folder]:
        if path.exists() and not path.stat().st_mode & stat.S_IXOTH:
            return path
    return None


def _write_private(path: Path, text: str) -> None:
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.write(text)


def up(data_dir: Path, worker_count: int = WORKER_COUNT) -> TeamServers:
    """Start what is not running yet (PostgreSQL with its databases, Redis, the workers), write team.env."""
    folder = team_folder(data_dir)
    blocked = _unreachable_by_postgres(folder)
    if blocked is not None:
        raise ServerError(f"{blocked}: the postgres user (PostgreSQL runs as it) cannot enter this folder; use a "
                          "PLATFORM_DATA_DIR it can reach or allow it (chmod o+x)")
    folder.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    def timed(name: str, start):
        began = time.perf_counter()
        value = start()
        seconds[name] = round(time.perf_counter() - began, 2)
        return value

    postgres = running_postgres(folder / "postgres")
    if postgres is None:
        initialised = (folder / "postgres" / "cluster" / "PG_VERSION").exists()
        postgres = timed("postgres start" if initialised else "postgres initdb + start + databases",
                         lambda: start_postgres(folder / "postgres", databases=DATABASES,
                                                private=PRIVATE_DATABASES))
    redis = running_redis(folder / "redis") or timed("redis start", lambda: start_redis(folder / "redis"))
    servers = TeamServers(data_dir, postgres, redis, workers(folder / "workers", worker_count), seconds)
    settings = servers.settings()
    _write_private(team_env_file(data_dir), ENV_HEADER + "".join(f"{name}={value}\n" for name, value in
                                                                  settings.items()))
    if write_celery_config(folder / "workers", settings[TEAM_VARIABLES["celery_broker"]],
                           settings[TEAM_VARIABLES["celery_backend"]]):
        stop_workers(servers.workers)  # started for another broker (Redis restarted): they would wait forever
    not_running = [worker for worker in servers.workers if worker.pid() is None]
    if not_running:
        environment = {**os.environ, **settings, "PLATFORM_DATA_DIR": str(data_dir),
                       "DAGSTER_HOME": str(servers.dagster_home)}
        timed(f"{len(not_running)} workers start", lambda: start_workers(not_running, environment))
    return servers


def started_workers(folder: Path) -> list[Worker]:
    """The workers `up` started in this team folder (their pid files)."""
    return [Worker(path.parent, int(path.stem.rsplit("-", 1)[1]))
            for path in sorted((folder / "workers").glob("team-worker-*.pid"))]


def down(data_dir: Path) -> list[str]:
    """Stop the workers, Redis and PostgreSQL of this data folder (their data stays), remove team.env; return what
    was stopped."""
    folder = team_folder(data_dir)
    team_env_file(data_dir).unlink(missing_ok=True)  # first: nothing reads settings of servers going away
    stopped = stop_workers(started_workers(folder))
    (folder / "workers" / "celery" / "dagster_celery_config.py").unlink(missing_ok=True)
    redis = running_redis(folder / "redis")
    if redis is not None:
        stop_redis(redis)
        stopped.append(f"redis (127.0.0.1:{redis.port})")
    postgres = running_postgres(folder / "postgres")
    if postgres is not None:
        stop_postgres(postgres)
        stopped.append(f"postgres (127.0.0.1:{postgres.port})")
    return stopped


def status(data_dir: Path) -> tuple[bool, list[str]]:
    """(everything runs, one line per server)."""
    folder = team_folder(data_dir)
    postgres = running_postgres(folder / "postgres")
    redis = running_redis(folder / "redis")
    lines = [f"postgres: {f'running on 127.0.0.1:{postgres.port}' if postgres else 'stopped'} ({folder / 'postgres'})",
             f"redis: {f'running on 127.0.0.1:{redis.port}' if redis else 'stopped'} ({folder / 'redis'})"]
    running = [postgres is not None, redis is not None]
    started = started_workers(folder)
    for worker in started:
        pid = worker.pid()
        running.append(pid is not None)
        lines.append(f"{worker.name}: {f'running, pid {pid}' if pid else 'stopped'} (log: {worker.log})")
    if not started:
        running.append(False)
        lines.append("workers: none started")
    env = team_env_file(data_dir)
    lines.append(f"settings: {env if env.exists() else 'none (make team-up writes ' + str(env) + ')'}")
    return all(running), lines
