"""The embedded target's warehouse: the DuckDB file. A batch is written in place into raw.<source> inside one
transaction (its days deleted first) and audited there; publishing commits it, anything else rolls it back, so no
reader ever sees an unaudited row. (Writing in place instead of into a staging table and copying saves one full
write of every row.)"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import duckdb

from platform_assets.metadata import table_columns, table_version
from platform_assets.sources.definitions import SourceDefinition
from platform_assets.warehouse.base import (
    PublishedRows, TableDescription, RawBatch, Warehouse, days_predicate, nothing_to_publish, version_columns,
)

if TYPE_CHECKING:  # pandas only in annotations: loading the code location must not import it
    import pandas as pd


def quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def ensure_raw_table(connection: duckdb.DuckDBPyConnection, source: SourceDefinition) -> None:
    columns = ", ".join(f'"{column}" {kind}' for column, kind in source.raw_columns.items())
    connection.execute("CREATE SCHEMA IF NOT EXISTS raw")
    connection.execute(f"CREATE TABLE IF NOT EXISTS raw.{source.name} ({columns})")


class PublishedInDuckDB(PublishedRows):
    """The published rows of raw.<table> in the same DuckDB connection as the batch."""

    def __init__(self, connection: duckdb.DuckDBPyConnection):
        self.connection = connection

    def file_digests(self, table: str, days: Sequence[dt.date]) -> dict[str, str]:
        return dict(self.connection.execute(
            f"SELECT DISTINCT _file_sha256, _source_file FROM raw.{table} WHERE NOT ({days_predicate(days)})"
        ).fetchall())

    def rows_per_day(self, table: str, since: dt.date, before: dt.date) -> dict[dt.date, int]:
        return dict(self.connection.execute(
            f"SELECT _data_date, count(*) FROM raw.{table} WHERE _data_date < $before AND _data_date >= $since "
            "GROUP BY 1", {"since": since, "before": before}).fetchall())

    def any_outside(self, table: str, first: dt.date, last: dt.date) -> bool:
        return self.connection.execute(
            f"SELECT EXISTS (SELECT 1 FROM raw.{table} WHERE _data_date NOT BETWEEN $first AND $last)",
            {"first": first, "last": last}).fetchall()[0][0]

    def days_of_keys(self, table: str, key: tuple[str, ...], run_keys: str, bounds: Sequence,
                     first: dt.date, last: dt.date) -> list[tuple[tuple, dt.date]]:
        # The run's distinct keys are the hash table (the build side: a day's keys, never the history), the
        # published rows are probed with their key columns and date only, limited to each key column's range in
        # the run, which skips the row groups of other days where the key follows them.
        within = " AND ".join(f"published.{quoted(c)} BETWEEN $low{i} AND $high{i}" for i, c in enumerate(key))
        matches = " AND ".join(f"published.{quoted(c)} = run.{quoted(c)}" for c in key)
        found = self.connection.execute(
            f"SELECT DISTINCT {', '.join(f'published.{quoted(c)}' for c in key)}, published._data_date "
            f"FROM raw.{table} AS published SEMI JOIN {run_keys} AS run ON {matches} "
            f"WHERE published._data_date NOT BETWEEN $first AND $last AND {within}",
            {"first": first, "last": last, **{f"low{i}": bounds[2 * i] for i in range(len(key))},
             **{f"high{i}": bounds[2 * i + 1] for i in range(len(key))}}).fetchall()
        return [(row[:-1], row[-1]) for row in found]

    def first_rows_of_key(self, table: str, key: tuple[str, ...], values: tuple,
                          days: Sequence[dt.date]) -> list[tuple[dt.date, str, int]]:
        where = " AND ".join(f"{quoted(c)} = $k{i}" for i, c in enumerate(key))
        return self.connection.execute(
            f"SELECT _data_date, any_value(_source_file), min(_row_number) FROM raw.{table} "
            f"WHERE _data_date = ANY($days) AND {where} GROUP BY 1",
            {"days": list(days), **{f"k{i}": value for i, value in enumerate(values)}}).fetchall()


class DuckDBWarehouse(Warehouse):
    """The warehouse file, through one open connection (resources.WarehouseResource opens it)."""

    def __init__(self, connection: duckdb.DuckDBPyConnection):
        self.connection = connection

    @contextmanager
    def batch(self, source: SourceDefinition, days: Sequence[dt.date]) -> Iterator[RawBatch]:
        connection = self.connection
        ensure_raw_table(connection, source)
        connection.execute("BEGIN TRANSACTION")

        def commit() -> None:
            connection.execute("COMMIT")

        batch = RawBatch(connection, PublishedInDuckDB(connection), commit)
        try:
            connection.execute(f"DELETE FROM raw.{source.name} WHERE {days_predicate(days)}")
            yield batch
        except BaseException:
            if not batch.done:
                connection.execute("ROLLBACK")
            raise
        if not batch.done:
            connection.execute("ROLLBACK")

    @contextmanager
    def review(self, source: SourceDefinition, days: Sequence[dt.date]) -> Iterator[RawBatch]:
        ensure_raw_table(self.connection, source)
        yield RawBatch(self.connection, PublishedInDuckDB(self.connection), nothing_to_publish)

    def loaded_snapshots(self, source: SourceDefinition) -> dict[dt.date, set[str]]:
        ensure_raw_table(self.connection, source)
        return {day: set(digests) for day, digests in self.connection.execute(
            f"SELECT _data_date, list(DISTINCT _file_sha256) FROM raw.{source.name} GROUP BY ALL").fetchall()}

    def row_count(self, source: SourceDefinition) -> int:
        return self.connection.execute(f"SELECT count(*) FROM raw.{source.name}").fetchall()[0][0]

    def version(self, source: SourceDefinition, days: Sequence[dt.date]) -> str:
        return table_version(self.connection, f"raw.{source.name}", days_predicate(days), version_columns(source))

    def publish_marts(self, tables: list[str], first_day: dt.date, last_day: dt.date) -> dict[str, str]:
        from platform_assets.transformations.publish import publish_audited_marts  # noqa: PLC0415

        return publish_audited_marts(self.connection, tables, first_day, last_day)

    def describe(self, schema: str, table: str, first_day: dt.date, last_day: dt.date) -> TableDescription:
        columns = table_columns(self.connection, schema, table)
        relation = f'"{schema}"."{table}"'
        rows = self.connection.execute(f"SELECT count(*) FROM {relation}").fetchall()[0][0]
        in_range = self.connection.execute(
            f"SELECT count(*) FROM {relation} WHERE data_date BETWEEN $first AND $last",
            {"first": first_day, "last": last_day}).fetchall()[0][0] if "data_date" in columns else None
        return TableDescription(columns, rows, in_range)

    def read(self, sql: str, parameters: Sequence = ()) -> pd.DataFrame:
        return self.connection.execute(sql, list(parameters)).df()

    def fingerprint(self, relation: str, where: str = "true") -> str:
        return table_version(self.connection, relation, where)

    def replace_days(self, relation: str, rows: pd.DataFrame, first_day: dt.date, last_day: dt.date) -> int:
        connection = self.connection
        connection.register("platform_rows", rows)
        try:
            connection.execute(f"CREATE SCHEMA IF NOT EXISTS {relation.split('.')[0]}")
            connection.execute(f"CREATE TABLE IF NOT EXISTS {relation} AS SELECT * FROM platform_rows LIMIT 0")
            connection.execute("BEGIN TRANSACTION")
            try:
                connection.execute(f"DELETE FROM {relation} WHERE data_date BETWEEN $1 AND $2", [first_day, last_day])
                connection.execute(f"INSERT INTO {relation} BY NAME SELECT * FROM platform_rows")
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        finally:
            connection.unregister("platform_rows")
        return connection.execute(f"SELECT count(*) FROM {relation}").fetchall()[0][0]

    def table_bytes(self, relations: Sequence[str]) -> dict[str, int | None]:
        block = self.connection.execute("SELECT block_size FROM pragma_database_size()").fetchall()[0][0]
        sizes: dict[str, int | None] = {}
        for relation in relations:
            schema, table = relation.split(".")
            exists = self.connection.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = $1 "
                "AND table_name = $2", [schema, table]).fetchall()[0][0]
            sizes[relation] = self.connection.execute(
                "SELECT count(DISTINCT block_id) FROM pragma_storage_info($1) WHERE block_id >= 0",
                [f"{quoted(schema)}.{quoted(table)}"]).fetchall()[0][0] * block if exists else None
        return sizes

    def append(self, relation: str, columns: dict[str, str], rows: Sequence[Sequence]) -> None:
        connection = self.connection
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {relation.split('.')[0]}")
        connection.execute(f"CREATE TABLE IF NOT EXISTS {relation} "
                           f"({', '.join(f'{quoted(name)} {kind}' for name, kind in columns.items())})")
        if rows:
            placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
            connection.executemany(f"INSERT INTO {relation} ({', '.join(map(quoted, columns))}) "
                                   f"VALUES ({placeholders})", [list(row) for row in rows])
