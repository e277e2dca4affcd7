"""The Dagster webserver and daemon as `make dev` runs them, for tests: real processes on 127.0.0.1 (a free port)
over a test's instance, and Dagster's GraphQL API."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 180
PLATFORM_DAY = "2013-01-01"  # the one day the `platform` fixture (conftest.py) delivers
BIN_DIR = Path(sys.executable).parent
# The backfill daemon looks at backfills every 30 s (dagster._daemon.controller, not configurable): the tests' daemon
# every few seconds, so that a backfill's runs follow each other without half a minute between them.
DAEMON_INTERVAL_SECONDS = 3
_DAEMON = ("import sys; import dagster._daemon.controller as controller; "
           f"controller.DEFAULT_DAEMON_INTERVAL_SECONDS = {DAEMON_INTERVAL_SECONDS}; "
           "from dagster._daemon.cli import main; sys.exit(main())")

LOCATIONS = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus locationOrLoadError { "\
            "__typename ... on PythonError { message } } } } } }"
SENSORS = """
query { repositoriesOrError { ... on RepositoryConnection { nodes { sensors { name
  sensorState { id selectorId status } } } } } }"""
STOP_SENSOR = """
mutation ($id: String, $selector: String) { stopSensor(id: $id, jobSelectorId: $selector) {
  __typename ... on StopSensorMutationResult { instigationState { status } } ... on PythonError { message } } }"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def environment(data_dir: Path, dagster_home: Path) -> dict[str, str]:
    return {**os.environ, "PLATFORM_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(dagster_home),
            "PATH": f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}"}


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": query, "variables": variables or {}})
                                     .encode(), headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.loads(response.read())
    assert "errors" not in answer, answer["errors"]
    return answer["data"]


def _start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def start_webserver(env: dict, log: Path) -> tuple[subprocess.Popen, str]:
    """dagster-webserver on a free port of 127.0.0.1, returned once the platform's code location has loaded (the
    port answers before that)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = _start([str(BIN_DIR / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
                    env, log)
    deadline = time.monotonic() + STARTUP_SECONDS
    try:
        while True:
            assert server.poll() is None, f"dagster-webserver exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"code location not loaded:\n{log.read_text()[-3000:]}"
            try:
                entries = graphql(url, LOCATIONS)["workspaceOrError"]["locationEntries"]
            except OSError:
                entries = []
            if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
                errors = [entry for entry in entries if entry["locationOrLoadError"]["__typename"] == "PythonError"]
                assert not errors, errors
                return server, url
            time.sleep(1)
    except BaseException:
        stop(server)
        raise


def start_daemon(env: dict, log: Path) -> subprocess.Popen:
    """dagster-daemon, its backfill loop every DAEMON_INTERVAL_SECONDS."""
    return _start([sys.executable, "-c", _DAEMON, "run", "-w", "workspace.yaml"], env, log)


def start_run_server(env: dict, log: Path) -> subprocess.Popen:
    """The run server `make dev` starts beside Dagster (platform_assets/run_server.py), once it takes runs."""
    from platform_assets.run_server import start  # noqa: PLC0415

    return start(env, log, STARTUP_SECONDS)


def stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        process.wait(60)


def stop_sensors(url: str) -> None:
    """Only what a test starts runs: the sensors (deliveries, automation) would start runs of the same days."""
    for repository in graphql(url, SENSORS)["repositoriesOrError"]["nodes"]:
        for sensor in repository["sensors"]:
            if sensor["sensorState"]["status"] == "RUNNING":
                stopped = graphql(url, STOP_SENSOR, {"id": sensor["sensorState"]["id"],
                                                     "selector": sensor["sensorState"]["selectorId"]})
                assert stopped["stopSensor"]["instigationState"]["status"] == "STOPPED", (sensor, stopped)
