"""The model lifecycle on real data, through a real Dagster instance, DuckDB file, dbt build and MLflow store.

A January model is promoted on the floors; a worse challenger (same data, a learning rate four times higher) is
not promoted, its run succeeds and the January model scores that run's days; the data of late June and early
July, scored by the January model, drifts with the season; the sensor asks for retraining; the retrained model
beats the January one on the July holdout and goes into shadow: three July days are scored by both, only the
champion's scores are published, both are judged on the days' arrivals; the policy of this test requires a
sign-off, so it waits until a member of the owning team approves it, then serves; a rollback by hand restores the
January model; a deliberately weak model promoted by hand is rolled back on its own after two bad live days, once,
and the owners are alerted; predictions carry whichever version is champion when they are scored; every version has
a model card.

Jobs run in process (one process, no per-step start-up) with resources pointing at this test's data folder.
"""

import base64
import contextlib
import datetime as dt
import io
import json
import os
import subprocess
import sys
from pathlib import Path
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
# One split of one tree: a model that knows little, promoted by hand to be rolled back by its live results.
WEAK = {"ops": {"ml__delay_model": {"config": {"hyperparameters": {"max_iter": 1, "max_leaf_nodes": 2}}}}}
PREDICTIONS = dg.AssetKey(["ml", "flight_delay_predictions"])
LIVE = dg.AssetKey(["ml", "flight_delay_live_quality"])


def _test_policy(folder) -> str:
    """The shipped policy with a sign-off required and a rollback after 2 labelled days beyond a budget of 0.03."""
    import yaml

    from platform_assets.ml.policy import POLICY_PATH

    content = yaml.safe_load(POLICY_PATH.read_text())
    content["release"]["sign_off"]["required"] = True
    content["release"]["rollback"] |= {"days": 2, "error_budget": 0.03}
    path = folder / "lifecycle.yml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return str(path)


def _roles(settings, window) -> set[tuple[str, str, bool]]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as connection:
        return set(connection.execute(
            "SELECT DISTINCT model_version, role, served FROM ml.flight_delay_scores WHERE data_date BETWEEN ? AND ?",
            list(window)).fetchall())


def _live_rows(settings, window) -> list[tuple]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as connection:
        return connection.execute(
            "SELECT model_version, role, count(DISTINCT data_date), count(DISTINCT scope) FROM "
            "ml.flight_delay_live_quality WHERE data_date BETWEEN ? AND ? AND metric = 'roc_auc' GROUP BY ALL "
            "ORDER BY 1", list(window)).fetchall()


def _approve(*args: str) -> subprocess.CompletedProcess:
    from platform_assets.ml.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["approve", *args])
    return subprocess.CompletedProcess(["approve", *args], code, out.getvalue(), err.getvalue())


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


