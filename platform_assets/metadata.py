"""Small builders for the metadata and tags that every asset carries."""

from __future__ import annotations

import dagster as dg
import duckdb

from governance.catalog import Dataset, load_catalog


def column_schema(columns: dict[str, str], descriptions: dict[str, str] | None = None,
                  tags: dict[str, dict[str, str]] | None = None) -> dg.TableSchema:
    descriptions, tags = descriptions or {}, tags or {}
    return dg.TableSchema(columns=[
        dg.TableColumn(name, kind, description=descriptions.get(name), tags=tags.get(name))
        for name, kind in columns.items()
    ])


def owner_tags(dataset: Dataset) -> dict[str, str]:
    """Catalog attributes as Dagster tags, filterable in the UI: domain, classification, lifecycle and one
    `pii/<category>` tag per kind of personal data the dataset holds."""
    return {"domain": dataset.domain, "classification": dataset.classification,
            "lifecycle": dataset.lifecycle.status, **{f"pii/{category}": "" for category in dataset.pii_categories}}


def with_catalog_attributes(spec: dg.AssetSpec) -> dg.AssetSpec:
    """The catalog's owners (team and steward), tags, description and column classifications on an asset: applied
    to every asset once, in definitions.py, so the catalog is the one place they are written."""
    dataset = load_catalog().dataset(spec.key.to_user_string())
    owners = list(dict.fromkeys([*spec.owners, f"team:{dataset.owner}", dataset.steward]))
    description = f"{dataset.description}\n\n{spec.description}" if spec.description else dataset.description
    metadata = {}
    declared = spec.metadata.get("dagster/column_schema")
    if declared is not None:
        schema = declared.schema if isinstance(declared, dg.TableSchemaMetadataValue) else declared
        metadata["dagster/column_schema"] = dg.TableSchema(columns=[
            dg.TableColumn(c.name, c.type, c.description, c.constraints, {**c.tags, **column_tags(dataset, c.name)})
            for c in schema.columns
        ])
    spec = spec.replace_attributes(owners=owners, description=description).merge_attributes(
        tags=owner_tags(dataset), metadata=metadata)
    if dataset.freshness_sla is None:
        return spec
    # Stale in the UI (WARN, then FAIL) when the newest materialization is older than the SLA allows.
    return dg.apply_freshness_policy(spec, dg.FreshnessPolicy.time_window(
        fail_window=dataset.freshness_sla.fail_after, warn_window=dataset.freshness_sla.warn_after))


def column_tags(dataset: Dataset, name: str) -> dict[str, str]:
    column = dataset.columns.get(name)
    if column is None:
        return {}
    return {"classification": column.classification, **({"pii": column.pii} if column.pii else {})}


def table_columns(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> dict[str, str]:
    rows = connection.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = $schema AND table_name = $table ORDER BY ordinal_position",
        {"schema": schema, "table": table},
    ).fetchall()
    return dict(rows)


def table_version(
    connection: duckdb.DuckDBPyConnection, relation: str, where: str = "true", columns: list[str] | None = None
) -> str:
    """A content fingerprint of a table's rows (order-independent): equal content gives the same version.
    `columns` limits it to the data columns (leaving out, say, ingestion time). The row hashes are summed
    (mod 2^64), not XORed: an XOR cancels repeated rows, and DuckDB's row hash combines its fields so that
    a reference snapshot delivered on an even number of days XORed to 0 whatever its content."""
    row = "t" if columns is None else "struct_pack(" + ", ".join(f'"{c}"' for c in columns) + ")"
    rows, fingerprint = connection.execute(
        f"SELECT count(*), coalesce(sum(hash({row})::HUGEINT) % {2**64}, 0) FROM {relation} t WHERE {where}"
    ).fetchall()[0]
    return f"{rows}-{int(fingerprint):016x}"
