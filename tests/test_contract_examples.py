"""Every rule kind's examples show the offending value, the file and the row, on a source the demo does not
know, in a real DuckDB database; a personal column's value masked by its rule."""

import datetime as dt

import duckdb
import pytest

from governance.catalog import MaskingRule
from governance.masking import PersonalData
from platform_assets.checks.contracts import contract_rules, duplicate_keys, evaluate_rules
from platform_assets.sources.definitions import load_sources
from platform_assets.sources.ingest import ensure_raw_table

SOURCES_YML = """
counters:
  description: Ticket counters.
  system: counter register
  format: parquet
  cadence: snapshot
  key: {columns: [counter]}
  columns:
    counter: VARCHAR
tickets:
  description: Sold tickets.
  system: ticket office
  format: csv
  row_date: try_strptime(sold, '%d.%m.%Y')::DATE
  key: {columns: [ticket]}
  columns:
    ticket: {type: VARCHAR, nullable: false}
    sold: {type: DATE, formats: ['%d.%m.%Y']}
    seats: {type: INTEGER, range: [1, 9]}
    class: {type: VARCHAR, accepted: [first, second]}
    email: {type: VARCHAR, pattern: '[^@]+@[^@]+'}
    counter: {type: VARCHAR, references: counters.counter}
readings:
  description: Meter readings, typed.
  system: meters
  format: parquet
  key: {columns: [meter, slot]}
  columns:
    meter: INTEGER
    slot: VARCHAR
"""
# What the catalog would say of these sources: tickets.email is personal data, masked to its last two characters.
TICKETS = PersonalData("raw/tickets", {"email": MaskingRule(rule="keep_last", keep=2)})
READINGS = PersonalData("raw/readings")
DAY = dt.date(2024, 5, 2)
FILE = "/landing/tickets/tickets_2024-05-02.csv"


@pytest.fixture
def sources(tmp_path):
    (tmp_path / "sources.yml").write_text(SOURCES_YML)
    return load_sources(tmp_path / "sources.yml")


@pytest.fixture
def warehouse(tmp_path, sources):
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as connection:
        for source in sources.values():
            ensure_raw_table(connection, source)
        connection.execute("INSERT INTO raw.counters (counter) VALUES ('A'), ('B')")
        yield connection


