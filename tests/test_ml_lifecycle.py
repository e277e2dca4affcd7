"""The model lifecycle on real data, through a real Dagster instance, DuckDB file, dbt build and MLflow store.

A January model is promoted on the floors; a worse challenger (same data, a learning rate four times higher) is
not promoted, its run succeeds and the January model scores that run's days; the data of late June and early
July, scored by the January model, drifts with the season; the sensor asks for retraining; the retrained model
beats the January one on the July holdout and is promoted; a rollback restores the January model; predictions
carry whichever version is champion when they are scored; every version has a model card.

Jobs run in process (one process, no per-step start-up) with resources pointing at this test's data folder.
"""

import base64
import contextlib
import datetime as dt
import io
import os
import subprocess
import sys
from types import SimpleNamespace

import dagster as dg
import duckdb
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG, RUN_KEY_TAG,
)

from deliveries import demo_asset_keys
from platform_assets.settings import REPO_ROOT

JANUARY = (dt.date(2013, 1, 1), dt.date(2013, 1, 10))
# Early July with the last June days before it, so that the 7-day drift windows are full from July 4 on.
SUMMER = (dt.date(2013, 6, 28), dt.date(2013, 7, 7))
RESCORED = (dt.date(2013, 7, 5), dt.date(2013, 7, 7))
MODEL = "flight_delay_classifier"
WORSE = {"ops": {"ml__delay_model": {"config": {"hyperparameters": {"learning_rate": 0.3}}}}}


def _evaluations(instance, run_id: str) -> dict:
    records = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    return {(r.get_dagster_event().event_specific_data.asset_key.to_user_string(),
             r.get_dagster_event().event_specific_data.check_name): r.get_dagster_event().event_specific_data
            for r in records}


def _daily_evaluations(instance, run_id: str, key: str, check: str) -> dict:
    """day -> the check's evaluation of that day in the run."""
    records = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    evaluations = [r.get_dagster_event().event_specific_data for r in records]
    return {e.partition: e for e in evaluations if e.asset_key.to_user_string() == key and e.check_name == check}


def _materialization(instance, run_id: str, key: str) -> dict:
    records = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    for record in records:
        materialization = record.get_dagster_event().event_specific_data.materialization
        if materialization.asset_key.to_user_string() == key:
            return {name: value.value for name, value in materialization.metadata.items()}
    raise AssertionError(f"{key} not materialized in run {run_id}")


def _prediction_versions(settings, window) -> set[str]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as connection:
        return {version for (version,) in connection.execute(
            "SELECT DISTINCT model_version FROM ml.flight_delay_predictions WHERE data_date BETWEEN ? AND ?",
            list(window)).fetchall()}


def _rollback(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "platform_assets.ml", "rollback", *args], cwd=REPO_ROOT,
                          env={**os.environ, "PLATFORM_DATA_DIR": str(settings.data_dir)},
                          capture_output=True, text=True, timeout=120)


