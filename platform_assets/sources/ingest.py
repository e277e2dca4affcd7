"""Write-audit-publish of a source's verified deliveries into raw.<source>: stage the listed files as a batch of the
warehouse (platform_assets/warehouse: in place inside one transaction on DuckDB, in a scratch DuckDB for
PostgreSQL), check them against their manifests and the source's contract, publish only when no blocking rule
fails. No Dagster here: the raw assets (raw_assets.py) call it, and so can a script or a test."""

import datetime as dt
import difflib
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from governance.masking import personal_data
from platform_assets.checks.contracts import Violation, contract_rules, duplicate_keys, evaluate_rules, raw_dataset
from platform_assets.sources import read_errors
from platform_assets.sources.definitions import CSV_OPTIONS, LANDING_FILE_COLUMN, SourceDefinition, reader_sql
from platform_assets.sources.landing import (
    Delivery, DeliveryError, DeliveryNotYetComplete, days_between, delivered_manifests, verified_delivery,
)
from platform_assets.warehouse import DuckDBWarehouse, PublishedRows, RawBatch, Warehouse, ensure_raw_table
from platform_assets.warehouse.base import days_predicate as _days_predicate

__all__ = ["DeliveryError", "DeliveryNotYetComplete", "ensure_raw_table", "ingest", "ingest_deliveries",
           "planned_deliveries"]

VOLUME_BAND = (0.5, 2.0)  # a day outside [0.5, 2] x the median of its 7 previous days is an anomaly
VOLUME_HISTORY = 7
READ_BATCH_BYTES = 256 * 2**20  # landing files read together per statement


def _file_columns(connection: duckdb.DuckDBPyConnection, source: SourceDefinition, path: Path) -> list[str]:
    readers = {
        "csv": f"read_csv($path, {CSV_OPTIONS})",
        "jsonl": "read_json($path, format = 'newline_delimited')",
        "parquet": "read_parquet($path)",
    }
    mismatch = read_errors.mismatch_message(path, source.format)
    if mismatch:  # a compressed, archived or other-format file: its first bytes say so before any read
        raise DeliveryError(mismatch)
    try:
        return [row[0] for row in connection.execute(
            f"DESCRIBE SELECT * FROM {readers[source.format]}", {"path": str(path)}).fetchall()]
    except duckdb.Error as error:
        # not chained: the engine's own error quotes the file's lines, and tracebacks reach logs and lineage
        raise DeliveryError(read_errors.read_failure_message(path, source.format, str(error),
                                                             _holds_personal_data(source))) from None


def _holds_personal_data(source: SourceDefinition) -> bool:
    """The source's files have personal columns (the catalog's `pii:` on raw/<source>): no error quotes them."""
    return personal_data(raw_dataset(source)).holds_personal_data


def _first_line(error: Exception, source: SourceDefinition) -> str:
    """The engine's reason, bounded (used where no single file can be named)."""
    return read_errors.engine_reason(str(error), personal=_holds_personal_data(source))


def planned_deliveries(landing_dir: Path, source: SourceDefinition, first_day: dt.date | None = None,
                       last_day: dt.date | None = None, loaded: dict[dt.date, set[str]] | None = None
                       ) -> list[Delivery]:
    """The verified deliveries a run of `source` loads: for a daily source every day of the range (each must
    have been delivered), for an irregular one the days of the range that have a delivery, for a snapshot
    source every delivered snapshot whose files are not `loaded` yet (data date -> sha256s in raw).
    Raises DeliveryNotYetComplete (may resolve) or DeliveryError (refused), naming the manifest or file."""
    delivered = delivered_manifests(landing_dir, source.name)[0]
    future = sorted(day for day in (delivered if source.snapshot else days_between(first_day, last_day))
                    if day > dt.date.today())
    if future:
        raise DeliveryError(f"{landing_dir / source.name}: a delivery of {source.name} dated {future[0]}, in the "
                            "future; refused")
    if source.snapshot:
        deliveries = [verified_delivery(landing_dir, source.name, day) for day in sorted(delivered)]
        new = [d for d in deliveries if {f.sha256 for f in d.files} != (loaded or {}).get(d.data_date)]
        if not deliveries:
            raise DeliveryNotYetComplete(f"{landing_dir / source.name}: no snapshot of {source.name} delivered yet")
        return new
    days = list(days_between(first_day, last_day))
    if source.cadence == "irregular":
        days = [day for day in days if day in delivered]
    return [verified_delivery(landing_dir, source.name, day) for day in days]


