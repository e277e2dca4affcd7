"""Deliveries as a source system makes them, for tests: a day's file of a source, re-delivered with a manifest
that lists it."""

import datetime as dt
import hashlib
import json
from pathlib import Path

import dagster as dg

from platform_assets.simulator.deliver import demo_sources
from platform_assets.sources.definitions import SOURCES
from platform_assets.sources.landing import manifest_path

# The raw assets the simulator delivers: tests select these, so that a source a user adds (which the simulator
# does not generate) leaves the suite working.
DEMO_RAW_KEYS = [dg.AssetKey(["raw", name]) for name in demo_sources()]


def demo_asset_keys(graph) -> set[dg.AssetKey]:
    """Every asset the demo's sources feed: all but the sources the simulator does not generate and their readers."""
    others = [dg.AssetKey(["raw", name]) for name in SOURCES if name not in demo_sources()]
    left_out = dg.AssetSelection.assets(*others).downstream().resolve(graph) if others else set()
    return set(graph.materializable_asset_keys) - left_out


def delivered_file(landing: Path, source: str, day: dt.date) -> Path:
    """The (first) file the source's manifest of `day` lists."""
    manifest = json.loads(manifest_path(landing, source, day).read_text())
    return landing / source / manifest["files"][0]["name"]


def redeliver(landing: Path, source: str, day: dt.date, payload: bytes, rows: int | None = None) -> Path:
    """The source system delivers `payload` as the day's file, with a manifest that lists it (its sha256, and
    `rows` when given; otherwise the rows announced before)."""
    manifest_file = manifest_path(landing, source, day)
    manifest = json.loads(manifest_file.read_text())
    entry = manifest["files"][0]
    path = landing / source / entry["name"]
    path.write_bytes(payload)
    entry["sha256"] = hashlib.sha256(payload).hexdigest()
    if rows is not None:
        entry["rows"] = rows
    manifest_file.write_text(json.dumps(manifest))
    return path
