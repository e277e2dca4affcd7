"""OpenLineage of the real pipeline run (conftest.pipeline_run: ten days, materialized twice through a real
Dagster instance): every event valid against the official schemas, one START then COMPLETE per
materialization, datasets named as dbt-ol names them, the asset graph rebuilt from the events alone, facets
that say what Dagster and the catalog say, and provenance traced back with `governance trace`."""

import hashlib
import json
from collections import Counter, defaultdict

import dagster as dg
import duckdb

import pytest

from conftest import PIPELINE_FIRST_DAY, PIPELINE_LAST_DAY
from deliveries import demo_asset_keys
from openlineage_spec import event_problems, facets_of

# Every facet the platform promises, on some event of a successful run (errorMessage: see the FAIL tests).
PROMISED_FACETS = {"schema", "dataSource", "documentation", "ownership", "tags", "columnLineage",
                   "dataQualityAssertions", "outputStatistics", "version", "jobType", "processing_engine",
                   "parent", "nominalTime", "sql", "datasetType"}


def _events(pipeline_run) -> list[dict]:
    path = pipeline_run["settings"].lineage_dir / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _of_dagster_run(events, run_id) -> list[dict]:
    return [e for e in events if e["run"]["facets"]["parent"]["run"]["runId"] == run_id]


def _completed(events, job) -> dict:
    return [e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"] == job][-1]


def _materialized_keys(instance, run_id) -> set[str]:
    return {record.get_dagster_event().asset_key.to_user_string()
            for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)}


def test_every_event_and_every_facet_is_valid_against_the_openlineage_spec(pipeline_run):
    events = _events(pipeline_run)
    assert events
    problems = {f"{e['eventType']} {e['job']['name']}": event_problems(e) for e in events}
    assert {job: found for job, found in problems.items() if found} == {}
    assert PROMISED_FACETS <= {name for event in events for _, name, _ in facets_of(event)}


def test_each_materialization_is_one_start_then_one_complete_under_its_dagster_run(pipeline_run):
    events, instance = _events(pipeline_run), pipeline_run["instance"]
    for dagster_run in (pipeline_run["first"], pipeline_run["second"]):
        run_events = _of_dagster_run(events, dagster_run.run_id)
        states = defaultdict(list)
        for event in run_events:
            states[event["run"]["runId"]].append(event["eventType"])
        assert set(map(tuple, states.values())) == {("START", "COMPLETE")}
        completed = Counter(e["job"]["name"] for e in run_events if e["eventType"] == "COMPLETE")
        assert set(completed) == _materialized_keys(instance, dagster_run.run_id)
        assert set(completed.values()) == {1}
        assert {e["run"]["facets"]["parent"]["job"]["name"] for e in run_events} == {"materialize_all"}


def test_datasets_are_named_as_dbt_openlineage_names_duckdb_tables(pipeline_run):
    settings = pipeline_run["settings"]
    events = _events(pipeline_run)
    namespaces = {d["namespace"] for e in events for d in e["inputs"] + e["outputs"]}
    warehouse = f"duckdb://{settings.warehouse_path}"
    assert warehouse in namespaces and "file" in namespaces
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as connection:
        tables = {f"{catalog}.{schema}.{name}" for catalog, schema, name in connection.execute(
            "SELECT table_catalog, table_schema, table_name FROM information_schema.tables").fetchall()}
    named = {d["name"] for e in events for d in e["inputs"] + e["outputs"] if d["namespace"] == warehouse}
    assert named <= tables
    assert {"warehouse.raw.flights", "warehouse.marts_audit.flights", "warehouse.marts.flights",
            "warehouse.ml.flight_delay_predictions"} <= named
    files = {d["name"] for e in events for d in e["inputs"] if d["namespace"] == "file"}
    landing = settings.landing_dir.resolve()
    assert files and all(name.startswith(str(landing) + "/") for name in files)
    days = (PIPELINE_LAST_DAY - PIPELINE_FIRST_DAY).days + 1
    assert len(files) == 3 * days + 3  # one file per daily source and day, one per reference snapshot


