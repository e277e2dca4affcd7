"""The factory that turns each declarative source definition into a raw ingestion asset: daily sources share one
daily-partitioned step, reference snapshots one unpartitioned step; each source is published, refused or waited
for on its own, gated by checks generated from its contract."""

import datetime as dt
import time
from collections.abc import Iterator

import dagster as dg

from platform_assets.checks.contracts import violations_markdown
from platform_assets.checks.daily import DailyResults, daily_check_spec, per_day
from platform_assets.lineage import file_dataset, lineage_run, table_dataset
from platform_assets.metadata import column_schema
from platform_assets.partitions import INLINE_DAYS, daily_partitions, partition_dates, single_run
from platform_assets.resources import WAREHOUSE_OP_TAGS, WarehouseResource
from platform_assets.settings import load_settings
from platform_assets.sources.definitions import SOURCES, SourceDefinition
from platform_assets.sources.ingest import (
    VOLUME_BAND, VOLUME_HISTORY, AuditedBatch, audit, ingest_deliveries, planned_deliveries,
)
from platform_assets.sources.landing import DeliveryError, DeliveryNotYetComplete, unlisted_files
from platform_assets.warehouse import Warehouse


CADENCE_WORDS = {"daily": "one delivery per day", "irregular": "deliveries on some days",
                 "snapshot": "a whole snapshot, used until a newer one arrives"}