def _check_columns(source: SourceDefinition, path: Path, delivered: list[str]) -> list[str]:
    """Refuse a file without every contract column; return the unexpected extra columns. With columns missing,
    only unexpected names close to a missing one are repeated (renamed?): a file delivered without its header has
    its first row there, values (a passenger's e-mail), not names."""
    missing = [c for c in source.columns if c not in delivered]
    extra = [c for c in delivered if c not in source.columns]
    if missing:
        hint = ""
        if len(delivered) == 1 and any(sep in delivered[0] for sep in ";|\t"):
            hint = "; the header is one column: wrong delimiter? the contract says ','"
        elif extra:
            renamed = [c for c in extra if difflib.get_close_matches(c, missing, n=1, cutoff=0.6)]
            others = len(extra) - len(renamed)
            hint = "".join([f"; unexpected {', '.join(renamed)}: renamed?" if renamed else "",
                            f"; {others} other unexpected name(s), not shown (values, if the file has no header)"
                            if others else ""])
        raise DeliveryError(f"{path}: missing column(s) {', '.join(missing)}{hint}")
    return extra


def as_warehouse(warehouse: Warehouse | duckdb.DuckDBPyConnection) -> Warehouse:
    """A warehouse, or an open DuckDB warehouse file (scripts and tests that hold a connection)."""
    return DuckDBWarehouse(warehouse) if isinstance(warehouse, duckdb.DuckDBPyConnection) else warehouse


@dataclass
class AuditedBatch:
    """One source's delivery for a date range, staged and audited; published only when it passed."""

    source: SourceDefinition
    first_day: dt.date
    last_day: dt.date
    rows_per_day: dict[str, int]
    unexpected_columns: dict[str, list[str]] = field(default_factory=dict)
    blocking: list[Violation] = field(default_factory=list)
    known_gaps: list[Violation] = field(default_factory=list)
    volume_anomalies: list[tuple] = field(default_factory=list)
    published: bool = False
    version: str = ""  # published version of the range after this run (unchanged when not published)
    files: dict[str, str] = field(default_factory=dict)  # landing file -> its sha256, as verified
    days: list[dt.date] = field(default_factory=list)  # the data dates loaded (a snapshot's, a range's days)

    @property
    def rows(self) -> int:
        return sum(self.rows_per_day.values())


def _delivered_columns(connection: duckdb.DuckDBPyConnection, source: SourceDefinition,
                       paths: list[Path]) -> dict[Path, list[str]]:
    """Each file's columns. CSV files with the same header line share DuckDB's reading of it."""
    if source.format != "csv":
        return {path: _file_columns(connection, source, path) for path in paths}
    by_header: dict[bytes, list[str]] = {}
    columns = {}
    for path in paths:
        with path.open("rb") as file:
            header = file.readline()
        if header not in by_header:
            by_header[header] = _file_columns(connection, source, path)
        columns[path] = by_header[header]
    return columns


def _read_groups(files: list[tuple], delivered: dict[Path, list[str]]) -> list[list[tuple]]:
    """Files read together: the same columns, up to READ_BATCH_BYTES per read (bounded memory at any scale)."""
    groups: list[list[tuple]] = []
    current: dict[tuple, tuple[list, int]] = {}
    for file in files:
        key = tuple(delivered[file[1]])
        group, size = current.get(key, ([], 0))
        if group and size + file[1].stat().st_size > READ_BATCH_BYTES:
            groups.append(group)
            group, size = [], 0
        group.append(file)
        current[key] = (group, size + file[1].stat().st_size)
    return groups + [group for group, _ in current.values()]


