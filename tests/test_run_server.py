"""The run server (platform_assets/run_server.py): a real server process over a test's instance, runs launched through
the instance's run launcher as the daemon launches them, forked with the libraries already loaded, interrupted,
found dead, and requests it refuses."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import dagster as dg
import duckdb
import psutil
import pytest
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.launcher import WorkerStatus

from platform_assets.instance import prepare_instance
from platform_assets.run_launcher import RUN_SERVER_TAG
from platform_assets.run_server import RunServerError, hand_over, server_file, start, threads_left_by
from platform_assets.settings import load_settings

JOBS = str(Path(__file__).with_name("run_server_jobs.py"))
STARTUP_SECONDS = 180
RUN_SECONDS = 120


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A run server for a new data folder and its instance (the platform's dagster.yaml: LocalRunLauncher)."""
    data_dir = tmp_path_factory.mktemp("run_server") / "data"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PLATFORM_DATA_DIR", str(data_dir))
        settings = load_settings()
        prepare_instance(settings)
        # A file an earlier server left behind (killed) must not pass for this one's.
        server_file(data_dir).write_text(json.dumps({"port": 1, "token": "stale", "pid": 1}))
        process = start({**os.environ, "DAGSTER_HOME": str(settings.dagster_home)}, data_dir / "run_server.log",
                        STARTUP_SECONDS)
        assert json.loads(server_file(data_dir).read_text())["pid"] == process.pid
        with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
            yield process, settings, instance
        process.terminate()
        process.wait(60)
        assert not server_file(data_dir).exists(), "a stopped server leaves no file to hand runs to"


def launch(instance: dg.DagsterInstance, job_name: str) -> str:
    job = ReconstructableJob.for_file(JOBS, job_name)
    run = instance.create_run_for_job(job_def=job.get_definition(), job_code_origin=job.get_python_origin())
    instance.launch_run(run.run_id, workspace=None)  # as the daemon does, through the instance's launcher
    return run.run_id


def wait_for(instance: dg.DagsterInstance, run_id: str, done, what: str) -> dg.DagsterRun:
    deadline = time.monotonic() + RUN_SECONDS
    while not done(run := instance.get_run_by_id(run_id)):
        assert time.monotonic() < deadline, f"run {run_id} not {what} after {RUN_SECONDS} s: {run.status}"
        time.sleep(0.2)
    return run


def test_a_launched_run_runs_in_a_process_forked_from_the_server_with_the_libraries_loaded(server):
    process, _, instance = server
    run_id = launch(instance, "reports_its_process")
    run = wait_for(instance, run_id, lambda run: run.is_finished, "finished")
    assert run.status == dg.DagsterRunStatus.SUCCESS
    [materialization] = instance.fetch_materializations(dg.AssetKey("where_it_runs"), limit=1).records
    metadata = {key: value.value for key, value in materialization.asset_materialization.metadata.items()}
    assert metadata["parent"] == process.pid, "forked by the server"
    assert metadata["pid"] != process.pid and int(run.tags[RUN_SERVER_TAG]) == metadata["pid"]
    assert metadata["scikit-learn loaded"], "the step found the run libraries loaded"
    assert not metadata["platform definitions loaded"], "the platform's own code is loaded by each run, not preloaded"
    assert metadata["dbt schemas built"] > 0, "dbt's per-process caches were filled once, by the server's warm-up"
    messages = [entry.message for entry in instance.all_logs(run_id)]
    assert f"Started process for run (pid: {metadata['pid']}) on the run server (pid: {process.pid})." in messages
    exited = f"Process for run exited (pid: {metadata['pid']})."  # stored just after the run's end
    wait_for(instance, run_id, lambda _: exited in [entry.message for entry in instance.all_logs(run_id)], "exited")
    deadline = time.monotonic() + 10
    while psutil.pid_exists(metadata["pid"]) and psutil.Process(metadata["pid"]).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the run's process exits once the run ends"
        time.sleep(0.1)


def test_a_run_parses_models_with_dbt_s_native_parser_after_the_warm_up(server):
    """The fixture's data folder is new: the warm-up parsed the whole project, and must not have started the native
    parser's thread pool, which a forked run does not have."""
    _, _, instance = server
    run = wait_for(instance, launch(instance, "parses_models"), lambda run: run.is_finished, "finished")
    assert run.status == dg.DagsterRunStatus.SUCCESS
    [materialization] = instance.fetch_materializations(dg.AssetKey("parsed"), limit=1).records
    assert materialization.asset_materialization.metadata["refs"].value == 20


def test_threads_left_behind_by_work_are_counted():
    stop = threading.Event()
    assert threads_left_by(lambda: None) == 0
    assert threads_left_by(lambda: threading.Thread(target=stop.wait).start()) == 1
    stop.set()


def test_the_server_s_dbt_warm_up_succeeds_and_leaves_the_warehouse_free(server):
    _, settings, _ = server
    assert "run server: dbt warm-up done" in (settings.data_dir / "run_server.log").read_text()
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    duckdb.connect(str(settings.warehouse_path)).close()  # fails while another process holds the file