@contextlib.contextmanager
def _uncalibrated_drift_policy():
    from platform_assets.ml import monitoring
    from platform_assets.ml.policy import load_policy

    policy = load_policy()
    before = policy.model_copy(update={"drift": policy.drift.model_copy(update={
        "reference": "training", "ignored_features": ["month"], "significant_features": 5, "prediction_psi": 0.25})})
    original = monitoring.load_policy
    monitoring.load_policy = lambda: before
    try:
        yield
    finally:
        monitoring.load_policy = original


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory):
    previous = {name: os.environ.get(name) for name in ("PLATFORM_DATA_DIR", "DAGSTER_HOME",
                                                        "PLATFORM_LIFECYCLE_POLICY")}
    folder = tmp_path_factory.mktemp("lifecycle")
    os.environ["PLATFORM_DATA_DIR"] = str(folder / "data")
    os.environ["PLATFORM_LIFECYCLE_POLICY"] = _test_policy(folder)
    import mlflow

    from platform_assets.definitions import build_definitions
    from platform_assets.demo import deliver
    from platform_assets.instance import prepare_instance
    from platform_assets.ml.registry import SHADOW, alias_version, champion_version, promote
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
        # The calibrated policy finds no drift here (no performance drop, the same flights and planes): the summer
        # run watches the weather and trailing statistics against all training rows, as before the backtest, to
        # give the sensor a drift to answer (docs/model-lifecycle.md, "The drift backtest").
        with _uncalibrated_drift_policy():
            state.summer = run("materialize_all", SUMMER, asset_selection=everything_but_training)
        state.request, cursor = sense()
        state.sensor_again = sense(cursor)[0]
        state.sensor_replayed = sense()[0]
        state.retrain = run("retrain_delay_model",
                            tags={**state.request.tags, RUN_KEY_TAG: state.request.run_key})
        state.champion_after_retrain = champion()
        state.shadow_after_retrain = str(alias_version(client, MODEL, SHADOW).version)
        state.sensor_after_retrain = sense()[0]
        # Three July days scored by the champion and the shadow, judged live; the shadow waits for its sign-off.
        state.shadow_run = run("materialize_all", RESCORED, asset_selection=[PREDICTIONS, LIVE])
        state.predictions_after_retrain = _prediction_versions(settings, RESCORED)
        state.roles_in_shadow = _roles(settings, RESCORED)
        state.live_in_shadow = _live_rows(settings, RESCORED)
        state.champion_waiting = champion()
        state.refused_approval = _approve("3", "--by", "Sam Okafor")  # operations-control, not ml-platform
        state.approval = _approve("3", "--by", "Priya Nair")
        state.promotion_run = run("materialize_all", (RESCORED[1], RESCORED[1]), asset_selection=[LIVE])
        state.champion_after_sign_off = champion()
        run("materialize_all", RESCORED, asset_selection=[PREDICTIONS])
        state.predictions_after_promotion = _prediction_versions(settings, RESCORED)
        state.rollback = _rollback(settings, "--reason", "July model under review", "--by", "on-call")
        state.champion_after_rollback = champion()
        state.restored_tags = dict(client.get_model_version(MODEL, "1").tags)
        state.second_rollback = _rollback_in_process("--reason", "once more")
        run("materialize_all", RESCORED, asset_selection=[PREDICTIONS])
        state.predictions_after_rollback = _prediction_versions(settings, RESCORED)
        # A deliberately weak model, promoted by hand, then the July days replayed one at a time.
        state.weak = run("retrain_delay_model", run_config=WEAK)
        promote(client, MODEL, "4", "test", "a deliberately weak model", settings.mlflow_dir / "champion_history.jsonl")
        state.replay = []
        # The third day again stands for the day after: scored by whichever version serves by then.
        for day in (RESCORED[0] + dt.timedelta(days=n) for n in (0, 1, 2, 2)):
            replayed = run("materialize_all", (day, day), asset_selection=[PREDICTIONS, LIVE])
            state.replay.append((day, replayed, champion(), _prediction_versions(settings, (day, day))))
        state.replay_alerts = [run_alerts(instance, defs.get_repository_def(), settings, replayed.run_id)
                               for _, replayed, _, _ in state.replay]
        # Canaries turned on in the policy (shares 25 % then 50 %, two labelled days per step); the July model
        # goes on trial as a canary and two July days are scored and judged.
        import yaml

        from platform_assets.ml.registry import CANARY, start_trial

        state.history = (settings.mlflow_dir / "champion_history.jsonl").read_text().splitlines()
        run_of_3 = client.get_model_version(MODEL, "3").run_id
        state.card_of_3 = (json.loads(Path(client.download_artifacts(run_of_3, "model_card.json")).read_text()),
                           Path(client.download_artifacts(run_of_3, "model_card.md")).read_text())
        policy_path = Path(os.environ["PLATFORM_LIFECYCLE_POLICY"])
        policy = yaml.safe_load(policy_path.read_text())
        policy["release"]["canary"] = {"shares": [0.25, 0.5], "days_per_step": 2}
        policy_path.write_text(yaml.safe_dump(policy, sort_keys=False))
        state.champion_before_canary = champion()
        start_trial(client, MODEL, "3", CANARY, "test", "the July model as a canary",
                    settings.mlflow_dir / "champion_history.jsonl", share=0.25)
        state.canary_run = run("materialize_all", (RESCORED[0], RESCORED[1]), asset_selection=[PREDICTIONS, LIVE])
        with duckdb.connect(str(settings.warehouse_path), read_only=True) as connection:
            state.canary_scores = connection.execute(
                "SELECT flight_id, model_version, role, served, canary_share FROM ml.flight_delay_scores "
                "WHERE data_date BETWEEN ? AND ?", [RESCORED[0], RESCORED[1]]).df()
            state.canary_published = connection.execute(
                "SELECT flight_id, model_version FROM ml.flight_delay_predictions WHERE data_date BETWEEN ? AND ?",
                [RESCORED[0], RESCORED[1]]).df()
        canary_version = alias_version(client, MODEL, CANARY)
        state.canary_after = (str(canary_version.version), canary_version.tags.get("canary_share")) \
            if canary_version else None
        state.card_of_3_after_canary = json.loads(
            Path(client.download_artifacts(run_of_3, "model_card.json")).read_text())
        state.champion_after_canary = champion()
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
    # A 10-day run's plot stays in its MLflow run: Dagster would store it once per day (partitions.INLINE_DAYS).
    assert "drift_plot" not in drift and drift["mlflow_run"].startswith("http://127.0.0.1:5000/#/experiments/")
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
    assert len(drifted) == 4 and min(drifted.values()) >= 5  # the pre-backtest rule: 5 features at PSI 0.25


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


