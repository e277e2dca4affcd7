"""Raw ingestion into a real PostgreSQL server (started here) gives what the embedded DuckDB warehouse gives: the
same rows, versions, audit results and refusals, from the same simulator deliveries. A refused batch leaves the
server untouched; the audit sees the server's history (previous days' volumes, keys delivered on other days)."""

import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path

import dagster as dg
import duckdb
import psycopg2
import pytest

from deliveries import DEMO_RAW_KEYS, delivered_file, redeliver
from platform_assets.simulator.deliver import deliver_day, demo_sources
from platform_assets.sources.definitions import SOURCES, SourceDefinition
from platform_assets.sources.ingest import DeliveryError, ingest, ingest_deliveries, planned_deliveries
from platform_assets.team.postgres import free_port, start_postgres, stop_postgres
from platform_assets.warehouse import (
    DuckDBWarehouse, PostgresWarehouse, UnsupportedColumnType, WarehouseUnreachable, postgres_type,
)
from platform_assets.warehouse.duckdb_file import quoted

DAYS = [dt.date(2013, 6, 3) + dt.timedelta(days=n) for n in range(4)]
FLIGHTS = SOURCES["flights"]
# Snapshots first: the others' contracts check references against them.
ORDER = sorted(demo_sources(), key=lambda name: (not SOURCES[name].snapshot, name))
COMPARED = [column for column in FLIGHTS.raw_columns if column != "_ingested_at"]


@pytest.fixture(scope="module")
def server():
    # under /tmp, not pytest's folder: the server runs as the postgres user, who cannot enter root's 0700 folders
    server = start_postgres(Path(tempfile.mkdtemp(prefix="platform-pg-")))
    try:
        yield server
    finally:
        stop_postgres(server)
        shutil.rmtree(server.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def delivered(tmp_path_factory):
    landing = tmp_path_factory.mktemp("delivered") / "landing"
    for day in DAYS:
        deliver_day(landing, day)
    return landing


@pytest.fixture
def landing(delivered, tmp_path):
    """The delivered days, a copy this test may alter."""
    return Path(shutil.copytree(delivered, tmp_path / "landing"))


_databases = iter(range(1_000_000))


@pytest.fixture
def team(server):
    """A new warehouse database on the server, as PostgresWarehouse."""
    name = f"warehouse_{next(_databases)}"
    admin = psycopg2.connect(server.url())
    admin.autocommit = True  # CREATE DATABASE runs outside a transaction
    admin.cursor().execute(f"CREATE DATABASE {name}")
    admin.close()
    warehouse = PostgresWarehouse(server.url(name))
    try:
        yield warehouse
    finally:
        warehouse.close()


@pytest.fixture
def embedded(tmp_path):
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as connection:
        yield DuckDBWarehouse(connection)


def server_rows(team: PostgresWarehouse, table: str, columns: list[str] | None = None) -> list[tuple]:
    """Every row of raw.<table> on the server (psycopg2, not the code under test), sorted."""
    with psycopg2.connect(team.url) as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(quoted(c) for c in columns) if columns else '*'} FROM raw.{table}")
        return sorted(cursor.fetchall(), key=repr)


def embedded_rows(embedded: DuckDBWarehouse, table: str, columns: list[str]) -> list[tuple]:
    return sorted(embedded.connection.execute(
        f"SELECT {', '.join(quoted(c) for c in columns)} FROM raw.{table}").fetchall(), key=repr)


def rows_per_day(rows: list[tuple], columns: list[str]) -> dict:
    day = columns.index("_data_date")
    counts: dict = {}
    for row in rows:
        counts[row[day]] = counts.get(row[day], 0) + 1
    return counts


def load(warehouse, source: SourceDefinition, landing: Path, days=DAYS, batch: str = "b"):
    """What a run per day (a snapshot source: one run) publishes; the last batch's result."""
    if source.snapshot:
        deliveries = planned_deliveries(landing, source, loaded=warehouse.loaded_snapshots(source))
        return ingest_deliveries(warehouse, source, deliveries, batch) if deliveries else None
    for day in days:
        result = ingest(warehouse, source, landing, day, day, f"{batch}-{day}")
    return result


