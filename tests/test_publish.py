"""Write-audit-publish for the dbt marts, on a copy of the pipeline's warehouse: a build whose blocking
tests fail publishes nothing, and consumers keep reading the last good version."""

import json
import shutil

import dagster as dg
import duckdb

from conftest import PIPELINE_LAST_DAY
from openlineage_spec import event_problems


def _counts(path, day):
    with duckdb.connect(str(path), read_only=True) as connection:
        return {table: connection.execute(f"SELECT count(*) FROM marts.{table} WHERE data_date = '{day}'").fetchall()[0][0]
                for table in ("flights", "flight_features", "bookings", "bookings_quarantine")}


def test_failed_audit_keeps_the_published_marts(pipeline_run, tmp_path, monkeypatch):
    from platform_assets.resources import build_resources
    from platform_assets.settings import load_settings
    from platform_assets.transformations.dbt_assets import dbt_models

    source = pipeline_run["settings"].data_dir
    shutil.copytree(source / "warehouse", tmp_path / "warehouse")
    monkeypatch.setenv("PLATFORM_DATA_DIR", str(tmp_path))
    warehouse = load_settings().warehouse_path
    before = _counts(warehouse, PIPELINE_LAST_DAY)
    with duckdb.connect(str(warehouse)) as connection:  # an upstream bug the raw gate did not see
        connection.execute(f"INSERT INTO raw.flights SELECT * FROM raw.flights WHERE _data_date = '{PIPELINE_LAST_DAY}' LIMIT 3")

    resources = {k: v for k, v in build_resources(load_settings()).items() if k in ("dbt", "warehouse")}
    result = dg.materialize([dbt_models], partition_key=PIPELINE_LAST_DAY.isoformat(), resources=resources,
                            raise_on_error=False)

    assert not result.success
    failed = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
    assert "stg_flights__flight_id_is_unique" in failed
    materialized = {e.asset_key.path[0] for e in result.get_asset_materialization_events()}
    assert "marts" not in materialized
    assert _counts(warehouse, PIPELINE_LAST_DAY) == before
    # Lineage says the same: the failed test on the staged flights, the marts not built (dbt skipped them).
    events = [json.loads(line) for line in (tmp_path / "lineage" / "events.jsonl").read_text().splitlines()]
    assert [problem for event in events for problem in event_problems(event)] == []
    ends = {e["job"]["name"]: e for e in events if e["eventType"] != "START"}
    assert {ends[f"marts/{mart}"]["eventType"] for mart in ("flights", "flight_features", "bookings")} == {"ABORT"}
    staged = ends["staging/stg_flights__flights"]["outputs"][0]["facets"]["dataQualityAssertions"]["assertions"]
    assert {a["name"]: a["success"] for a in staged}["stg_flights__flight_id_is_unique"] is False


def test_published_marts_carry_their_version(pipeline_run):
    instance = pipeline_run["instance"]
    event = instance.get_latest_materialization_event(dg.AssetKey(["marts", "flights"]))
    metadata = event.asset_materialization.metadata
    assert metadata["published_version"].value.split("-")[0] == str(metadata["rows_in_run_range"].value)


def test_consumers_are_pointed_at_the_published_schema():
    from platform_assets.definitions import defs

    spec = defs.resolve_assets_def(dg.AssetKey(["marts", "flights"])).specs_by_key[dg.AssetKey(["marts", "flights"])]
    assert spec.metadata["dagster/table_name"] == "marts.flights"