def test_a_better_challenger_goes_into_shadow_not_straight_to_serving(lifecycle):
    gate = _evaluations(lifecycle.instance, lifecycle.retrain.run_id)[("ml/delay_model", "beats_champion")]
    assert gate.passed
    assert (gate.metadata["champion_before"].value, gate.metadata["champion_after"].value) == ("1", "1")
    assert gate.metadata["release"].value == "shadow"
    assert gate.metadata["serving"].value.startswith("version 1 (version 3 in shadow")
    overall_auc = next(line for line in gate.metadata["comparison"].value.splitlines()
                       if line.startswith("| overall | roc_auc |") and "champion -" in line)
    assert "| +0." in overall_auc  # better on the same July holdout, not merely tolerated
    assert (lifecycle.champion_after_retrain, lifecycle.shadow_after_retrain) == ("1", "3")


def test_shadow_days_are_scored_by_both_and_consumers_see_only_the_champion(lifecycle):
    assert lifecycle.shadow_run.success
    assert lifecycle.roles_in_shadow == {("1", "champion", True), ("3", "shadow", False)}
    assert lifecycle.predictions_after_retrain == {"1"}
    with duckdb.connect(str(lifecycle.settings.warehouse_path), read_only=True) as connection:
        published, flights = connection.execute(
            "SELECT count(*), count(DISTINCT flight_id) FROM ml.flight_delay_predictions WHERE data_date BETWEEN ? "
            "AND ?", list(RESCORED)).fetchone()
    live = lifecycle.live_in_shadow
    assert published == flights > 2000  # one served row per flight
    # Both versions judged on each day's arrivals, overall and by carrier and origin.
    assert [(version, role, days) for version, role, days, _ in live] == [("1", "champion", 3), ("3", "shadow", 3)]
    assert all(scopes >= 4 for *_, scopes in live)  # overall and at least the three origins


def test_a_good_shadow_waits_for_sign_off_by_the_owning_team_then_serves(lifecycle):
    import json

    metadata = _materialization(lifecycle.instance, lifecycle.shadow_run.run_id, "ml/flight_delay_live_quality")
    assert metadata["trial"] == "await_sign_off", metadata
    assert "3 live days 2013-07-05..2013-07-07" in metadata["trial_reason"]
    assert lifecycle.champion_waiting == "1"
    assert lifecycle.promotion_run.success, [event.message for event in lifecycle.promotion_run.all_events
                                             if event.is_failure]
    assert lifecycle.refused_approval.returncode == 1
    assert lifecycle.refused_approval.stderr.count("\n") == 1
    assert "'Sam Okafor' is not a member of team ml-platform" in lifecycle.refused_approval.stderr
    assert lifecycle.approval.returncode == 0, lifecycle.approval.stderr
    assert lifecycle.approval.stdout == f"version 3 of {MODEL} signed off by priya.nair@example.com\n"
    assert lifecycle.champion_after_sign_off == "3"
    assert lifecycle.predictions_after_promotion == {"3"}
    history = [json.loads(line) for line in lifecycle.history]  # before the canary
    promotion = next(move for move in history if move["action"] == "promoted" and move["to_version"] == "3")
    assert promotion["by"].startswith("automatic release")
    evidence = promotion["evidence"]
    assert evidence["days"] == ["2013-07-05", "2013-07-06", "2013-07-07"] and evidence["stage"] == "shadow"
    assert evidence["sign_off"]["by"] == "priya.nair@example.com"
    assert evidence["decision"] == "passed against champion version 1"
    assert {(c["scope"], c["metric"]) for c in evidence["comparisons"]} >= {("overall", "roc_auc"),
                                                                          ("origin=EWR", "roc_auc")}
    card, markdown = lifecycle.card_of_3  # before the canary
    assert card["release"]["outcome"] == "promoted to champion" and card["release"]["days"] == evidence["days"]
    assert card["sign_off"] | {"at": None} == {"required": True, "status": "approved",
                                               "by": "priya.nair@example.com", "at": None}
    assert "## Shadow and canary results (live, labelled days)" in markdown