def outcome(batch) -> tuple:
    """What a batch's audit said, as the checks and the gate show it."""
    return (batch.published, batch.version, batch.rows_per_day, batch.unexpected_columns, batch.volume_anomalies,
            [(v.rule.name, v.rows, v.examples) for v in batch.blocking + batch.known_gaps])


def test_every_source_lands_the_same_on_both_targets(team, embedded, delivered):
    seconds = {}
    for name in ORDER:
        source = SOURCES[name]
        results = {}
        for label, warehouse in (("embedded", embedded), ("team", team)):
            began = time.perf_counter()
            results[label] = load(warehouse, source, delivered)
            seconds[name, label] = time.perf_counter() - began
        assert outcome(results["team"]) == outcome(results["embedded"]), name
        assert results["team"].published, name
        columns = [column for column in source.raw_columns if column != "_ingested_at"]
        on_server = server_rows(team, name, columns)
        in_duckdb = embedded_rows(embedded, name, columns)
        assert rows_per_day(on_server, columns) == rows_per_day(in_duckdb, columns)
        assert len(on_server) == team.row_count(source) == embedded.row_count(source) > 0
        assert on_server == in_duckdb, f"raw.{name}: the contract and lineage columns differ"
        days = sorted(rows_per_day(on_server, columns))
        assert team.version(source, days) == embedded.version(source, days)
        assert team.loaded_snapshots(source) == embedded.loaded_snapshots(source)
    print("seconds per source (4 days; snapshots: the one delivered):",
          {name: f"embedded {seconds[name, 'embedded']:.2f}, team {seconds[name, 'team']:.2f}" for name in ORDER})


def test_the_raw_tables_on_the_server_have_the_mapped_types(team, delivered):
    load(team, SOURCES["planes"], delivered)
    with psycopg2.connect(team.url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                       "WHERE attrelid = 'raw.planes'::regclass AND attnum > 0 ORDER BY attnum")
        assert cursor.fetchall() == [(column, postgres_type(SOURCES["planes"], column, kind))
                                     for column, kind in SOURCES["planes"].raw_columns.items()]
    assert postgres_type(FLIGHTS, "x", "DECIMAL(10, 2)") == "numeric(10,2)"
    with pytest.raises(UnsupportedColumnType, match=r"^sources.yml: flights.x: type UUID\[\] has no PostgreSQL column "
                                                    r"type on the team target \(.*\)$"):
        postgres_type(FLIGHTS, "x", "UUID[]")


def test_an_unreachable_warehouse_is_one_line_naming_the_setting_and_never_the_password(delivered):
    warehouse = PostgresWarehouse(f"postgresql://platform:s3cret-Pa55@127.0.0.1:{free_port()}/warehouse")
    with pytest.raises(WarehouseUnreachable) as error:
        ingest(warehouse, FLIGHTS, delivered, DAYS[0], DAYS[0], "b")
    message = str(error.value)
    assert message.startswith("PLATFORM_WAREHOUSE_URL: cannot connect to the warehouse at 127.0.0.1:")
    assert "\n" not in message and "s3cret" not in message and "platform" not in message.split(" at ")[1]


