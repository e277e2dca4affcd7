"""Schema change between materializations of the dbt models, from the column schemas they recorded."""


import dagster as dg

from platform_assets.transformations.dbt_assets import dbt_models

PAGE = 500


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
    """Column schema of the newest materialization and of the newest one from an earlier run
    (a ranged run writes one materialization per partition, all with the same schema)."""
    page = instance.fetch_materializations(key, limit=1)
    if not page.records:
        return None, None
    newest = page.records[0]
    while page.has_more:
        page = instance.fetch_materializations(key, limit=PAGE, cursor=page.cursor)
        for record in page.records:
            if record.run_id != newest.run_id:
                return _columns(newest), _columns(record)
    return _columns(newest), None


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            "schema_unchanged", asset=key,
            description="WARN: the columns and types match the previous run's materialization; a removed column "
            "or a changed type breaks consumers (the catalog's breaking-change review decides).",
        )
        for key in sorted(dbt_models.keys, key=lambda k: k.path)
    ],
    can_subset=True,
)
def dbt_schema_changes(context: dg.AssetCheckExecutionContext):
    for check_key in context.selected_asset_check_keys:
        current, previous = latest_and_previous_run_schema(context.instance, check_key.asset_key)
        changes = schema_differences(previous, current) if current and previous else []
        yield dg.AssetCheckResult(
            asset_key=check_key.asset_key, check_name=check_key.name, passed=not changes,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"compared_with": "previous run" if previous else "nothing yet (first materialization)",
                      "changes": "; ".join(changes) or "none"},
        )
