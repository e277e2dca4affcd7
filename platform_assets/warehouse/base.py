"""What the platform's steps need of a warehouse, whatever it is. Raw ingestion: a place to stage and audit a batch of days of
raw.<source> (always a DuckDB connection: DuckDB reads the landing files and runs the contract's SQL), the published
rows the audit compares the batch with, and publishing the batch in one transaction. The dbt step: publishing the
audited marts dbt built (transformations/publish.py) and describing each table it built. The platform's other
steps (checks, training, scoring, drift, the demo's summary): reads, fingerprints and day-range replacements in SQL
both targets take (positional parameters $1, $2, ...; no engine-only functions)."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb

from platform_assets.sources.definitions import SourceDefinition

if TYPE_CHECKING:  # pandas only in annotations: loading the code location must not import it
    import pandas as pd

VERSION_COLUMNS_EXTRA = ["_data_date"]  # with the contract columns: what a published version fingerprints


def days_predicate(days: Sequence[dt.date]) -> str:
    """SQL predicate on _data_date for these days (dt.date values: safe as literals), the same text in DuckDB
    and PostgreSQL."""
    between = f"_data_date BETWEEN '{min(days)}' AND '{max(days)}'"
    if len(days) == (max(days) - min(days)).days + 1:
        return between
    return f"{between} AND _data_date IN ({', '.join(repr(str(day)) for day in days)})"


def version_columns(source: SourceDefinition) -> list[str]:
    return [*source.columns, *VERSION_COLUMNS_EXTRA]


class PublishedRows(ABC):
    """What the audit reads of the rows already published in raw.<table> for days outside the batch's: the same
    questions on every target, answered where those rows are."""

    @abstractmethod
    def file_digests(self, table: str, days: Sequence[dt.date]) -> dict[str, str]:
        """sha256 -> landing file, of every file published for a day not in `days`."""

    @abstractmethod
    def rows_per_day(self, table: str, since: dt.date, before: dt.date) -> dict[dt.date, int]:
        """The published row count of each day in [since, before) that has rows."""

    @abstractmethod
    def any_outside(self, table: str, first: dt.date, last: dt.date) -> bool:
        """Whether any row is published for a day outside [first, last]."""

    @abstractmethod
    def days_of_keys(self, table: str, key: tuple[str, ...], run_keys: str, bounds: Sequence,
                     first: dt.date, last: dt.date) -> list[tuple[tuple, dt.date]]:
        """(key values, day) of each published delivery, for a day outside [first, last], of a key in `run_keys`
        (a table of the batch's distinct keys in the batch's connection). `bounds` are each key column's min and
        max in it (low0, high0, low1, ...): published rows outside them are not read."""

    @abstractmethod
    def first_rows_of_key(self, table: str, key: tuple[str, ...], values: tuple,
                          days: Sequence[dt.date]) -> list[tuple[dt.date, str, int]]:
        """(day, a landing file, its first row) of the published deliveries of key `values` on `days`."""


@dataclass
class RawBatch:
    """A batch of days of raw.<source> being staged and audited: in `connection`, raw.<source> holds the batch's
    rows for its days (and possibly published rows of other days: always read it through `days_predicate`);
    `published` answers what the audit asks about the other days. `publish` makes the batch the published
    content of its days, in one transaction; a batch not published leaves the warehouse as it was."""

    connection: duckdb.DuckDBPyConnection
    published: PublishedRows
    _publish: Callable[[], str | None]
    done: bool = False
    version: str | None = None  # the published version of its days, when publishing already knows it

    def publish(self) -> None:
        self.version = self._publish()
        self.done = True


def nothing_to_publish() -> None:
    raise RuntimeError("a review of published rows has nothing to publish")


@dataclass(frozen=True)
class TableDescription:
    """What a materialization reports of a table: its columns and types (as the warehouse names them), its rows,
    and its rows in the run's range when it has a data_date."""

    columns: dict[str, str]
    rows: int
    rows_in_range: int | None


class Warehouse(ABC):
    """Where raw.<source> tables are published: one implementation per target, chosen once from the settings
    (resources.build_resources). Ingestion (sources/ingest.py) writes and reads raw tables only through it."""

    @abstractmethod
    def batch(self, source: SourceDefinition, days: Sequence[dt.date]) -> AbstractContextManager[RawBatch]:
        """A batch that will replace `days` of raw.<source> (the table created if missing): write its rows into
        raw.<source> of its connection, audit them, `publish()`. Leaving without publishing (or on an error)
        leaves the published rows as they were."""

    @abstractmethod
    def review(self, source: SourceDefinition, days: Sequence[dt.date]) -> AbstractContextManager[RawBatch]:
        """The published rows of `days` of raw.<source>, in a connection where they can be audited as a batch
        (nothing to publish)."""

    @abstractmethod
    def loaded_snapshots(self, source: SourceDefinition) -> dict[dt.date, set[str]]:
        """The snapshots already in raw.<source>: data date -> the sha256 of its files (the table created if
        missing)."""

    @abstractmethod
    def row_count(self, source: SourceDefinition) -> int:
        """Rows published in raw.<source>."""

    @abstractmethod
    def version(self, source: SourceDefinition, days: Sequence[dt.date]) -> str:
        """The published version of `days` of raw.<source>: a fingerprint of its contract columns and dates
        (metadata.table_version), the same for the same content on every target."""

    @abstractmethod
    def publish_marts(self, tables: list[str], first_day: dt.date, last_day: dt.date) -> dict[str, str]:
        """Replace [first_day, last_day] of each published mart with its audited rows, all or nothing (a mart whose
        columns changed, or without data_date, is republished whole); the published version of each."""

    @abstractmethod
    def describe(self, schema: str, table: str, first_day: dt.date, last_day: dt.date) -> TableDescription:
        """The table's columns, rows and rows in [first_day, last_day]."""

    @abstractmethod
    def read(self, sql: str, parameters: Sequence = ()) -> pd.DataFrame:
        """The rows of one query as a pandas frame, typed as DuckDB gives them to pandas on every target (dates and
        timestamps as datetime64, decimals as float64)."""

    @abstractmethod
    def fingerprint(self, relation: str, where: str = "true") -> str:
        """The version of the rows of `relation` where `where` holds (metadata.table_version), the same for the same
        content on every target."""

    @abstractmethod
    def replace_days(self, relation: str, rows: pd.DataFrame, first_day: dt.date, last_day: dt.date) -> int:
        """Make `rows` the content of [first_day, last_day] (its data_date) of `relation` ("schema.table", created
        from the frame's columns when missing), in one transaction; the table's rows afterwards."""

    @abstractmethod
    def table_bytes(self, relations: Sequence[str]) -> dict[str, int | None]:
        """The storage each table ("schema.table") takes now, None for one that does not exist. DuckDB: the
        distinct storage blocks of its persisted segments times the block size (an estimate: a block shared with
        another table counts for both); PostgreSQL: pg_total_relation_size (table, indexes, TOAST)."""

    @abstractmethod
    def append(self, relation: str, columns: dict[str, str], rows: Sequence[Sequence]) -> None:
        """Append `rows` to `relation` ("schema.table"), created with `columns` (name -> a type both targets
        know: TEXT, DATE, INTEGER, BIGINT, DOUBLE PRECISION, TIMESTAMP) when missing, in one transaction."""

    def rebuilt(self, relations: Sequence[str]) -> None:
        """`relations` ("schema.table") were created or re-created by another tool (dbt). The embedded target
        enforces access at read time (governance's sandbox): nothing to do; a server warehouse re-applies the
        catalog's grants."""