def test_the_graph_rebuilt_from_the_events_is_the_asset_graph(pipeline_run):
    from platform_assets.definitions import defs

    completes = [e for e in _of_dagster_run(_events(pipeline_run), pipeline_run["second"].run_id)
                 if e["eventType"] == "COMPLETE"]
    producer = {(d["namespace"], d["name"]): e["job"]["name"] for e in completes for d in e["outputs"]}
    from_events = {(producer[(d["namespace"], d["name"])], e["job"]["name"])
                   for e in completes for d in e["inputs"] if (d["namespace"], d["name"]) in producer}
    graph = defs.resolve_asset_graph()
    demo = demo_asset_keys(graph)
    from_dagster = {(parent.to_user_string(), key.to_user_string())
                    for key in demo for parent in graph.get(key).parent_keys}
    assert from_dagster - from_events == set()
    assert from_events - from_dagster == set()


def test_raw_outputs_say_what_dagster_and_the_catalog_say(pipeline_run):
    from governance.catalog import load_catalog

    instance, run_id = pipeline_run["instance"], pipeline_run["second"].run_id
    event = _completed(_of_dagster_run(_events(pipeline_run), run_id), "raw/bookings")
    output = event["outputs"][0]
    recorded = instance.get_latest_materialization_event(dg.AssetKey(["raw", "bookings"])).asset_materialization
    assert output["name"] == "warehouse.raw.bookings"
    assert output["facets"]["version"]["datasetVersion"] == recorded.metadata["published_version"].value
    assert output["outputFacets"]["outputStatistics"]["rowCount"] == recorded.metadata["rows_loaded_this_run"].value
    dataset = load_catalog().dataset("raw/bookings")
    owners = {owner["name"] for owner in output["facets"]["ownership"]["owners"]}
    assert f"team:{dataset.owner}" in owners
    tags = {(tag["key"], tag["value"]) for tag in output["facets"]["tags"]["tags"]}
    assert ("classification", "restricted") in tags
    fields = [field["name"] for field in output["facets"]["schema"]["fields"]]
    assert {"email", "_source_file", "_file_sha256"} <= set(fields)
    assertions = {a["name"]: a for a in output["facets"]["dataQualityAssertions"]["assertions"]}
    assert assertions["contract"]["success"] and assertions["contract"]["severity"] == "error"
    # The seeded booking defects are reported by the WARN check, and so in the lineage.
    assert not assertions["contract_known_gaps"]["success"]
    assert event["run"]["facets"]["nominalTime"]["nominalStartTime"].startswith(PIPELINE_FIRST_DAY.isoformat())
    inputs = {d["name"]: d["facets"]["version"]["datasetVersion"] for d in event["inputs"]}
    assert len(inputs) == (PIPELINE_LAST_DAY - PIPELINE_FIRST_DAY).days + 1
    with duckdb.connect(str(pipeline_run["settings"].warehouse_path), read_only=True) as connection:
        loaded = dict(connection.execute("SELECT DISTINCT _source_file, 'sha256:' || _file_sha256 "
                                         "FROM raw.bookings").fetchall())
    assert {name: loaded[name] for name in inputs} == inputs


def test_dbt_models_carry_column_lineage_test_assertions_and_the_published_version(pipeline_run):
    instance, run_id = pipeline_run["instance"], pipeline_run["second"].run_id
    event = _completed(_of_dagster_run(_events(pipeline_run), run_id), "marts/flights")
    audited, published = event["outputs"]
    assert (audited["name"], published["name"]) == ("warehouse.marts_audit.flights", "warehouse.marts.flights")
    assert event["job"]["facets"]["jobType"]["integration"] == "DBT"
    assert "stg_flights__flights" in event["job"]["facets"]["sql"]["query"]
    lineage = audited["facets"]["columnLineage"]["fields"]
    name_source = lineage["airline_name"]["inputFields"]
    assert [(f["name"], f["field"], f["transformations"][0]["subtype"]) for f in name_source] == [
        ("warehouse.staging.stg_reference__airlines", "airline_name", "IDENTITY")]
    derived = {(f["name"], f["field"], f["transformations"][0]["subtype"])
               for f in lineage["has_known_plane"]["inputFields"]}
    assert derived == {("warehouse.staging.stg_reference__planes", "tailnum", "TRANSFORMATION")}
    copied = published["facets"]["columnLineage"]["fields"]["flight_id"]["inputFields"]
    assert [(f["name"], f["field"]) for f in copied] == [("warehouse.marts_audit.flights", "flight_id")]
    recorded = instance.get_latest_materialization_event(dg.AssetKey(["marts", "flights"])).asset_materialization
    assert published["facets"]["version"]["datasetVersion"] == recorded.metadata["published_version"].value
    assertions = {a["name"]: a for a in published["facets"]["dataQualityAssertions"]["assertions"]}
    unique = assertions["flights__flight_id_is_unique"]
    assert (unique["assertion"], unique["column"], unique["success"]) == ("unique", "flight_id", True)
    gap = assertions["flights__dest_is_in_airport_register"]  # the real data's known gap, a WARN test
    assert (gap["severity"], gap["success"]) == ("warn", False)


