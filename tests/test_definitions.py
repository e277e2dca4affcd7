"""The asset graph as reviewers see it: a change to keys, owners, groups or dependencies shows in the diff."""

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from platform_assets.sources.definitions import SOURCES
import pytest

from platform_assets.definitions import defs
from platform_assets.settings import REPO_ROOT
from platform_assets.transformations.dbt_assets import dbt_run_range_env

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"
LAYERS = {"raw", "cleaned", "features", "ml"}


def _graph_snapshot() -> dict:
    graph = defs.resolve_asset_graph()
    snapshot = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        snapshot[key.to_user_string()] = {
            "group": node.group_name,
            "owners": sorted(node.owners),
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "kinds": sorted(node.kinds),
            "tags": {k: v for k, v in sorted(node.tags.items()) if not k.startswith("dagster/")},
            "partitioned": node.partitions_def is not None,
            "automation": node.automation_condition.get_label() if node.automation_condition else None,
            "checks": sorted(check.name for check in graph.asset_check_keys if check.asset_key == key),
        }
    return snapshot


def test_asset_graph_matches_the_reviewed_snapshot():
    current = _graph_snapshot()
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=2) + "\n")
    assert current == json.loads(SNAPSHOT.read_text()), "asset graph changed: review, then UPDATE_SNAPSHOTS=1"


def test_every_asset_has_an_owner_a_layer_group_and_a_description():
    graph = defs.resolve_asset_graph()
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        assert node.owners, key
        assert node.group_name in LAYERS, key
        assert node.description and len(node.description) > 20, key
    groups = {graph.get(key).group_name for key in graph.materializable_asset_keys}
    assert groups == LAYERS


def test_every_consumer_is_in_the_graph_downstream_of_exactly_what_it_reads():
    """consumers.yml in the asset graph: a consumer the platform does not run is an asset it does not
    materialize, with the catalog's owner, contact, kind and criticality; one it runs is that asset, and then
    that asset reads at least what the catalog says it reads."""
    from governance.catalog import load_catalog

    graph = defs.resolve_asset_graph()
    consumers = load_catalog().consumers
    external = {key for key in graph.get_all_asset_keys() if key not in graph.materializable_asset_keys}
    assert external == {dg.AssetKey(["consumers", name]) for name, c in consumers.items() if c.asset is None}
    for name, consumer in consumers.items():
        key = dg.AssetKey.from_user_string(consumer.asset) if consumer.asset else dg.AssetKey(["consumers", name])
        node, reads = graph.get(key), {dg.AssetKey.from_user_string(dataset) for dataset in consumer.depends_on}
        if consumer.asset:
            assert reads <= set(node.parent_keys), name
            continue
        assert set(node.parent_keys) == reads, name
        assert node.group_name == "consumers" and not node.is_materializable
        assert set(node.owners) == {f"team:{consumer.owner}", consumer.contact}
        assert node.kinds == {consumer.kind} and node.tags["criticality"] == consumer.criticality
        for dataset, columns in consumer.depends_on.items():
            assert f"| {dataset} | {', '.join(columns)} |" in node.metadata["columns read"].value, (name, dataset)
    # nothing runs them: the whole-graph job leaves them out
    assert not external & set(defs.resolve_job_def("materialize_all").asset_layer.executable_asset_keys)


def test_dbt_tests_are_asset_checks_with_blocking_errors():
    graph = defs.resolve_asset_graph()
    checks = [graph.get_check_spec(key) for key in graph.asset_check_keys]
    assert len(checks) >= 15
    assert any(check.blocking for check in checks) and any(not check.blocking for check in checks)


def test_all_layers_are_daily_partitioned_with_single_run_backfills():
    graph = defs.resolve_asset_graph()
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        if key == dg.AssetKey(["ml", "delay_model"]):
            assert node.partitions_def is None  # trained on all labelled history
            continue
        if key.path[0] == "raw" and SOURCES[key.path[1]].snapshot:
            assert node.partitions_def is None  # a reference snapshot, used until a newer one arrives
            continue
        assert isinstance(node.partitions_def, dg.DailyPartitionsDefinition), key
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), key


