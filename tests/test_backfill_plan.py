"""How many runs a backfill of the whole graph makes, and why every dbt test can judge the run it runs in.

Dagster's backfill daemon splits the graph where an asset's partitions or backfill policy differ from a parent's
(platform_assets.partitions.backfill_runs): the dbt build is split between runs, and each run's dbt build runs the
tests of its own models. A test that reads a model of a later run would judge days that model does not have yet."""

import json

import dagster as dg

from deliveries import demo_asset_keys
from platform_assets.partitions import backfill_runs


def test_every_check_of_a_daily_asset_is_a_daily_check():
    from platform_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    assert sorted(check.to_user_string() for check in graph.asset_check_keys
                  if graph.get(check.asset_key).is_partitioned and graph.get(check).partitions_def is None) == []


def _runs():
    from platform_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    demo = demo_asset_keys(graph)
    return [sorted(key.to_user_string() for key in run & demo) for run in backfill_runs(graph)]


def test_a_whole_graph_backfill_makes_five_waves_of_runs_whatever_the_range():
    runs = _runs()
    assert runs[0] == ["raw/airlines", "raw/airports", "raw/planes"]  # snapshots: no partitions
    assert {"raw/flights", "raw/bookings", "marts/bookings_quarantine"} <= set(runs[1])  # what reads only days
    assert {"staging/stg_reference__planes", "marts/flights", "marts/bookings", "marts/flight_features"} <= set(
        runs[2])  # what reads a snapshot, after the snapshots' run
    assert runs[3] == ["ml/delay_model"]
    assert {"ml/flight_delay_predictions", "ml/flight_delay_drift"} <= set(runs[4])  # what reads the model
    assert len(runs) == 5


def test_every_check_reads_only_its_asset_and_what_is_upstream_of_it():
    """However a backfill (or automation) splits the graph into runs, a check runs with its asset, after everything
    upstream of it: it never reads a model a later run builds. dbt tests (selected per run with dbt's `buildable`
    indirect selection, transformations/dbt_assets.py) and Python checks alike."""
    from platform_assets.definitions import defs
    from platform_assets.transformations.dbt_assets import dbt_asset_key, dbt_models, dbt_project

    graph = defs.resolve_asset_graph()
    asset_of_check = {check.name: check.asset_key for check in dbt_models.check_keys}
    manifest = json.loads(dbt_project.manifest_path.read_text())
    reads = {dg.AssetCheckKey(asset_of_check[test["name"]], test["name"]): {
        dbt_asset_key(manifest["nodes"].get(uid) or manifest["sources"][uid]) for uid in test["depends_on"]["nodes"]}
        for test in manifest["nodes"].values() if test["resource_type"] == "test"}
    reads |= {key: set(graph.get(key).parent_entity_keys) for key in graph.asset_check_keys if key not in reads}
    upstream = {key: dg.AssetSelection.assets(key).upstream().resolve(graph) for key in graph.get_all_asset_keys()}
    outside = sorted((check.to_user_string(), read.to_user_string()) for check, inputs in reads.items()
                     for read in inputs if read not in upstream[check.asset_key])
    assert outside == []
    assert asset_of_check["bookings_nothing_lost_between_staging_and_marts"] == dg.AssetKey(["marts", "bookings"])