def test_predictions_read_the_registered_model_version_that_scored_them(pipeline_run):
    events = _of_dagster_run(_events(pipeline_run), pipeline_run["second"].run_id)
    model = _completed(events, "ml/delay_model")["outputs"][0]
    predictions = _completed(events, "ml/flight_delay_predictions")
    used = [d for d in predictions["inputs"] if d["name"] == "flight_delay_classifier"]
    settings = pipeline_run["settings"]
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as connection:
        scored_by = connection.execute("SELECT DISTINCT model_version FROM ml.flight_delay_predictions").fetchall()
    assert model["namespace"] == f"mlflow://{settings.mlflow_dir / 'mlflow.db'}"
    assert model["facets"]["datasetType"]["datasetType"] == "MODEL"
    assert [d["facets"]["version"]["datasetVersion"] for d in used] == [v for (v,) in scored_by]
    # the second run's model passed the gate and scores in shadow: the first run's champion serves
    assert int(model["facets"]["version"]["datasetVersion"]) == int(scored_by[0][0]) + 1


def test_trace_walks_a_prediction_back_to_the_model_and_the_landing_files(pipeline_run, monkeypatch, capsys):
    from governance.cli import main

    monkeypatch.setenv("PLATFORM_DATA_DIR", str(pipeline_run["settings"].data_dir))
    assert main(["--json", "trace", "ml/flight_delay_predictions"]) == 0
    tree = json.loads(capsys.readouterr().out)
    assert tree["produced_by"]["dagster_run_id"] == pipeline_run["second"].run_id
    model = next(node for node in tree["inputs"] if node["dataset"] == "flight_delay_classifier")
    assert model["produced_by"]["job"] == "ml/delay_model"
    nodes, stack = [], [tree]
    while stack:
        nodes.append(stack.pop())
        stack.extend(nodes[-1]["inputs"])
    jobs = {node["produced_by"]["job"] for node in nodes if node["produced_by"]}
    assert {"raw/flights", "raw/weather", "staging/stg_flights__flights", "marts/flight_features"} <= jobs
    landing = pipeline_run["settings"].landing_dir.resolve()
    flight_files = {node["dataset"]: node["version"] for node in nodes if node["namespace"] == "file"
                    and "/flights/" in node["dataset"]}
    assert flight_files == {str(path): "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
                            for path in sorted((landing / "flights").glob("*.csv"))}

    assert main(["trace", "ml/flight_delay_predictions"]) == 0
    text = capsys.readouterr().out
    assert f"<- flight_delay_classifier @ {model['version']}" in text and "by ml/delay_model" in text


def test_trace_finds_a_version_or_run_and_refuses_unknown_ones(pipeline_run, monkeypatch, capsys):
    from governance.cli import main

    monkeypatch.setenv("PLATFORM_DATA_DIR", str(pipeline_run["settings"].data_dir))
    first = pipeline_run["first"].run_id
    assert main(["--json", "trace", "marts.flights", "--version", first]) == 0
    tree = json.loads(capsys.readouterr().out)
    assert tree["dataset"] == "warehouse.marts.flights" and tree["produced_by"]["dagster_run_id"] == first
    assert main(["--json", "trace", "marts/flights", "--version", tree["version"]]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == tree["version"]
    for argv, message in ((["trace", "marts/nothing"], "no completed run produced 'marts/nothing'"),
                          (["trace", "flights"], "'flights' is ambiguous"),
                          (["trace", "marts/flights", "--version", "0-0"], "at version or run '0-0'")):
        assert main(argv) == 1
        error = capsys.readouterr().err
        assert message in error and error.count("\n") == 1, "one line, naming what was not found"
