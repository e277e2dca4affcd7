import datetime as dt
import hashlib

import duckdb
import pytest

from deliveries import delivered_file, redeliver
from governance.masking import personal_data
from platform_assets.checks.contracts import contract_rules, evaluate_rules
from platform_assets.simulator.deliver import deliver_day, demo_sources
from platform_assets.sources.landing import manifest_path
from platform_assets.sources.dbt_contract import DBT_CONTRACTS, contracts_macro
from platform_assets.sources.definitions import SOURCES, SourceDefinitionError, load_sources
from platform_assets.sources import ingest as ingestion
from platform_assets.sources.ingest import DeliveryError, ingest

DAY = dt.date(2013, 2, 14)


@pytest.fixture
def landing(tmp_path):
    deliver_day(tmp_path / "landing", DAY)
    deliver_day(tmp_path / "landing", DAY + dt.timedelta(days=1))
    return tmp_path / "landing"


@pytest.fixture
def warehouse(tmp_path):
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as connection:
        yield connection


@pytest.mark.parametrize("name", sorted(set(demo_sources()) - {"planes", "airports", "airlines"}))
def test_reingesting_a_day_replaces_it(landing, warehouse, name):
    source = SOURCES[name]
    first = ingest(warehouse, source, landing, DAY, DAY + dt.timedelta(days=1), "batch-1").rows_per_day
    again = ingest(warehouse, source, landing, DAY, DAY, "batch-2").rows_per_day
    assert again[DAY.isoformat()] == first[DAY.isoformat()] > 0
    rows = warehouse.execute(
        f"SELECT _data_date, _batch_id, count(*) FROM raw.{name} GROUP BY ALL ORDER BY 1"
    ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [(DAY, "batch-2"), (DAY + dt.timedelta(days=1), "batch-1")]


def test_every_row_records_where_it_came_from(landing, warehouse):
    ingest(warehouse, SOURCES["bookings"], landing, DAY, DAY, "batch-1")
    missing = warehouse.execute(
        "SELECT count(*) FROM raw.bookings WHERE _source_file IS NULL OR _file_sha256 IS NULL "
        "OR _ingested_at IS NULL OR _batch_id IS NULL OR _row_number IS NULL"
    ).fetchall()[0][0]
    assert missing == 0
    files = warehouse.execute("SELECT DISTINCT _source_file, _file_sha256 FROM raw.bookings").fetchall()
    assert len(files) == 1 and files[0][0] == str(delivered_file(landing, "bookings", DAY))
    numbers = warehouse.execute("SELECT min(_row_number), max(_row_number), count(*) FROM raw.bookings").fetchall()
    assert numbers[0][0] == 1 and numbers[0][1] == numbers[0][2]


def test_days_read_together_keep_each_file_s_own_lineage_and_row_order(landing, warehouse, monkeypatch):
    # Both days in one read: each row carries its own file, date, hash and line number in that file.
    batch = ingest(warehouse, SOURCES["bookings"], landing, DAY, DAY + dt.timedelta(days=1), "together")
    for day in (DAY, DAY + dt.timedelta(days=1)):
        path = delivered_file(landing, "bookings", day)
        ids = [line.split(",")[0].strip('"') or None for line in path.read_text().splitlines()[1:]]
        rows = warehouse.execute(
            "SELECT booking_id, _data_date, _file_sha256 FROM raw.bookings WHERE _source_file = $f ORDER BY _row_number",
            {"f": str(path)}).fetchall()
        assert [r[0] for r in rows] == ids
        assert {(r[1], r[2]) for r in rows} == {(day, hashlib.sha256(path.read_bytes()).hexdigest())}
    # One file per read gives the same published content.
    monkeypatch.setattr(ingestion, "READ_BATCH_BYTES", 1)
    assert ingest(warehouse, SOURCES["bookings"], landing, DAY, DAY + dt.timedelta(days=1), "apart").version == batch.version


def test_a_bad_file_among_good_ones_is_named_and_nothing_is_written(landing, warehouse):
    ingest(warehouse, SOURCES["flights"], landing, DAY, DAY + dt.timedelta(days=1), "good")
    text = delivered_file(landing, "flights", DAY + dt.timedelta(days=1)).read_text()
    bad = redeliver(landing, "flights", DAY + dt.timedelta(days=1), text[: len(text) // 2].rsplit(",", 3)[0].encode())
    with pytest.raises(DeliveryError, match=rf"{bad.name}: cannot be read as csv"):
        ingest(warehouse, SOURCES["flights"], landing, DAY, DAY + dt.timedelta(days=1), "bad")
    assert warehouse.execute("SELECT DISTINCT _batch_id FROM raw.flights").fetchall() == [("good",)]


def test_raw_text_sources_keep_values_as_delivered(landing, warehouse):
    ingest(warehouse, SOURCES["flights"], landing, DAY, DAY, "b")
    types = dict(warehouse.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'flights'"
    ).fetchall())
    assert types["dep_time"] == "VARCHAR" and types["_data_date"] == "DATE"
    cancelled = warehouse.execute("SELECT count(*) FROM raw.flights WHERE dep_time IS NULL").fetchall()[0][0]
    assert cancelled > 0  # real cancellations stay visible


def test_incomplete_delivery_is_refused_with_the_file_named(landing, warehouse):
    manifest_path(landing, "flights", DAY).unlink()
    with pytest.raises(DeliveryError, match=f"manifest_{DAY}.json: not delivered yet"):
        ingest(warehouse, SOURCES["flights"], landing, DAY, DAY, "b")


def test_a_file_that_changed_after_delivery_is_refused_and_nothing_is_written(landing, warehouse):
    ingest(warehouse, SOURCES["weather"], landing, DAY, DAY, "good")
    path = delivered_file(landing, "weather", DAY)
    path.write_text(path.read_text().replace("EWR", "XXX"))
    with pytest.raises(DeliveryError, match="weather_2013-02-14.jsonl: sha256 .* does not match the manifest"):
        ingest(warehouse, SOURCES["weather"], landing, DAY, DAY, "bad")
    assert warehouse.execute("SELECT DISTINCT _batch_id FROM raw.weather").fetchall() == [("good",)]


def test_source_definitions_name_the_broken_key(tmp_path):
    broken = tmp_path / "sources.yml"
    broken.write_text("tickets:\n  description: x\n  system: y\n  landing_path: t.csv\n  format: csv\n"
                      "  columns: {id: VARCHAR}\n")
    with pytest.raises(SourceDefinitionError, match=r"sources.yml: source 'tickets' has unknown fields landing_path"):
        load_sources(broken)
    broken.write_text("tickets:\n  description: x\n  format: xml\n")
    with pytest.raises(SourceDefinitionError, match="source 'tickets' is missing columns, system"):
        load_sources(broken)
    broken.write_text("tickets:\n  description: x\n  system: y\n  format: csv\n  cadence: weekly\n"
                      "  columns: {id: VARCHAR}\n")
    with pytest.raises(SourceDefinitionError, match="cadence 'weekly' is not one of daily, irregular, snapshot"):
        load_sources(broken)
    broken.write_text("../tickets:\n  description: x\n  system: y\n  format: csv\n  columns: {id: VARCHAR}\n")
    with pytest.raises(SourceDefinitionError, match="a source name is lowercase letters"):
        load_sources(broken)


def test_pattern_rule_reports_values_that_do_not_match_in_full(data_dir):
    rules = [rule for rule in contract_rules(SOURCES["bookings"]) if rule.kind == "pattern"]
    assert [rule.column for rule in rules] == ["email"]
    assert rules[0].warn_because  # the seeded malformed e-mails are a known gap, quarantined downstream
    with duckdb.connect() as connection:
        connection.execute(
            "CREATE TABLE batch AS SELECT * FROM (VALUES ('ann@mail.com', 1), ('bob at mail.com', 2), "
            "('cy@mail', 3), (NULL, 4), ('dee@mail.com ', 5)) AS t(email, _row_number)")
        connection.execute("ALTER TABLE batch ADD COLUMN _source_file VARCHAR DEFAULT 'landing/b.csv'")
        [violation] = evaluate_rules(connection, "batch", rules)
    assert violation.rows == 3
    # e-mails are personal data (catalog): the examples show their keyed hash, never the address
    email = personal_data("raw/bookings")
    assert violation.examples == [f"'{email.show('email', value)}' (b.csv row {row})"
                                  for value, row in (("bob at mail.com", 2), ("cy@mail", 3), ("dee@mail.com ", 5))]
    assert not any("mail" in example for example in violation.examples)


def test_dbt_source_contracts_macro_is_generated_from_sources_yml():
    # dbt tests and quarantine rules read the contracts through this macro: regenerate it after changing
    # sources.yml with `python -m platform_assets.sources.dbt_contract`
    assert DBT_CONTRACTS.read_text() == contracts_macro(SOURCES)