def test_dbt_gets_the_run_date_range_from_the_environment():
    assert dbt_run_range_env(dt.date(2013, 1, 1), dt.date(2013, 11, 30)) == {
        "PLATFORM_RUN_START_DATE": "2013-01-01", "PLATFORM_RUN_END_DATE": "2013-11-30"}


def test_code_location_validates(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "PLATFORM_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# Imported inside the steps that use them, never by loading the code location (docs/benchmark.md: 0.6 s of it).
ONLY_STEPS_IMPORT = ("pandas", "numpy", "pyarrow", "pandera", "openlineage", "sklearn", "mlflow", "matplotlib")


def test_loading_the_code_location_leaves_what_only_steps_need_unimported(tmp_path):
    probe = ("import sys; import platform_assets.definitions; "
             f"print(' '.join(name for name in {ONLY_STEPS_IMPORT!r} if name in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True,
                            env={**os.environ, "PLATFORM_DATA_DIR": str(tmp_path / "data")}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [], (
        f"loading the definitions imports {result.stdout.strip()}: a module they load imports it at its top "
        "(`python -X importtime -c 'import platform_assets.definitions'` shows which); import it where it is used")


@pytest.mark.parametrize("key", ["raw/bookings", "marts/flight_features", "ml/flight_delay_predictions"])
def test_tags_come_from_the_catalog(key):
    from governance.catalog import load_catalog

    node = defs.resolve_asset_graph().get(dg.AssetKey.from_user_string(key))
    dataset = load_catalog().dataset(key)
    assert node.tags["classification"] == dataset.classification
    assert f"team:{dataset.owner}" in node.owners


def test_every_asset_shows_the_catalog_owner_steward_tags_description_and_column_classes():
    from governance.catalog import load_catalog

    catalog = load_catalog()
    graph = defs.resolve_asset_graph()
    for key in graph.materializable_asset_keys:
        node, dataset = graph.get(key), catalog.dataset(key.to_user_string())
        assert {f"team:{dataset.owner}", dataset.steward} <= set(node.owners), key
        assert (node.tags["domain"], node.tags["classification"]) == (dataset.domain, dataset.classification), key
        assert {f"pii/{category}" for category in dataset.pii_categories} <= set(node.tags), key
        assert node.description.startswith(dataset.description), key
    columns = graph.get(dg.AssetKey(["marts", "bookings"])).metadata["dagster/column_schema"].columns
    tags = {column.name: column.tags for column in columns}
    assert tags["email"] == {"classification": "restricted", "pii": "email"}
    assert tags["fare_usd"] == {"classification": "confidential"}


def test_dbt_resource_knows_its_version_without_starting_dbt():
    """dagster-dbt runs `dbt --version` before each invocation, and that asks pypi.org for the latest release:
    the platform's resource answers from the installed dbt-core instead (`false` as the executable would make
    dagster-dbt's own check fail: no process is started)."""
    from dbt.version import __version__

    from platform_assets.resources import PlatformDbtCliResource

    resource = PlatformDbtCliResource(project_dir=str(REPO_ROOT / "dbt_project"), dbt_executable="/bin/false")
    assert str(resource._cli_version) == __version__  # noqa: SLF001  (the member dagster-dbt consults)
    assert isinstance(defs.resources["dbt"], PlatformDbtCliResource)


def test_steps_run_in_the_run_process():
    """Every step opens the one DuckDB file (one writer at a time), so steps run in sequence in the run's
    process: no interpreter start per step."""
    assert defs.resolve_job_def("materialize_all").executor_def.name == dg.in_process_executor.name
    assert defs.resolve_job_def("retrain_delay_model").executor_def.name == dg.in_process_executor.name
