"""The cleaned and feature layers: one dbt project, one `dbt build` per run over the run's date range."""

import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets
from dagster_dbt.asset_utils import default_description_fn
from dagster_dbt.errors import DagsterDbtCliRuntimeError

from platform_assets.checks.daily import JUDGES, RUN_DAYS, WHOLE_TABLE, daily_check_spec, per_day
from platform_assets.lineage import emit_dbt_lineage
from platform_assets.metadata import column_schema
from platform_assets.partitions import daily_partitions, partition_dates, single_run
from platform_assets.resources import WAREHOUSE_OP_TAGS, WarehouseResource
from platform_assets.settings import DBT_PROJECT_DIR, load_settings
from platform_assets.transformations.dbt_target import PARSE_STATE, dbt_target_env, parse_state
from platform_assets.transformations.publish import PUBLISHED_SCHEMA

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
# dagster-dbt passes this process's environment to every dbt it starts (the parse of `dagster dev` just below, the
# builds): profiles.yml picks the deployment's target, the data folder (resolved: PLATFORM_DATA_DIR as dbt reads
# it) and, on `team`, its warehouse connection from it.
os.environ.update(dbt_target_env(load_settings()))
dbt_project.prepare_if_dev()


def dbt_asset_key(props: Mapping[str, Any]) -> dg.AssetKey:
    """Sources are the raw assets (`raw/<table>`); models are `<folder>/<model>`, as in the catalog."""
    if props["resource_type"] == "source":
        return dg.AssetKey(["raw", props["name"]])
    return dg.AssetKey([props["fqn"][1], props["name"]])


class PlatformDbtTranslator(DagsterDbtTranslator):
    """Starts from dagster-dbt's spec and applies platform policy: keys, layer groups (catalog owners and tags
    are applied to every asset in definitions.py)."""

    def get_asset_spec(self, manifest, unique_id, project) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        key = dbt_asset_key(props)
        if props["resource_type"] == "source":
            return spec.replace_attributes(key=key)
        layer = props.get("config", {}).get("meta", {}).get("layer") or props.get("meta", {}).get("layer")
        # Marts are read where they are published, not in the audit schema dbt writes them to.
        schema = PUBLISHED_SCHEMA if key.path[0] == PUBLISHED_SCHEMA else props["schema"]
        # kinds: dagster-dbt's own, dbt and the manifest's adapter (duckdb or postgres, the deployment's target)
        return spec.replace_attributes(key=key, group_name=layer).merge_attributes(metadata={
            "dagster/table_name": f"{schema}.{props['alias'] or props['name']}"
        })

    def get_description(self, dbt_resource_props: Mapping[str, Any]) -> str:
        """The model's documentation without its SQL (the UI's code reference and the repository have it)."""
        return default_description_fn(dbt_resource_props, display_raw_sql=False)

    def get_asset_check_spec(self, asset_spec, manifest, unique_id, project) -> dg.AssetCheckSpec | None:
        """The test as a check by day (platform_assets/checks/daily.py), saying what it judges: the run's days
        (`where: __run_range__`) or the whole model."""
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None:
            return None
        test = manifest["nodes"][unique_id]
        judges = RUN_DAYS if test.get("config", {}).get("where") == RUN_RANGE else WHOLE_TABLE
        return daily_check_spec(spec._replace(description=dbt_test_description(test),
                                              metadata={**(spec.metadata or {}), JUDGES: judges}))


RUN_RANGE = "__run_range__"  # a test's `where:` that limits it to the run's days (dbt_project/macros)

# What each kind of dbt test promises, in words; {kwarg} are the test's arguments.
TEST_PROMISES = {
    "unique": "Every {column_name} is unique.",
    "not_null": "{column_name} is never empty.",
    "accepted_values": "{column_name} is one of {values}.",
    "relationships": "Every {column_name} exists in {to}.{field}.",
    "unique_combination_of_columns": "One row per {combination_of_columns}.",
    "expression_is_true": "Every row satisfies {expression}.",
}


def _unref(value: str) -> str:
    return value[len("ref('"):-len("')")] if value.startswith("ref('") and value.endswith("')") else value


