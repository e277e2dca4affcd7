"""dbt runs in the step's own process (platform_assets/transformations/in_process.py): dagster-dbt's invocation
with its events, errors and artifacts, no dbt process, the environment as before and the warehouse file free
afterwards. The whole builds are exercised by the pipeline tests; these pin the mechanism."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster_dbt.errors import DagsterDbtCliRuntimeError

from platform_assets.resources import DBT_PROJECT_DIR, PlatformDbtCliResource
from platform_assets.settings import load_settings
from platform_assets.transformations.dbt_target import dbt_target_env

SELECT_ONE = ["show", "--inline", "select 42 as answer", "--output", "json"]


@pytest.fixture
def dbt(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> PlatformDbtCliResource:
    (data_dir / "warehouse").mkdir(parents=True)
    for name, value in dbt_target_env(load_settings()).items():
        monkeypatch.setenv(name, value)
    return PlatformDbtCliResource(project_dir=str(DBT_PROJECT_DIR), profiles_dir=str(DBT_PROJECT_DIR),
                                  dbt_executable=os.path.join(os.path.dirname(sys.executable), "dbt"))


def _child_processes() -> set[str]:
    tasks = Path("/proc/self/task")
    return {child for task in tasks.iterdir() for child in (task / "children").read_text().split()}


def test_dbt_runs_in_this_process_and_streams_its_events(dbt: PlatformDbtCliResource, data_dir: Path):
    environment = dict(os.environ)
    children_before = _child_processes()  # the suite's servers, started by other modules
    invocation = dbt.cli(SELECT_ONE, target_path=data_dir / "dbt" / "show")
    started_by_dbt = _child_processes() - children_before
    events = list(invocation.stream_raw_events())
    assert type(invocation.process).__name__ == "InProcessDbt"
    assert started_by_dbt == set()
    assert invocation.is_successful()
    shown = [event.raw_event for event in events if event.raw_event["info"]["name"] == "ShowNode"]
    assert len(shown) == 1 and json.loads(shown[0]["data"]["preview"]) == [{"answer": 42}]
    assert (data_dir / "dbt" / "show" / "dbt.log").exists()  # dbt's own debug log, as from a process
    assert dict(os.environ) == environment  # DBT_TARGET_PATH and the rest were this invocation's only


def test_the_warehouse_is_free_for_another_process_once_dbt_ends(dbt: PlatformDbtCliResource, data_dir: Path):
    """dbt-duckdb keeps its database open between invocations in one process: one DuckDB writer per file would
    lock every other process (and this one's other settings) out of the warehouse."""
    dbt.cli(SELECT_ONE, target_path=data_dir / "dbt" / "show").wait()
    warehouse = load_settings().warehouse_path
    assert warehouse.exists()
    writer = subprocess.run([sys.executable, "-c", "import duckdb, sys; duckdb.connect(sys.argv[1])"
                             ".execute('create table written_after_dbt as select 1 as x')", str(warehouse)],
                            capture_output=True, text=True, timeout=60)
    assert writer.returncode == 0, writer.stderr


def test_a_failing_invocation_raises_with_dbt_s_message(dbt: PlatformDbtCliResource, data_dir: Path):
    environment = dict(os.environ)
    invocation = dbt.cli(["run-operation", "no_such_macro"], target_path=data_dir / "dbt" / "failing")
    with pytest.raises(DagsterDbtCliRuntimeError, match="no_such_macro"):
        invocation.wait()
    assert not invocation.is_successful()
    assert dict(os.environ) == environment
    # The next invocation in the same process is unaffected.
    assert dbt.cli(SELECT_ONE, target_path=data_dir / "dbt" / "after").wait().is_successful()
