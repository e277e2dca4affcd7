"""One dbt project, two targets: the real `dbt build` on the embedded target (a DuckDB file) and on the team target
(a real PostgreSQL server started here) over the same raw tables gives the same rows in every model and the same
test outcomes; values that cannot be read become NULL on both."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import closing
from pathlib import Path

import duckdb
import psycopg2
import pytest

from platform_assets.settings import DBT_PROJECT_DIR, Settings, SettingsError
from platform_assets.simulator.deliver import deliver_day
from platform_assets.sources.definitions import SOURCES
from platform_assets.sources.ingest import ingest
from platform_assets.team.postgres import start_postgres, stop_postgres
from platform_assets.transformations.dbt_target import PASSWORD_VARIABLE, dbt_target_env, warehouse_connection_env
from platform_assets.warehouse.postgres import PostgresWarehouse

DBT = Path(sys.executable).parent / "dbt"
# The switch of the bookings' flight_date format (MM-DD-YYYY from 2013-07-01) falls in the second build.
FIRST_BUILD = (dt.date(2013, 6, 29), dt.date(2013, 6, 30))
SECOND_BUILD = (dt.date(2013, 7, 1), dt.date(2013, 7, 1))
MODEL_SCHEMAS = ("staging", "intermediate", "marts_audit")

# Text values as a feed might deliver them, and what both targets must read them as (None: NULL).
INTEGER_TEXTS = {"12": 12, " 7 ": 7, "+7": 7, "1.5": 2, "-2.5": -3, "1e3": 1000, "": None, "abc": None, "12a": None,
                 "99999999999": None, "NaN": None, "inf": None, "1,5": None}
DOUBLE_TEXTS = {"2.5": 2.5, " 3 ": 3.0, "-0.5": -0.5, "1e3": 1000.0, "inf": math.inf, "-Infinity": -math.inf,
                "": None, "abc": None, "1,5": None, "12a": None, "1.2.3": None}
INSTANT_TEXTS = {
    "2013-06-30T10:00:00Z": dt.datetime(2013, 6, 30, 10), "2013-06-30T10:00:00+02:00": dt.datetime(2013, 6, 30, 8),
    " 2013-6-3T1:00:00Z ": dt.datetime(2013, 6, 3, 1),
    "2013-02-30T10:00:00Z": None, "2013-06-30T25:00:00Z": None, "now": None, "today": None, "yesterday": None,
    "06/30/2013 10:00": None, "June 30 2013": None, "20130630T100000Z": None, "J2456474": None, "": None, "abc": None,
}
# A departure without its instant fails a blocking test and would skip the marts: only readable ones in the feed.
READABLE_INSTANT_TEXTS = {text: value for text, value in INSTANT_TEXTS.items() if value is not None}
# Bookings' dates are read with a format (strptime); the flight date in either of its two formats.
DATE_TEXTS = {"2013-06-01": dt.date(2013, 6, 1), "2013-6-1": dt.date(2013, 6, 1), "2013-02-30": None,
              "2013-13-01": None, "2013/06/01": None, "20130601": None, "2013-06-01x": None, "": None, "soon": None}
FLIGHT_DATE_TEXTS = {"06-29-2013": dt.date(2013, 6, 29), "6-29-2013": dt.date(2013, 6, 29), "02-30-2013": None,
                     "2013-06-29": dt.date(2013, 6, 29), "29.06.2013": None}


# --- the team target's connection from PLATFORM_WAREHOUSE_URL (pure) ---

def test_the_warehouse_url_becomes_the_team_profiles_variables():
    env = warehouse_connection_env("postgresql+psycopg2://dbt%40team:p%2Fss@db.example.org:6543/ware%20house"
                                   "?sslmode=require")
    assert env == {"PLATFORM_WAREHOUSE_HOST": "db.example.org", "PLATFORM_WAREHOUSE_PORT": "6543",
                   "PLATFORM_WAREHOUSE_USER": "dbt@team", "PLATFORM_WAREHOUSE_DB": "ware house",
                   "PLATFORM_WAREHOUSE_SSLMODE": "require", PASSWORD_VARIABLE: "p/ss"}
    assert warehouse_connection_env("postgresql://u@h/w")["PLATFORM_WAREHOUSE_PORT"] == "5432"
    embedded = Settings(data_dir=Path("/d"), seed=13, scale=1.0)
    assert dbt_target_env(embedded) == {"PLATFORM_TARGET": "embedded", "PLATFORM_DATA_DIR": "/d"}
    team = Settings(data_dir=Path("/d"), seed=13, scale=1.0, target="team", warehouse_url="postgresql://u@h/w")
    assert dbt_target_env(team)["PLATFORM_WAREHOUSE_HOST"] == "h"


@pytest.mark.parametrize("url, reason", [
    (None, "not set"),
    ("mysql://u:secret@h/w", "scheme 'mysql'"),
    ("postgresql://u:secret@h:99999/w", "port"),
    ("postgresql://u:secret@/w", "no host"),
    ("postgresql://h/w", "no user name"),
    ("postgresql://u:secret@h/", "no database name"),
    ("postgresql://u:secret@h/w/x", "contains '/'"),
    ("postgresql://u:secret@h/w?options=-c%20x", "unsupported parameter(s) options"),
    ("postgresql://u:secret@h/w?sslmode=sometimes", "sslmode 'sometimes'"),
])
def test_a_bad_warehouse_url_is_refused_in_one_line_without_its_password(url, reason):
    with pytest.raises(SettingsError) as refused:
        warehouse_connection_env(url)
    message = str(refused.value)
    assert message.startswith("PLATFORM_WAREHOUSE_URL: ") and reason in message
    assert "secret" not in message and "\n" not in message


# --- the same raw tables built by dbt on both targets ---

def _deliver_and_ingest(data_dir: Path) -> None:
    """The simulator's real deliveries, loaded by the platform's real raw ingestion into the DuckDB warehouse."""
    days = [FIRST_BUILD[0] + dt.timedelta(days=n) for n in range((SECOND_BUILD[1] - FIRST_BUILD[0]).days + 1)]
    for day in days:
        deliver_day(data_dir / "landing", day)
    (data_dir / "warehouse").mkdir(parents=True)
    with duckdb.connect(str(data_dir / "warehouse" / "warehouse.duckdb")) as connection:
        for source in SOURCES.values():
            assert ingest(connection, source, data_dir / "landing", days[0], days[-1], "batch-1").published


def _deliver_unreadable_values(connection: duckdb.DuckDBPyConnection) -> dict[str, list]:
    """Overwrite delivered text in the first rows of a day with the values above (as a delivery that passed the
    contract's warnings could hold them); returns which row got which value, per column."""
    planted = {
        ("flights", "arr_time"): INTEGER_TEXTS, ("flights", "dep_delay"): DOUBLE_TEXTS,
        ("flights", "time_hour"): READABLE_INSTANT_TEXTS, ("bookings", "booked_on"): DATE_TEXTS,
        ("bookings", "flight_date"): FLIGHT_DATE_TEXTS,
    }
    rows = {}
    for (table, column), texts in planted.items():
        day = SECOND_BUILD[0] if column == "flight_date" else FIRST_BUILD[0]
        for row_number, text in enumerate(texts, start=1):
            connection.execute(f"UPDATE raw.{table} SET {column} = $text WHERE _data_date = $day "
                               "AND _row_number = $row", {"text": text, "day": day, "row": row_number})
        rows[f"{table}.{column}"] = [(day, n, text) for n, text in enumerate(texts, start=1)]
    return rows


def _copy_raw_tables(duckdb_path: Path, postgres_url: str) -> None:
    """The raw schema's tables, types and rows, from the DuckDB file into PostgreSQL (Arrow batches through ADBC),
    with their statistics, as a loader leaves them (without, PostgreSQL plans the staging joins row by row)."""
    target = PostgresWarehouse(postgres_url)  # its connection, on which the ADBC driver types strings as text
    with duckdb.connect(str(duckdb_path), read_only=True) as source, closing(target):
        tables = [name for (name,) in source.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'raw'").fetchall()]
        with target.server().cursor() as cursor:
            cursor.execute("CREATE SCHEMA raw")
            for table in tables:
                cursor.adbc_ingest(table, source.sql(f"SELECT * FROM raw.{table}").to_arrow_table(), mode="create",
                                   db_schema_name="raw")
                cursor.execute(f"ANALYZE raw.{table}")
        target.server().commit()


def _plan_as_for_large_tables(url: str) -> None:
    """Parallel plans on these few rows, as PostgreSQL chooses for a month of them: a function that cannot run in a
    parallel worker but claims it can (PARALLEL SAFE with an EXCEPTION block) then fails here too."""
    with psycopg2.connect(url) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            for setting in ("parallel_setup_cost = 0", "parallel_tuple_cost = 0", "min_parallel_table_scan_size = 0"):
                cursor.execute(f"ALTER DATABASE warehouse SET {setting}")


def _dbt_build(env: dict, first: dt.date, last: dt.date, target_path: Path, previous: Path | None) -> tuple[dict, float]:
    """The real `dbt build` over [first, last], starting from the parse state of the `previous` build as the platform
    does; returns {node: (status, failures)} of its run results, and its seconds."""
    target_path.mkdir()
    if previous is not None:
        shutil.copyfile(previous / "partial_parse.msgpack", target_path / "partial_parse.msgpack")
    started = time.perf_counter()
    done = subprocess.run(
        [str(DBT), "build", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
         "--target-path", str(target_path), "--log-path", str(target_path)],
        env={**os.environ, **env, "PLATFORM_RUN_START_DATE": str(first), "PLATFORM_RUN_END_DATE": str(last)},
        capture_output=True, text=True,
    )
    seconds = time.perf_counter() - started
    results = json.loads((target_path / "run_results.json").read_text())["results"] if (
        target_path / "run_results.json").exists() else []
    assert results, f"dbt build wrote no results (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-2000:]}"
    errors = [f"{r['unique_id']}: {r['message']}" for r in results if r["status"] == "error"]
    assert not errors, "\n".join(errors)
    return {r["unique_id"]: (r["status"], r["failures"]) for r in results}, seconds


def _comparable(value):
    """Floating sums may differ in the last bits between engines (summation order); NaN equals NaN."""
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else round(value, 9)
    return value


def _tables(query, list_tables: str) -> dict[str, list]:
    """Every model's rows, in a stable order, comparable across engines."""
    return {f"{schema}.{table}": sorted((tuple(map(_comparable, row)) for row in query(
        f'SELECT * FROM "{schema}"."{table}"')), key=repr) for schema, table in query(list_tables)}


LIST_MODELS = ("SELECT table_schema, table_name FROM information_schema.tables "
               f"WHERE table_schema IN {MODEL_SCHEMAS} ORDER BY 1, 2")


@pytest.fixture(scope="module")
def both_targets():
    """Raw tables of three delivered days in a DuckDB file and in PostgreSQL, built on each target: two days in a
    first build, the third incrementally in a second one, as daily runs do."""
    # its own folder under /tmp, not pytest's: the server runs as the postgres user, who cannot enter root's folders
    server = start_postgres(Path(tempfile.mkdtemp(prefix="platform-pg-")), databases=("warehouse",))
    folder = Path(tempfile.mkdtemp(prefix="platform-dbt-targets-"))
    try:
        _plan_as_for_large_tables(server.url("warehouse"))
        data_dir = folder / "data"
        _deliver_and_ingest(data_dir)
        warehouse = data_dir / "warehouse" / "warehouse.duckdb"
        with duckdb.connect(str(warehouse)) as connection:
            planted = _deliver_unreadable_values(connection)
        _copy_raw_tables(warehouse, server.url("warehouse"))
        targets = {
            "embedded": {"PLATFORM_TARGET": "embedded", "PLATFORM_DATA_DIR": str(data_dir)},
            "team": {"PLATFORM_TARGET": "team", **warehouse_connection_env(server.url("warehouse"))},
        }
        results, seconds = {}, {}
        for name, env in targets.items():
            for build, (first, last) in enumerate((FIRST_BUILD, SECOND_BUILD), start=1):
                results[name, build], seconds[name, build] = _dbt_build(
                    env, first, last, folder / f"{name}-{build}", folder / f"{name}-{build - 1}" if build > 1 else None)
        hook = next(result["compiled_code"] for result in json.loads(
            (folder / "team-1" / "run_results.json").read_text())["results"] if result["unique_id"].startswith("operation."))
        with duckdb.connect(str(warehouse), read_only=True) as connection:
            embedded = _tables(lambda sql: connection.execute(sql).fetchall(), LIST_MODELS)
        with psycopg2.connect(server.url("warehouse")) as connection:
            with connection.cursor() as cursor:
                def query(sql):
                    cursor.execute(sql)
                    return cursor.fetchall()
                team = _tables(query, LIST_MODELS)
                cursor.execute("SELECT count(*) FROM pg_proc WHERE pronamespace = 'platform_functions'::regnamespace")
                functions = cursor.fetchone()[0]
        print("dbt build seconds:", {f"{name} build {build}": round(s, 1) for (name, build), s in seconds.items()})
        yield {"results": results, "embedded": embedded, "team": team, "planted": planted, "functions": functions,
               "server": server, "hook": hook, "warehouse": warehouse}
    finally:
        stop_postgres(server)
        shutil.rmtree(server.folder, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)


def test_every_model_and_test_has_the_same_outcome_on_both_targets(both_targets):
    results = both_targets["results"]
    for build in (1, 2):
        embedded, team = results["embedded", build], results["team", build]
        assert embedded == team
        statuses = {status for status, _ in embedded.values()}
        # every model built, every test ran (warnings are the feed's known gaps, identical on both)
        assert statuses <= {"success", "pass", "warn", "no-op"} and "warn" in statuses, statuses  # no-op: exposures
        assert sum(node.startswith("model.") for node in embedded) == 13
        assert sum(node.startswith("test.") for node in embedded) >= 40


def test_every_model_holds_the_same_rows_on_both_targets(both_targets):
    embedded, team = both_targets["embedded"], both_targets["team"]
    assert sorted(embedded) == sorted(team) and len(embedded) == 13
    counts = {table: (len(rows), len(team[table])) for table, rows in embedded.items()}
    assert all(a == b and a > 0 for a, b in counts.values()), counts
    for table, rows in embedded.items():
        differing = sorted(set(rows) ^ set(team[table]), key=repr)
        assert rows == team[table], f"{table}: {len(differing)} rows differ, e.g. {differing[:2]}"
    # the three days, the incremental third one included, with the quarantine's reasons word for word
    assert {row[2] for row in embedded["marts_audit.flights"]} == {
        FIRST_BUILD[0], FIRST_BUILD[1], SECOND_BUILD[0]}
    assert len({row[0] for row in embedded["marts_audit.bookings_quarantine"]}) >= 4


def _staged(both_targets, table: str, column: str, planted: str) -> dict[str, list]:
    """The staged value of each planted row, per target."""
    model = {"flights": "staging.stg_flights__flights", "bookings": "staging.stg_bookings__bookings"}[table]
    values = {}
    for target in ("embedded", "team"):
        rows = both_targets[target][model]
        # the first columns are compared by position: look them up by name once
        names = STAGED_COLUMNS[model]
        by_row = {(row[names.index("data_date")], row[names.index("_row_number")]): row[names.index(column)]
                  for row in rows}
        values[target] = [by_row.get((day, n), "missing") for day, n, _ in both_targets["planted"][planted]]
    return values


STAGED_COLUMNS = {
    "staging.stg_flights__flights": [
        "flight_id", "flight_date", "data_date", "carrier", "flight_number", "tailnum", "origin", "dest",
        "sched_dep_time", "sched_arr_time", "dep_time", "arr_time", "dep_delay", "arr_delay", "air_time", "distance",
        "sched_dep_hour", "sched_dep_minute", "scheduled_departure_hour_utc", "is_cancelled", "_source_file",
        "_batch_id", "_row_number"],
    "staging.stg_bookings__bookings": [
        "booking_id", "booked_on", "flight_date", "flight_date_raw", "carrier", "flight_number", "flight_number_raw",
        "origin", "dest", "passenger_name", "email", "email_raw", "phone_e164", "phone_raw", "date_of_birth",
        "loyalty_number", "fare_class", "fare_usd", "is_retry_duplicate", "data_date", "_source_file", "_batch_id",
        "_row_number"],
}


@pytest.mark.parametrize("planted, column, expected", [
    ("flights.arr_time", "arr_time", INTEGER_TEXTS),
    ("flights.dep_delay", "dep_delay", DOUBLE_TEXTS),
    ("flights.time_hour", "scheduled_departure_hour_utc", READABLE_INSTANT_TEXTS),
    ("bookings.booked_on", "booked_on", DATE_TEXTS),
    ("bookings.flight_date", "flight_date", FLIGHT_DATE_TEXTS),
])
def test_unreadable_values_become_null_on_both_targets(both_targets, planted, column, expected):
    table = planted.split(".")[0]
    values = _staged(both_targets, table, column, planted)
    assert values["embedded"] == list(expected.values()), dict(zip(expected, values["embedded"], strict=True))
    assert values["team"] == list(expected.values()), dict(zip(expected, values["team"], strict=True))


def test_the_staging_column_lists_above_are_the_models(both_targets):
    with psycopg2.connect(both_targets["server"].url("warehouse")) as connection, connection.cursor() as cursor:
        for model, columns in STAGED_COLUMNS.items():
            schema, table = model.split(".")
            cursor.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                           "AND table_name = %s ORDER BY ordinal_position", (schema, table))
            assert [name for (name,) in cursor.fetchall()] == columns
    assert both_targets["functions"] == 5  # the try_* functions of macros/try_functions.sql


@pytest.mark.parametrize("type_, texts", [
    ("integer", INTEGER_TEXTS), ("double precision", DOUBLE_TEXTS), ("timestamptz", INSTANT_TEXTS)])
def test_postgresql_reads_text_as_duckdbs_try_cast_does(both_targets, type_, texts):
    """What try_cast renders on each target: DuckDB's own try_cast, and the function the team build created."""
    utc = " at time zone 'UTC'" if type_ == "timestamptz" else ""
    function = "platform_functions.try_cast_" + {"double precision": "double"}.get(type_, type_)
    with duckdb.connect() as connection:
        embedded = [connection.execute(f"SELECT try_cast($text AS {type_}){utc}", {"text": text}).fetchone()[0]
                    for text in texts]
    with psycopg2.connect(both_targets["server"].url("warehouse")) as connection, connection.cursor() as cursor:
        team = []
        for text in texts:
            cursor.execute(f"SELECT {function}(%s){utc}", (text,))
            team.append(cursor.fetchone()[0])
    assert dict(zip(texts, embedded, strict=True)) == texts
    assert dict(zip(texts, team, strict=True)) == texts


def test_runs_starting_at_once_create_the_functions_without_colliding(both_targets):
    """The team target runs several dbt builds at once; each starts by replacing the try_* functions. Without the
    hook's advisory lock, 7 of 8 such sessions failed with 'tuple concurrently updated' (measured)."""
    assert "create or replace function" in both_targets["hook"]
    errors, start = [], threading.Barrier(8)

    def start_a_run():
        with psycopg2.connect(both_targets["server"].url("warehouse")) as connection:
            start.wait()
            try:
                for _ in range(3):
                    with connection.cursor() as cursor:
                        cursor.execute(both_targets["hook"])
                    connection.commit()
            except psycopg2.Error as error:
                errors.append(str(error).splitlines()[0])

    runs = [threading.Thread(target=start_a_run) for _ in range(8)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert errors == []


def test_the_audited_marts_are_published_and_described_alike_on_both_targets(both_targets):
    """The dbt step's publish (marts_audit -> marts, the run's range, one transaction) and the metadata it reports,
    through the warehouse interface: the same rows on both; publishing the same range again changes nothing."""
    from platform_assets.warehouse.duckdb_file import DuckDBWarehouse

    marts = ["flights", "bookings", "bookings_quarantine", "flight_features"]
    first, last = FIRST_BUILD[0], SECOND_BUILD[1]
    with duckdb.connect(str(both_targets["warehouse"])) as connection:
        embedded = DuckDBWarehouse(connection)
        embedded_versions = embedded.publish_marts(marts, first, last)
        embedded_tables = {table: embedded.describe("marts", table, first, last) for table in marts}
    team = PostgresWarehouse(both_targets["server"].url("warehouse"))
    try:
        team_versions = team.publish_marts(marts, first, last)
        assert team.publish_marts(marts, first, last) == team_versions
        team_tables = {table: team.describe("marts", table, first, last) for table in marts}
        one_day = team.publish_marts(["flights"], SECOND_BUILD[0], SECOND_BUILD[1])  # a daily run's range
        assert team.describe("marts", "flights", first, last).rows == team_tables["flights"].rows
        day_rows = team.describe("marts", "flights", SECOND_BUILD[0], SECOND_BUILD[1]).rows_in_range
    finally:
        team.close()
    assert {t: (d.rows, d.rows_in_range) for t, d in team_tables.items()} == {
        t: (d.rows, d.rows_in_range) for t, d in embedded_tables.items()}
    assert all(d.rows > 0 and d.rows_in_range == d.rows for d in team_tables.values())
    assert {t: list(d.columns) for t, d in team_tables.items()} == {t: list(d.columns) for t, d in
                                                                      embedded_tables.items()}
    assert team_versions == embedded_versions  # the same content, the same fingerprint, on either warehouse
    assert 0 < day_rows < team_tables["flights"].rows and one_day["flights"].split("-")[0] == str(day_rows)
