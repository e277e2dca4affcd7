"""A local PostgreSQL server for the team target: a cluster under a folder, on 127.0.0.1 and a free port, run
as the `postgres` OS user when this process is root (initdb refuses root). `make team-up` and the tests use it;
a real team points PLATFORM_WAREHOUSE_URL and friends at its own servers instead."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path(os.environ.get("PLATFORM_PG_BIN", "/usr/lib/postgresql/15/bin"))


class ServerError(RuntimeError):
    """A local server could not be started or stopped; the message names the folder and its log."""


@dataclass(frozen=True)
class PostgresServer:
    folder: Path  # holds cluster/, server.log and the superuser's password
    port: int
    user: str = "postgres"
    password: str | None = None  # None: a cluster made before passwords (trust), kept as it is

    def url(self, database: str = "postgres", driver: str = "postgresql") -> str:
        login = f"{self.user}:{self.password}" if self.password else self.user
        return f"{driver}://{login}@127.0.0.1:{self.port}/{database}"

    @property
    def cluster(self) -> Path:
        return self.folder / "cluster"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_postgres(*command: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


def _run(command: list[str], what: str, server: PostgresServer) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        reason = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ServerError(f"PostgreSQL {what} in {server.folder} failed: {reason[0]} (log: {server.log})")


PASSWORD_FILE = "superuser.password"


def _password(folder: Path) -> str | None:
    path = folder / PASSWORD_FILE
    return path.read_text().strip() if path.exists() else None


def start_postgres(folder: Path, port: int | None = None, databases: tuple[str, ...] = (),
                   private: tuple[str, ...] = ()) -> PostgresServer:
    """Initialise a cluster in `folder` if it has none, start it on 127.0.0.1:`port` (a free one by default), create
    the `databases` that do not exist yet. Every connection needs a password (scram-sha-256), the superuser's too: a
    random one, kept in `folder`/superuser.password (mode 600) and in the URLs the settings carry; the cluster
    listens on 127.0.0.1 only. Logins the catalog creates get their own (governance apply, governance password).
    `private` databases (Dagster's, MLflow's) take no connection but the superuser's (governance apply grants the
    warehouse's). Connections and disconnections are logged to server.log with the user and database of each line (governance
    apply adds every statement of the governed logins)."""
    if not (PG_BIN / "initdb").exists():
        raise ServerError(f"PostgreSQL server binaries not found in {PG_BIN} (PLATFORM_PG_BIN)")
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    if not (folder / "cluster" / "PG_VERSION").exists():
        secret = folder / PASSWORD_FILE
        descriptor = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(24))
        if os.geteuid() == 0:
            shutil.chown(secret, "postgres", "postgres")  # initdb reads it as that user
        server = PostgresServer(folder, port or free_port(), password=_password(folder))
        _run(_as_postgres(str(PG_BIN / "initdb"), "-D", str(server.cluster), "-U", "postgres",
                          "-A", "scram-sha-256", f"--pwfile={secret}", "--no-sync"), "initdb", server)
    server = PostgresServer(folder, port or free_port(), password=_password(folder))
    logging = "-c log_connections=on -c log_disconnections=on -c \"log_line_prefix=%m [%p] %q%u@%d \""
    _run(_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(server.cluster), "-l", str(server.log), "-w",
                      "-o", f"-p {server.port} -c listen_addresses=127.0.0.1 -k {folder} {logging}", "start"),
         "start", server)
    if databases:
        import psycopg2

        connection = psycopg2.connect(server.url())
        connection.autocommit = True
        with connection.cursor() as cursor:
            for name in databases:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if not cursor.fetchone():
                    cursor.execute(f'CREATE DATABASE "{name}"')
            for name in private:  # the platform's own stores: no login but their owner's connects (PostgreSQL's
                cursor.execute(f'REVOKE CONNECT, TEMPORARY ON DATABASE "{name}" FROM PUBLIC')  # default lets all)
        connection.close()
    return server


def running_postgres(folder: Path) -> PostgresServer | None:
    """The server running on the cluster in `folder`, or None: `pg_ctl status` says whether its postmaster is
    alive, and the postmaster.pid file (its fourth line) on which port."""
    cluster = folder / "cluster"
    if not (cluster / "PG_VERSION").exists():
        return None
    status = subprocess.run(_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(cluster), "status"), capture_output=True)
    if status.returncode:
        return None
    lines = (cluster / "postmaster.pid").read_text().splitlines()
    return PostgresServer(folder, int(lines[3]), password=_password(folder))


def stop_postgres(server: PostgresServer) -> None:
    _run(_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(server.cluster), "-m", "fast", "stop"), "stop", server)
