"""Fast tests of the lineage pieces: column lineage from SQL, transport configuration, the local record and
the queue, naming, and the schema validation the integration tests rely on."""

import json
import os

import pytest
from openlineage.client.event_v2 import Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import ownership_dataset
from openlineage.client.serde import Serde
from openlineage.client.uuid import generate_new_uuid

from openlineage_spec import event_problems
from platform_assets.lineage.datasets import mlflow_namespace
from platform_assets.lineage.dbt import ColumnLineageCache, column_lineage
from platform_assets.lineage.emitter import LineageEmitter, bounded, configured_transport

SCHEMA = {"warehouse": {"staging": {"flights": {"flight_id": "VARCHAR", "carrier": "VARCHAR", "dep_delay": "INT"},
                                    "airlines": {"carrier": "VARCHAR", "airline_name": "VARCHAR"}}}}


@pytest.fixture(autouse=True)
def clean_openlineage_env(monkeypatch, tmp_path):
    """No configuration from the machine; afterwards no variables the client derived."""
    for name in [n for n in os.environ if n.startswith("OPENLINEAGE")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no openlineage.yml in the working directory
    monkeypatch.setenv("HOME", str(tmp_path))
    before = set(os.environ)
    yield
    for name in set(os.environ) - before:
        if name.startswith("OPENLINEAGE"):
            os.environ.pop(name)


def _event(job: str = "raw/flights") -> RunEvent:
    return RunEvent(
        eventType=RunState.COMPLETE, eventTime="2013-01-02T03:04:05+00:00", producer="urn:test",
        run=Run(runId=str(generate_new_uuid())), job=Job(namespace="flight-platform", name=job),
        outputs=[OutputDataset(namespace="duckdb:///w.duckdb", name="w.raw.flights", facets={
            "ownership": ownership_dataset.OwnershipDatasetFacet(
                owners=[ownership_dataset.Owner(name="team:flight-operations", type="OWNER")])})])


def test_column_lineage_expands_star_and_tells_copies_from_derivations():
    sql = """
        with flights as (select * from "warehouse"."staging"."flights")
        select flights.flight_id, airlines.airline_name as airline, flights.dep_delay > 15 as is_late
        from flights left join "warehouse"."staging"."airlines" as airlines on flights.carrier = airlines.carrier
    """
    assert column_lineage(sql, SCHEMA) == {
        "flight_id": [("staging.flights", "flight_id", True)],
        "airline": [("staging.airlines", "airline_name", True)],
        "is_late": [("staging.flights", "dep_delay", False)],
    }
    assert column_lineage("select from where", SCHEMA) == {}


def test_column_lineage_is_kept_for_the_same_sql_over_another_range_and_redone_when_columns_change(tmp_path):
    path = tmp_path / "cache.json"
    sql = """select flight_id, dep_delay > 15 as is_late from "warehouse"."staging"."flights"
             where data_date between date '{first}' and date '{last}'"""
    first = ColumnLineageCache(path, SCHEMA)
    derived = first.column_lineage(sql.format(first="2013-01-01", last="2013-11-30"))
    assert derived == {"flight_id": [("staging.flights", "flight_id", True)],
                       "is_late": [("staging.flights", "dep_delay", False)]}
    first.save()

    # another process, the next day: answered from the file (the SQL here could not even be parsed again)
    second = ColumnLineageCache(path, SCHEMA)
    second.entries = {key: {"flight_id": [["cached", "flight_id", True]]} for key in second.entries}
    assert second.column_lineage(sql.format(first="2013-12-01", last="2013-12-01")) == {
        "flight_id": [("cached", "flight_id", True)]}

    renamed = {"warehouse": {"staging": {"flights": {"flight_id": "VARCHAR", "dep_delay_minutes": "INT"}}}}
    third = ColumnLineageCache(path, renamed)
    assert third.column_lineage(sql.format(first="2013-12-01", last="2013-12-01")) == {
        "flight_id": [("staging.flights", "flight_id", True)],
        "is_late": [("staging.flights", "dep_delay", False)]}
    third.save()
    assert len(json.loads(path.read_text())) == 1  # the entry for the old columns is gone


def test_http_delivery_is_short_and_unretried_unless_the_configuration_says_otherwise():
    assert bounded({"type": "http", "url": "http://m:5000"}) == {
        "type": "http", "url": "http://m:5000", "timeout": 2.0, "retry": {"total": 0}}
    assert bounded({"type": "http", "url": "http://m:5000", "timeout": 9})["timeout"] == 9
    composite = bounded({"type": "composite", "transports": {"a": {"type": "http", "url": "http://m"},
                                                              "b": {"type": "console"}}})
    assert composite["transports"]["a"]["retry"] == {"total": 0}
    assert composite["transports"]["b"] == {"type": "console"}


def test_the_transport_is_configured_the_standard_ways(tmp_path, monkeypatch):
    assert configured_transport() is None
    config = tmp_path / "elsewhere.yml"
    config.write_text("transport:\n  type: file\n  log_file_path: /tmp/x.jsonl\n  append: true\n")
    monkeypatch.setenv("OPENLINEAGE_CONFIG", str(config))
    assert configured_transport() == {"type": "file", "log_file_path": "/tmp/x.jsonl", "append": True}
    monkeypatch.delenv("OPENLINEAGE_CONFIG")
    monkeypatch.setenv("OPENLINEAGE_URL", "http://127.0.0.1:5000")
    monkeypatch.setenv("OPENLINEAGE_API_KEY", "k")
    assert configured_transport() == {"type": "http", "url": "http://127.0.0.1:5000", "endpoint": "api/v1/lineage",
                                      "auth": {"type": "api_key", "apiKey": "k"}, "timeout": 2.0,
                                      "retry": {"total": 0}}


def test_by_default_events_are_only_recorded_locally(tmp_path):
    emitter = LineageEmitter(tmp_path / "lineage")
    emitter.emit(_event())
    emitter.emit(_event("raw/weather"))
    lines = (tmp_path / "lineage" / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["job"]["name"] for line in lines] == ["raw/flights", "raw/weather"]
    assert not emitter.delivers and not (tmp_path / "lineage" / "pending.jsonl").exists()


def test_a_configured_transport_gets_each_event_through_the_queue(tmp_path, monkeypatch):
    (tmp_path / "openlineage.yml").write_text(
        f"transport:\n  type: file\n  log_file_path: {tmp_path / 'delivered.jsonl'}\n  append: true\n")
    emitter = LineageEmitter(tmp_path / "lineage")
    emitter.emit(_event())
    recorded = (tmp_path / "lineage" / "events.jsonl").read_text()
    assert (tmp_path / "delivered.jsonl").read_text() == recorded
    assert emitter.state().pending == [] and emitter.flush() == (0, 0)


def test_disabled_lineage_records_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENLINEAGE_DISABLED", "true")
    monkeypatch.setenv("OPENLINEAGE_URL", "http://127.0.0.1:9")
    LineageEmitter(tmp_path / "lineage").emit(_event())
    assert not (tmp_path / "lineage").exists()


def test_mlflow_stores_are_namespaced_by_location():
    assert mlflow_namespace("sqlite:////data/mlflow/mlflow.db") == "mlflow:///data/mlflow/mlflow.db"
    assert mlflow_namespace("http://127.0.0.1:5000") == "mlflow://127.0.0.1:5000"
    assert mlflow_namespace("postgresql+psycopg2://postgres:pw@127.0.0.1:6543/mlflow") == "mlflow://127.0.0.1:6543/mlflow"


def test_warehouse_tables_are_named_as_dbt_ol_names_them_on_each_target(tmp_path):
    from platform_assets.lineage.datasets import Locations, table_dataset

    embedded = Locations(tmp_path / "warehouse" / "warehouse.duckdb", "sqlite:///m.db", "model")
    assert embedded.identity(table_dataset("raw.flights")) == (
        f"duckdb://{tmp_path}/warehouse/warehouse.duckdb", "warehouse.raw.flights")
    team = Locations(tmp_path / "unused.duckdb", "sqlite:///m.db", "model",
                     warehouse_url="postgresql://platform:secret@127.0.0.1:6543/warehouse")
    assert team.identity(table_dataset("marts.flights")) == ("postgres://127.0.0.1:6543", "warehouse.marts.flights")
    assert team.warehouse_database == "warehouse"  # user and password never reach a namespace


def test_the_schema_check_catches_a_broken_event_and_facet():
    event = json.loads(Serde.to_json(_event()))
    assert event_problems(event) == []
    broken = json.loads(json.dumps(event))
    del broken["outputs"][0]["facets"]["ownership"]["owners"][0]["name"]
    assert any("'name' is a required property" in p for p in event_problems(broken))
    renamed = json.loads(json.dumps(event))
    renamed["outputs"][0]["facets"]["owners"] = renamed["outputs"][0]["facets"].pop("ownership")
    assert any("defines the facet as ['ownership']" in p for p in event_problems(renamed))
    no_time = json.loads(json.dumps(event))
    del no_time["eventTime"]
    assert event_problems(no_time)
