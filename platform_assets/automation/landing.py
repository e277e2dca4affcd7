"""The landing-zone sensor: one ingestion run per source and delivery, exactly once."""

import json
from pathlib import Path

import dagster as dg

from platform_assets.partitions import daily_partitions
from platform_assets.settings import load_settings
from platform_assets.sources.definitions import SOURCES, SourceDefinition
from platform_assets.sources.landing import DeliveryError, delivered_manifests, delivery_id, read_manifest
from platform_assets.sources.raw_assets import RAW_ASSETS


PARTITION_KEYS = frozenset(daily_partitions.get_partition_keys())


def delivery_state(landing_dir: Path, source: SourceDefinition, manifest: Path, day) -> tuple[str, list[str]]:
    """(delivery id, files it lists that are not there yet). A manifest that cannot be read as a delivery is
    still a delivery: its run refuses it, naming the manifest and the problem, and alerts the owner."""
    delivery = delivery_id(manifest.read_bytes())
    try:
        listed = read_manifest(landing_dir, source.name, day).files
    except DeliveryError:
        return delivery, []
    return delivery, [file.name for file in listed if not file.path.exists() and not file.path.is_symlink()]


def ingested_since(instance: dg.DagsterInstance, source: SourceDefinition, day: str, since: float) -> bool:
    """The source's delivery was materialized after it arrived (for example by the demo's backfill)."""
    records = instance.fetch_materializations(dg.AssetRecordsFilter(
        asset_key=dg.AssetKey(["raw", source.name]), asset_partitions=None if source.snapshot else [day]),
        limit=1).records
    return bool(records) and records[0].timestamp >= since


@dg.sensor(
    name="landing_zone_sensor",
    target=RAW_ASSETS,
    minimum_interval_seconds=load_settings().automation_interval_seconds,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches every source's manifests in <data>/landing/<source>/_manifests/. A delivery is complete "
    "when its manifest exists and every file it lists is present (source systems write the manifest last). "
    "Each complete delivery starts one ingestion run of that source alone (run key = source + day + manifest "
    "digest, so the same delivery never runs twice and a re-delivery runs again); what reads the source "
    "follows by declarative automation. A manifest that cannot be read starts a run too, which refuses it and "
    "alerts the owner. Other names in a manifests folder are ignored with a warning. Deliveries already "
    "ingested after they arrived (say by the demo's backfill) are only recorded.",
)
def landing_zone_sensor(context: dg.SensorEvaluationContext):
    landing_dir = load_settings().landing_dir
    try:
        handled: dict[str, dict[str, str]] = json.loads(context.cursor) if context.cursor else {}
    except json.JSONDecodeError:
        handled = {}
    if not all(isinstance(days, dict) for days in handled.values()):
        handled = {}  # a cursor of the earlier one-manifest-per-day layout
    requests, waiting = [], []
    for source in SOURCES.values():
        try:
            manifests, ignored = delivered_manifests(landing_dir, source.name)
        except OSError as error:  # one source's unreadable folder never stops the others
            context.log.error(f"{landing_dir / source.name}: cannot be listed ({error.strerror})")
            continue
        for warning in ignored:
            context.log.warning(warning)
        seen = handled.setdefault(source.name, {})
        for day, manifest in manifests.items():
            partition = day.isoformat()
            if not source.snapshot and partition not in PARTITION_KEYS:
                if seen.get(partition) != "outside":
                    context.log.warning(f"{manifest}: {partition} is not a day of the platform's partitions "
                                        f"({min(PARTITION_KEYS)}..{max(PARTITION_KEYS)}); ignored")
                    seen[partition] = "outside"
                continue
            try:
                delivery, missing = delivery_state(landing_dir, source, manifest, day)
            except OSError as error:  # removed or unreadable between listing and reading: next tick
                waiting.append(f"{source.name} {partition} ({error.strerror})")
                continue
            if seen.get(partition) == delivery:
                continue
            if missing:
                waiting.append(f"{source.name} {partition} (waiting for {', '.join(missing[:3])})")
                continue
            redelivered = partition in seen
            seen[partition] = delivery
            if redelivered or not ingested_since(context.instance, source, partition, manifest.stat().st_mtime):
                requests.append(dg.RunRequest(
                    run_key=f"landing:{source.name}:{partition}:{delivery}",
                    partition_key=None if source.snapshot else partition,
                    asset_selection=[dg.AssetKey(["raw", source.name])],
                    tags={"platform/trigger": "landing_zone_sensor", "platform/source": source.name,
                          "platform/delivery": delivery, "platform/data_date": partition,
                          # on the team target, at most one run at a time per value (platform_assets/instance.py)
                          "platform/source_day": f"{source.name}/{partition}"},
                ))
    context.update_cursor(json.dumps(handled, sort_keys=True))
    if requests:
        return dg.SensorResult(run_requests=requests)
    return dg.SkipReason("incomplete: " + "; ".join(waiting[:20]) if waiting else "no new complete delivery")
