"""A backfill of the whole graph over a first short period, launched through Dagster's GraphQL API (what the UI
sends for "Materialize all" and a partition range) and run by the real daemon on the run server, as under `make
dev`: ingestion, the dbt build, training, scoring and drift over 7 days of 2013 in a temporary data folder. It makes
the runs platform_assets.partitions.backfill_runs predicts (five whatever the range, or some of them split further)
and completes successfully. No version passes the gate on 7 days: every requested day of the model layer says why
nothing was scored. Each day's checks are answered for that day, also those of runs over several days
(platform_assets/checks/daily.py)."""

import datetime as dt
import os
import time

import dagster as dg
import pytest

from dagster_servers import (
    environment, graphql, start_daemon, start_run_server, start_webserver, stop, stop_sensors,
)
from deliveries import demo_asset_keys
from platform_assets.run_launcher import RUN_SERVER_TAG

FIRST, LAST = dt.date(2013, 1, 1), dt.date(2013, 1, 7)
DAYS = [str(FIRST + dt.timedelta(days=n)) for n in range((LAST - FIRST).days + 1)]
BACKFILL_SECONDS = 900
FINISHED = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}

LAUNCH = """
mutation ($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
  ... on PartitionSetNotFoundError { message } ... on InvalidSubsetError { message } } }"""
STATUS = """
query ($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } } }"""
DAY_CHECK = """
query ($assetKey: AssetKeyInput!, $checkName: String!, $partition: String) {
  assetCheckExecutions(assetKey: $assetKey, checkName: $checkName, partition: $partition, limit: 1) {
    runId status partition evaluation { metadataEntries { label ... on TextMetadataEntry { text } } } } }"""


@pytest.fixture(scope="module")
def backfill(tmp_path_factory):
    folder = tmp_path_factory.mktemp("backfill") / "data"
    previous = {name: os.environ.get(name) for name in ("PLATFORM_DATA_DIR", "DAGSTER_HOME")}
    os.environ["PLATFORM_DATA_DIR"] = str(folder)
    from platform_assets.definitions import build_definitions
    from platform_assets.demo import deliver
    from platform_assets.instance import prepare_instance
    from platform_assets.settings import load_settings

    settings = load_settings()
    home = prepare_instance(settings)
    deliver(settings, FIRST, LAST)
    graph = build_definitions(settings).resolve_asset_graph()
    everything = sorted(demo_asset_keys(graph), key=lambda key: key.path)
    env = environment(folder, home)
    server, url = start_webserver(env, folder / "webserver.log")
    daemon = run_server = None
    try:
        run_server = start_run_server(env, folder / "run_server.log")  # `make dev` is all three
        stop_sensors(url)
        launched = graphql(url, LAUNCH, {"params": {
            "assetSelection": [{"path": key.path} for key in everything], "partitionNames": DAYS,
            "title": "the whole graph, first week"}})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        started = time.monotonic()
        daemon = start_daemon(env, folder / "daemon.log")
        status = None
        while status not in FINISHED:
            assert daemon.poll() is None, (folder / "daemon.log").read_text()[-3000:]
            assert time.monotonic() - started < BACKFILL_SECONDS, (status, (folder / "daemon.log").read_text()[-3000:])
            time.sleep(3)
            status = graphql(url, STATUS, {"id": launched["backfillId"]})["partitionBackfillOrError"]["status"]
        seconds = time.monotonic() - started
        day_checks = {check: graphql(url, DAY_CHECK, {"assetKey": {"path": check.asset_key.path},
                                                      "checkName": check.name, "partition": DAYS[2]}
                                     )["assetCheckExecutions"]
                      for check in graph.asset_check_keys
                      if check.asset_key in everything and graph.get(check.asset_key).is_partitioned}
    finally:
        stop(daemon)
        stop(run_server)
        stop(server)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield {"status": status, "seconds": seconds, "instance": instance, "graph": graph,
               "backfill_id": launched["backfillId"], "folder": folder, "day_checks": day_checks}
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def test_a_whole_graph_backfill_completes_successfully_in_the_predicted_runs(backfill):
    from platform_assets.partitions import backfill_runs

    instance = backfill["instance"]
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill["backfill_id"]}))
    failures = [(run.run_id, [e.dagster_event.step_failure_data.error.message[:500] for e in instance.all_logs(
        run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)]) for run in runs
        if run.status != dg.DagsterRunStatus.SUCCESS]
    assert backfill["status"] == "COMPLETED_SUCCESS", (backfill["status"], failures)
    assert runs and not failures
    assert all(RUN_SERVER_TAG in run.tags for run in runs), "each run forked by the run server, as under make dev"
    demo = demo_asset_keys(backfill["graph"])
    predicted = [run & demo for run in backfill_runs(backfill["graph"])]
    # Each run holds assets of one predicted run; a predicted run may come as several when the daemon saw part of
    # its parents' run materialized before the rest (it looks every few seconds, not when a run ends).
    assert all(any(set(run.asset_selection) <= wave for wave in predicted) for run in runs), [
        sorted(key.to_user_string() for key in run.asset_selection) for run in runs]
    assert set().union(*(run.asset_selection for run in runs)) == demo
    assert len(runs) >= len(predicted) == 5
    print(f"backfill of {len(DAYS)} days: {len(runs)} runs, {backfill['seconds']:.0f} s")


def test_every_day_of_predictions_and_drift_says_why_nothing_was_scored(backfill):
    instance = backfill["instance"]
    for key in (dg.AssetKey(["ml", "flight_delay_predictions"]), dg.AssetKey(["ml", "flight_delay_drift"])):
        assert instance.get_materialized_partitions(key) == set(DAYS), key
        latest = instance.get_latest_materialization_event(key).asset_materialization
        assert latest.metadata["skipped"].value.startswith("no ") and "no model serves" in (
            latest.metadata["skipped"].value), key


def test_a_day_of_a_run_over_several_days_has_each_check_answered_for_it(backfill):
    answers = backfill["day_checks"]
    unanswered = sorted(check.to_user_string() for check, answer in answers.items() if len(answer) != 1)
    assert unanswered == []
    assert {answer[0]["partition"] for answer in answers.values()} == {DAYS[2]}
    statuses = {answer[0]["status"] for answer in answers.values()}
    assert statuses <= {"SUCCEEDED", "FAILED"}, {check.to_user_string(): answer[0]["status"]  # not EXECUTION_FAILED,
                                                 for check, answer in answers.items()}  # not SKIPPED
    # A check that judged the run's days together says so on each day.
    contract = answers[dg.AssetCheckKey(dg.AssetKey(["raw", "flights"]), "contract")][0]
    judged = {entry["label"]: entry.get("text") for entry in contract["evaluation"]["metadataEntries"]}
    assert judged["judged_over"].startswith(f"{DAYS[0]}..{DAYS[-1]} together"), judged