def test_a_weak_champion_is_rolled_back_on_its_own_once_and_the_owners_are_alerted(lifecycle):
    import json

    assert not _evaluations(lifecycle.instance, lifecycle.weak.run_id)[("ml/delay_model", "beats_champion")].passed
    runs = [replayed for _, replayed, _, _ in lifecycle.replay]
    assert all(run.success for run in runs)  # a rollback is a decision, not a failed run
    # Measured: July 5 stays within the budget (ROC AUC 0.582, limit 0.571); July 6 (0.535) and 7 (0.510) do not:
    # the second day in a row moves the alias back. The day after is scored by the restored version.
    assert [(str(day), served, champion) for day, _, champion, served in lifecycle.replay] == [
        ("2013-07-05", {"4"}, "4"), ("2013-07-06", {"4"}, "4"), ("2013-07-07", {"4"}, "1"), ("2013-07-07", {"1"}, "1")]
    history = [json.loads(line) for line in lifecycle.history]  # before the canary
    automatic = [move for move in history if move["action"] == "rolled_back" and move["by"].startswith("automatic")]
    assert len(automatic) == 1
    move = automatic[0]
    assert (move["from_version"], move["to_version"]) == ("4", "1")
    assert "beyond the error budget on 2 labelled days in a row" in move["reason"]
    assert "version 1's live level" in move["reason"]
    assert list(move["evidence"]["days"]) == ["2013-07-06", "2013-07-07"]
    assert all(value < move["evidence"]["limit"] for value in move["evidence"]["days"].values())
    check = _evaluations(lifecycle.instance, runs[2].run_id)[("ml/flight_delay_live_quality",
                                                             "champion_within_error_budget")]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    (alert,) = lifecycle.replay_alerts[2]
    assert (alert["dataset"], alert["owner"], alert["on_call"], alert["kind"]) == (
        "ml/flight_delay_live_quality", "team:ml-platform", "ml-platform-oncall@example.com", "check_failed")
    assert "version 4 -> 1 (rolled back by automatic release" in alert["message"]
    assert lifecycle.replay_alerts[0] == lifecycle.replay_alerts[1] == []


def test_rollback_restores_the_previous_champion_and_records_who_and_why(lifecycle):
    import json

    assert lifecycle.rollback.returncode == 0, lifecycle.rollback.stderr
    assert lifecycle.rollback.stdout == (f"champion of {MODEL}: version 3 -> 1 "
                                         "(rolled back by on-call: July model under review)\n")
    assert lifecycle.champion_after_rollback == "1"
    rolled_back = lifecycle.client.get_model_version(MODEL, "3").tags
    assert (rolled_back["rolled_back_by"], rolled_back["rollback_reason"]) == ("on-call", "July model under review")
    assert lifecycle.restored_tags["restored_by"] == "on-call"
    history = [json.loads(line) for line in lifecycle.history]  # before the canary
    assert [(move["action"], move["from_version"], move["to_version"]) for move in history] == [
        ("promoted", None, "1"), ("shadow", None, "3"), ("approved", None, "3"), ("promoted", "1", "3"),
        ("rolled_back", "3", "1"), ("promoted", "1", "4"), ("rolled_back", "4", "1")]
    # Version 1 was the first champion: nothing earlier to restore. One line, non-zero.
    assert lifecycle.second_rollback.returncode == 1
    assert lifecycle.second_rollback.stderr.count("\n") == 1 and "first champion" in lifecycle.second_rollback.stderr


