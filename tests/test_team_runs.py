"""The headless runner (platform_assets/runner.py, `make demo`) on the team target, on real servers: two runners over
different days at once both succeed, their steps on the Celery workers `team up` started, steps of the two runs at
the same time; a third runner over a day of the first never executes with it: it waits, saying for which run (one
test: the three runners share the servers' time).

Raw and dbt assets only, until the platform's other Python steps run on PostgreSQL (docs/team.md, Status)."""

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest

from platform_assets.settings import REPO_ROOT, load_settings
from test_team_servers import step_windows, team  # noqa: F401  (the servers, started once for this module)

DAYS_A = ("2013-01-01", "2013-01-02")
DAYS_B = ("2013-01-03", "2013-01-04")
TIMEOUT_SECONDS = 600
# One runner, as `make demo` runs the graph: raw and dbt assets with dbt's own tests (the platform's Python checks
# need DuckDB still).
RUNNER = """\
import datetime as dt, json, sys
import dagster as dg
from platform_assets.definitions import RAW_ASSETS, build_definitions, dbt_models
from platform_assets.runner import materialize_range
assets = [key for asset in [*RAW_ASSETS, dbt_models] for key in asset.keys]
checks = [key for key in build_definitions().resolve_asset_graph().asset_check_keys
          if key in dbt_models.check_keys]
first, last = (dt.date.fromisoformat(day) for day in sys.argv[1:3])
with dg.DagsterInstance.get() as instance:
    run = materialize_range(instance, first, last, show_progress=False, assets=assets, checks=checks)
print(json.dumps({"run_ids": run.run_ids, "success": run.success, "unpublished": run.unpublished}))
"""


@pytest.fixture(scope="module")
def delivered(team):
    from platform_assets.demo import deliver
    from platform_assets.instance import prepare_instance

    settings = load_settings()
    prepare_instance(settings)
    deliver(settings, dt.date.fromisoformat(DAYS_A[0]), dt.date.fromisoformat(DAYS_B[-1]))
    return settings


def start_runner(days: tuple[str, str], log) -> subprocess.Popen:
    # this checkout's code first, as the workers have it (an installed copy of the package must not win)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-c", RUNNER, *days], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=log, text=True)


def finish(runner: subprocess.Popen, log_path) -> dict:
    out, _ = runner.communicate(timeout=TIMEOUT_SECONDS)
    assert runner.returncode == 0, f"the runner failed:\n{out}\n{log_path.read_text()[-4000:]}"
    return {**json.loads(out.strip().splitlines()[-1]), "printed": out}


def worker_names(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    return {entry.dagster_event.engine_event_data.metadata["Celery worker"].value
            for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
            if "Celery worker" in entry.dagster_event.engine_event_data.metadata}


def test_runners_over_different_days_run_at_once_and_over_the_same_day_take_turns(team, delivered,  # noqa: F811
                                                                                  tmp_path):
    """Runners A (days 1-2) and B (days 3-4) at once, and C (day 2) started once their runs have started: A's and B's
    steps share the workers, neither run waiting for the other's end; C's run is created only once A's has
    finished."""
    log_path = tmp_path / "runners.log"
    began = time.time()
    with log_path.open("w") as log, dg.DagsterInstance.get() as instance:
        runners = [start_runner(DAYS_A, log), start_runner(DAYS_B, log)]
        deadline = time.monotonic() + TIMEOUT_SECONDS
        # C starts once A's and B's runs have both started: a third runner starting earlier competes with B's
        # start-up for the two cores, and B's steps then came after A's.
        while not all(instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED],
                                                      tags={"dagster/asset_partition_range_start": first}))
                      for first in (DAYS_A[0], DAYS_B[0])):
            assert all(runner.poll() is None for runner in runners) and time.monotonic() < deadline, \
                log_path.read_text()[-4000:]
            time.sleep(0.2)
        same_day = start_runner((DAYS_A[1], DAYS_A[1]), log)
        results = [finish(runner, log_path) for runner in runners]
        waited = finish(same_day, log_path)
    print(f"three runners, raw + dbt: {time.time() - began:.1f} s (load {os.getloadavg()[0]:.1f})")
    with dg.DagsterInstance.get() as instance:
        failed = [(e.dagster_event.event_specific_data.asset_key.to_user_string(), e.dagster_event.event_specific_data.check_name,
                   {k: str(v.value)[:300] for k, v in e.dagster_event.event_specific_data.metadata.items()})
                  for result in results for run_id in result["run_ids"]
                  for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
                  if not e.dagster_event.event_specific_data.passed]
        failed += [(e.step_key, e.dagster_event.event_specific_data.error.to_string()[-3000:])
                   for result in results for run_id in result["run_ids"]
                   for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)]
    assert [result["success"] for result in results] == [True, True], (results, failed)
    assert [len(result["run_ids"]) for result in results] == [1, 1], "every source published: one run each"

    worker_pids = {worker.pid() for worker in team.workers}
    expected_names = {f"{worker.name}@{os.uname().nodename}" for worker in team.workers}
    runner_pids = set()
    with dg.DagsterInstance.get() as instance:
        windows = {}
        for result in results:
            [run_id] = result["run_ids"]
            run = instance.get_run_by_id(run_id)
            assert run.status == dg.DagsterRunStatus.SUCCESS
            runner_pids.add(int(run.tags["platform/runner_process"].rsplit(":", 1)[1]))
            windows[run_id] = step_windows(instance, run_id)
            steps = windows[run_id]
            assert set(steps) == {"raw_snapshots", "raw_ingestion", "dbt_cleaned_and_features"}, steps
            # every step ran in the pool of one of the two workers, and the run's events name the workers
            assert {psutil.Process(pid).ppid() for _, _, pid in steps.values()} <= worker_pids, steps
            assert worker_names(instance, run_id) <= expected_names and worker_names(instance, run_id)
            materialized = {entry.dagster_event.asset_key.to_user_string()
                            for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)}
            assert {"raw/flights", "staging/stg_flights__flights", "marts/flights"} <= materialized
        assert not runner_pids & {pid for steps in windows.values() for _, _, pid in steps.values()}, \
            "no step ran in a runner's process"
        (run_a, steps_a), (run_b, steps_b) = windows.items()
        overlapping = [(a, b) for a, (start_a, end_a, _) in steps_a.items() for b, (start_b, end_b, _) in steps_b.items()
                       if max(start_a, start_b) < min(end_a, end_b)]
        print(f"steps of the two runs at the same time: {overlapping}")
        # Neither run waited for the other to end: each one's steps began before the other's last step ended. (Steps
        # of both at the same moment are usual but not certain: each run's two raw steps can take both workers.)
        span_a, span_b = ((min(start for start, _, _ in steps.values()), max(end for _, end, _ in steps.values()))
                          for steps in (steps_a, steps_b))
        assert span_a[0] < span_b[1] and span_b[0] < span_a[1], f"one run waited for the other's end: {windows}"
        used = {pid for steps in windows.values() for _, _, pid in steps.values()}
        assert len(used) == 2, "both workers took steps"

    assert waited["success"], waited
    with dg.DagsterInstance.get() as instance:
        [first_run], [second_run] = results[0]["run_ids"], waited["run_ids"]
        first_record, second_record = instance.get_run_record_by_id(first_run), instance.get_run_record_by_id(second_run)
    assert second_record.create_timestamp.timestamp() >= first_record.end_time, \
        "the third run was created only once the first, over the same day, had finished"
    assert f"waiting: run {first_run} (STARTED: " in waited["printed"], "the third runner said what it waits for"
