"""Row filters that hold under aggregation: a partner airline (role partner_airline, carrier UA) attacks the real
demo warehouse (conftest.pipeline_run: the real graph over ten real days) to recover other carriers' numbers.

Each attack test computes the true competitor numbers straight from the warehouse, shows that the stored data
would give them away (so the test has teeth), and asserts that the partner's governed reads no longer reproduce
them, while its legitimate questions (its own flights per route, its own bookings) still get exact answers."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from governance.access import AccessDenied
from governance.audit import read_audit_log
from governance.catalog import CatalogError, load_catalog
from governance.graph import load_asset_graph, load_manifest
from governance.paths import CATALOG_DIR, DBT_EXPOSURES
from governance.policy import decide
from governance.validate import validate, window_or_aggregate
from governed import read

CATALOG = load_catalog()
PARTNER = {"carrier": "UA"}
ROUTE_TOTALS = ["route_trailing_flights", "route_trailing_mean_arr_delay", "route_trailing_delayed_share"]
CARRIER_TOTALS = ["carrier_trailing_flights", "carrier_trailing_mean_arr_delay", "carrier_trailing_delayed_share"]
GOVERNANCE = Path(sys.executable).parent / "governance"


@pytest.fixture(scope="module")
def warehouse(pipeline_run):
    """The partner's reads and the truth: `partner(sql)` reads as UA's partner role, `truth(sql)` reads the
    real warehouse directly, read-only."""
    folder = pipeline_run["settings"].data_dir
    connection = duckdb.connect(str(pipeline_run["settings"].warehouse_path), read_only=True)

    class Warehouse:
        data_dir = folder

        @staticmethod
        def partner(sql: str, carrier: str = "UA"):
            return read("partner_airline", sql, {"carrier": carrier}, data_dir=folder)

        @staticmethod
        def truth(sql: str) -> list[tuple]:
            return connection.execute(sql).fetchall()

    yield Warehouse
    connection.close()


def _refused(warehouse, sql: str, *words: str) -> str:
    with pytest.raises(AccessDenied) as refused:
        warehouse.partner(sql)
    for word in words:
        assert word in str(refused.value)
    assert read_audit_log(warehouse.data_dir)[-1]["decision"] == "deny"
    return str(refused.value)


# --- route totals over every carrier ------------------------------------------------------------------------

def test_route_totals_minus_own_flights_no_longer_give_competitors_counts(warehouse):
    """Attack: read route_trailing_flights (flights on the route in the days before, every carrier's) and
    subtract the partner's own flights of those days: what remains is the competitors' exact count."""
    last_day = "(SELECT max(flight_date) FROM marts.flight_features)"
    truth = dict(((o, d), (total, own, others)) for o, d, total, own, others in warehouse.truth(f"""
        WITH stored AS (SELECT DISTINCT origin, dest, route_trailing_flights AS total FROM marts.flight_features
                        WHERE carrier = 'UA' AND flight_date = {last_day}),
             prior AS (SELECT origin, dest, count(*) FILTER (carrier = 'UA') AS own,
                              count(*) FILTER (carrier <> 'UA') AS others
                       FROM marts.flights WHERE flight_date < {last_day} GROUP BY ALL)
        SELECT origin, dest, total, own, others FROM stored JOIN prior USING (origin, dest)"""))
    shared = {route: others for route, (total, own, others) in truth.items() if others}
    assert len(shared) >= 10, "UA shares routes with other carriers in the demo window"
    assert all(total - own == others for total, own, others in truth.values()), "the stored column leaks them"
    assert truth[("LGA", "ORD")][2] == warehouse.truth(
        f"SELECT count(*) FROM marts.flights WHERE carrier = 'AA' AND origin = 'LGA' AND dest = 'ORD' "
        f"AND flight_date < {last_day}")[0][0], "on LGA-ORD the remainder is exactly AA's count"

    _refused(warehouse, "SELECT origin, dest, route_trailing_flights FROM marts.flight_features",
             "route_trailing_flights", "across the row filter on carrier")
    attack = f"""
        WITH own AS (SELECT origin, dest, count(*) AS n FROM flights WHERE flight_date < {last_day} GROUP BY ALL)
        SELECT f.origin, f.dest, max(f.route_trailing_flights) - max(own.n) FROM flight_features f
        JOIN own USING (origin, dest) GROUP BY ALL"""
    _refused(warehouse, attack, "route_trailing_flights")
    # what the partner can count is its own flights, never the remainder
    own = dict(((o, d), n) for o, d, n in warehouse.partner(
        f"SELECT origin, dest, count(*) FROM flights WHERE flight_date < {last_day} GROUP BY ALL").rows)
    assert all(own[route] == truth[route][1] for route in truth)
    assert all(own[route] < truth[route][0] for route in shared)


def test_route_delay_statistics_no_longer_give_competitors_delays(warehouse):
    """Attack: route_trailing_mean_arr_delay and route_trailing_delayed_share are means over every carrier's
    arrivals; with its own arrivals the partner solves for the competitors' mean delay and delayed share."""
    rows = warehouse.truth("""
        WITH stored AS (SELECT DISTINCT origin, dest, flight_date, route_trailing_mean_arr_delay AS stored
                        FROM marts.flight_features WHERE carrier = 'UA'
                        AND flight_date = (SELECT max(flight_date) FROM marts.flight_features))
        SELECT s.origin, s.dest, s.stored,
               avg(f.arr_delay) AS every_carrier, avg(f.arr_delay) FILTER (f.carrier = 'UA') AS own,
               avg(f.arr_delay) FILTER (f.carrier <> 'UA') AS others
        FROM stored s JOIN marts.flights f ON f.origin = s.origin AND f.dest = s.dest
            AND f.flight_date < s.flight_date
        GROUP BY ALL HAVING others IS NOT NULL""")
    assert rows and all(abs(stored - every) < 1e-6 for _, _, stored, every, _, _ in rows), \
        "the stored mean is over every carrier's arrivals"
    assert any(abs(stored - own) > 1 for _, _, stored, _, own, _ in rows), "so it carries competitors' delays"
    for column in ROUTE_TOTALS[1:]:
        _refused(warehouse, f"SELECT avg({column}) FROM flight_features", column, "computed over")
    # the partner's own mean delays per route are its own, not the competitors'
    own = {(o, d): mean for o, d, mean in warehouse.partner(
        "SELECT origin, dest, avg(arr_delay) FROM flights "
        "WHERE flight_date < (SELECT max(flight_date) FROM flights) GROUP BY ALL").rows}
    for origin, dest, _, _, own_truth, others in rows:
        assert abs(own[(origin, dest)] - own_truth) < 1e-6
    assert any(abs(own[(o, d)] - others) > 1 for o, d, *_, others in rows)


@pytest.mark.parametrize("sql", [
    "SELECT * FROM flight_features",
    "SELECT f.* FROM flight_features f",
    "SELECT COLUMNS('route_.*') FROM flight_features",
    "SELECT * EXCLUDE (carrier) FROM marts.flight_features",
    "SELECT f FROM flight_features f",
    "WITH x AS (SELECT * FROM flight_features) SELECT * FROM x",
    "SELECT ROUTE_TRAILING_FLIGHTS FROM flight_features",
    'SELECT "route_trailing_flights" FROM "marts"."flight_features"',
    "SELECT column_name FROM information_schema.columns",
])
def test_no_spelling_reaches_a_column_computed_across_the_filter(warehouse, sql):
    """Attack: reach the route totals without naming them as the policy expects: *, COLUMNS(), a row as a
    struct, EXCLUDE, a CTE, another case, quoting, the information schema. The sandbox never holds them."""
    try:
        result = warehouse.partner(sql)
    except AccessDenied:
        return
    text = " ".join(map(str, [*result.columns, *(cell for row in result.rows for cell in row)])).lower()
    assert not any(column in text for column in ROUTE_TOTALS)
    assert all(set(held).isdisjoint(ROUTE_TOTALS) for held in result.datasets.values())


def test_carrier_statistics_stay_readable_because_they_are_computed_over_own_rows(warehouse):
    """Legitimate: carrier_trailing_* are computed over the rows of the row's own carrier (computed_over:
    [carrier]), so the partner reads them and they equal what its own flights give."""
    result = warehouse.partner("""
        SELECT f.flight_date, max(f.carrier_trailing_flights),
               (SELECT count(*) FROM flights g WHERE g.flight_date < f.flight_date) AS own_before
        FROM flight_features f GROUP BY f.flight_date ORDER BY 1""")
    assert len(result.rows) == 10
    assert all(stored == own for _, stored, own in result.rows)
    every = dict(warehouse.truth("""SELECT flight_date, (SELECT count(*) FROM marts.flights g
        WHERE g.flight_date < f.flight_date) FROM (SELECT DISTINCT flight_date FROM marts.flight_features) f"""))
    assert all(stored < every[day] for day, stored, _ in result.rows[1:]), "never the every-carrier count"
    assert warehouse.partner("SELECT count(carrier_trailing_mean_arr_delay) FROM flight_features").rows[0][0] > 0


# --- identifiers that number every carrier's rows ------------------------------------------------------------

def test_booking_id_sequence_no_longer_estimates_every_carriers_volume(warehouse):
    """Attack: booking_id is 'BK' + day + a counter over every carrier's bookings of the day. The partner's
    highest counter estimates the day's total bookings, the gaps between its own ids the competitors'."""
    truth = warehouse.truth("""
        WITH every AS (SELECT data_date, booking_id FROM marts.bookings
                       UNION ALL SELECT data_date, booking_id FROM marts.bookings_quarantine)
        SELECT data_date, count(DISTINCT booking_id),
               (SELECT max(CAST(substr(b.booking_id, 11) AS INTEGER)) + 1 FROM marts.bookings b
                WHERE b.carrier = 'UA' AND b.data_date = every.data_date)
        FROM every GROUP BY data_date""")
    total, estimate = sum(row[1] for row in truth), sum(row[2] for row in truth)
    assert abs(estimate - total) / total < 0.02, "the raw ids give every carrier's volume away"

    result = warehouse.partner("SELECT data_date, booking_id FROM bookings")
    real_ids = {row[0] for row in warehouse.truth("SELECT booking_id FROM marts.bookings WHERE carrier = 'UA'")}
    tokens = [token for _, token in result.rows]
    assert len(tokens) == len(real_ids) == len(set(tokens))
    assert all(re.fullmatch(r"[0-9a-f]{16}", token) for token in tokens)
    assert not set(tokens) & real_ids
    attack = warehouse.partner("""SELECT sum(n) FROM (SELECT data_date,
        max(try_cast(substr(booking_id, 11) AS BIGINT)) + 1 - min(try_cast(substr(booking_id, 11) AS BIGINT)) AS n
        FROM bookings GROUP BY data_date)""").rows[0][0]
    assert attack is None or abs(attack - total) / total > 0.5


def test_masked_booking_ids_keep_no_order_of_the_real_sequence(warehouse):
    """Attack: order the partner's booking ids and read the neighbours: real ids are numbered flight by flight
    and day by day, so neighbours share a flight; hashed tokens sort at random."""
    def neighbours_on_one_flight(rows) -> float:
        return sum(a == b for a, b in zip(rows, rows[1:], strict=False)) / (len(rows) - 1)

    real = [row[0] for row in warehouse.truth(
        "SELECT flight_id FROM marts.bookings WHERE carrier = 'UA' ORDER BY booking_id")]
    masked = [row[0] for row in warehouse.partner("SELECT flight_id FROM bookings ORDER BY booking_id").rows]
    assert sorted(real) == sorted(masked)
    assert neighbours_on_one_flight(real) > 0.5
    assert neighbours_on_one_flight(masked) < 0.05


def test_row_number_in_the_delivery_no_longer_gives_the_file_size(warehouse):
    """Attack: _row_number is the row's position in the delivered file of every carrier's bookings: the
    partner's highest one per day is the file's size."""
    truth = warehouse.truth("""SELECT r.n, (SELECT max(_row_number) FROM marts.bookings b WHERE b.carrier = 'UA'
        AND b.data_date = r._data_date) FROM (SELECT _data_date, count(*) AS n FROM raw.bookings GROUP BY ALL) r""")
    assert all(abs(estimate - rows) / rows < 0.1 for rows, estimate in truth), "raw positions give it away"
    decision = decide(CATALOG, "partner_airline", "marts/bookings").columns["_row_number"]
    assert (decision.access, decision.masking.rule, decision.crosses_row_filter) == ("masked", "hash", True)
    rows = warehouse.partner("SELECT data_date, max(_row_number), count(DISTINCT _row_number) FROM bookings "
                             "GROUP BY ALL").rows
    assert len(rows) == 10 and all(re.fullmatch(r"[0-9a-f]{16}", top) for _, top, _ in rows)


# --- joins, windows and ranks inside the partner's sandbox --------------------------------------------------

def test_joins_through_flight_id_count_only_own_bookings_and_flights(warehouse):
    """Legitimate and bounded: bookings joined to flights by flight_id (a natural key, readable) give the
    partner's bookings per route exactly; a join on the route instead reaches no other carrier's flight."""
    truth = dict(((o, d), n) for o, d, n in warehouse.truth(
        "SELECT origin, dest, count(*) FROM marts.bookings WHERE carrier = 'UA' GROUP BY ALL"))
    every = dict(((o, d), n) for o, d, n in warehouse.truth(
        "SELECT origin, dest, count(*) FROM marts.bookings GROUP BY ALL"))
    assert any(every[route] > n for route, n in truth.items())
    result = warehouse.partner("""SELECT f.origin, f.dest, count(DISTINCT b.booking_id)
        FROM bookings b JOIN flights f USING (flight_id) GROUP BY ALL""")
    assert dict(((o, d), n) for o, d, n in result.rows) == truth
    carriers = warehouse.partner("""SELECT DISTINCT f.carrier, ff.carrier
        FROM (SELECT DISTINCT origin, dest FROM bookings) b
        JOIN (SELECT DISTINCT origin, dest, carrier FROM flights) f USING (origin, dest)
        JOIN (SELECT DISTINCT origin, dest, carrier FROM flight_features) ff USING (origin, dest)""").rows
    assert carriers == [("UA", "UA")]


def test_a_partner_joins_on_the_masked_booking_id(warehouse):
    """Joins through a masked id: one reader's tokens are the same value for the same id in every dataset and
    every query of theirs (the reader's key), so a self-join or a join of two reads matches; another
    reader's tokens never match them."""
    own = warehouse.truth("SELECT count(*) FROM marts.bookings WHERE carrier = 'UA'")[0][0]
    joined = warehouse.partner("SELECT count(*) FROM bookings a JOIN bookings b USING (booking_id)").rows
    assert joined == [(own,)]
    first = warehouse.partner("SELECT booking_id, flight_id FROM bookings ORDER BY booking_id").rows
    second = warehouse.partner("SELECT booking_id, flight_id FROM bookings ORDER BY booking_id").rows
    assert first == second and len(first) == own
    analyst = {row[0] for row in read("analyst", "SELECT booking_id FROM bookings WHERE carrier = 'UA'",
                                      data_dir=warehouse.data_dir).rows}
    assert analyst and not analyst & {token for token, _ in first}, "the analyst reads the real ids"


def test_windows_and_ranks_in_the_sandbox_see_only_own_rows(warehouse):
    """Attack: window functions, ranks and running counts over flights and bookings, hoping they run over the
    whole table. They run in the partner's sandbox, over its rows only."""
    own = dict(((o, d), n) for o, d, n in warehouse.truth(
        "SELECT origin, dest, count(*) FROM marts.flights WHERE carrier = 'UA' GROUP BY ALL"))
    every = dict(((o, d), n) for o, d, n in warehouse.truth(
        "SELECT origin, dest, count(*) FROM marts.flights WHERE origin || dest IN "
        "(SELECT origin || dest FROM marts.flights WHERE carrier = 'UA') GROUP BY ALL"))
    assert any(every[route] > n for route, n in own.items())
    result = warehouse.partner("""
        SELECT origin, dest, max(position), max(in_route), max(overall)
        FROM (SELECT origin, dest,
                     row_number() OVER (PARTITION BY origin, dest ORDER BY flight_id) AS position,
                     count(*) OVER (PARTITION BY origin, dest) AS in_route,
                     rank() OVER (ORDER BY flight_id) AS overall
              FROM flights) GROUP BY ALL""")
    assert {(o, d): (p, n) for o, d, p, n, _ in result.rows} == {route: (n, n) for route, n in own.items()}
    assert max(row[4] for row in result.rows) == sum(own.values())
    bookings = warehouse.partner("SELECT max(n) FROM (SELECT row_number() OVER () AS n FROM bookings)").rows
    assert bookings == warehouse.truth("SELECT count(*) FROM marts.bookings WHERE carrier = 'UA'")


def test_own_flight_counts_per_route_are_exact_and_not_the_totals(warehouse):
    """Legitimate: the partner's flights per route and day, and its bookings per day, are exact."""
    truth = sorted(warehouse.truth(
        "SELECT origin, dest, flight_date, count(*) FROM marts.flights WHERE carrier = 'UA' GROUP BY ALL"))
    assert sorted(warehouse.partner("SELECT origin, dest, flight_date, count(*) FROM flights GROUP BY ALL").rows) \
        == truth
    assert sorted(warehouse.partner("SELECT data_date, count(*) FROM bookings GROUP BY ALL").rows) == sorted(
        warehouse.truth("SELECT data_date, count(*) FROM marts.bookings WHERE carrier = 'UA' GROUP BY ALL"))
    assert warehouse.partner("SELECT DISTINCT carrier FROM flights").rows == [("UA",)]


# --- what stays readable is row-level; models trained on everyone are not given -----------------------------

def test_identifiers_and_load_columns_left_readable_are_row_level(warehouse):
    """Attack: look for another sequence, count or order in what the partner still reads: flight_id, the
    delivery's file and batch, data_date. flight_id is built from the row's own values; the file and batch
    are one value per day for every carrier, so they say nothing about the others."""
    mismatched = warehouse.partner("""SELECT count(*) FROM flights WHERE flight_id <> strftime(flight_date, '%Y%m%d')
        || '_' || carrier || '_' || flight_number || '_' || origin""").rows
    assert mismatched == [(0,)]
    for table in ("flights", "bookings"):
        assert warehouse.truth(f"SELECT max(n) FROM (SELECT count(DISTINCT _batch_id) + count(DISTINCT _source_file)"
                               f" AS n FROM marts.{table} GROUP BY data_date)") == [(2,)]
        query = "SELECT DISTINCT data_date, _batch_id, _source_file FROM {}"
        every = sorted(warehouse.truth(query.format(f"marts.{table}")))
        assert len(every) == 10 and sorted(warehouse.partner(query.format(table)).rows) == every
    readable = {name for key in ("marts/flights", "marts/bookings", "marts/flight_features")
                for name, column in CATALOG.datasets[key].columns.items()
                if decide(CATALOG, "partner_airline", key).columns[name].access == "full"}
    assert readable.isdisjoint(ROUTE_TOTALS + ["booking_id", "_row_number"])


def test_model_predictions_trained_on_every_carrier_are_not_given_to_the_partner(warehouse):
    """Attack: read the delay model's predictions, a function of every carrier's flights (it is trained on them
    and reads the route totals). The partner is not granted them; the catalog declares them computed over
    all rows, so a row-filtered grant would deny them too."""
    _refused(warehouse, "SELECT flight_id, delay_probability FROM ml.flight_delay_predictions", "may not read")
    columns = CATALOG.datasets["ml/flight_delay_predictions"].columns
    assert columns["delay_probability"].computed_over == "all_rows"
    assert columns["delay_probability"].crosses_row_filter("carrier")


def test_the_matrix_shows_what_a_row_filtered_reader_gets_and_why(warehouse, capsys):
    from governance.cli import main

    assert main(["access", "flight_features"]) == 0
    text = capsys.readouterr().out
    for column in ROUTE_TOTALS:
        assert re.search(rf"^{column} .*denied: crosses row filter\s+full$", text, re.MULTILINE)
        assert f"partner_airline {column}: computed over the rows sharing its origin, dest, across the row " \
               "filter on carrier" in text
    assert all(re.search(rf"^{column} +full +full +denied +full +full$", text, re.MULTILINE)
               for column in CARRIER_TOTALS)
    assert main(["--json", "access", "bookings"]) == 0
    partner = json.loads(capsys.readouterr().out)["roles"]["partner_airline"]
    assert partner["columns"]["booking_id"] == "masked (hash): crosses row filter"
    assert "numbered over the rows sharing its data_date" in partner["crossing_row_filter"]["booking_id"]
    assert partner["columns"]["flight_id"] == "full"


# --- the declaration: validated by the catalog model and by validate (no warehouse needed) ------------------

def _catalog_copy(tmp_path: Path, edit_file: str, edit) -> Path:
    folder = tmp_path / "catalog"
    shutil.copytree(CATALOG_DIR, folder)
    path = folder / edit_file
    content = yaml.safe_load(path.read_text())
    edit(content)
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return folder


def _column(dataset: str, column: str, **fields):
    def edit(datasets):
        datasets[dataset]["columns"][column].update(fields)
    return edit


@pytest.mark.parametrize(("file", "edit", "message"), [
    ("datasets.yml", _column("marts/flight_features", "route_trailing_flights", computed_over=["route"]),
     r"columns.route_trailing_flights: computed_over names \['route'\], not columns of marts/flight_features"),
    ("datasets.yml", _column("marts/bookings", "booking_id", computed_over="all_rows"),
     "computed_over or sequence_over other rows, not both"),
    ("datasets.yml", _column("marts/bookings", "booking_id", sequence_over=[]),
     "name the columns the rows share, or write all_rows"),
    ("datasets.yml", _column("marts/bookings", "booking_id", sequence_over="everything"),
     "marts/bookings.*booking_id"),
    ("access.yml", lambda d: d["roles"]["partner_airline"]["datasets"].update(
        {"marts/flight_features": {"access": "row_filtered", "columns": {"route_trailing_flights": "full"}}}),
     "roles.partner_airline.datasets.marts/flight_features.columns.route_trailing_flights: full access to a "
     "column computed over rows outside the row filter on carrier; deny it instead"),
])
def test_declarations_are_checked_when_the_catalog_loads(tmp_path, file, edit, message):
    with pytest.raises(CatalogError, match=message):
        load_catalog.__wrapped__(_catalog_copy(tmp_path, file, edit))


def test_the_declared_rows_decide_per_row_filter(tmp_path):
    """One mechanism for any row filter: a role filtered on origin keeps the route totals (computed within the
    route, so within its origin) and loses the carrier totals (computed across origins)."""
    def edit(access):
        access["roles"]["airport_authority"] = {
            "description": "An airport; sees the flights leaving it.", "clearance": "internal",
            "row_filter": {"column": "origin", "attribute": "airport"},
            "datasets": {"marts/flight_features": "row_filtered", "marts/bookings": "row_filtered"}}

    catalog = load_catalog.__wrapped__(_catalog_copy(tmp_path, "access.yml", edit))
    features = decide(catalog, "airport_authority", "marts/flight_features").columns
    assert {name: features[name].access for name in ROUTE_TOTALS + CARRIER_TOTALS} == {
        **dict.fromkeys(ROUTE_TOTALS, "full"), **dict.fromkeys(CARRIER_TOTALS, "denied")}
    bookings = decide(catalog, "airport_authority", "marts/bookings").columns
    assert bookings["booking_id"].label == "masked (hash): crosses row filter"
    assert decide(catalog, "analyst", "marts/flight_features").columns["route_trailing_flights"].access == "full"


def test_validate_requires_declarations_when_a_row_filtered_model_aggregates(tmp_path):
    """validate reads the dbt SQL of each published model a role reads row-filtered: a window or aggregate
    there with no column declared over other rows fails validation."""
    def undeclare(datasets):
        for column in datasets["marts/flight_features"]["columns"].values():
            column.pop("computed_over", None)

    catalog = load_catalog.__wrapped__(_catalog_copy(tmp_path, "datasets.yml", undeclare))
    result = validate(catalog, load_asset_graph(), load_manifest(), Path("/nonexistent"), DBT_EXPOSURES)
    assert [p for p in result.problems if "declares none of its columns" in p] == [
        "marts/flight_features is computed with 'sum(' and role(s) partner_airline read it row_filtered, but "
        "datasets.yml declares none of its columns computed_over or sequence_over other rows: declare the columns "
        "whose values depend on rows outside a row filter (docs/governance.md)"]
    passing = validate(CATALOG, load_asset_graph(), load_manifest(), Path("/nonexistent"), DBT_EXPOSURES)
    assert not [p for p in passing.problems if "declares none" in p]
    assert any("marts/flight_features is computed with" in note for note in passing.notes)
    # the console script says the same
    folder = _catalog_copy(tmp_path / "cli", "datasets.yml", undeclare)
    run = subprocess.run([str(GOVERNANCE), "--catalog", str(folder), "validate"], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PLATFORM_DATA_DIR": str(tmp_path / "data")})
    assert run.returncode == 1 and "declares none of its columns" in run.stdout


@pytest.mark.parametrize(("sql", "found"), [
    ("select a, sum(b) over w from t", "sum("),
    ("select a from t group by a", "group by"),
    ("select a, x over prior_days from t", "over prior_days"),
    ("select a, row_number ( ) over () from t", "row_number ("),
    ("-- sum(b) over everything\nselect a {# count(*) #} from t", None),
    ("select summary, maximum, counted from t", None),
])
def test_window_or_aggregate_reads_the_sql_not_its_comments(sql, found):
    assert window_or_aggregate(sql) == found