def test_predictions_carry_the_version_that_was_champion_when_they_were_scored(lifecycle):
    assert lifecycle.predictions_after_promotion == {"3"}
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


def test_the_governance_report_links_the_model_card_of_every_version(lifecycle, tmp_path):
    from governance.cli import main as governance_main

    out = tmp_path / "report.html"
    with contextlib.redirect_stdout(io.StringIO()):
        assert governance_main(["report", "--out", str(out)]) == 0
    section = out.read_text().split('id="ds-ml-delay_model"')[1].split("</section>")[0]
    versions = [version.version for version in lifecycle.client.search_model_versions(f"name = '{MODEL}'")]
    assert len(versions) >= 3
    for version in versions:
        assert f'href="#card-{MODEL}-{version}"' in section and f"# Model card: {MODEL} version {version}" in section


def _documented_backtest() -> list[str]:
    text = (REPO_ROOT / "docs" / "model-lifecycle.md").read_text()
    block = text.split("<!-- small-window backtest -->")[1].split("<!-- end -->")[0]
    return [line for line in block.splitlines() if line.startswith("|")]


def test_the_drift_backtest_reproduces_its_documented_small_window(lifecycle, tmp_path):
    """The backtest over this module's two real periods (January 1-10 and June 28 - July 7): two versions, the
    numbers docs/model-lifecycle.md shows, and rates that recount from the judged days it lists."""
    from platform_assets.ml.__main__ import main

    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["backtest", "--out", str(tmp_path)]) == 0
    assert "drift_backtest.md and drift_backtest.json" in out.getvalue()
    written = (tmp_path / "drift_backtest.md").read_text()
    best = written.split("## The ")[1].split("## Every setting")[0]
    assert [line for line in best.splitlines() if line.startswith("|")] == _documented_backtest()
    result = json.loads((tmp_path / "drift_backtest.json").read_text())
    assert result["versions"] == ["2013-02-01", "2013-07-01"]
    days = [day for day in result["days"] if day["reference"] == result["chosen"]["reference"]]
    assert result["chosen"]["days_with_drop"] == sum(day["drop"] for day in days)
    assert result["chosen"]["days_without_drop"] == sum(not day["drop"] for day in days)
    # The same days scored again without training: the same table.
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["backtest", "--rescore", str(tmp_path / "drift_backtest.json"), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "drift_backtest.md").read_text() == written


def test_a_canary_serves_its_share_of_flights_by_their_id_and_is_raised_after_good_days(lifecycle):
    from platform_assets.ml.release import in_canary

    assert lifecycle.canary_run.success
    scores, published = lifecycle.canary_scores, lifecycle.canary_published
    champion = lifecycle.champion_before_canary
    canary = scores[scores["role"] == "canary"].set_index("flight_id")
    served_by_champion = scores[(scores["role"] == "champion") & scores["served"]].set_index("flight_id")
    # every flight scored by both; the canary serves exactly the flights whose id hashes below the share
    assert len(canary) == len(scores[scores["role"] == "champion"]) > 2000
    assert set(canary["model_version"]) == {"3"} and set(canary["canary_share"]) == {0.25}
    expected = in_canary(canary.index, 0.25)
    assert (canary["served"].to_numpy() == expected).all()
    assert 0.2 < expected.mean() < 0.3
    assert set(served_by_champion.index) == set(canary.index[~expected])
    # consumers read one row per flight, from the version that served it
    assert published["flight_id"].is_unique and len(published) == len(canary)
    versions = published.set_index("flight_id")["model_version"]
    assert (versions[canary.index[expected]] == "3").all() and (versions[canary.index[~expected]] == champion).all()
    # judged on the two labelled days: not worse than the champion, raised to the next share; still not serving all
    assert lifecycle.canary_after == ("3", "0.5"), lifecycle.canary_after
    assert lifecycle.champion_after_canary == champion
    assert lifecycle.card_of_3_after_canary["release"]["outcome"] == "canary at share 0.5"

