"""The landing-zone sensor: one ingestion run per complete delivery, exactly once."""

import hashlib
import json
from pathlib import Path

import dagster as dg

from platform_assets.settings import load_settings
from platform_assets.simulator.deliver import MANIFEST_DIR
from platform_assets.sources.raw_assets import raw_assets


def delivery_id(manifest: Path) -> str:
    """A delivery is identified by its manifest's content: a re-delivery of a day is a new delivery."""
    return hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]


def missing_files(landing_dir: Path, manifest: Path) -> list[str]:
    """Files the manifest lists that are not (yet) in the landing zone."""
    listed = json.loads(manifest.read_text())["files"]
    return [entry["path"] for entry in listed if not (landing_dir / entry["path"]).exists()]


def ingested_since(instance: dg.DagsterInstance, day: str, since: float) -> bool:
    """The day's raw partitions were materialized after its delivery (for example by a backfill)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(["raw", "flights"]), asset_partitions=[day]), limit=1
    ).records
    return bool(records) and records[0].timestamp >= since


@dg.sensor(
    name="landing_zone_sensor",
    target=raw_assets,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches <data>/landing/_manifests/. A day is complete when its manifest exists and every file "
    "it lists is present (the simulator and source systems write the manifest last). Each complete delivery "
    "starts one ingestion run of the raw layer for that day (run key = day + manifest digest, so the same "
    "delivery never runs twice and a re-delivery runs again); the layers below follow by declarative "
    "automation. Days already ingested after their delivery (say by the demo's backfill) are only recorded.",
)
def landing_zone_sensor(context: dg.SensorEvaluationContext):
    landing_dir = load_settings().landing_dir
    handled: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    requests, waiting = [], []
    for manifest in sorted((landing_dir / MANIFEST_DIR).glob("manifest_*.json")):
        day = manifest.stem.removeprefix("manifest_")
        delivery = delivery_id(manifest)
        if handled.get(day) == delivery:
            continue
        if missing := missing_files(landing_dir, manifest):
            waiting.append(f"{day} (waiting for {', '.join(missing)})")
            continue
        redelivered = day in handled
        handled[day] = delivery
        if redelivered or not ingested_since(context.instance, day, manifest.stat().st_mtime):
            requests.append(dg.RunRequest(
                run_key=f"landing:{day}:{delivery}", partition_key=day,
                tags={"platform/trigger": "landing_zone_sensor", "platform/delivery": delivery},
            ))
    context.update_cursor(json.dumps(handled, sort_keys=True))
    if requests:
        return dg.SensorResult(run_requests=requests)
    return dg.SkipReason("incomplete: " + "; ".join(waiting) if waiting else "no new complete delivery")
