"""Schema change between materializations of the dbt models, from the column schemas they recorded."""


import dagster as dg

from platform_assets.checks.daily import WHOLE_TABLE, daily_check_spec, per_day
from platform_assets.transformations.dbt_assets import dbt_models

def schema_differences(previous: dict[str, str], current: dict[str, str]) -> list[str]:
    """Human-readable differences between two {column: type} schemas."""
    changes = [f"removed {c} ({t})" for c, t in previous.items() if c not in current]
    changes += [f"added {c} ({t})" for c, t in current.items() if c not in previous]
    changes += [f"{c}: {previous[c]} -> {t}" for c, t in current.items() if c in previous and previous[c] != t]
    return changes


def _columns(record) -> dict[str, str] | None:
    value = record.asset_materialization.metadata.get("dagster/column_schema")
    return {c.name: c.type for c in value.schema.columns} if value is not None else None


def latest_and_previous_run_schema(instance: dg.DagsterInstance, key: dg.AssetKey):
    """Column schema of the newest materialization and of the newest one recorded before that run started
    (a ranged run writes one materialization per partition, all with the same schema: not read one by one)."""
    page = instance.fetch_materializations(key, limit=1)
    if not page.records:
        return None, None
    newest = page.records[0]
    run = instance.get_run_record_by_id(newest.run_id)
    started = run.start_time if run and run.start_time else newest.timestamp
    earlier = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, before_timestamp=started), limit=1)
    return _columns(newest), _columns(earlier.records[0]) if earlier.records else None


@dg.multi_asset_check(
    specs=[
        daily_check_spec(dg.AssetCheckSpec(
            "schema_unchanged", asset=key,
            description="WARN: the columns and types match the previous run's materialization; a removed column "
            "or a changed type breaks consumers (the catalog's breaking-change review decides). Judges the whole "
            "table: each day of a run has the run's result.",
        ))
        for key in sorted(dbt_models.keys, key=lambda k: k.path)
    ],
    can_subset=True,
)
def dbt_schema_changes(context: dg.AssetCheckExecutionContext):
    yield from per_day(context, _schema_results(context), scope=WHOLE_TABLE)


def _schema_results(context: dg.AssetCheckExecutionContext):
    for check_key in context.selected_asset_check_keys:
        current, previous = latest_and_previous_run_schema(context.instance, check_key.asset_key)
        changes = schema_differences(previous, current) if current and previous else []
        yield dg.AssetCheckResult(
            asset_key=check_key.asset_key, check_name=check_key.name, passed=not changes,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"compared_with": "previous run" if previous else "nothing yet (first materialization)",
                      "changes": "; ".join(changes) or "none"},
        )
