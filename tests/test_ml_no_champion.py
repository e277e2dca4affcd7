"""A first short run on real data: `make demo` over 7 days of 2013 (real deliveries, dbt build, DuckDB file,
MLflow store, Dagster instance in a temporary data folder). Its holdout is too small for the promotion gate's
floors, so no version serves: the run succeeds, and the run's log, the assets' metadata and the summary say why.
"""

import contextlib
import datetime as dt
import io
import os

import dagster as dg
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

FIRST, LAST = dt.date(2013, 1, 1), dt.date(2013, 1, 7)
MODEL = "flight_delay_classifier"
PREDICTIONS = dg.AssetKey(["ml", "flight_delay_predictions"])
DRIFT = dg.AssetKey(["ml", "flight_delay_drift"])


def _materializations(instance, run_id: str, key: dg.AssetKey) -> list[dg.AssetMaterialization]:
    return [record.get_dagster_event().event_specific_data.materialization
            for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
            if record.get_dagster_event().asset_key == key]


@pytest.fixture(scope="module")
def short_demo(tmp_path_factory):
    previous = {name: os.environ.get(name) for name in ("PLATFORM_DATA_DIR", "DAGSTER_HOME")}
    os.environ["PLATFORM_DATA_DIR"] = str(tmp_path_factory.mktemp("short_demo") / "data")
    from platform_assets.definitions import build_definitions
    from platform_assets.demo import main
    from platform_assets.settings import load_settings

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--start", str(FIRST), "--end", str(LAST)])
    settings = load_settings()
    defs = build_definitions(settings)
    with dg.DagsterInstance.get() as instance:
        run = instance.get_runs(filters=dg.RunsFilter(job_name="materialize_all"))[-1]
        # What declarative automation starts next under `make dev`: the latest day's predictions, on their own.
        following = defs.resolve_job_def("materialize_all").execute_in_process(
            instance=instance, asset_selection=[PREDICTIONS], raise_on_error=False,
            tags={ASSET_PARTITION_RANGE_START_TAG: str(LAST), ASSET_PARTITION_RANGE_END_TAG: str(LAST)})
        yield {"code": code, "out": out.getvalue(), "run": run, "instance": instance, "defs": defs,
               "settings": settings, "following": following}
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def test_the_short_demo_succeeds_and_says_why_no_model_serves(short_demo):
    assert short_demo["code"] == 0, short_demo["out"][-3000:]
    assert short_demo["run"].status == dg.DagsterRunStatus.SUCCESS
    summary = short_demo["out"].split("[3/3] summary", 1)[1]
    assert ", SUCCESS, " in summary.splitlines()[0]
    lines = {line.split()[0]: line for line in summary.splitlines()[1:] if line.startswith("  ") and line.split()}
    assert "not promoted (failed against the floors only (no champion yet)" in lines["model"]
    assert "must be >= 1,000 (floor)" in lines["model"]  # 7 days leave too small a holdout
    assert lines["serving"].startswith("  serving       no model serves: no version of 'flight_delay_classifier' "
                                       "has passed the promotion gate yet (1 registered; the newest, version 1: "
                                       "failed against the floors only")
    assert "predictions skipped, nothing failed" in lines["serving"]
    assert "not measured: no flight was scored (no model serves)" in lines["drift"]


def test_the_gate_decision_is_a_warning_that_blocks_and_alerts_nothing(short_demo):
    from platform_assets.automation.alerts import run_alerts

    instance, run = short_demo["instance"], short_demo["run"]
    gates = [record.get_dagster_event().event_specific_data for record in instance.all_logs(
        run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        if record.get_dagster_event().event_specific_data.check_name == "beats_champion"]
    assert len(gates) == 1 and not gates[0].passed and gates[0].severity == dg.AssetCheckSeverity.WARN
    assert gates[0].metadata["champion_after"].value == "none"
    assert gates[0].metadata["serving"].value.startswith("no model serves")
    spec = short_demo["defs"].resolve_asset_graph().get_check_spec(
        dg.AssetCheckKey(dg.AssetKey(["ml", "delay_model"]), "beats_champion"))
    assert not spec.blocking
    # Not an alert: no failed run, no failed ERROR check.
    assert run_alerts(instance, short_demo["defs"].get_repository_def(), short_demo["settings"], run.run_id) == []
    steps = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    assert steps == []


def test_predictions_and_drift_record_why_they_were_skipped(short_demo):
    instance, run = short_demo["instance"], short_demo["run"]
    days = {str(FIRST + dt.timedelta(days=n)) for n in range((LAST - FIRST).days + 1)}
    for key in (PREDICTIONS, DRIFT):
        materializations = _materializations(instance, run.run_id, key)
        assert {m.partition for m in materializations} == days, key
        for materialization in materializations:
            assert "no model serves: no version of 'flight_delay_classifier'" in (
                materialization.metadata["skipped"].value), key
    assert _materializations(instance, run.run_id, PREDICTIONS)[0].metadata["model_version"].value == "none"
    warnings = [record.user_message for record in instance.all_logs(run.run_id)
                if record.level == 30 and "skipped: no model serves" in record.user_message]
    assert len(warnings) == 1 and "predictions for 2013-01-01..2013-01-07 skipped" in warnings[0]
    from platform_assets.resources import build_resources

    with build_resources(short_demo["settings"])["warehouse"].open(read_only=True) as store:  # nothing written
        tables = store.read("SELECT table_name FROM information_schema.tables WHERE table_schema = 'ml'")
    assert tables.empty


def test_the_run_that_follows_succeeds_too(short_demo):
    following = short_demo["following"]
    assert following.success
    (materialization,) = _materializations(short_demo["instance"], following.run_id, PREDICTIONS)
    assert materialization.partition == str(LAST) and "no model serves" in materialization.metadata["skipped"].value
