"""Small builders for the metadata and tags that every asset carries."""

from __future__ import annotations

import dagster as dg
import duckdb

from governance.catalog import Dataset


def column_schema(columns: dict[str, str], descriptions: dict[str, str] | None = None) -> dg.TableSchema:
    descriptions = descriptions or {}
    return dg.TableSchema(
        columns=[dg.TableColumn(name, kind, description=descriptions.get(name)) for name, kind in columns.items()]
    )


def owner_tags(dataset: Dataset) -> dict[str, str]:
    """Catalog attributes as Dagster tags, filterable in the UI."""
    return {"domain": dataset.domain, "classification": dataset.classification}


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