def insert(connection, table, rows, day=DAY, path=FILE):
    """Rows (dicts) as delivered in `path` for `day`, numbered in order."""
    for number, row in enumerate(rows, 1):
        columns = [*row, "_data_date", "_source_file", "_row_number"]
        connection.execute(f"INSERT INTO raw.{table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                           [*row.values(), day, path, number])


GOOD = {"ticket": "T1", "sold": "02.05.2024", "seats": "2", "class": "first", "email": "a@b", "counter": "A"}


def test_every_rule_kind_shows_the_offending_value_file_and_row(warehouse, sources):
    bad = [GOOD, {**GOOD, "ticket": None}, {**GOOD, "ticket": "T3", "sold": "2024-05-02"},
           {**GOOD, "ticket": "T4", "seats": "12"}, {**GOOD, "ticket": "T5", "class": "third"},
           {**GOOD, "ticket": "T6", "email": "nobody"}, {**GOOD, "ticket": "T7", "counter": "Z"},
           {**GOOD, "ticket": "T8", "sold": "03.05.2024"}, {**GOOD, "ticket": "T9", "seats": "x" * 500}]
    insert(warehouse, "tickets", bad)
    staged = "(SELECT * FROM raw.tickets WHERE _data_date = '2024-05-02') AS staged"
    examples = {v.rule.name: v.examples
                for v in evaluate_rules(warehouse, staged, contract_rules(sources["tickets"]), TICKETS)}
    assert examples == {
        "tickets.ticket is present": ["empty (tickets_2024-05-02.csv row 2)"],
        "tickets.sold is a DATE": ["'2024-05-02' (tickets_2024-05-02.csv row 3)"],
        "tickets.seats is a INTEGER": [f"'{'x' * 120}… (500 characters)' (tickets_2024-05-02.csv row 9)"],
        "tickets.seats between 1 and 9": ["'12' (tickets_2024-05-02.csv row 4)"],
        "tickets.class in (first, second)": ["'third' (tickets_2024-05-02.csv row 5)"],
        "tickets.email matches [^@]+@[^@]+": ["'****dy' (tickets_2024-05-02.csv row 6)"],
        "tickets.counter references counters.counter": ["'Z' (tickets_2024-05-02.csv row 7)"],
        "tickets rows are not dated after their delivery":
            ["row dated 2024-05-03, delivered 2024-05-02 (tickets_2024-05-02.csv row 8)"],
    }


def test_within_day_duplicates_show_the_key_file_and_rows(warehouse, sources):
    insert(warehouse, "tickets", [GOOD, {**GOOD, "ticket": "T2"}, GOOD, {**GOOD, "ticket": "T2"}, GOOD])
    violation = duplicate_keys(warehouse, "raw.tickets", sources["tickets"], TICKETS)
    assert violation.rows == 3 and violation.rule.kind == "key"
    assert violation.examples == ["'T1' 3 times in tickets_2024-05-02.csv (first row 1, last row 5)",
                                  "'T2' twice in tickets_2024-05-02.csv (rows 2 and 4)"]


def test_a_key_delivered_for_two_days_names_both_files_and_rows(warehouse, sources):
    earlier = DAY - dt.timedelta(days=1)
    insert(warehouse, "tickets", [{**GOOD, "ticket": "T0"}, GOOD], earlier, "/landing/tickets/tickets_2024-05-01.csv")
    insert(warehouse, "tickets", [{**GOOD, "ticket": "T2"}, {**GOOD, "ticket": "T3"}, GOOD])
    [rule] = [r for r in contract_rules(sources["tickets"]) if r.kind == "key_across_days"]
    assert rule.warn_because is None  # a different defect than copies within one delivery: it blocks
    expected = ["'T1' in tickets_2024-05-01.csv row 2 and tickets_2024-05-02.csv row 3"]
    # the run is the later day, the earlier one published
    violation = evaluate_rules(warehouse, "(SELECT * FROM raw.tickets WHERE _data_date = '2024-05-02') AS s", [rule],
                               TICKETS)
    assert [(v.rows, v.examples) for v in violation] == [(1, expected)]
    # both days in one run
    violation = evaluate_rules(warehouse, "raw.tickets", [rule], TICKETS)
    assert [(v.rows, v.examples) for v in violation] == [(2, expected)]


def test_a_typed_composite_key_on_other_days_is_found(warehouse, sources):
    for day in (DAY - dt.timedelta(days=2), DAY - dt.timedelta(days=1), DAY):
        insert(warehouse, "readings", [{"meter": 7, "slot": "am"}, {"meter": day.day, "slot": "pm"}], day,
               f"/landing/readings/readings_{day}.parquet")
    [rule] = [r for r in contract_rules(sources["readings"]) if r.kind == "key_across_days"]
    [violation] = evaluate_rules(warehouse, f"(SELECT * FROM raw.readings WHERE _data_date = '{DAY}') AS s", [rule],
                                 READINGS)
    assert violation.rows == 1
    assert violation.examples == ["(7, am) in readings_2024-04-30.parquet row 1, readings_2024-05-01.parquet row 1 "
                                  "and readings_2024-05-02.parquet row 1"]


def test_snapshots_and_sources_without_a_key_have_no_cross_day_rule(sources):
    assert not [r for r in contract_rules(sources["counters"]) if r.kind == "key_across_days"]


def test_a_source_the_catalog_does_not_know_shows_no_value(warehouse, sources):
    """Fail closed: without the catalog's word on which columns are personal, every value is withheld."""
    insert(warehouse, "tickets", [GOOD, {**GOOD, "ticket": "T2", "class": "third"}, {**GOOD, "ticket": "T2"}])
    [violation] = evaluate_rules(warehouse, "raw.tickets", [r for r in contract_rules(sources["tickets"])
                                                          if r.kind == "accepted"])
    assert violation.examples == ["'***' (tickets_2024-05-02.csv row 2)"]
    assert duplicate_keys(warehouse, "raw.tickets", sources["tickets"]).examples == [
        "'***' twice in tickets_2024-05-02.csv (rows 2 and 3)"]


def test_the_key_rules_count_what_a_direct_grouping_of_the_key_counts(warehouse, sources):
    """The key rules find their candidate rows by the key's hash first: their counts equal a direct grouping of
    the key's values, for a composite typed key and many keys, repeated within a day and across days."""
    for day in (DAY - dt.timedelta(days=2), DAY - dt.timedelta(days=1), DAY):
        warehouse.execute(
            "INSERT INTO raw.readings (meter, slot, _data_date, _source_file, _row_number) "
            "SELECT (i * 7919 + $salt) % 700, ['am', 'pm', NULL][i % 3 + 1], $day, $path, i FROM range(2500) t(i)",
            {"salt": day.day * 11, "day": day, "path": f"/landing/readings/readings_{day}.parquet"})
    readings = "raw.readings"
    within_day = warehouse.execute(
        "SELECT sum(n - 1) FROM (SELECT count(*) AS n FROM raw.readings WHERE meter IS NOT NULL AND slot IS NOT NULL "
        "GROUP BY _data_date, meter, slot HAVING n > 1)").fetchall()[0][0]
    across_days = warehouse.execute(
        "SELECT count(*) FROM raw.readings SEMI JOIN (SELECT meter, slot FROM raw.readings WHERE slot IS NOT NULL "
        "GROUP BY ALL HAVING min(_data_date) < max(_data_date)) AS k USING (meter, slot)").fetchall()[0][0]
    assert within_day > 100 and across_days > 100
    assert duplicate_keys(warehouse, readings, sources["readings"], READINGS).rows == within_day
    [rule] = [r for r in contract_rules(sources["readings"]) if r.kind == "key_across_days"]
    [violation] = evaluate_rules(warehouse, readings, [rule], READINGS)
    assert violation.rows == across_days
