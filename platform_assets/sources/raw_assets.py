"""The factory that turns each declarative source definition into a daily-partitioned raw ingestion asset."""


import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb

from platform_assets.checks.contracts import (
    Violation, contract_rules, duplicate_keys, evaluate_rules, violations_markdown,
)
from platform_assets.lineage import file_dataset, lineage_run, table_dataset
from platform_assets.metadata import column_schema, table_version
from platform_assets.partitions import daily_partitions, partition_dates, single_run
from platform_assets.resources import WAREHOUSE_OP_TAGS, WarehouseResource
from platform_assets.settings import load_settings
from platform_assets.simulator.deliver import days_between, manifest_path
from platform_assets.sources import read_errors
from platform_assets.sources.definitions import (
    CSV_OPTIONS, LANDING_FILE_COLUMN, SOURCES, SourceDefinition, landing_file, reader_sql,
)


class DeliveryError(Exception):
    """A landing file cannot be ingested; the message names the file and what to do."""


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
        raise DeliveryError(read_errors.read_failure_message(path, source.format, str(error))) from error


def _first_line(error: Exception) -> str:
    """The engine's reason, bounded (used where no single file can be named)."""
    return read_errors.engine_reason(str(error))


def _verified_file(landing_dir: Path, source: SourceDefinition, day: dt.date) -> tuple[Path, str]:
    """The day's landing file and its sha256, checked against the delivery manifest."""
    if day > dt.date.today():
        raise DeliveryError(f"{landing_file(landing_dir, source, day)}: dated {day}, in the future; refused")
    manifest_file = manifest_path(landing_dir, day)
    if not manifest_file.exists():
        raise DeliveryError(
            f"delivery of {day} is incomplete: {manifest_file} is missing, so {source.name} for that day "
            f"cannot be ingested yet; deliver the day first (python -m platform_assets.simulator)"
        )
    path = landing_file(landing_dir, source, day)
    if not path.exists():
        raise DeliveryError(f"{path}: listed for {day} but missing from the landing zone")
    if path.stat().st_size == 0:
        raise DeliveryError(f"{path}: empty file (0 bytes); ask the {source.system} to re-deliver {day}")
    digest = hashlib.file_digest(path.open("rb"), "sha256").hexdigest()
    listed = {f["path"]: f["sha256"] for f in json.loads(manifest_file.read_text())["files"]}
    expected = listed.get(str(path.relative_to(landing_dir)))
    if expected is not None and expected != digest:
        raise DeliveryError(f"{path}: sha256 {digest} does not match the manifest ({expected}); re-deliver it")
    return path, digest


def unreadable_deliveries(landing_dir: Path, sources: list[SourceDefinition], days: list[dt.date]) -> list[str]:
    """Why some of these deliveries cannot be read yet: no manifest, a listed file absent or not readable.
    These may resolve on their own (a delivery still arriving), unlike a bad file."""
    reasons = []
    for day in days:
        if day > dt.date.today():
            continue  # refused for good below, not retried
        if not manifest_path(landing_dir, day).exists():
            reasons.append(f"{manifest_path(landing_dir, day)}: not delivered yet")
            continue
        for source in sources:
            path = landing_file(landing_dir, source, day)
            try:
                path.open("rb").close()
            except OSError as error:
                reasons.append(f"{path}: not readable yet ({error.strerror})")
    return reasons


def _check_columns(source: SourceDefinition, path: Path, delivered: list[str]) -> list[str]:
    """Refuse a file without every contract column; return the unexpected extra columns."""
    missing = [c for c in source.columns if c not in delivered]
    extra = [c for c in delivered if c not in source.columns]
    if missing:
        hint = ""
        if len(delivered) == 1 and any(sep in delivered[0] for sep in ";|\t"):
            hint = "; the header is one column: wrong delimiter? the contract says ','"
        elif extra:
            hint = f"; unexpected {', '.join(extra)}: renamed?"
        raise DeliveryError(f"{path}: missing column(s) {', '.join(missing)}{hint}")
    return extra