def _insert_files(connection: duckdb.DuckDBPyConnection, source: SourceDefinition, target: str,
                  files: list[tuple], batch_id: str) -> None:
    """Stage `files` ((day, path, sha256) each) in one read, with each row's lineage columns."""
    connection.execute(
        "CREATE OR REPLACE TEMP TABLE delivered_files AS "
        "SELECT unnest($paths) AS path, unnest($days)::DATE AS day, unnest($digests) AS sha256",
        {"paths": [str(path) for _, path, _ in files], "days": [day for day, _, _ in files],
         "digests": [digest for _, _, digest in files]},
    )
    connection.execute(
        f"""
        INSERT INTO {target} BY NAME
        SELECT delivered.* EXCLUDE ({LANDING_FILE_COLUMN}, ordinality),
               files.day AS _data_date, files.path AS _source_file, files.sha256 AS _file_sha256,
               row_number() OVER (PARTITION BY files.path ORDER BY delivered.ordinality) AS _row_number,
               $batch AS _batch_id, now()::TIMESTAMP AS _ingested_at
        FROM ({reader_sql(source)}) AS delivered
        JOIN delivered_files AS files ON delivered.{LANDING_FILE_COLUMN} = files.path
        """,
        {"paths": [str(path) for _, path, _ in files], "batch": batch_id},
    )


def _unreadable_file(connection: duckdb.DuckDBPyConnection, source: SourceDefinition, files: list[tuple],
                     error: duckdb.Error) -> DeliveryError:
    """Which of `files` a failed read failed on: each read alone, on a fresh cursor (the failed statement
    aborted the ingestion's transaction), writing nothing."""
    with connection.cursor() as cursor:
        for _, path, _ in files:
            try:
                cursor.execute(f"CREATE OR REPLACE TEMP TABLE probe AS {reader_sql(source)}", {"paths": [str(path)]})
            except duckdb.Error as file_error:
                return DeliveryError(read_errors.read_failure_message(path, source.format, str(file_error),
                                                                      _holds_personal_data(source)))
    return DeliveryError(f"{files[0][1]} and {len(files) - 1} more: cannot be read together as {source.format}: "
                         f"{_first_line(error, source)}")


def _stage(raw: RawBatch, source, deliveries: list[Delivery], batch_id) -> AuditedBatch:
    """Write the deliveries' files into raw.<source> of the warehouse's batch; raises DeliveryError naming a file
    that cannot be ingested."""
    connection, target = raw.connection, f"raw.{source.name}"
    days = [delivery.data_date for delivery in deliveries]
    files = [(delivery.data_date, file.path, file.sha256) for delivery in deliveries for file in delivery.files]
    batch = AuditedBatch(source, min(days), max(days), {}, files={str(path): digest for _, path, digest in files},
                         days=days)
    if not source.snapshot:
        seen: dict[str, str] = {}
        previous = raw.published.file_digests(source.name, days)
        for _, path, digest in files:
            earlier = seen.get(digest) or previous.get(digest)
            if earlier:
                raise DeliveryError(f"{path}: identical to {earlier}, already delivered for another day; "
                                    "a duplicate delivery is refused")
            seen[digest] = str(path)
    delivered = _delivered_columns(connection, source, [path for _, path, _ in files])
    for path, file_columns in delivered.items():
        extra = _check_columns(source, path, file_columns)
        if extra:
            batch.unexpected_columns[str(path)] = extra
    for group in _read_groups(files, delivered):
        try:
            _insert_files(connection, source, target, group, batch_id)
        except duckdb.Error as error:
            raise _unreadable_file(connection, source, group, error) from None  # the engine's error quotes lines
    return batch


def _check_announced_rows(connection, source: SourceDefinition, deliveries: list[Delivery], staged: str) -> None:
    """Every file holds the rows its manifest announced, and a delivery with no rows at all is refused unless
    the source allows empty deliveries."""
    read = dict(connection.execute(f"SELECT _source_file, count(*) FROM {staged} GROUP BY ALL").fetchall())
    for delivery in deliveries:
        for file in delivery.files:
            rows = read.get(str(file.path), 0)
            if rows != file.rows:
                raise DeliveryError(f"{file.path}: {rows:,} data rows read, but the manifest announced "
                                    f"{file.rows:,}; refused (rows lost or added after export)")
        if not source.allow_empty and not any(read.get(str(file.path)) for file in delivery.files):
            raise DeliveryError(
                f"{', '.join(str(file.path) for file in delivery.files)}: no data rows (header only) for "
                f"{delivery.data_date}; an empty delivery is refused (a source that may deliver nothing sets "
                "allow_empty: true in sources.yml)")


