"""The team target's warehouse: PostgreSQL. A batch is staged and audited in a scratch DuckDB (in memory, spilling
to a temporary folder): DuckDB reads the landing files, and the contract's rules are DuckDB SQL, so the audit is the
embedded target's own code and messages. What it needs of the published rows comes from the server: the files
already delivered, the previous days' row counts, the published days of the keys the batch delivers (its keys are
sent to the server, not the history fetched), the referenced columns of other raw tables. An audited batch is
published in one server transaction: its days deleted, its rows bulk-loaded as Arrow batches through the ADBC
PostgreSQL driver (COPY), commit. A refused batch never reaches the server."""

from __future__ import annotations

import datetime as dt
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import duckdb

from platform_assets.metadata import table_version
from platform_assets.sources.definitions import SourceDefinition
from platform_assets.warehouse.base import (
    PublishedRows, TableDescription, RawBatch, Warehouse, days_predicate, nothing_to_publish, version_columns,
)
from platform_assets.warehouse.duckdb_file import ensure_raw_table, quoted

if TYPE_CHECKING:  # pandas and pyarrow are imported where used: loading the code location must not import them
    import pandas as pd
    import pyarrow as pa

# The raw tables' DuckDB column types (sources.yml's contract types, the lineage columns) as PostgreSQL types:
# the Arrow batches DuckDB produces for them load into these with COPY, and read back as the same DuckDB types.
POSTGRES_TYPES = {
    "VARCHAR": "text", "TEXT": "text", "STRING": "text",
    "BOOLEAN": "boolean", "BOOL": "boolean",
    "SMALLINT": "smallint", "INT2": "smallint",
    "INTEGER": "integer", "INT": "integer", "INT4": "integer",
    "BIGINT": "bigint", "INT8": "bigint",
    "REAL": "real", "FLOAT": "real", "FLOAT4": "real",
    "DOUBLE": "double precision", "FLOAT8": "double precision",
    "DATE": "date", "TIME": "time without time zone",
    "TIMESTAMP": "timestamp without time zone", "DATETIME": "timestamp without time zone",
    "TIMESTAMPTZ": "timestamp with time zone", "TIMESTAMP WITH TIME ZONE": "timestamp with time zone",
}  # written as PostgreSQL writes them back (format_type)
DECIMAL = re.compile(r"(?:DECIMAL|NUMERIC)\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)")
CONNECT_ATTEMPTS = 10  # a new connection when the driver typed strings as refcursor (_strings_are_text)
RUN_KEYS = "platform_run_keys"  # the batch's keys, a temporary table of the server session


class WarehouseUnreachable(RuntimeError):
    """The PostgreSQL warehouse did not accept a connection; the message names the server, never the login."""


class UnsupportedColumnType(ValueError):
    """A raw column's type has no PostgreSQL counterpart here; the message names the source and column."""


def postgres_type(source: SourceDefinition, column: str, kind: str) -> str:
    normalized = " ".join(kind.upper().split())
    if normalized in POSTGRES_TYPES:
        return POSTGRES_TYPES[normalized]
    if decimal := DECIMAL.fullmatch(normalized):
        return f"numeric({decimal[1]},{decimal[2]})"
    raise UnsupportedColumnType(
        f"sources.yml: {source.name}.{column}: type {kind} has no PostgreSQL column type on the team target "
        f"(platform_assets/warehouse/postgres.py knows {', '.join(sorted(set(POSTGRES_TYPES)))}, DECIMAL(p, s))")


def _server_column(source: SourceDefinition, column: str) -> str:
    """A raw column as read back from the server: numeric as text (the ADBC driver gives numeric as an opaque
    string), cast again by DuckDB on insert into the scratch table."""
    kind = postgres_type(source, column, source.raw_columns[column])
    return f"{quoted(column)}::text AS {quoted(column)}" if kind.startswith("numeric") else quoted(column)


