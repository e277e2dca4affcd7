"""Governed query latency on a materialized warehouse: `python -m governance.bench [--repeat N]`.

Each query runs as a principal of the catalog through `governed_query` (token check, sandbox, masking, audit
write), beside the same aggregate in plain DuckDB for comparison. Tokens are issued for the run and revoked
after it. Prints the median and best of N runs per query and writes <data>/bench/governed_<time>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import time
from pathlib import Path

import duckdb

from governance.access import governed_query
from governance.catalog import load_catalog
from governance.identity import issue_token, revoke_token
from governance.paths import data_dir, warehouse_path

QUERIES = [
    ("ops-delay-dashboard", "analyst: two plain columns, grouped",
     "SELECT fare_class, count(*), avg(fare_usd) FROM bookings GROUP BY 1"),
    ("ops-delay-dashboard", "analyst: every column, PII masked, LIMIT 10", "SELECT * FROM bookings LIMIT 10"),
    ("ops-delay-dashboard", "analyst: distinct keyed e-mail hashes", "SELECT count(DISTINCT email) FROM bookings"),
    ("passenger-delay-notifications", "customer care: one booking's contact data",
     "SELECT passenger_name, email, phone_e164 FROM bookings WHERE booking_id = (SELECT min(booking_id) FROM bookings)"),
    ("ua-partner-feed", "partner airline (UA): row filter, grouped", "SELECT origin, count(*) FROM bookings GROUP BY 1"),
    ("ops-delay-dashboard", "analyst: flights joined to predictions",
     "SELECT f.carrier, avg(p.delay_probability) FROM flights f JOIN flight_delay_predictions p USING (flight_id) "
     "GROUP BY 1"),
]
PLAIN = "SELECT fare_class, count(*), avg(fare_usd) FROM marts.bookings GROUP BY 1"


def _timed(run, repeat: int) -> dict:
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    return {"median_s": round(statistics.median(seconds), 3), "best_s": round(min(seconds), 3)}


def measure(folder: Path, repeat: int) -> dict:
    warehouse = warehouse_path(folder)
    if not warehouse.exists():
        raise SystemExit(f"no warehouse at {warehouse}: run `make demo` first")
    catalog = load_catalog()
    tokens = {name: issue_token(catalog, name, days=1, by="governance.bench", data_dir=folder)
              for name in {principal for principal, _, _ in QUERIES}}
    try:
        with duckdb.connect(str(warehouse), read_only=True) as connection:
            bookings = connection.execute("SELECT count(*) FROM marts.bookings").fetchone()[0]
            plain = _timed(lambda: connection.execute(PLAIN).fetchall(), repeat)
        rows = [{"principal": "none (plain DuckDB)", "query": "the grouped aggregate, no governance", "sql": PLAIN,
                 **plain}]
        for principal, label, sql in QUERIES:
            token = tokens[principal][0]
            rows.append({"principal": principal, "query": label, "sql": sql,
                         **_timed(lambda: governed_query(sql, token=token, data_dir=folder), repeat)})
    finally:
        for _, record in tokens.values():
            revoke_token(record["id"], by="governance.bench", data_dir=folder)
    return {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "warehouse_bookings": bookings,
            "repeat": repeat, "load_average": os.getloadavg(), "queries": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m governance.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    folder = data_dir()
    result = measure(folder, args.repeat)
    out = folder / "bench" / f"governed_{result['at'].replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"{result['warehouse_bookings']:,} bookings, median (best) of {args.repeat}, load average "
          f"{result['load_average'][0]:.1f}")
    for row in result["queries"]:
        print(f"  {row['median_s']:7.3f} s ({row['best_s']:.3f})  {row['principal']:30} {row['query']}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
