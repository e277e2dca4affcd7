"""Operations that survive crashes and contention: a run whose process was killed is marked failed by the daemon's
run monitoring and the queue moves on; runs over different days wait (in the queue, or for the warehouse's lock)
instead of failing; a step waits for a locked warehouse with bounded backoff."""

import datetime as dt
import functools
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import psutil
import pytest

from platform_assets.automation.alerts import run_alerts
from platform_assets.definitions import build_definitions
from platform_assets.instance import missing_blocks, prepare_instance, run_monitoring_blocks
from platform_assets.resources import WarehouseLockedError, WarehouseResource, lock_holder, lock_wait_schedule
from platform_assets.run_launcher import process_alive
from platform_assets.settings import REPO_ROOT, load_settings
from platform_assets.transformations.dbt_assets import dbt_lock_wait_env

BIN = Path(sys.executable).parent
LOCK_MESSAGE = ('IO Error: Could not set lock on file "/data/warehouse/warehouse.duckdb": Conflicting lock is held in '
                '/usr/bin/python3.11 (PID 4242). See also https://duckdb.org/docs/current/connect/concurrency')


# --- the backoff and the instance configuration, pure ---

def test_the_lock_wait_doubles_up_to_a_longest_pause_and_adds_up_to_the_limit():
    assert lock_wait_schedule(300) == [0.5, 1, 2, 4, 8] + [10.0] * 28 + [4.5]
    assert sum(lock_wait_schedule(300)) == 300
    assert lock_wait_schedule(1.2) == [0.5, 0.7]
    assert lock_wait_schedule(0) == []


def test_only_a_lock_conflict_names_a_holder():
    assert lock_holder(LOCK_MESSAGE) == "PID 4242 (/usr/bin/python3.11)"
    held_by_a_reader = LOCK_MESSAGE.replace(". See", ". However, you would be able to open this database in "
                                            "read-only mode, e.g. by using the -readonly parameter in the CLI. See")
    assert lock_holder(held_by_a_reader) == "PID 4242 (/usr/bin/python3.11)"
    assert lock_holder('IO Error: Cannot open file "/data/warehouse.duckdb": Permission denied') is None


def test_dbt_retries_a_locked_file_within_the_same_limit():
    # dbt-duckdb pauses 1, 2, 4, ... s after each failed attempt: n attempts take 2^n - 1 s.
    assert dbt_lock_wait_env(300) == {"PLATFORM_DBT_CONNECT_ATTEMPTS": "8"}  # 255 s
    assert dbt_lock_wait_env(0) == {"PLATFORM_DBT_CONNECT_ATTEMPTS": "1"}


def test_run_monitoring_is_added_to_an_existing_instance_without_touching_what_is_there(data_dir, monkeypatch):
    settings = load_settings()
    config = settings.dagster_home / "dagster.yaml"
    config.parent.mkdir(parents=True)
    before = "# my instance\ntelemetry:\n  enabled: false\nrun_monitoring:\n  enabled: false"  # no final newline
    config.write_text(before)
    prepare_instance(settings)
    after = config.read_text()
    assert after.startswith(before + "\n") and "class: LocalRunLauncher" in after
    assert after.count("run_monitoring:") == 1  # switched off by its user: kept off
    prepare_instance(settings)
    assert config.read_text() == after  # nothing more to add

    new = load_settings().dagster_home.parent / "new"
    monkeypatch.setenv("PLATFORM_DATA_DIR", str(new))
    text = (prepare_instance(load_settings()) / "dagster.yaml").read_text()
    assert missing_blocks(text, run_monitoring_blocks(settings)) == ""
    with dg.DagsterInstance.from_config(str(new / "dagster_home")) as instance:
        assert instance.run_monitoring_enabled
        assert (instance.run_monitoring_poll_interval_seconds, instance.run_monitoring_start_timeout_seconds,
                instance.run_monitoring_max_resume_run_attempts) == (30, 180, 0)
        assert instance.run_launcher.supports_check_run_worker_health


def test_a_process_is_alive_only_while_it_runs_and_only_if_it_started_the_run():
    started = time.time()
    assert process_alive(os.getpid(), started)
    assert not process_alive(os.getpid(), psutil.Process().create_time() - 60)  # the pid now names a newer process
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not process_alive(child.pid, started)