def dbt_test_description(test: Mapping[str, Any]) -> str:
    """A dbt test as a sentence for its Dagster check: its own description if it has one, otherwise what it
    promises, on which rows, and whether a failure blocks."""
    if test.get("description"):
        return " ".join(test["description"].split())
    config = test.get("config", {})
    blocking = (config.get("severity") or "error").lower() == "error"
    metadata = test.get("test_metadata") or {}
    arguments = {name: ", ".join(map(str, value)) if isinstance(value, list) else _unref(str(value))
                 for name, value in (metadata.get("kwargs") or {}).items()}
    promise = TEST_PROMISES.get(metadata.get("name"), "dbt test {name}: fails for every row its query returns.")
    sentences = [promise.format_map({"name": test["name"], **arguments})]
    if config.get("where") == RUN_RANGE:
        sentences.append("Checked on the days of the run.")
    sentences.append("Blocking: a failure skips the downstream models and publishes no mart." if blocking else
                     "Warning only: reported, never blocking.")
    return " ".join(sentences)


translator = PlatformDbtTranslator()


def dbt_run_range_env(first_day, last_day) -> dict[str, str]:
    """The run's partition range for dbt (dbt_project/macros/date_range.sql). Environment variables rather than
    --vars: dbt re-parses the whole project whenever --vars change (2-3 s per run), a changed environment
    variable only the files that read it."""
    return {"PLATFORM_RUN_START_DATE": str(first_day), "PLATFORM_RUN_END_DATE": str(last_day)}


def dbt_lock_wait_env(wait_seconds: float) -> dict[str, str]:
    """dbt-duckdb's connect attempts (profiles.yml) that fit in `wait_seconds`: it pauses 1, 2, 4, ... s after each
    failed attempt, the last one included, so n attempts take 2^n - 1 s."""
    return {"PLATFORM_DBT_CONNECT_ATTEMPTS": str(max(1, int(wait_seconds + 1).bit_length() - 1))}


# When a run builds some of the models (a backfill splits the build between runs; automation), dagster-dbt selects
# them and lets dbt pick their tests, by default every test that reads any of them (`eager`), even one that also
# reads a model another run builds later: it failed on a table not built yet. `buildable`: the tests whose every
# model is built in this run or upstream of it, which is every test of the run's models, since each test reads only
# its model and what is upstream of it (tests/test_backfill_plan.py).
TESTS_OF_THE_RUN = {"DBT_INDIRECT_SELECTION": "buildable"}


def dbt_target_path(data_dir: Path, run_id: str) -> Path:
    """A new target folder for one dbt invocation under <data>/dbt/target (its artifacts stay with the run's data),
    seeded with the parse state that the previous invocation on this data folder left in <data>/dbt. Without it
    dagster-dbt seeds the state `make manifest` wrote, whose profile (the warehouse path) differs whenever the data
    folder does, and dbt re-parsed the whole project in every run."""
    target = data_dir / "dbt" / "target" / f"{run_id[:8]}-{uuid.uuid4().hex[:7]}"
    target.mkdir(parents=True)
    state = parse_state(data_dir)
    if state.exists():
        shutil.copyfile(state, target / PARSE_STATE)
    return target


def keep_parse_state(data_dir: Path, target: Path) -> None:
    """The invocation's parse state becomes the next invocation's starting point (replaced atomically)."""
    if (target / PARSE_STATE).exists():
        staged = data_dir / "dbt" / f".{target.name}.{PARSE_STATE}"
        shutil.copyfile(target / PARSE_STATE, staged)
        staged.replace(parse_state(data_dir))


def model_seconds(run_results: dict) -> dict[str, float]:
    """Each node's own execution time in dbt's run_results.json: unique_id -> seconds."""
    return {result["unique_id"]: float(result.get("execution_time") or 0.0)
            for result in run_results.get("results", []) if "unique_id" in result}


def _run_results(target: Path) -> dict:
    try:
        return json.loads((target / "run_results.json").read_text())
    except (OSError, ValueError):  # dbt failed before writing it
        return {}