def raw_asset_spec(source: SourceDefinition) -> dg.AssetSpec:
    key = dg.AssetKey(["raw", source.name])
    return dg.AssetSpec(
        key=key,
        group_name="raw",
        description=f"{source.description}\n\nDelivered by the {source.system} into `landing/{source.name}/` "
        f"({source.format}, {CADENCE_WORDS[source.cadence]}), each delivery with its manifest; loaded as delivered "
        f"into `raw.{source.name}` with the source file, its sha256, the batch id and the ingestion time of every "
        "row.",
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
    """The source's checks; a source delivered by day has them by day (platform_assets/checks/daily.py: volume and
    delivered_schema judge each day; contract and contract_known_gaps the run's days together, as one batch)."""
    specs = _source_check_specs(source, key)
    return specs if source.snapshot else [daily_check_spec(spec) for spec in specs]


def _source_check_specs(source: SourceDefinition, key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
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


def _volume_by_day(result: dg.AssetCheckResult, batch: AuditedBatch) -> DailyResults:
    anomalies = {str(day): (rows, usual) for day, rows, usual in batch.volume_anomalies}
    return DailyResults("volume", {day: dg.AssetCheckResult(
        passed=day not in anomalies, severity=dg.AssetCheckSeverity.WARN, metadata={
            "rows": rows, **({"usual": round(anomalies[day][1])} if day in anomalies else {})})
        for day, rows in batch.rows_per_day.items()}, result.asset_key)


def _schema_by_day(result: dg.AssetCheckResult, batch: AuditedBatch, deliveries: list) -> DailyResults:
    by_day = {str(delivery.data_date): {str(file.path): batch.unexpected_columns[str(file.path)]
                                        for file in delivery.files if str(file.path) in batch.unexpected_columns}
              for delivery in deliveries}
    return DailyResults("delivered_schema", {day: dg.AssetCheckResult(
        passed=not unexpected, severity=dg.AssetCheckSeverity.WARN,
        metadata={"unexpected_columns": dg.MetadataValue.json(unexpected)}) for day, unexpected in by_day.items()},
        result.asset_key)


def _by_day(event, batch: AuditedBatch, deliveries: list):
    """The checks that judge each day on their own, per day (the others judge the run's batch as one)."""
    if isinstance(event, dg.AssetCheckResult) and event.check_name == "volume":
        return _volume_by_day(event, batch)
    if isinstance(event, dg.AssetCheckResult) and event.check_name == "delivered_schema":
        return _schema_by_day(event, batch, deliveries)
    return event


def _refusal(key: dg.AssetKey, error: DeliveryError) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(asset_key=key, check_name="contract", passed=False,
                               severity=dg.AssetCheckSeverity.ERROR, metadata={"refused": str(error)})


def _refused(context: dg.AssetExecutionContext, source: SourceDefinition, key: dg.AssetKey,
             error: DeliveryError) -> Iterator:
    """A delivery refused before any of it was read: the failed contract check, as a failed lineage run."""
    context.log.error(f"raw.{source.name}: refused: {error}")
    raw_table = table_dataset(f"raw.{source.name}", version_from="published_version")
    with lineage_run(context, key, inputs=[], outputs=[raw_table]) as lineage:
        yield from lineage.observe([_refusal(key, error)])


def _load_source(context: dg.AssetExecutionContext, warehouse: WarehouseResource, source: SourceDefinition,
                 key: dg.AssetKey, window: tuple[dt.date, dt.date] | None) -> Iterator:
    """Plan, verify and publish one source's deliveries for the run, as one lineage run. Raises
    DeliveryNotYetComplete before anything is written when a delivery is still arriving."""
    landing_dir = load_settings().landing_dir
    run_label = f"{window[0]}..{window[1]}" if window else "snapshot"
    raw_table = table_dataset(f"raw.{source.name}", version_from="published_version")
    with warehouse.open() as raw_tables:
        loaded = raw_tables.loaded_snapshots(source) if source.snapshot else None
        try:
            deliveries = planned_deliveries(landing_dir, source, *(window or (None, None)), loaded=loaded)
        except DeliveryNotYetComplete:
            raise
        except DeliveryError as error:  # a bad manifest, file or date
            yield from _refused(context, source, key, error)
            raise
        if unlisted := unlisted_files(landing_dir, source.name):
            context.log.warning(f"raw.{source.name}: {len(unlisted)} file(s) in {landing_dir / source.name} that no "
                                f"manifest lists are not read: {', '.join(p.name for p in unlisted[:5])}")
        if not deliveries:
            yield from _nothing_new(context, raw_tables, source, key, raw_table, loaded)
            return
        batch_id = f"{context.run.run_id}:{source.name}:{deliveries[0].data_date}:{deliveries[-1].data_date}"
        inputs = [file_dataset(file.path, file.sha256) for delivery in deliveries for file in delivery.files]
        with lineage_run(context, key, inputs=inputs, outputs=[raw_table]) as lineage:
            try:
                batch = ingest_deliveries(raw_tables, source, deliveries, batch_id)
            except DeliveryError as error:
                context.log.error(f"raw.{source.name}: refused: {error}")
                yield from lineage.observe([_refusal(key, error)])
                raise
            for event in lineage.observe(_check_results(batch, key)):
                yield _by_day(event, batch, deliveries) if window else event
            context.log.info(f"raw.{source.name}: {batch.rows:,} rows for {run_label}, "
                             f"{'published' if batch.published else 'NOT published'}")
            if batch.published:
                total = raw_tables.row_count(source)
                yield from lineage.observe([dg.MaterializeResult(asset_key=key, metadata={
                    "dagster/row_count": total,
                    "rows_loaded_this_run": batch.rows,
                    "days_loaded": f"{batch.first_day}..{batch.last_day} ({len(batch.rows_per_day)} days)",
                    "published_version": batch.version,
                    "batch_id": batch_id,
                    # the manifest digest of each day; a longer run's are in its lineage (every file's digest)
                    "deliveries": dg.MetadataValue.json({str(d.data_date): d.id for d in deliveries})
                    if len(deliveries) <= INLINE_DAYS else f"{len(deliveries)} deliveries",
                })])


def _nothing_new(context, warehouse: Warehouse, source: SourceDefinition, key: dg.AssetKey, raw_table,
                 loaded: dict[dt.date, set[str]] | None) -> Iterator:
    """Nothing new to load (a snapshot source with no newer snapshot, an irregular source with no delivery in
    the range): materialized as it stands, so that what reads it proceeds, and said so. The current snapshot is
    audited again (the contract may have changed since it was loaded): if it now breaks a blocking rule, it is
    not materialized and what reads it is held back."""
    current = max(loaded) if loaded else None
    version = warehouse.version(source, [current]) if current else "empty"
    news = f"no newer snapshot: the one of {current} stays" if source.snapshot else "nothing delivered for the range"
    context.log.info(f"raw.{source.name}: {news}")
    with lineage_run(context, key, inputs=[], outputs=[raw_table]) as lineage:
        if current is not None:
            staged = f"(SELECT * FROM raw.{source.name} WHERE _data_date = '{current}') AS staged"
            with warehouse.review(source, [current]) as raw:
                rows = raw.connection.execute(f"SELECT count(*) FROM {staged}").fetchall()[0][0]
                batch = AuditedBatch(source, current, current, {str(current): rows}, version=version, days=[current])
                audit(raw, source, batch, staged, [current])
            yield from lineage.observe(_check_results(batch, key))
            if not batch.published:
                return
        yield from lineage.observe([dg.MaterializeResult(asset_key=key, metadata={
            "dagster/row_count": warehouse.row_count(source),
            "rows_loaded_this_run": 0, "published_version": version, "deliveries": news})])


def _ingest_selected(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                     source_by_key: dict[dg.AssetKey, SourceDefinition], partitioned: bool) -> Iterator:
    """Each selected source on its own: one that is refused or not delivered yet holds back only itself. A
    delivery still arriving is waited for (PLATFORM_DELIVERY_RETRIES times, PLATFORM_DELIVERY_RETRY_SECONDS
    doubling) while the others load; the step fails at the end naming every source it could not publish."""
    settings = load_settings()
    window = partition_dates(context) if partitioned else None
    pending = sorted(context.selected_asset_keys, key=lambda k: k.path)
    refused: list[str] = []
    for attempt in range(settings.delivery_retries + 1):
        waiting = []
        for key in pending:
            try:
                yield from _load_source(context, warehouse, source_by_key[key], key, window)
            except DeliveryNotYetComplete as error:
                waiting.append((key, error))
            except DeliveryError as error:
                refused.append(str(error))
        pending = [key for key, _ in waiting]
        if not waiting or attempt == settings.delivery_retries:
            break
        wait = settings.delivery_retry_seconds * 2**attempt
        context.log.warning(f"not delivered yet, waiting {wait:.0f} s: " + "; ".join(str(e) for _, e in waiting[:5]))
        time.sleep(wait)
    for key, error in waiting:
        yield from _refused(context, source_by_key[key], key, error)
        refused.append(str(error))
    if refused:
        raise dg.Failure(description="Not published (every other selected source was):\n" + "\n".join(refused))


def _raw_multi_asset(source_by_key: dict[dg.AssetKey, SourceDefinition], partitioned: bool) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name="raw_ingestion" if partitioned else "raw_snapshots",
        specs=[raw_asset_spec(source) for source in source_by_key.values()],
        check_specs=[spec for key, source in source_by_key.items() for spec in _check_specs(source, key)],
        partitions_def=daily_partitions if partitioned else None,
        backfill_policy=single_run if partitioned else None,
        # In a run with both, snapshots load first: the others' contracts check references against them.
        op_tags={**WAREHOUSE_OP_TAGS,
                 **({} if partitioned else {"dagster/priority": "1", "dagster-celery/priority": "1"})},
        can_subset=True,
    )
    def raw_ingestion(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        yield from per_day(context, _ingest_selected(context, warehouse, source_by_key, partitioned))

    return raw_ingestion


def build_raw_assets(sources: dict[str, SourceDefinition]) -> list[dg.AssetsDefinition]:
    """One raw asset per source definition, each gated by checks generated from its contract. Sources that
    deliver by day share one daily-partitioned step, reference snapshots one unpartitioned step; within a
    step each source is materialized, refused or waited for on its own."""
    groups = [({dg.AssetKey(["raw", name]): source for name, source in sources.items()
                if source.snapshot != partitioned}, partitioned) for partitioned in (False, True)]
    return [_raw_multi_asset(source_by_key, partitioned) for source_by_key, partitioned in groups if source_by_key]


RAW_ASSETS = build_raw_assets(SOURCES)
RAW_KEYS = [key for asset in RAW_ASSETS for key in asset.keys]
