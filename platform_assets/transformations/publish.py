"""Publish audited marts: copy the run's days from `marts_audit` (where dbt writes and tests) into `marts`
(where consumers and the model layer read), for every mart at once, in one transaction."""

from __future__ import annotations

import datetime as dt

import duckdb

from platform_assets.metadata import table_columns, table_version

AUDIT_SCHEMA = "marts_audit"
PUBLISHED_SCHEMA = "marts"


def publish_audited_marts(
    connection: duckdb.DuckDBPyConnection, tables: list[str], first_day: dt.date, last_day: dt.date
) -> dict[str, str]:
    """Replace [first_day, last_day] of each published mart with its audited rows; all or nothing.
    A mart whose columns changed is republished whole. Returns the published version of each."""
    window = {"first": first_day, "last": last_day}
    connection.execute(f"CREATE SCHEMA IF NOT EXISTS {PUBLISHED_SCHEMA}")
    connection.execute("BEGIN TRANSACTION")
    try:
        for table in tables:
            audited, published = f"{AUDIT_SCHEMA}.{table}", f"{PUBLISHED_SCHEMA}.{table}"
            columns = table_columns(connection, AUDIT_SCHEMA, table)
            if table_columns(connection, PUBLISHED_SCHEMA, table) != columns or "data_date" not in columns:
                connection.execute(f"CREATE OR REPLACE TABLE {published} AS SELECT * FROM {audited}")
                continue
            connection.execute(f"DELETE FROM {published} WHERE data_date BETWEEN $first AND $last", window)
            connection.execute(
                f"INSERT INTO {published} SELECT * FROM {audited} WHERE data_date BETWEEN $first AND $last", window)
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return {
        table: table_version(connection, f"{PUBLISHED_SCHEMA}.{table}",
                             f"data_date BETWEEN '{first_day}' AND '{last_day}'")
        for table in tables
    }