def create_schema(cursor, schema: str) -> None:
    """CREATE SCHEMA IF NOT EXISTS, in the cursor's transaction, safe when two steps run it at once (by itself,
    the second fails on the catalog's unique index: seen with two raw steps of one run on two workers)."""
    cursor.execute("SELECT pg_advisory_xact_lock(hashtext($1))", [f"schema {schema}"])
    cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")


def _numeric_as_double(reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """The batches of `reader` with PostgreSQL's numeric columns (text in an Arrow extension type) as float64."""
    import pyarrow as pa  # noqa: PLC0415

    numeric = {index for index, field in enumerate(reader.schema) if isinstance(field.type, pa.BaseExtensionType)
               and (field.metadata or {}).get(b"POSTGRESQL:type") == b"numeric"}
    if not numeric:
        return reader
    schema = reader.schema
    for index in numeric:
        schema = schema.set(index, pa.field(schema.field(index).name, pa.float64()))

    def batches():
        for batch in reader:
            yield pa.RecordBatch.from_arrays(
                [column.storage.cast(pa.float64()) if index in numeric else column
                 for index, column in enumerate(batch.columns)], schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


def _strings_are_text(connection) -> bool:
    """Whether the ADBC driver of `connection` sends a string as text. On connecting, it maps each PostgreSQL type
    to its own by the type's receive function, reading pg_type with a query that has no ORDER BY; text and
    refcursor share textrecv, and the first row read wins. Under a parallel plan (a large catalog, or the cost
    settings a test sets) refcursor came first in 1 connection of 40: every string parameter was then a refcursor
    (no hashtext, no to_regclass) and every table it created had refcursor columns (no equality operator)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_typeof($1)::text", ["text"])
        typed = cursor.fetchone()[0]
    connection.rollback()
    return typed == "text"


class PublishedOnServer(PublishedRows):
    """The published rows of raw.<table> on the PostgreSQL server; the batch's keys are read from the scratch
    DuckDB (`local`) and sent to the server when the cross-day key rule asks."""

    def __init__(self, warehouse: PostgresWarehouse, local: duckdb.DuckDBPyConnection):
        self.warehouse = warehouse
        self.local = local

    def file_digests(self, table: str, days: Sequence[dt.date]) -> dict[str, str]:
        return dict(self.warehouse.query(
            f"SELECT DISTINCT _file_sha256, _source_file FROM raw.{table} WHERE NOT ({days_predicate(days)})"))

    def rows_per_day(self, table: str, since: dt.date, before: dt.date) -> dict[dt.date, int]:
        return dict(self.warehouse.query(
            f"SELECT _data_date, count(*) FROM raw.{table} WHERE _data_date < $1 AND _data_date >= $2 GROUP BY 1",
            [before, since]))

    def any_outside(self, table: str, first: dt.date, last: dt.date) -> bool:
        return self.warehouse.query(
            f"SELECT EXISTS (SELECT 1 FROM raw.{table} WHERE _data_date NOT BETWEEN $1 AND $2)", [first, last])[0][0]

    def days_of_keys(self, table: str, key: tuple[str, ...], run_keys: str, bounds: Sequence,
                     first: dt.date, last: dt.date) -> list[tuple[tuple, dt.date]]:
        keys = self.local.sql(f"SELECT {', '.join(quoted(c) for c in key)} FROM {run_keys}").to_arrow_table()
        within = " AND ".join(f"published.{quoted(c)} BETWEEN ${3 + 2 * i} AND ${4 + 2 * i}" for i, c in enumerate(key))
        matches = " AND ".join(f"published.{quoted(c)} = run.{quoted(c)}" for c in key)
        server = self.warehouse.server()
        with server.cursor() as cursor:
            try:
                cursor.adbc_ingest(RUN_KEYS, keys, mode="create", temporary=True)
                cursor.execute(
                    f"SELECT DISTINCT {', '.join(f'published.{quoted(c)}' for c in key)}, published._data_date "
                    f"FROM raw.{table} AS published "
                    f"WHERE EXISTS (SELECT 1 FROM {RUN_KEYS} AS run WHERE {matches}) "
                    f"AND published._data_date NOT BETWEEN $1 AND $2 AND {within}", [first, last, *bounds])
                found = cursor.fetchall()
            finally:
                server.rollback()  # the temporary table goes with the transaction
        return [(tuple(row[:-1]), row[-1]) for row in found]

    def first_rows_of_key(self, table: str, key: tuple[str, ...], values: tuple,
                          days: Sequence[dt.date]) -> list[tuple[dt.date, str, int]]:
        where = " AND ".join(f"{quoted(c)} = ${2 + i}" for i, c in enumerate(key))
        return self.warehouse.query(
            f"SELECT _data_date, min(_source_file), min(_row_number) FROM raw.{table} "
            f"WHERE _data_date = ANY($1) AND {where} GROUP BY 1", [list(days), *values])


class PostgresWarehouse(Warehouse):
    """The PostgreSQL warehouse at `url` (PLATFORM_WAREHOUSE_URL), one server connection (opened when first
    needed, closed by `close`), and a scratch DuckDB per batch (`memory_limit`: DUCKDB_MEMORY_LIMIT)."""

    def __init__(self, url: str, memory_limit: str | None = None, governed_from: Path | None = None):
        self.url = url
        self.memory_limit = memory_limit
        self.governed_from = governed_from  # the data folder whose masking secret keys the governed views
        self._connection = None
        self._created: set[str] = set()  # tables this warehouse created or re-created: governed on `close`

    def server(self):
        if self._connection is None:
            import adbc_driver_postgresql.dbapi  # noqa: PLC0415  (only the team target needs it)

            where = urlsplit(self.url)  # named without the login and password
            where = f"{where.hostname}:{where.port or 5432}{where.path}"
            for _ in range(CONNECT_ATTEMPTS):
                try:
                    connection = adbc_driver_postgresql.dbapi.connect(self.url)
                except adbc_driver_postgresql.dbapi.Error as error:
                    reason = str(error).splitlines()[0].rsplit(" failed: ", 1)[-1]
                    raise WarehouseUnreachable(
                        f"PLATFORM_WAREHOUSE_URL: cannot connect to the warehouse at {where}: {reason}") from None
                if _strings_are_text(connection):
                    self._connection = connection
                    break
                connection.close()
            else:
                raise WarehouseUnreachable(f"the warehouse at {where}: the ADBC driver typed text as refcursor in "
                                           f"{CONNECT_ATTEMPTS} connections in a row (see _strings_are_text)")
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._created and self.governed_from is not None:
            self._govern(sorted(self._created))
        self._created.clear()

    def _govern(self, tables: list[str]) -> None:
        """A table PostgreSQL creates is its owner's alone (closed to every consumer, never open): the catalog's
        access policy is applied again (governance apply) so that its readers get back exactly what the catalog
        gives them. A login that may not apply it leaves them closed, and says so. (A warehouse opened without
        `governed_from`, by a tool or a test, leaves that to `governance apply`.)"""
        import dagster as dg  # noqa: PLC0415

        from governance.catalog import load_catalog  # noqa: PLC0415
        from governance.postgres import ApplyError, apply_catalog  # noqa: PLC0415

        try:
            plan = apply_catalog(load_catalog(), execute=True, url=self.url, data_dir=self.governed_from)
        except ApplyError as error:
            dg.get_dagster_logger().warning(
                f"{', '.join(tables)} created: closed to every consumer until `governance apply --yes` ({error})")
            return
        dg.get_dagster_logger().info(f"{', '.join(tables)} created: the catalog's access policy applied again "
                                     f"({len(plan.steps)} statement(s))")

    def rebuilt(self, relations: Sequence[str]) -> None:
        self._created.update(relations)

    def _exists(self, relation: str) -> bool:
        return self.query("SELECT to_regclass($1) IS NOT NULL", [relation])[0][0]

    def query(self, sql: str, parameters: Sequence = ()) -> list[tuple]:
        """Rows of one read on the server, in a transaction of its own."""
        server = self.server()
        with server.cursor() as cursor:
            try:
                cursor.execute(sql, list(parameters) or None)
                return [tuple(row) for row in cursor.fetchall()]
            finally:
                server.rollback()

    def ensure_raw_table(self, source: SourceDefinition) -> None:
        columns = ", ".join(f"{quoted(column)} {postgres_type(source, column, kind)}"
                            for column, kind in source.raw_columns.items())
        server = self.server()
        with server.cursor() as cursor:
            try:
                # Two runs creating the same table at once would collide in the catalog: one waits for the other.
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext($1))", [f"raw.{source.name}"])
                create_schema(cursor, "raw")
                cursor.execute("SELECT to_regclass($1) IS NULL", [f"raw.{source.name}"])
                if cursor.fetchone()[0]:
                    cursor.execute(f"CREATE TABLE raw.{source.name} ({columns})")
                    self._created.add(f"raw.{source.name}")
                server.commit()
            except BaseException:
                server.rollback()
                raise

    @contextmanager
    def _scratch(self, source: SourceDefinition) -> Iterator[duckdb.DuckDBPyConnection]:
        """An in-memory DuckDB with an empty raw.<source>, spilling to a temporary folder beyond its memory."""
        with tempfile.TemporaryDirectory(prefix="platform-batch-") as spill:
            config = {"temp_directory": spill, **({"memory_limit": self.memory_limit} if self.memory_limit else {})}
            local = duckdb.connect(":memory:", config=config)
            try:
                local.execute("SET enable_progress_bar = false")
                ensure_raw_table(local, source)
                yield local
            finally:
                local.close()

    def _pull(self, local: duckdb.DuckDBPyConnection, source: SourceDefinition, days: Sequence[dt.date],
              columns: Sequence[str]) -> None:
        """The server's rows of `days` of raw.<source> (those columns) into the scratch raw.<source>."""
        server = self.server()
        with server.cursor() as cursor:
            try:
                cursor.execute(f"SELECT {', '.join(_server_column(source, c) for c in columns)} "
                               f"FROM raw.{source.name} WHERE {days_predicate(days)}")
                local.register("pulled", cursor.fetch_record_batch())
                local.execute(f"INSERT INTO raw.{source.name} BY NAME SELECT * FROM pulled")
                local.unregister("pulled")
            finally:
                server.rollback()

    def _copy_references(self, local: duckdb.DuckDBPyConnection, source: SourceDefinition) -> None:
        """The columns of other raw tables the contract's `references` rules read, copied (distinct values) into
        raw.<table> of the scratch DuckDB; a table not on the server yet, or not yet holding rows (a snapshot
        published by a step running at the same time on another worker: its table is created before its rows
        are), is left out and the rule skipped, as on the embedded target for a table not loaded yet."""
        referenced: dict[str, list[str]] = {}
        for contract in source.columns.values():
            if contract.references:
                table, column = contract.references.split(".")
                if table != source.name and column not in referenced.setdefault(table, []):
                    referenced[table].append(column)
        for table, columns in referenced.items():
            if self._exists(f"raw.{table}"):
                server = self.server()
                with server.cursor() as cursor:
                    try:
                        cursor.execute(f"SELECT DISTINCT {', '.join(quoted(c) for c in columns)} FROM raw.{table}")
                        pulled = cursor.fetch_arrow_table()  # distinct values of a register: small
                        if pulled.num_rows:
                            local.register("pulled", pulled)
                            local.execute(f"CREATE TABLE raw.{table} AS SELECT * FROM pulled")
                            local.unregister("pulled")
                    finally:
                        server.rollback()

    def _publish(self, local: duckdb.DuckDBPyConnection, source: SourceDefinition, days: Sequence[dt.date]) -> str:
        """Replace `days` of raw.<source> on the server with the scratch raw.<source>, in one transaction; returns
        the published version of `days`: the scratch rows' own (the same rows, so the same fingerprint; reading
        them back from the server would add a third of the time, measured in docs/team.md)."""
        version = table_version(local, f"raw.{source.name}", days_predicate(days), version_columns(source))
        server = self.server()
        rows = local.sql(f"SELECT * FROM raw.{source.name}").to_arrow_reader()
        with server.cursor() as cursor:
            try:
                # One publish of a table at a time: two runs over different days may load the same new snapshot at
                # once, and two uncommitted deletes of its day see nothing, so both copies would stay.
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext($1))", [f"raw.{source.name}"])
                cursor.execute(f"DELETE FROM raw.{source.name} WHERE {days_predicate(days)}")
                cursor.adbc_ingest(source.name, rows, mode="append", db_schema_name="raw")
                server.commit()
            except BaseException:
                server.rollback()
                raise
        return version

    @contextmanager
    def batch(self, source: SourceDefinition, days: Sequence[dt.date]) -> Iterator[RawBatch]:
        self.ensure_raw_table(source)
        with self._scratch(source) as local:
            self._copy_references(local, source)
            yield RawBatch(local, PublishedOnServer(self, local), lambda: self._publish(local, source, days))

    @contextmanager
    def review(self, source: SourceDefinition, days: Sequence[dt.date]) -> Iterator[RawBatch]:
        self.ensure_raw_table(source)
        with self._scratch(source) as local:
            self._pull(local, source, days, list(source.raw_columns))
            self._copy_references(local, source)
            yield RawBatch(local, PublishedOnServer(self, local), nothing_to_publish)

    def loaded_snapshots(self, source: SourceDefinition) -> dict[dt.date, set[str]]:
        self.ensure_raw_table(source)
        return {day: set(digests) for day, digests in self.query(
            f"SELECT _data_date, array_agg(DISTINCT _file_sha256) FROM raw.{source.name} GROUP BY 1")}

    def row_count(self, source: SourceDefinition) -> int:
        return self.query(f"SELECT count(*) FROM raw.{source.name}")[0][0]

    def version(self, source: SourceDefinition, days: Sequence[dt.date]) -> str:
        """Read from the server: its rows of `days`, fingerprinted by DuckDB as on the embedded target."""
        self.ensure_raw_table(source)
        with self._scratch(source) as local:
            self._pull(local, source, days, version_columns(source))
            return table_version(local, f"raw.{source.name}", days_predicate(days), version_columns(source))

    def _columns(self, schema: str, table: str) -> dict[str, str]:
        return dict(self.query("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 "
                               "AND table_name = $2 ORDER BY ordinal_position", [schema, table]))

    def publish_marts(self, tables: list[str], first_day: dt.date, last_day: dt.date) -> dict[str, str]:
        """publish_audited_marts on the server: in one transaction, each mart's run range replaced by its audited
        rows (a mart whose columns changed republished whole: its governed views go with it, closed, never open,
        until `close` applies the catalog again); the versions fingerprinted by DuckDB as on the embedded target."""
        from platform_assets.transformations.publish import AUDIT_SCHEMA, PUBLISHED_SCHEMA  # noqa: PLC0415

        window = f"data_date BETWEEN '{first_day}' AND '{last_day}'"  # dt.date values: safe as literals
        whole = {table for table in tables if self._columns(PUBLISHED_SCHEMA, table) != (
            columns := self._columns(AUDIT_SCHEMA, table)) or "data_date" not in columns}
        server = self.server()
        with server.cursor() as cursor:
            try:
                create_schema(cursor, PUBLISHED_SCHEMA)
                for table in tables:
                    audited, published = f'{AUDIT_SCHEMA}."{table}"', f'{PUBLISHED_SCHEMA}."{table}"'
                    if table in whole:
                        self._created.add(f"{PUBLISHED_SCHEMA}.{table}")
                        cursor.execute(f"DROP TABLE IF EXISTS {published} CASCADE")
                        cursor.execute(f"CREATE TABLE {published} AS SELECT * FROM {audited}")
                        continue
                    cursor.execute(f"DELETE FROM {published} WHERE {window}")
                    cursor.execute(f"INSERT INTO {published} SELECT * FROM {audited} WHERE {window}")
                server.commit()
            except BaseException:
                server.rollback()
                raise
        return {table: self.fingerprint(f'{PUBLISHED_SCHEMA}."{table}"', window) for table in tables}

    @contextmanager
    def _pulled(self, sql: str, parameters: Sequence = ()) -> Iterator[duckdb.DuckDBPyConnection]:
        """A scratch DuckDB reading the rows of `sql` on the server as table `pulled`, streamed batch by batch (read
        once; a published mart at scale 5 is millions of rows), PostgreSQL's numeric (which the ADBC driver gives as
        text) as DOUBLE, as DuckDB gives a DECIMAL to pandas."""
        server = self.server()
        with tempfile.TemporaryDirectory(prefix="platform-read-") as spill, server.cursor() as cursor:
            local = duckdb.connect(":memory:", config={"temp_directory": spill, **(
                {"memory_limit": self.memory_limit} if self.memory_limit else {})})
            try:
                cursor.execute(sql, list(parameters) or None)
                local.register("pulled", _numeric_as_double(cursor.fetch_record_batch()))
                yield local
            finally:
                local.close()
                server.rollback()

    def read(self, sql: str, parameters: Sequence = ()) -> pd.DataFrame:
        with self._pulled(sql, parameters) as local:
            return local.sql("SELECT * FROM pulled").df()

    def fingerprint(self, relation: str, where: str = "true") -> str:
        """The rows of `where` read from the server, fingerprinted by DuckDB (metadata.table_version)."""
        with self._pulled(f"SELECT * FROM {relation} WHERE {where}") as local:
            return table_version(local, "pulled")

    def replace_days(self, relation: str, rows: pd.DataFrame, first_day: dt.date, last_day: dt.date) -> int:
        """The frame typed by DuckDB (as the embedded target stores it), bulk-loaded as Arrow (COPY) into the table it
        creates when missing, after the range's rows are deleted: one server transaction."""
        schema, table = relation.split(".")
        if not self._exists(relation):
            self._created.add(relation)
        local = duckdb.connect(":memory:")
        try:
            batch = local.from_df(rows).to_arrow_table()
        finally:
            local.close()
        server = self.server()
        with server.cursor() as cursor:
            try:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext($1))", [relation])
                create_schema(cursor, schema)
                cursor.adbc_ingest(table, batch.slice(0, 0), mode="create_append", db_schema_name=schema)
                cursor.execute(f"DELETE FROM {relation} WHERE data_date BETWEEN $1 AND $2", [first_day, last_day])
                cursor.adbc_ingest(table, batch, mode="append", db_schema_name=schema)
                server.commit()
            except BaseException:
                server.rollback()
                raise
        return self.query(f"SELECT count(*) FROM {relation}")[0][0]

    def describe(self, schema: str, table: str, first_day: dt.date, last_day: dt.date) -> TableDescription:
        columns = self._columns(schema, table)
        relation = f'{schema}."{table}"'
        rows = self.query(f"SELECT count(*) FROM {relation}")[0][0]
        in_range = self.query(f"SELECT count(*) FROM {relation} WHERE data_date BETWEEN '{first_day}' AND "
                              f"'{last_day}'")[0][0] if "data_date" in columns else None
        return TableDescription(columns, rows, in_range)

    def table_bytes(self, relations: Sequence[str]) -> dict[str, int | None]:
        return {relation: self.query("SELECT pg_total_relation_size(to_regclass($1))", [relation])[0][0]
                for relation in relations}

    def append(self, relation: str, columns: dict[str, str], rows: Sequence[Sequence]) -> None:
        schema, _ = relation.split(".")
        server = self.server()
        with server.cursor() as cursor:
            try:
                # Two steps creating the table at once: the second would fail on the catalog's unique index.
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext($1))", [relation])
                create_schema(cursor, schema)
                cursor.execute(f"CREATE TABLE IF NOT EXISTS {relation} "
                               f"({', '.join(f'{quoted(name)} {kind}' for name, kind in columns.items())})")
                placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
                for row in rows:
                    cursor.execute(f"INSERT INTO {relation} ({', '.join(map(quoted, columns))}) "
                                   f"VALUES ({placeholders})", list(row))
                server.commit()
            except BaseException:
                server.rollback()
                raise