def ensure_raw_table(connection: duckdb.DuckDBPyConnection, source: SourceDefinition) -> None:
    columns = ", ".join(f'"{column}" {kind}' for column, kind in source.raw_columns.items())
    connection.execute("CREATE SCHEMA IF NOT EXISTS raw")
    connection.execute(f"CREATE TABLE IF NOT EXISTS raw.{source.name} ({columns})")


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
                return DeliveryError(read_errors.read_failure_message(path, source.format, str(file_error)))
    return DeliveryError(f"{files[0][1]} and {len(files) - 1} more: cannot be read together as {source.format}: "
                         f"{_first_line(error)}")


def _stage(connection, source, landing_dir, first_day, last_day, batch_id, target) -> AuditedBatch:
    """Verify the days' files and write them into `target` (the raw table, inside the ingestion's
    transaction); raises DeliveryError naming a file that cannot be ingested."""
    files = [(day, *_verified_file(landing_dir, source, day)) for day in days_between(first_day, last_day)]
    batch = AuditedBatch(source, first_day, last_day, {}, files={str(path): digest for _, path, digest in files})
    if not source.snapshot:
        seen: dict[str, str] = {}
        previous = dict(connection.execute(
            f"SELECT DISTINCT _file_sha256, _source_file FROM raw.{source.name} "
            "WHERE _data_date NOT BETWEEN $first AND $last", {"first": first_day, "last": last_day}).fetchall())
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
            raise _unreadable_file(connection, source, group, error) from error
    return batch


def _volume_anomalies(connection, source: SourceDefinition, staged: str, first_day: dt.date) -> list[tuple]:
    low, high = VOLUME_BAND
    return connection.execute(
        f"""
        WITH days AS (
            SELECT _data_date AS day, count(*) AS n FROM raw.{source.name}
            WHERE _data_date < $first AND _data_date >= $first - INTERVAL {2 * VOLUME_HISTORY} DAY GROUP BY 1
            UNION ALL SELECT _data_date, count(*) FROM {staged} GROUP BY 1
        ), windowed AS (
            SELECT day, n,
                   median(n) OVER (ORDER BY day ROWS BETWEEN {VOLUME_HISTORY} PRECEDING AND 1 PRECEDING) AS usual,
                   count(n) OVER (ORDER BY day ROWS BETWEEN {VOLUME_HISTORY} PRECEDING AND 1 PRECEDING) AS history
            FROM days
        )
        SELECT day::VARCHAR, n, usual FROM windowed
        WHERE day >= $first AND history >= 3 AND (n < {low} * usual OR n > {high} * usual) ORDER BY day
        """,
        {"first": first_day},
    ).fetchall()


def ingest(
    connection: duckdb.DuckDBPyConnection,
    source: SourceDefinition,
    landing_dir: Path,
    first_day: dt.date,
    last_day: dt.date,
    batch_id: str,
) -> AuditedBatch:
    """Write-audit-publish of [first_day, last_day] in one transaction: replace those days of raw.<source> with
    the landing files, audit the new rows against the source's contract, and commit only when no blocking
    rule fails. Otherwise the transaction is rolled back: nothing was visible to any reader, and the
    published rows stay as they were. Re-running a day replaces it. (Writing in place instead of into a
    staging table and copying saves one full write of every row.)
    Raises DeliveryError, naming the file, for a file that cannot be ingested at all."""
    ensure_raw_table(connection, source)
    window = {"first": first_day, "last": last_day}
    # The run's rows, once written in place of the range (dates are dt.date values: safe as literals).
    staged = f"(SELECT * FROM raw.{source.name} WHERE _data_date BETWEEN '{first_day}' AND '{last_day}') AS staged"
    connection.execute("BEGIN TRANSACTION")
    try:
        connection.execute(f"DELETE FROM raw.{source.name} WHERE _data_date BETWEEN $first AND $last", window)
        batch = _stage(connection, source, landing_dir, first_day, last_day, batch_id, f"raw.{source.name}")
        batch.rows_per_day = dict(connection.execute(
            f"SELECT _data_date::VARCHAR, count(*) FROM {staged} GROUP BY ALL ORDER BY 1").fetchall())
        violations = evaluate_rules(connection, staged, contract_rules(source))
        duplicates = duplicate_keys(connection, staged, source)
        violations += [duplicates] if duplicates else []
        batch.blocking = [v for v in violations if not v.rule.warn_because]
        batch.known_gaps = [v for v in violations if v.rule.warn_because]
        batch.volume_anomalies = _volume_anomalies(connection, source, staged, first_day)
        batch.published = not batch.blocking
        connection.execute("COMMIT" if batch.published else "ROLLBACK")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    batch.version = table_version(connection, f"raw.{source.name}",
                                  f"_data_date BETWEEN '{first_day}' AND '{last_day}'", [*source.columns, "_data_date"])
    return batch


