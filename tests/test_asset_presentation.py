"""What every asset shows in the Dagster UI, checked on the definitions: plain-language descriptions, a
documented column for every column of the table layers, checks that say what they check, no orphan node.
(The browser test, tests/test_ui_browser.py, checks what the UI actually renders.)"""

import dagster as dg

from platform_assets.definitions import defs
from platform_assets.transformations.dbt_assets import dbt_test_description


def test_every_table_asset_describes_every_column_and_every_check_says_what_it_checks():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert "Raw SQL" not in node.description, key  # plain language; the SQL is in the repository
        if node.group_name in ("ml", "consumers"):
            continue  # model-layer presentation belongs to the ML lifecycle; consumers list the columns they read
        schema = node.metadata.get("dagster/column_schema")
        assert schema is not None, key
        columns = schema.schema.columns if isinstance(schema, dg.TableSchemaMetadataValue) else schema.columns
        undescribed = [column.name for column in columns if not column.description]
        assert not undescribed, f"{key.to_user_string()}: columns without a description: {undescribed}"
    for check_key in graph.asset_check_keys:
        description = graph.get_check_spec(check_key).description
        assert description and len(description) > 20, check_key


def test_the_graph_reads_as_the_pipeline_without_orphans():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.group_name == "raw":
            assert node.child_keys, f"{key.to_user_string()}: nothing reads it"
        else:
            assert node.parent_keys, f"{key.to_user_string()}: no input"


def test_dbt_tests_are_described_in_words():
    relationship = {"name": "flights__tailnum_is_in_plane_register",
                    "config": {"severity": "warn", "where": "__run_range__"},
                    "test_metadata": {"name": "relationships", "kwargs": {
                        "column_name": "tailnum", "to": "ref('stg_reference__planes')", "field": "tailnum"}}}
    assert dbt_test_description(relationship) == (
        "Every tailnum exists in stg_reference__planes.tailnum. Checked on the days of the run. "
        "Warning only: reported, never blocking.")
    accepted = {"name": "origin_is_known", "config": {"severity": "ERROR"}, "test_metadata": {
        "name": "accepted_values", "kwargs": {"column_name": "origin", "values": ["EWR", "JFK"]}}}
    assert dbt_test_description(accepted) == (
        "origin is one of EWR, JFK. Blocking: a failure skips the downstream models and publishes no mart.")
    assert dbt_test_description({**accepted, "description": "Written  by\n hand."}) == "Written by hand."