def _volume_anomalies(connection, published: PublishedRows, source: SourceDefinition, staged: str,
                      days: list[dt.date]) -> list[tuple]:
    """Days of the run outside the band around their previous days' median (the published counts of the days
    before it); a day with no rows counts as 0."""
    low, high = VOLUME_BAND
    first = min(days)
    previous = published.rows_per_day(source.name, first - dt.timedelta(days=2 * VOLUME_HISTORY), first)
    return connection.execute(
        f"""
        WITH run_days AS (SELECT unnest($days::DATE[]) AS day),
        days AS (
            SELECT unnest($previous_days::DATE[]) AS day, unnest($previous_counts::BIGINT[]) AS n
            UNION ALL
            SELECT run_days.day, count(staged._data_date) FROM run_days
            LEFT JOIN {staged} ON staged._data_date = run_days.day GROUP BY 1
        ), windowed AS (
            SELECT day, n,
                   median(n) OVER (ORDER BY day ROWS BETWEEN {VOLUME_HISTORY} PRECEDING AND 1 PRECEDING) AS usual,
                   count(n) OVER (ORDER BY day ROWS BETWEEN {VOLUME_HISTORY} PRECEDING AND 1 PRECEDING) AS history
            FROM days
        )
        SELECT day::VARCHAR, n, usual FROM windowed
        WHERE day >= $first AND history >= 3 AND (n < {low} * usual OR n > {high} * usual) ORDER BY day
        """,
        {"first": first, "days": days, "previous_days": list(previous), "previous_counts": list(previous.values())},
    ).fetchall()


def ingest(warehouse: Warehouse | duckdb.DuckDBPyConnection, source: SourceDefinition, landing_dir: Path,
           first_day: dt.date, last_day: dt.date, batch_id: str) -> AuditedBatch:
    """Write-audit-publish of the source's deliveries for [first_day, last_day] (see ingest_deliveries)."""
    return ingest_deliveries(warehouse, source, planned_deliveries(landing_dir, source, first_day, last_day),
                             batch_id)


def ingest_deliveries(warehouse: Warehouse | duckdb.DuckDBPyConnection, source: SourceDefinition,
                      deliveries: list[Delivery], batch_id: str) -> AuditedBatch:
    """Write-audit-publish of verified deliveries as one batch of the warehouse: replace their data dates in
    raw.<source> with their files, check the rows against the manifests, audit them against the source's contract,
    and publish only when no blocking rule fails. Otherwise nothing was visible to any reader, and the published
    rows stay as they were. Re-running a day replaces it.
    Raises DeliveryError, naming the file, for a delivery that cannot be ingested at all."""
    warehouse = as_warehouse(warehouse)
    if not deliveries:
        raise DeliveryError(f"{source.name}: nothing delivered to load")
    days = sorted(delivery.data_date for delivery in deliveries)
    # The run's rows, in raw.<source> of the batch's connection (on DuckDB written in place of its days).
    staged = f"(SELECT * FROM raw.{source.name} WHERE {_days_predicate(days)}) AS staged"
    with warehouse.batch(source, days) as raw:
        batch = _stage(raw, source, deliveries, batch_id)
        _check_announced_rows(raw.connection, source, deliveries, staged)
        batch.rows_per_day = {str(day): 0 for day in days} | dict(raw.connection.execute(
            f"SELECT _data_date::VARCHAR, count(*) FROM {staged} GROUP BY ALL ORDER BY 1").fetchall())
        audit(raw, source, batch, staged, days)
        if batch.published:
            raw.publish()
    batch.version = raw.version or warehouse.version(source, days)
    return batch


def audit(raw: RawBatch, source: SourceDefinition, batch: AuditedBatch, staged: str, days: list[dt.date]) -> None:
    """Evaluate the contract on the staged rows: blocking violations, known gaps, volume; passes when none blocks."""
    violations = evaluate_rules(raw.connection, staged, contract_rules(source), published=raw.published)
    duplicates = duplicate_keys(raw.connection, staged, source)
    violations += [duplicates] if duplicates else []
    batch.blocking = [v for v in violations if not v.rule.warn_because]
    batch.known_gaps = [v for v in violations if v.rule.warn_because]
    batch.volume_anomalies = _volume_anomalies(raw.connection, raw.published, source, staged, days)
    batch.published = not batch.blocking


def loaded_snapshots(warehouse: Warehouse | duckdb.DuckDBPyConnection, source: SourceDefinition
                     ) -> dict[dt.date, set[str]]:
    """The snapshots already in raw.<source>: data date -> the sha256 of its files."""
    return as_warehouse(warehouse).loaded_snapshots(source)
