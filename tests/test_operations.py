"""Operations that survive crashes and contention: a run whose process was killed is marked failed by the daemon's
run monitoring and the queue moves on; runs over different days wait (in the queue, or for the warehouse's lock)
instead of failing; a step waits for a locked warehouse with bounded backoff."""

import datetime as dt
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