def raw_asset_spec(source: SourceDefinition) -> dg.AssetSpec:
    key = dg.AssetKey(["raw", source.name])
    return dg.AssetSpec(
        key=key,
        group_name="raw",
        description=f"{source.description}\n\nLanded as `{source.landing_path}` ({source.format}) by the "
        f"{source.system}; loaded as delivered into `raw.{source.name}` with the source file, its sha256, "
        "the batch id and the ingestion time of every row.",
        kinds={"duckdb", source.format},
        metadata={
            "dagster/column_schema": column_schema(source.raw_columns, source.column_descriptions),
            "dagster/table_name": f"raw.{source.name}",
        },
        skippable=True,
    )


def _known_gap_reasons(source: SourceDefinition) -> list[str]:
    return sorted({c.warn_because for c in source.columns.values() if c.warn_because}
                  | ({source.key_warn_because} if source.key_warn_because else set()))


def _check_specs(source: SourceDefinition, key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    reasons = _known_gap_reasons(source)
    specs = [
        dg.AssetCheckSpec(
            "contract", asset=key, blocking=True,
            description=f"Write-audit-publish gate: the staged delivery must meet every blocking rule of the "
            f"`{source.name}` contract in sources.yml (types, required columns, accepted values, ranges, "
            "references, key, no rows dated after their delivery). On failure nothing is published and the "
            "previous version stays readable.",
        ),
        dg.AssetCheckSpec(
            "delivered_schema", asset=key,
            description="WARN: the delivered files have columns the contract does not know (they are ignored; "
            "a file missing a contract column is refused instead).",
        ),
        dg.AssetCheckSpec(
            "volume", asset=key,
            description=f"WARN: each day's row count lies within {VOLUME_BAND[0]}x to {VOLUME_BAND[1]}x the median "
            f"of its {VOLUME_HISTORY} previous days.",
        ),
    ]
    if reasons:
        specs.append(dg.AssetCheckSpec(
            "contract_known_gaps", asset=key,
            description="WARN: contract rules the real data is known to break, reported with counts and "
            "examples: " + " / ".join(reasons),
        ))
    return specs


def _check_results(batch: AuditedBatch, key: dg.AssetKey) -> list[dg.AssetCheckResult]:
    state = "published" if batch.published else "NOT published: the previous version stays"
    results = [
        dg.AssetCheckResult(
            asset_key=key, check_name="contract", passed=not batch.blocking, severity=dg.AssetCheckSeverity.ERROR,
            metadata={"outcome": f"{state} (version {batch.version})", "rows_audited": batch.rows,
                      "violations": dg.MetadataValue.md(violations_markdown(batch.blocking))},
        ),
        dg.AssetCheckResult(
            asset_key=key, check_name="delivered_schema", passed=not batch.unexpected_columns,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"unexpected_columns": dg.MetadataValue.json(batch.unexpected_columns)},
        ),
        dg.AssetCheckResult(
            asset_key=key, check_name="volume", passed=not batch.volume_anomalies, severity=dg.AssetCheckSeverity.WARN,
            metadata={"anomalies": dg.MetadataValue.md("\n".join(
                ["| day | rows | usual |", "|---|---:|---:|"]
                + [f"| {day} | {rows:,} | {usual:,.0f} |" for day, rows, usual in batch.volume_anomalies])
                if batch.volume_anomalies else "None.")},
        ),
    ]
    if _known_gap_reasons(batch.source):
        results.append(dg.AssetCheckResult(
            asset_key=key, check_name="contract_known_gaps", passed=not batch.known_gaps,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"violations": dg.MetadataValue.md(violations_markdown(batch.known_gaps)),
                      "rows_affected": sum(v.rows for v in batch.known_gaps)},
        ))
    return results