def test_processes_starting_at_once_on_a_new_data_folder_share_one_instance(data_dir):
    """`make dev` and `make demo` (or a daemon and a run) started together on a new data folder: Dagster creating the
    same new sqlite storage from two processes fails, and can leave it unusable. prepare_instance takes turns."""
    code = ("import dagster as dg\nfrom platform_assets.instance import prepare_instance\n"
            "from platform_assets.settings import load_settings\nprepare_instance(load_settings())\n"
            "with dg.DagsterInstance.get() as instance:\n    print(len(instance.get_runs()))")
    starts = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(3)]
    outcomes = [start.communicate(timeout=120) + (start.returncode,) for start in starts]
    assert [(out.strip(), code) for out, _, code in outcomes] == [("0", 0)] * 3, [err for _, err, _ in outcomes]


# --- the lock wait, against a real second process ---

def hold_warehouse(path: Path, seconds: float) -> subprocess.Popen:
    """Another process that opens the warehouse for writing, says so, and keeps it for `seconds` (or until killed)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; connection = duckdb.connect(sys.argv[1]); "
                               "print('holding', flush=True); time.sleep(float(sys.argv[2]))", str(path), str(seconds)],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    return holder


def test_a_step_waits_for_a_locked_warehouse_and_then_gives_up_naming_it(tmp_path, caplog):
    path = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(path)).close()
    holder = hold_warehouse(path, 3)
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="dagster"):
        with WarehouseResource(path=str(path), lock_wait_seconds=60).connect() as connection:
            assert connection.execute("SELECT 42").fetchall() == [(42,)]
    waited = time.monotonic() - started
    holder.wait()
    waits = [r.getMessage() for r in caplog.records if "is locked by" in r.getMessage()]
    assert 2 <= waited < 15 and waits, (waited, waits)
    assert f"warehouse {path} is locked by PID {holder.pid} (" in waits[0]

    holder = hold_warehouse(path, 30)
    try:
        started = time.monotonic()
        with pytest.raises(WarehouseLockedError) as error:
            with WarehouseResource(path=str(path), lock_wait_seconds=1).connect(read_only=True):
                pass
        assert time.monotonic() - started < 5
        message = str(error.value)
        assert "\n" not in message and str(path) in message and f"PID {holder.pid}" in message
        assert "PLATFORM_WAREHOUSE_LOCK_WAIT_SECONDS" in message
    finally:
        holder.kill()
        holder.wait()


def test_an_error_other_than_the_lock_surfaces_at_once(tmp_path):
    path = tmp_path / "not_a_warehouse.duckdb"
    path.write_text("this is not a DuckDB file")
    started = time.monotonic()
    with pytest.raises(duckdb.Error) as error:
        with WarehouseResource(path=str(path), lock_wait_seconds=60).connect():
            pass
    assert time.monotonic() - started < 2 and not isinstance(error.value, WarehouseLockedError)


# --- a killed run, the queue and the lock wait, through a real daemon ---

DAYS = ["2013-01-01", "2013-01-02", "2013-01-03", "2013-01-04"]
POLL_SECONDS = 1  # the test's run monitoring interval (the default is 30 s)
# The queue looks for runs to start every 5 s by default; every second here.
FAST_QUEUE = """\
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
"""
TIMEOUT_SECONDS = 120
# A headless run of the raw layer for one day, as `make demo` runs the graph (platform_assets.runner).
HEADLESS_RUN = """\
import datetime as dt, sys
import dagster as dg
from platform_assets.runner import materialize_range
day = dt.date.fromisoformat(sys.argv[1])
with dg.DagsterInstance.get() as instance:
    materialize_range(instance, day, day, show_progress=False,
                      assets=[dg.AssetKey(["raw", name]) for name in ("flights", "weather", "bookings")])
