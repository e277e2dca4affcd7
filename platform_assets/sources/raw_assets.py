"""The factory that turns each declarative source definition into a daily-partitioned raw ingestion asset."""


import datetime as dt
import hashlib
import json
from pathlib import Path

import dagster as dg
import duckdb

from governance.catalog import load_catalog
from platform_assets.metadata import column_schema, owner_tags
from platform_assets.partitions import daily_partitions, partition_dates, single_run
from platform_assets.resources import WAREHOUSE_OP_TAGS, WarehouseResource
from platform_assets.settings import load_settings
from platform_assets.simulator.deliver import days_between, manifest_path
from platform_assets.sources.definitions import SOURCES, SourceDefinition, landing_file


class DeliveryError(Exception):
    """A landing file cannot be ingested; the message names the file and what to do."""


def _reader_sql(source: SourceDefinition) -> str:
    """DuckDB table function reading one landing file (bound as $path), selecting the declared columns."""
    quoted = [f'"{column}"' for column in source.columns]
    if source.format == "csv":
        reader = "read_csv($path, header = true, all_varchar = true, auto_detect = true)"
        return f"SELECT {', '.join(quoted)} FROM {reader}"
    if source.format == "jsonl":
        declared = ", ".join(f"'{column}': 'VARCHAR'" for column in source.columns)
        return f"SELECT {', '.join(quoted)} FROM read_json($path, format = 'newline_delimited', columns = {{{declared}}})"
    casts = [f'CAST("{column}" AS {kind}) AS "{column}"' for column, kind in source.columns.items()]
    return f"SELECT {', '.join(casts)} FROM read_parquet($path)"


def _verified_file(landing_dir: Path, source: SourceDefinition, day: dt.date) -> tuple[Path, str]:
    """The day's landing file and its sha256, checked against the delivery manifest."""
    manifest_file = manifest_path(landing_dir, day)
    if not manifest_file.exists():
        raise DeliveryError(
            f"delivery of {day} is incomplete: {manifest_file} is missing, so {source.name} for that day "
            f"cannot be ingested yet; deliver the day first (python -m platform_assets.simulator)"
        )
    path = landing_file(landing_dir, source, day)
    if not path.exists():
        raise DeliveryError(f"{path}: listed for {day} but missing from the landing zone")
    digest = hashlib.file_digest(path.open("rb"), "sha256").hexdigest()
    listed = {f["path"]: f["sha256"] for f in json.loads(manifest_file.read_text())["files"]}
    expected = listed.get(str(path.relative_to(landing_dir)))
    if expected is not None and expected != digest:
        raise DeliveryError(f"{path}: sha256 {digest} does not match the manifest ({expected}); re-deliver it")
    return path, digest


def ensure_raw_table(connection: duckdb.DuckDBPyConnection, source: SourceDefinition) -> None:
    columns = ", ".join(f'"{column}" {kind}' for column, kind in source.raw_columns.items())
    connection.execute("CREATE SCHEMA IF NOT EXISTS raw")
    connection.execute(f"CREATE TABLE IF NOT EXISTS raw.{source.name} ({columns})")


def ingest(
    connection: duckdb.DuckDBPyConnection,
    source: SourceDefinition,
    landing_dir: Path,
    first_day: dt.date,
    last_day: dt.date,
    batch_id: str,
) -> dict[str, int]:
    """Replace the raw rows of [first_day, last_day] with the landing files of those days, atomically.

    Re-running a day replaces it and never duplicates it. Returns rows loaded per day.
    """
    files = [(day, *_verified_file(landing_dir, source, day)) for day in days_between(first_day, last_day)]
    ensure_raw_table(connection, source)
    reader = _reader_sql(source)
    connection.execute("BEGIN TRANSACTION")
    try:
        connection.execute(
            f"DELETE FROM raw.{source.name} WHERE _data_date BETWEEN $first AND $last",
            {"first": first_day, "last": last_day},
        )
        for day, path, digest in files:
            try:
                connection.execute(
                    f"""
                    INSERT INTO raw.{source.name} BY NAME
                    SELECT *, $day::DATE AS _data_date, $file AS _source_file, $sha AS _file_sha256,
                           row_number() OVER () AS _row_number, $batch AS _batch_id,
                           now()::TIMESTAMP AS _ingested_at
                    FROM ({reader})
                    """,
                    {"path": str(path), "day": day, "file": str(path), "sha": digest, "batch": batch_id},
                )
            except duckdb.Error as error:
                raise DeliveryError(f"{path}: cannot be read as {source.format}: {error}") from error
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    counts = connection.execute(
        f"""SELECT _data_date::VARCHAR, count(*) FROM raw.{source.name}
            WHERE _data_date BETWEEN $first AND $last GROUP BY ALL ORDER BY 1""",
        {"first": first_day, "last": last_day},
    ).fetchall()
    return dict(counts)


def raw_asset_spec(source: SourceDefinition) -> dg.AssetSpec:
    key = dg.AssetKey(["raw", source.name])
    dataset = load_catalog().dataset(key.to_user_string())
    return dg.AssetSpec(
        key=key,
        group_name="raw",
        description=f"{source.description}\n\nLanded as `{source.landing_path}` ({source.format}) by the "
        f"{source.system}; loaded as delivered into `raw.{source.name}` with the source file, its sha256, "
        "the batch id and the ingestion time of every row.",
        kinds={"duckdb", source.format},
        owners=[f"team:{dataset.owner}"],
        tags=owner_tags(dataset),
        metadata={
            "dagster/column_schema": column_schema(source.raw_columns),
            "dagster/table_name": f"raw.{source.name}",
        },
        skippable=True,
    )


def build_raw_assets(sources: dict[str, SourceDefinition]) -> dg.AssetsDefinition:
    """One raw asset per source definition. They share one step (one process start, one warehouse
    connection) and can be materialized individually."""
    source_by_key = {dg.AssetKey(["raw", name]): source for name, source in sources.items()}

    @dg.multi_asset(
        name="raw_ingestion",
        specs=[raw_asset_spec(source) for source in sources.values()],
        partitions_def=daily_partitions,
        backfill_policy=single_run,
        op_tags=WAREHOUSE_OP_TAGS,
        can_subset=True,
    )
    def raw_ingestion(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        first_day, last_day = partition_dates(context)
        landing_dir = load_settings().landing_dir
        with warehouse.connect() as connection:
            for key in sorted(context.selected_asset_keys):
                source = source_by_key[key]
                batch_id = f"{context.run_id}:{source.name}:{first_day}:{last_day}"
                per_day = ingest(connection, source, landing_dir, first_day, last_day, batch_id)
                total = connection.execute(f"SELECT count(*) FROM raw.{source.name}").fetchall()[0][0]
                loaded = sum(per_day.values())
                context.log.info(f"raw.{source.name}: {loaded:,} rows for {first_day}..{last_day}")
                yield dg.MaterializeResult(
                    asset_key=key,
                    metadata={
                        "dagster/row_count": total,
                        "rows_loaded_this_run": loaded,
                        "days_loaded": f"{first_day}..{last_day} ({len(per_day)} days)",
                        "batch_id": batch_id,
                    },
                )

    return raw_ingestion


raw_assets = build_raw_assets(SOURCES)