def test_terminating_a_run_interrupts_its_process_and_cancels_it(server):
    _, _, instance = server
    run_id = launch(instance, "sleeps_for_minutes")
    wait_for(instance, run_id, lambda _: any("sleeping in" in (entry.user_message or "")
                                             for entry in instance.all_logs(run_id)), "sleeping")
    pid = int(instance.get_run_by_id(run_id).tags[RUN_SERVER_TAG])
    assert instance.run_launcher.terminate(run_id)
    run = wait_for(instance, run_id, lambda run: run.is_finished, "finished")
    assert run.status == dg.DagsterRunStatus.CANCELED
    assert not instance.run_launcher.terminate(run_id), "a finished run is not terminated again"
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the interrupted run's process exits"
        time.sleep(0.1)


def test_a_killed_run_process_is_reported_dead_to_run_monitoring(server):
    _, _, instance = server
    run_id = launch(instance, "sleeps_for_minutes")
    run = wait_for(instance, run_id, lambda run: run.status == dg.DagsterRunStatus.STARTED, "started")
    pid = int(run.tags[RUN_SERVER_TAG])
    assert instance.run_launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
    helpers = psutil.Process(pid).children(recursive=True)  # Dagster's log capture (tail): orphaned by the kill
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (health := instance.run_launcher.check_run_worker_health(run)).status != WorkerStatus.FAILED:
        assert time.monotonic() < deadline, health
        time.sleep(0.1)
    assert f"process {pid} is gone" in health.msg
    instance.report_run_failed(run, health.msg)  # what run monitoring does with it
    for helper in helpers:
        helper.kill()


def request(settings, fields: dict | bytes) -> dict:
    port = json.loads(server_file(settings.data_dir).read_text())["port"]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(fields if isinstance(fields, bytes) else json.dumps(fields).encode() + b"\n")
        return json.loads(connection.makefile().readline())


def test_the_server_refuses_a_wrong_token_another_instance_and_malformed_requests(server):
    _, settings, instance = server
    token = json.loads(server_file(settings.data_dir).read_text())["token"]
    home = str(settings.dagster_home)
    assert "wrong token" in request(settings, {"token": "guess", "run_id": "x", "dagster_home": home})["error"]
    assert "wrong token" in request(settings, {"token": "", "run_id": "x", "dagster_home": home})["error"]
    other = request(settings, {"token": token, "run_id": "x", "dagster_home": "/tmp/elsewhere"})["error"]
    assert "not /tmp/elsewhere" in other and home in other
    assert "not JSON" in request(settings, b"{run\n")["error"]
    assert "each a string" in request(settings, {"token": token, "run_id": 7, "dagster_home": home})["error"]
    assert "at most 4096 bytes" in request(settings, b"x" * 5000)["error"]
    with pytest.raises(RunServerError, match="not /tmp/elsewhere"):
        hand_over(settings.data_dir, Path("/tmp/elsewhere"), "x")


def test_without_a_server_runs_are_launched_through_the_code_server(data_dir):
    settings = load_settings()
    prepare_instance(settings)
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        # No workspace here: reaching Dagster's own launcher (the code server's) is what fails.
        with pytest.raises(dg.DagsterInvariantViolationError, match="requires a workspace"):
            launch(instance, "reports_its_process")
        with socket.socket() as probe:  # a server that stopped without removing its file: nothing listens
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server_file(data_dir).write_text(json.dumps({"port": port, "token": "t", "pid": 1}))
        with pytest.raises(dg.DagsterInvariantViolationError, match="requires a workspace"):
            launch(instance, "reports_its_process")
        server_file(data_dir).write_text("not a server's file")
        with pytest.raises(dg.DagsterInvariantViolationError, match="requires a workspace"):
            launch(instance, "reports_its_process")
        [run] = instance.get_runs(limit=1)
        assert any("The run server refused the run" in entry.message and "is not a run server's file"
                   in entry.message for entry in instance.all_logs(run.run_id))


def test_a_headless_launch_needs_a_running_server_not_only_its_file(data_dir):
    """`platform_run --launch` has no code server to fall back to: with no server, or only the file of one that
    stopped, it says so before creating a run."""
    import datetime as dt

    from platform_assets.runner import materialize_range
    from platform_assets.settings import SettingsError

    settings = load_settings()
    prepare_instance(settings)
    day = dt.date(2013, 1, 1)
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        with pytest.raises(SettingsError, match="run_server.json is absent"):
            materialize_range(instance, day, day, show_progress=False, launch=True)
        server_file(data_dir).write_text(json.dumps({"port": 1, "token": "t", "pid": os.getpid()}))  # not a server
        with pytest.raises(SettingsError, match="run_server.json was left by a server that stopped"):
            materialize_range(instance, day, day, show_progress=False, launch=True)
        assert instance.get_runs() == []