def _rollback_in_process(*args: str) -> subprocess.CompletedProcess:
    """The same command without starting Python again (the subprocess above covers the entry point)."""
    from platform_assets.ml.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["rollback", *args])
    return subprocess.CompletedProcess(["rollback", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory):
    previous = {name: os.environ.get(name) for name in ("PLATFORM_DATA_DIR", "DAGSTER_HOME")}
    os.environ["PLATFORM_DATA_DIR"] = str(tmp_path_factory.mktemp("lifecycle") / "data")
    import mlflow

    from platform_assets.definitions import build_definitions
    from platform_assets.demo import deliver
    from platform_assets.instance import prepare_instance
    from platform_assets.ml.registry import champion_version
    from platform_assets.automation.alerts import run_alerts
    from platform_assets.ml.sensors import retrain_on_drift
    from platform_assets.settings import load_settings

    settings = load_settings()
    prepare_instance(settings)
    for first, last in (JANUARY, SUMMER):
        deliver(settings, first, last)
    defs = build_definitions(settings)  # resources for this data folder
    demo = sorted(demo_asset_keys(defs.resolve_asset_graph()), key=lambda key: key.path)
    everything_but_training = [key for key in demo if key != dg.AssetKey(["ml", "delay_model"])]

    with dg.DagsterInstance.get() as instance:
        def run(job: str, window=None, **options) -> dg.ExecuteInProcessResult:
            tags = options.pop("tags", {})
            if job == "materialize_all":
                options.setdefault("asset_selection", demo)
            if window:
                tags |= {ASSET_PARTITION_RANGE_START_TAG: str(window[0]), ASSET_PARTITION_RANGE_END_TAG: str(window[1])}
            return defs.resolve_job_def(job).execute_in_process(
                instance=instance, tags=tags, raise_on_error=False, **options)

        def sense(cursor=None):
            context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
            return retrain_on_drift(context), context.cursor

        client = mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
        champion = lambda: str(champion_version(client, MODEL).version)  # noqa: E731
        state = SimpleNamespace(settings=settings, instance=instance, client=client)
        state.january = run("materialize_all", JANUARY)
        state.champion_after_january = champion()
        state.sensor_after_january = sense()[0]
        # Training and scoring in one run: the not-promoted challenger blocks nothing the champion serves.
        state.worse = run("materialize_all", JANUARY, run_config=WORSE, asset_selection=[
            dg.AssetKey(["ml", "delay_model"]), dg.AssetKey(["ml", "flight_delay_predictions"])])
        state.predictions_after_worse = _prediction_versions(settings, JANUARY)
        state.alerts_after_worse = run_alerts(instance, defs.get_repository_def(), settings, state.worse.run_id)
        state.champion_after_worse = champion()
        state.summer = run("materialize_all", SUMMER, asset_selection=everything_but_training)
        state.request, cursor = sense()
        state.sensor_again = sense(cursor)[0]
        state.sensor_replayed = sense()[0]
        state.retrain = run("retrain_delay_model",
                            tags={**state.request.tags, RUN_KEY_TAG: state.request.run_key})
        state.champion_after_retrain = champion()
        state.sensor_after_retrain = sense()[0]
        run("materialize_all", RESCORED, asset_selection=[dg.AssetKey(["ml", "flight_delay_predictions"])])
        state.predictions_after_retrain = _prediction_versions(settings, RESCORED)
        state.rollback = _rollback(settings, "--reason", "July model under review", "--by", "on-call")
        state.champion_after_rollback = champion()
        state.second_rollback = _rollback_in_process("--reason", "once more")
        run("materialize_all", RESCORED, asset_selection=[dg.AssetKey(["ml", "flight_delay_predictions"])])
        state.predictions_after_rollback = _prediction_versions(settings, RESCORED)
        yield state
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def test_the_first_model_is_promoted_on_the_floors_alone(lifecycle):
    assert lifecycle.january.success
    gate = _evaluations(lifecycle.instance, lifecycle.january.run_id)[("ml/delay_model", "beats_champion")]
    assert gate.passed and gate.metadata["champion_before"].value == "none"
    table = gate.metadata["comparison"].value
    assert "(floor)" in table and "champion -" not in table  # nothing to compare with yet
    assert lifecycle.champion_after_january == gate.metadata["challenger_version"].value == "1"
    version = lifecycle.client.get_model_version(MODEL, "1")
    assert version.tags["dagster_run_id"] == lifecycle.january.run_id and version.tags["gate"] == "passed"
    assert "previous_champion" not in version.tags


def test_a_worse_challenger_is_not_promoted_the_run_succeeds_and_the_champion_serves(lifecycle):
    assert lifecycle.worse.success  # a gate decision, not a failure
    gate = _evaluations(lifecycle.instance, lifecycle.worse.run_id)[("ml/delay_model", "beats_champion")]
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.WARN
    assert gate.metadata["champion_before"].value == gate.metadata["champion_after"].value == "1"
    assert gate.metadata["serving"].value == "version 1"
    # The same run scored its days with the champion it left in place, and alerted no one.
    assert _materialization(lifecycle.instance, lifecycle.worse.run_id,
                            "ml/flight_delay_predictions")["model_version"] == "1"
    assert lifecycle.predictions_after_worse == {"1"}
    assert lifecycle.alerts_after_worse == []
    failing = [line for line in gate.metadata["comparison"].value.splitlines() if "**FAIL**" in line]
    assert any(line.startswith("| overall | roc_auc |") for line in failing)
    assert any(line.startswith("| overall | log_loss |") for line in failing)
    assert lifecycle.champion_after_worse == "1"
    rejected = lifecycle.client.get_model_version(MODEL, "2")  # registered, never served
    assert rejected.tags["gate"] == "failed" and "promoted_at" not in rejected.tags
    assert rejected.tags["gate_decision"].startswith("failed against champion version 1: overall roc_auc")
    assert lifecycle.client.get_run(rejected.run_id).data.params["learning_rate"] == "0.3"


def test_training_logs_datasets_with_the_platform_versions_the_model_and_plots(lifecycle):
    from mlflow.models import get_model_info

    from platform_assets.metadata import table_version
    from platform_assets.ml.model import FEATURES

    version = lifecycle.client.get_model_version(MODEL, "1")
    run = lifecycle.client.get_run(version.run_id)
    inputs = {item.tags[0].value: item.dataset for item in run.inputs.dataset_inputs}
    holdout_start = version.tags["holdout_start"]
    labelled = "is_arr_delayed_15 IS NOT NULL"
    with duckdb.connect(str(lifecycle.settings.warehouse_path), read_only=True) as connection:
        # The rows of that time: July was published later.
        rows_of = {"training": f"flight_date < DATE '{holdout_start}'",
                   "evaluation": f"flight_date BETWEEN DATE '{holdout_start}' AND DATE '{JANUARY[1]}'"}
        expected = {role: table_version(connection, "marts.flight_features", f"{labelled} AND {rows}")
                    for role, rows in rows_of.items()}
    assert {role: dataset.digest for role, dataset in inputs.items()} == expected
    assert {dataset.name for dataset in inputs.values()} == {"marts.flight_features"}
    assert version.tags["training_dataset_version"] == expected["training"]
    assert run.data.metrics["holdout_roc_auc"] >= 0.6 and run.data.params["max_iter"] == "200"
    assert get_model_info(f"models:/{MODEL}/1").signature.inputs.input_names() == FEATURES
    artifacts = {item.path for item in lifecycle.client.list_artifacts(run.info.run_id)}
    assert {"evaluation.png", "gate.md", "reference_profile.json"} <= artifacts

    metadata = _materialization(lifecycle.instance, lifecycle.january.run_id, "ml/delay_model")
    assert metadata["mlflow_run"] == (
        f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}")
    assert metadata["training_dataset_version"] == expected["training"]
    image = metadata["evaluation"].split("data:image/png;base64,", 1)[1].rstrip(")")
    assert base64.b64decode(image).startswith(b"\x89PNG")


def test_drift_is_significant_when_a_january_model_scores_july(lifecycle):
    from platform_assets.ml.policy import load_policy

    assert lifecycle.summer.success
    # One result per day of the run, each day judged on its own (platform_assets/checks/daily.py).
    january = _daily_evaluations(lifecycle.instance, lifecycle.january.run_id, "ml/flight_delay_drift",
                                 "no_significant_drift")
    summer = _daily_evaluations(lifecycle.instance, lifecycle.summer.run_id, "ml/flight_delay_drift",
                                "no_significant_drift")
    # January's days are the model's own training days (and two holdout days): its reference, not drift.
    assert january and all(e.passed and not e.metadata["judged"].value for e in january.values())
    drift = _materialization(lifecycle.instance, lifecycle.january.run_id, "ml/flight_delay_drift")
    assert drift["days_judged"] == 0 and "did not train on" in drift["days"]
    assert all(e.severity == dg.AssetCheckSeverity.WARN for e in summer.values())
    # From July 4 on, the 7-day windows hold only days the January model never saw.
    assert sorted(day for day, e in summer.items() if not e.passed) == [
        "2013-07-04", "2013-07-05", "2013-07-06", "2013-07-07"]
    summary = _materialization(lifecycle.instance, lifecycle.summer.run_id, "ml/flight_delay_drift")
    assert summary["significant_days"] == "2013-07-04, 2013-07-05, 2013-07-06, 2013-07-07"
    with duckdb.connect(str(lifecycle.settings.warehouse_path), read_only=True) as connection:
        judged = "FROM ml.flight_delay_drift WHERE judged AND measure IN ('feature_psi', 'prediction_psi')"
        psi = dict(connection.execute(f"SELECT name, min(value) {judged} GROUP BY name").fetchall())
        drifted = dict(connection.execute(
            f"SELECT data_date, count_if(value >= 0.25) {judged} AND measure = 'feature_psi' GROUP BY ALL").fetchall())
    # The season, not noise: warm humid air, summer delay rates behind the trailing features, and the scores.
    for measure in ("temp_f", "humidity_pct", "route_trailing_delayed_share", "delay_probability"):
        assert psi[measure] >= 0.25, (measure, psi[measure])
    assert psi["carrier"] < 0.1 and psi["origin"] < 0.1  # the airline and airport mix barely moved
    assert len(drifted) == 4 and min(drifted.values()) >= load_policy().drift.significant_features


def test_the_sensor_requests_one_retraining_per_drift_evaluation(lifecycle):
    assert isinstance(lifecycle.sensor_after_january, dg.SkipReason)  # January's drift check passed
    request = lifecycle.request
    assert isinstance(request, dg.RunRequest), request
    assert request.tags["platform/drift_run_id"] == lifecycle.summer.run_id
    assert isinstance(lifecycle.sensor_again, dg.SkipReason)  # the cursor moved past the evaluation
    assert lifecycle.sensor_replayed.run_key == request.run_key  # from scratch: the same key, no second run
    assert lifecycle.retrain.success and lifecycle.retrain.dagster_run.tags[RUN_KEY_TAG] == request.run_key
    # Once the model is retrained, the same drift asks for nothing more, even from a reset cursor.
    assert "trained in or after" in lifecycle.sensor_after_retrain.skip_message


def test_a_better_challenger_is_promoted(lifecycle):
    gate = _evaluations(lifecycle.instance, lifecycle.retrain.run_id)[("ml/delay_model", "beats_champion")]
    assert gate.passed
    assert (gate.metadata["champion_before"].value, gate.metadata["champion_after"].value) == ("1", "3")
    overall_auc = next(line for line in gate.metadata["comparison"].value.splitlines()
                       if line.startswith("| overall | roc_auc |") and "champion -" in line)
    assert "| +0." in overall_auc  # better on the same July holdout, not merely tolerated
    assert lifecycle.champion_after_retrain == "3"
    assert lifecycle.client.get_model_version(MODEL, "3").tags["previous_champion"] == "1"


def test_rollback_restores_the_previous_champion_and_records_who_and_why(lifecycle):
    import json

    assert lifecycle.rollback.returncode == 0, lifecycle.rollback.stderr
    assert lifecycle.rollback.stdout == (f"champion of {MODEL}: version 3 -> 1 "
                                         "(rolled back by on-call: July model under review)\n")
    assert lifecycle.champion_after_rollback == "1"
    rolled_back = lifecycle.client.get_model_version(MODEL, "3").tags
    assert (rolled_back["rolled_back_by"], rolled_back["rollback_reason"]) == ("on-call", "July model under review")
    assert lifecycle.client.get_model_version(MODEL, "1").tags["restored_by"] == "on-call"
    history = [json.loads(line) for line in
               (lifecycle.settings.mlflow_dir / "champion_history.jsonl").read_text().splitlines()]
    assert [(move["action"], move["from_version"], move["to_version"]) for move in history] == [
        ("promoted", None, "1"), ("promoted", "1", "3"), ("rolled_back", "3", "1")]
    # Version 1 was the first champion: nothing earlier to restore. One line, non-zero.
    assert lifecycle.second_rollback.returncode == 1
    assert lifecycle.second_rollback.stderr.count("\n") == 1 and "first champion" in lifecycle.second_rollback.stderr


def test_predictions_carry_the_version_that_was_champion_when_they_were_scored(lifecycle):
    assert lifecycle.predictions_after_retrain == {"3"}
    assert lifecycle.predictions_after_rollback == {"1"}


def test_every_version_has_a_model_card_in_mlflow_and_in_its_materialization(lifecycle):
    import json

    from platform_assets.ml.policy import load_policy

    client = lifecycle.client
    rejected = client.get_model_version(MODEL, "2")  # the challenger the gate did not promote
    assert rejected.tags["model_card"] == f"runs:/{rejected.run_id}/model_card.md"
    folder = client.download_artifacts(rejected.run_id, "model_card.json")
    card = json.loads(open(folder).read())
    run = client.get_run(rejected.run_id)
    data = card["training_data"]
    assert (card["version"], card["mlflow_run_id"], card["dagster_run_id"]) == (
        "2", rejected.run_id, lifecycle.worse.run_id)
    assert data["training"]["digest"] == rejected.tags["training_dataset_version"]
    assert data["holdout"]["digest"] == rejected.tags["holdout_dataset_version"]
    assert data["training"]["rows"] == int(run.data.params["train_rows"])
    assert data["holdout"]["rows"] == int(run.data.params["holdout_rows"])
    assert (data["training"]["first_day"], data["holdout"]["first_day"], data["holdout"]["last_day"]) == (
        str(JANUARY[0]), rejected.tags["holdout_start"], str(JANUARY[1]))
    assert card["metrics"]["overall"]["roc_auc"] == pytest.approx(run.data.metrics["holdout_roc_auc"], abs=1e-6)
    gate = _evaluations(lifecycle.instance, lifecycle.worse.run_id)[("ml/delay_model", "beats_champion")]
    judged = {line.split(" | ")[0].lstrip("| ") for line in gate.metadata["comparison"].value.splitlines()
              if line.startswith("| carrier=") or line.startswith("| origin=")}
    assert judged and {scope for scope, values in card["metrics"]["by_segment"].items() if values} == judged
    assert card["gate"] | {"comparisons": None} == {
        "passed": False, "decision": gate.metadata["decision"].value, "champion_before": "1", "promoted": False,
        "serving_after": "version 1", "comparisons": None}
    assert card["owner"]["team"] == "ml-platform" and card["owner"]["steward"] == "priya.nair@example.com"
    assert card["sign_off"]["status"] == "none yet"
    assert set(load_policy().model_card.known_limits) <= set(card["known_limits"])
    markdown = open(client.download_artifacts(rejected.run_id, "model_card.md")).read()
    assert _materialization(lifecycle.instance, lifecycle.worse.run_id, "ml/delay_model")["model_card"] == markdown
    assert "Not promoted; serving after the decision: version 1." in markdown
    first = json.loads(open(client.download_artifacts(client.get_model_version(MODEL, "1").run_id,
                                                      "model_card.json")).read())
    assert first["gate"]["promoted"] and first["gate"]["champion_before"] is None