"""


def wait_until(condition, what: str, processes: dict[str, subprocess.Popen], log: Path,
             timeout: float = TIMEOUT_SECONDS):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        for name, process in processes.items():
            assert process.poll() is None, f"{name} stopped while waiting for {what}:\n{log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{log.read_text()[-4000:]}"
        time.sleep(0.5)
    return value


def the_run(instance: dg.DagsterInstance, day: str) -> dg.DagsterRun | None:
    """The run over `day`: launched (a partition tag) or headless (a partition range)."""
    runs = [run for run in instance.get_runs() if day in (run.tags.get("dagster/partition"),
                                                          run.tags.get("dagster/asset_partition_range_start"))]
    return runs[0] if runs else None


def waited_for_the_lock(instance: dg.DagsterInstance, run: dg.DagsterRun | None) -> bool:
    return run is not None and any("is locked by" in (entry.user_message or "") for entry in instance.all_logs(run.run_id))


def launch(workspace: Path, day: str, log) -> subprocess.Popen:
    """Submit the platform's job for the raw layer of `day` as the UI does: to the instance's run queue."""
    return subprocess.Popen(
        [str(BIN / "dagster"), "job", "launch", "-w", str(workspace), "-j", "demo_raw",
         "--tags", json.dumps({"dagster/partition": day})], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)


def test_a_killed_run_is_failed_by_run_monitoring_and_runs_over_other_days_wait(data_dir, monkeypatch, tmp_path):
    """While another process holds the warehouse, a headless run waits in its raw step and is killed there; the
    runs submitted meanwhile are queued behind it. The daemon's run monitoring marks the killed run failed, the
    queue starts the next run, which waits for the warehouse like a second headless run does; once the warehouse
    is free every run succeeds, the queued ones one after another."""
    monkeypatch.setenv("PLATFORM_RUN_MONITORING_POLL_SECONDS", str(POLL_SECONDS))
    settings = load_settings()
    home = prepare_instance(settings)
    with (home / "dagster.yaml").open("a") as config:
        config.write(FAST_QUEUE)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    from platform_assets.demo import deliver

    deliver(settings, dt.date.fromisoformat(DAYS[0]), dt.date.fromisoformat(DAYS[-1]))
    settings.warehouse_path.parent.mkdir(parents=True)
    workspace = tmp_path / "workspace.yaml"  # the platform without its sensors: only this test's runs
    workspace.write_text(f"load_from:\n  - python_module:\n      module_name: platform_without_sensors\n"
                         f"      attribute: defs\n      working_directory: {REPO_ROOT / 'tests'}\n")
    log = (tmp_path / "processes.log").open("w", buffering=1)
    wait_for = functools.partial(wait_until, log=Path(log.name))
    processes: dict[str, subprocess.Popen] = {}

    def start(name: str, command: list[str]) -> subprocess.Popen:
        processes[name] = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        return processes[name]

    holder = hold_warehouse(settings.warehouse_path, TIMEOUT_SECONDS)
    try:
        start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)])
        killed = start("killed run", [sys.executable, "-c", HEADLESS_RUN, DAYS[0]])
        with dg.DagsterInstance.get() as instance:
            wait_for(lambda: waited_for_the_lock(instance, the_run(instance, DAYS[0])), "a run in a long step",
                     processes)
            submitted = [launch(workspace, day, log) for day in DAYS[1:3]]
            for process in submitted:
                assert process.wait(TIMEOUT_SECONDS) == 0
            assert [the_run(instance, day).status for day in DAYS[1:3]] == [dg.DagsterRunStatus.QUEUED] * 2
            wait_for(lambda: "MONITORING" in instance.get_daemon_heartbeats(), "the daemon", processes)

            killed.send_signal(signal.SIGKILL)
            killed_at = time.time()
            processes.pop("killed run").wait()
            start("headless run", [sys.executable, "-c", HEADLESS_RUN, DAYS[3]])
            failed = wait_for(lambda: instance.get_run_record_by_id(the_run(instance, DAYS[0]).run_id).end_time,
                              "run monitoring", {"daemon": processes["daemon"]})
            print(f"killed run marked FAILURE {failed - killed_at:.1f} s after the kill (poll {POLL_SECONDS} s)")
            wait_for(lambda: any(waited_for_the_lock(instance, the_run(instance, day)) for day in DAYS[1:3])
                     and waited_for_the_lock(instance, the_run(instance, DAYS[3])),
                     "a queued and a headless run waiting for the warehouse", processes)
            holder.kill()
            processes.pop("headless run").wait(TIMEOUT_SECONDS)
            wait_for(lambda: all(the_run(instance, day).is_finished for day in DAYS[1:]), "the runs", processes)

            records = [instance.get_run_record_by_id(the_run(instance, day).run_id) for day in DAYS]
            statuses = [record.dagster_run.status for record in records]
            assert statuses == [dg.DagsterRunStatus.FAILURE] + [dg.DagsterRunStatus.SUCCESS] * 3, statuses
            assert 0 < failed - killed_at <= POLL_SECONDS + 5
            failure = instance.all_logs(records[0].dagster_run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
            assert f"the run's process {killed.pid} is gone" in failure[0].message
            alerts = run_alerts(instance, build_definitions().get_repository_def(), settings,
                                records[0].dagster_run.run_id)  # what the owner alert sensor sends
            assert {alert["dataset"] for alert in alerts} == {"raw/flights", "raw/weather", "raw/bookings"}
            assert all(f"the run's process {killed.pid} is gone" in alert["message"] for alert in alerts)
            first, second = sorted(records[1:3], key=lambda record: record.start_time)
            assert first.start_time >= failed and second.start_time >= first.end_time  # one at a time
    finally:
        holder.kill()
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.wait(30)
        log.close()