def _truncated(landing: Path) -> tuple[bytes, None]:
    text = delivered_file(landing, "flights", DAYS[1]).read_text()
    return text[: len(text) // 2].rsplit(",", 3)[0].encode(), None


def _announced_more(landing: Path) -> tuple[bytes, int]:
    payload = delivered_file(landing, "flights", DAYS[1]).read_bytes()
    return payload, payload.count(b"\n") + 5


def _copy_of_another_day(landing: Path) -> tuple[bytes, None]:
    return delivered_file(landing, "flights", DAYS[0]).read_bytes(), None


def _dated_after_delivery(landing: Path) -> tuple[bytes, None]:
    text = delivered_file(landing, "flights", DAYS[1]).read_text()
    return text.replace("\n2013,6,4,", "\n2013,6,5,", 5).encode(), None


def _flight_number_changed_type(landing: Path) -> tuple[bytes, None]:
    lines = delivered_file(landing, "flights", DAYS[1]).read_text().splitlines()
    flight = lines[0].split(",").index('"flight"')
    return "\n".join([lines[0]] + [",".join(f"UA{v}" if i == flight else v for i, v in enumerate(line.split(",")))
                                   for line in lines[1:]]).encode(), None


@pytest.mark.parametrize("bad, refusal", [
    (_truncated, r"flights_2013-06-04.csv: cannot be read as csv"),
    (_announced_more, r"flights_2013-06-04.csv: [\d,]+ data rows read, but the manifest announced [\d,]+; refused"),
    (_copy_of_another_day, r"flights_2013-06-04.csv: identical to .*flights_2013-06-03.csv, already delivered"),
    (_dated_after_delivery, None),  # not published by the contract gate: blocking rules
    (_flight_number_changed_type, None),
], ids=["truncated", "announced_more", "copy_of_another_day", "dated_after_delivery", "flight_changed_type"])
def test_a_bad_delivery_is_refused_alike_and_leaves_the_server_untouched(team, embedded, landing, bad, refusal):
    for warehouse in (embedded, team):
        load(warehouse, FLIGHTS, landing, DAYS[:2], "good")
    before, version = server_rows(team, "flights"), team.version(FLIGHTS, DAYS[:2])
    payload, rows = bad(landing)
    redeliver(landing, "flights", DAYS[1], payload, rows)
    outcomes = {}
    for label, warehouse in (("embedded", embedded), ("team", team)):
        if refusal:
            with pytest.raises(DeliveryError, match=refusal) as error:
                ingest(warehouse, FLIGHTS, landing, DAYS[1], DAYS[1], "bad")
            outcomes[label] = str(error.value)
        else:
            batch = ingest(warehouse, FLIGHTS, landing, DAYS[1], DAYS[1], "bad")
            assert not batch.published and batch.blocking
            outcomes[label] = outcome(batch)
    assert outcomes["team"] == outcomes["embedded"]
    assert server_rows(team, "flights") == before, "a refused batch must not change the server's table"
    assert team.version(FLIGHTS, DAYS[:2]) == version == embedded.version(FLIGHTS, DAYS[:2])
    assert {row[0] for row in server_rows(team, "flights", ["_batch_id"])} == {f"good-{day}" for day in DAYS[:2]}


def test_re_running_a_day_replaces_it_on_the_server(team, landing):
    load(team, FLIGHTS, landing, DAYS[:2], "first")
    columns = ["_data_date", "_batch_id"]
    first_day = rows_per_day(server_rows(team, "flights", columns), columns)[DAYS[0]]
    lines = delivered_file(landing, "flights", DAYS[1]).read_text().splitlines()
    redeliver(landing, "flights", DAYS[1], "\n".join(lines[:101]).encode(), rows=100)  # the day re-exported, shorter
    assert ingest(team, FLIGHTS, landing, DAYS[1], DAYS[1], "again").published
    assert rows_per_day(server_rows(team, "flights", columns), columns) == {DAYS[0]: first_day, DAYS[1]: 100}
    assert set(server_rows(team, "flights", columns)) == {(DAYS[0], f"first-{DAYS[0]}"), (DAYS[1], "again")}


def test_the_audit_sees_the_server_s_history(team, embedded, landing):
    """The cross-day key rule and the volume check compare a day with days published before it, which only the
    server holds: the same findings as on the embedded target."""
    for warehouse in (embedded, team):
        load(warehouse, FLIGHTS, landing, DAYS[:3], "history")
    lines = delivered_file(landing, "flights", DAYS[3]).read_text().splitlines()
    earlier = delivered_file(landing, "flights", DAYS[0]).read_text().splitlines()[7]  # a flight of the first day
    quarter = [lines[0], *lines[1: len(lines) // 4], earlier]  # a quarter of the usual volume, and that flight again
    redeliver(landing, "flights", DAYS[3], "\n".join(quarter).encode(), rows=len(quarter) - 1)
    batches = {label: ingest(warehouse, FLIGHTS, landing, DAYS[3], DAYS[3], "late")
               for label, warehouse in (("embedded", embedded), ("team", team))}
    assert outcome(batches["team"]) == outcome(batches["embedded"])
    batch = batches["team"]
    assert [(day, rows) for day, rows, _ in batch.volume_anomalies] == [(str(DAYS[3]), len(quarter) - 1)]
    [violation] = [v for v in batch.blocking if v.rule.kind == "key_across_days"]
    assert violation.rows == 1 and violation.examples[0].endswith(
        f"in flights_{DAYS[0]}.csv row 7 and flights_{DAYS[3]}.csv row {len(quarter) - 1}")
    assert not batch.published


def test_the_raw_assets_publish_into_postgres_on_the_team_target(team, server, data_dir, monkeypatch):
    """The Dagster raw assets, with the resources build_resources chooses on PLATFORM_TARGET=team."""
    from platform_assets.resources import PostgresWarehouseResource, build_resources
    from platform_assets.settings import load_settings
    from platform_assets.sources.raw_assets import RAW_ASSETS

    monkeypatch.setenv("PLATFORM_TARGET", "team")
    monkeypatch.setenv("PLATFORM_WAREHOUSE_URL", team.url)
    monkeypatch.setenv("DAGSTER_PG_URL", server.url("dagster", driver="postgresql+psycopg2"))  # not used here
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url("mlflow", driver="postgresql+psycopg2"))  # nor this
    monkeypatch.setenv("PLATFORM_CELERY_BROKER", "redis://127.0.0.1:1/0")  # nor these: steps run in process
    monkeypatch.setenv("PLATFORM_CELERY_BACKEND", "redis://127.0.0.1:1/1")
    settings = load_settings()
    deliver_day(settings.landing_dir, DAYS[0])
    resources = build_resources(settings)
    assert isinstance(resources["warehouse"], PostgresWarehouseResource)
    for run in ("first", "again"):  # again: nothing new for the snapshots, which are audited where they are
        result = dg.materialize(RAW_ASSETS, partition_key=DAYS[0].isoformat(), selection=DEMO_RAW_KEYS,
                                resources=resources, raise_on_error=False)
        assert result.success, run
        checks = {(e.asset_key.path[-1], e.check_name): e.passed for e in result.get_asset_check_evaluations()}
        assert checks[("flights", "contract")] and checks[("planes", "contract")], run
    counts = {event.asset_key.path[-1]: event.step_materialization_data.materialization.metadata["dagster/row_count"]
              .value for event in result.get_asset_materialization_events()}
    assert counts == {name: len(server_rows(team, name, ["_data_date"])) for name in demo_sources()}
    assert not (settings.warehouse_path).exists(), "nothing written to a DuckDB warehouse on the team target"
    assert not hasattr(resources["warehouse"], "connect"), "no DuckDB connection to be had on the team target"


def test_steps_creating_tables_at_once_on_a_new_warehouse_do_not_collide(team):
    """Two raw steps of one run start together on two workers and each creates its tables, and the schema: by
    itself, the second CREATE SCHEMA IF NOT EXISTS fails on the catalog's unique index (seen in a team run)."""
    import threading

    sources = [SOURCES[name] for name in ORDER]
    for _ in range(10):
        start, errors = threading.Barrier(len(sources)), []

        def create(source):
            warehouse = PostgresWarehouse(team.url)
            try:
                start.wait()
                warehouse.ensure_raw_table(source)
            except Exception as error:  # noqa: BLE001  (collected: the assertion names them)
                errors.append(f"{source.name}: {error}")
            finally:
                warehouse.close()

        threads = [threading.Thread(target=create, args=(source,)) for source in sources]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        with psycopg2.connect(team.url) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'raw'")
            assert cursor.fetchone()[0] == len(sources)
            cursor.execute("DROP SCHEMA raw CASCADE")


def test_reads_from_the_server_are_typed_as_duckdb_gives_them_to_pandas(team, embedded):
    """The platform's steps read frames through the interface: the same column types on both targets (PostgreSQL's
    numeric arrives from the ADBC driver as text in an extension type, read here as float64), streamed."""
    sql = "SELECT CAST(1.5 AS NUMERIC(4, 2)) AS n, 7 AS i, CAST('2013-01-02' AS DATE) AS d, 'x' AS s WHERE 3 = $1"
    on_server, in_file = team.read(sql, [3]), embedded.read(sql, [3])
    assert on_server.dtypes.to_dict() == in_file.dtypes.to_dict()
    assert on_server["n"].tolist() == [1.5] and str(on_server["n"].dtype) == "float64"
    assert on_server.to_dict("records") == in_file.to_dict("records")


def test_a_snapshot_loaded_by_two_runs_at_once_is_published_once(team, delivered):
    """Two runs over different days may both load a reference snapshot that is not loaded yet (their raw steps run
    at once on two workers): the second publish replaces the first, never adds a second copy."""
    import threading

    planes = SOURCES["planes"]
    start, errors = threading.Barrier(2), []

    def run_snapshot_step():
        warehouse = PostgresWarehouse(team.url)
        try:
            deliveries = planned_deliveries(delivered, planes, loaded=warehouse.loaded_snapshots(planes))
            start.wait()
            ingest_deliveries(warehouse, planes, deliveries, "snapshot")
        except Exception as error:  # noqa: BLE001  (collected: the assertion names them)
            errors.append(error)
        finally:
            warehouse.close()

    threads = [threading.Thread(target=run_snapshot_step) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    rows = server_rows(team, "planes", ["tailnum", "_data_date"])
    assert rows and len(rows) == len(set(rows)), "every plane of the snapshot once"


def test_tables_the_platform_creates_get_the_mapped_types_under_parallel_plans(team):
    """A frame written to a new table (replace_days) gets the mapped PostgreSQL types, also when the server plans
    catalog queries in parallel. The ADBC driver's own CREATE looks the Arrow string type up in pg_type without an
    ORDER BY, and under a parallel plan gave refcursor instead of text for 1 table in 40."""
    import pandas as pd

    with psycopg2.connect(team.url) as connection, connection.cursor() as cursor:
        connection.autocommit = True
        for setting in ("parallel_setup_cost = 0", "parallel_tuple_cost = 0", "min_parallel_table_scan_size = 0"):
            cursor.execute(f"ALTER DATABASE {connection.info.dbname} SET {setting}")
    frame = pd.DataFrame({"data_date": [dt.date(2013, 6, 3)], "s": ["a"], "i": [7], "x": [1.5], "b": [True],
                          "t": pd.to_datetime(["2013-06-03 10:00"])})
    expected = [("data_date", "date"), ("s", "text"), ("i", "bigint"), ("x", "double precision"), ("b", "boolean"),
                ("t", "timestamp without time zone")]
    for n in range(40):
        team.close()  # a new connection each time: the driver reads pg_type when it connects
        assert team.replace_days(f"scores.t{n}", frame, DAYS[0], DAYS[0]) == 1
        with psycopg2.connect(team.url) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                           "WHERE attrelid = $1::regclass AND attnum > 0 ORDER BY attnum".replace("$1", "%s"),
                           [f"scores.t{n}"])
            assert cursor.fetchall() == expected, n
    assert team.read("SELECT s, i, x, b, t FROM scores.t0").to_dict("records") == [
        {"s": "a", "i": 7, "x": 1.5, "b": True, "t": pd.Timestamp("2013-06-03 10:00")}]