def _publish_and_describe(
    context: dg.AssetExecutionContext, events: list, warehouse: WarehouseResource, first_day, last_day,
    audit_passed: bool, own_seconds: dict[str, float] | None = None,
) -> Iterator:
    """Once dbt has released the warehouse: publish the audited marts if the whole build passed, then add
    row counts and column types to each materialization. Unpublished marts are not reported as materialized."""
    keys = [_output_key(context, event) for event in events]
    built_marts = [key.path[1] for key in keys if key and key.path[0] == PUBLISHED_SCHEMA]
    with warehouse.open() as store:  # the deployment's warehouse (platform_assets/warehouse)
        store.rebuilt([".".join(key.path) for key in keys if key is not None])
        versions = store.publish_marts(built_marts, first_day, last_day) if audit_passed else {}
        if built_marts and not audit_passed:
            context.log.error(f"audit failed: {', '.join(built_marts)} not published; the previous versions stay")
        for event, key in zip(events, keys, strict=True):
            if key is not None and key.path[0] == PUBLISHED_SCHEMA and not audit_passed:
                continue
            if key is not None:
                schema, table = key.path
                described = store.describe(schema, table, first_day, last_day)
                declared = _declared_columns(context, key)
                metadata = {"dagster/row_count": described.rows, "dagster/column_schema": column_schema(
                    described.columns, {c.name: c.description for c in declared}, {c.name: c.tags for c in declared})}
                if described.rows_in_range is not None:
                    metadata["rows_in_run_range"] = described.rows_in_range
                if table in versions:
                    metadata["published_version"] = versions[table]
                unique_id = getattr(event.metadata.get("unique_id"), "value", event.metadata.get("unique_id"))
                if unique_id in (own_seconds or {}):  # its share of the step's cost (platform_assets/cost)
                    metadata["cost/own_seconds"] = own_seconds[unique_id]
                event = event.with_metadata({**event.metadata, **metadata})
            yield event


def _output_key(context: dg.AssetExecutionContext, event) -> dg.AssetKey | None:
    return context.asset_key_for_output(event.output_name) if isinstance(event, dg.Output) else None


def _declared_columns(context: dg.AssetExecutionContext, key: dg.AssetKey) -> list[dg.TableColumn]:
    declared = context.assets_def.specs_by_key[key].metadata.get("dagster/column_schema")
    if isinstance(declared, dg.TableSchemaMetadataValue):
        declared = declared.schema
    return list(declared.columns) if declared else []


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=translator,
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    op_tags=WAREHOUSE_OP_TAGS,
    name="dbt_cleaned_and_features",
    # One dbt build at a time per instance where runs run at once (team: the pool's limit in dagster.yaml,
    # platform_assets/instance.py): two builds on PostgreSQL create and swap the same tables (`x__dbt_tmp`, the
    # first build's CREATE TABLE) and fail. Their runs' other steps still run in parallel.
    pool="dbt_build",
)
def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource):
    first_day, last_day = partition_dates(context)
    settings = load_settings()
    data_dir = settings.data_dir
    # dagster-dbt passes this process's environment to dbt: profiles.yml reads the target and its warehouse (the
    # DuckDB file under PLATFORM_DATA_DIR, the resolved folder, or the team's server) and how often to retry a
    # locked file, the models read the run range.
    os.environ.update(**dbt_target_env(settings),
                      **dbt_run_range_env(first_day, last_day), **dbt_lock_wait_env(warehouse.lock_wait_seconds),
                      **TESTS_OF_THE_RUN)
    warehouse.wait_until_free()  # dbt-duckdb fails at once on a file another process holds
    target = dbt_target_path(data_dir, context.run.run_id)
    invocation = dbt.cli(["build"], context=context, target_path=target)
    events, failure = [], None
    try:
        events.extend(invocation.stream())
    except DagsterDbtCliRuntimeError as error:
        failure = error
    keep_parse_state(data_dir, target)
    described = list(_publish_and_describe(context, events, warehouse, first_day, last_day, failure is None,
                                           model_seconds(_run_results(target))))
    emit_dbt_lineage(context, invocation, described, warehouse, dbt_asset_key)
    yield from per_day(context, described)
    if failure is not None:
        raise failure