def build_raw_assets(sources: dict[str, SourceDefinition]) -> dg.AssetsDefinition:
    """One raw asset per source definition, each gated by checks generated from its contract. They share
    one step (one process start, one warehouse connection) and can be materialized individually."""
    source_by_key = {dg.AssetKey(["raw", name]): source for name, source in sources.items()}

    @dg.multi_asset(
        name="raw_ingestion",
        specs=[raw_asset_spec(source) for source in sources.values()],
        check_specs=[spec for key, source in source_by_key.items() for spec in _check_specs(source, key)],
        partitions_def=daily_partitions,
        backfill_policy=single_run,
        op_tags=WAREHOUSE_OP_TAGS,
        can_subset=True,
    )
    def raw_ingestion(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        first_day, last_day = partition_dates(context)
        settings = load_settings()
        landing_dir = settings.landing_dir
        sources = [source_by_key[key] for key in context.selected_asset_keys]
        unreadable = unreadable_deliveries(landing_dir, sources, list(days_between(first_day, last_day)))
        if unreadable and context.retry_number < settings.delivery_retries:
            wait = settings.delivery_retry_seconds * 2**context.retry_number
            context.log.warning(f"delivery not readable yet, retrying in {wait:.0f} s: " + "; ".join(unreadable[:5]))
            raise dg.RetryRequested(max_retries=settings.delivery_retries, seconds_to_wait=wait)
        refused = []
        # Reference snapshots first: the other sources' contracts check references against them.
        selected = sorted(context.selected_asset_keys, key=lambda k: (not source_by_key[k].snapshot, k.path))
        with warehouse.connect() as connection:
            for key in selected:
                source = source_by_key[key]
                batch_id = f"{context.run_id}:{source.name}:{first_day}:{last_day}"
                delivered = [file_dataset(landing_file(landing_dir, source, day))
                             for day in days_between(first_day, last_day)]
                raw_table = table_dataset(f"raw.{source.name}", version_from="published_version")
                with lineage_run(context, key, inputs=delivered, outputs=[raw_table]) as lineage:
                    try:
                        batch = ingest(connection, source, landing_dir, first_day, last_day, batch_id)
                    except DeliveryError as error:
                        refused.append(str(error))
                        context.log.error(f"raw.{source.name}: refused: {error}")
                        yield from lineage.observe([dg.AssetCheckResult(
                            asset_key=key, check_name="contract", passed=False, metadata={"refused": str(error)})])
                        continue
                    lineage.inputs = [file_dataset(path, sha256) for path, sha256 in batch.files.items()]
                    yield from lineage.observe(_check_results(batch, key))
                    context.log.info(f"raw.{source.name}: {batch.rows:,} rows for {first_day}..{last_day}, "
                                     f"{'published' if batch.published else 'NOT published'}")
                    if batch.published:
                        total = connection.execute(f"SELECT count(*) FROM raw.{source.name}").fetchall()[0][0]
                        yield from lineage.observe([dg.MaterializeResult(
                            asset_key=key,
                            metadata={
                                "dagster/row_count": total,
                                "rows_loaded_this_run": batch.rows,
                                "days_loaded": f"{first_day}..{last_day} ({len(batch.rows_per_day)} days)",
                                "published_version": batch.version,
                                "batch_id": batch_id,
                            },
                        )])
        if refused:
            raise dg.Failure(description="Refused deliveries:\n" + "\n".join(refused))

    return raw_ingestion


raw_assets = build_raw_assets(SOURCES)
