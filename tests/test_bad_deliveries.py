"""Each kind of bad delivery has a defined outcome: refused with the file and reason named, not published
by the contract gate, or published with a WARN check. Never half-written, never silently lost."""

import datetime as dt
import gzip
import io
import zipfile

import dagster as dg
import duckdb
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from deliveries import delivered_file
from deliveries import redeliver as redeliver_as
from platform_assets.simulator.deliver import deliver_day
from platform_assets.sources.definitions import SOURCES
from platform_assets.sources.ingest import DeliveryError, ingest
from platform_assets.sources.read_errors import MESSAGE_LIMIT

DAY = dt.date(2013, 4, 2)
FLIGHTS = SOURCES["flights"]


@pytest.fixture
def landing(tmp_path):
    for day in (DAY - dt.timedelta(days=1), DAY):
        deliver_day(tmp_path / "landing", day)
    return tmp_path / "landing"


@pytest.fixture
def warehouse(tmp_path, landing):
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as connection:
        ingest(connection, FLIGHTS, landing, DAY, DAY, "good")  # the last good version
        yield connection


def redeliver(landing, source, day, payload: bytes, rows: int | None = None):
    return redeliver_as(landing, source.name, day, payload, rows)


def flights_csv(landing, day=DAY) -> str:
    return delivered_file(landing, "flights", day).read_text()


def published_batches(warehouse):
    return warehouse.execute("SELECT DISTINCT _batch_id FROM raw.flights").fetchall()


def refused(warehouse, landing, payload, match) -> str:
    redeliver(landing, FLIGHTS, DAY, payload)
    with pytest.raises(DeliveryError, match=match) as error:
        ingest(warehouse, FLIGHTS, landing, DAY, DAY, "bad")
    assert published_batches(warehouse) == [("good",)], "the previous version must stay published"
    assert len(str(error.value)) <= MESSAGE_LIMIT
    return str(error.value)


def test_empty_file_is_refused(warehouse, landing):
    refused(warehouse, landing, b"", r"flights_2013-04-02.csv: empty file \(0 bytes\)")


def test_truncated_csv_is_refused(warehouse, landing):
    text = flights_csv(landing)
    refused(warehouse, landing, text[: len(text) // 2].rsplit(",", 3)[0].encode(),
            r"flights_2013-04-02.csv: cannot be read as csv")


def test_wrong_encoding_is_refused_with_the_engine_s_reason_and_the_first_bad_byte(warehouse, landing):
    text = flights_csv(landing).replace('"UA"', '"ÜA"')
    line = next(number for number, row in enumerate(text.splitlines(), 1) if '"ÜA"' in row)
    message = refused(warehouse, landing, text.encode("latin-1"), r"flights_2013-04-02.csv: cannot be read as csv: ")
    assert "This file is not utf-8 encoded" in message
    assert f"the first byte that is not UTF-8 is 0xdc at line {line}, byte " in message


def test_a_50_mb_line_is_refused_with_a_short_message_that_keeps_the_reason(warehouse, landing):
    lines = flights_csv(landing).splitlines()
    message = refused(warehouse, landing, "\n".join(lines[:5] + ["x" * 50_000_000]).encode(),
                      r"flights_2013-04-02.csv: cannot be read as csv: ")
    assert "Maximum line size of" in message and "bytes exceeded" in message
    assert "xxx… (10,000+ characters)" in message and len(message) < 600


def test_a_gzip_file_named_csv_is_named_as_gzip_and_gets_no_delimiter_hint(warehouse, landing):
    # Its first "line" is 1f 8b 08 00 09: a tab and no ',', which once earned a wrong-delimiter hint.
    payload = gzip.compress(flights_csv(landing).encode(), mtime=0x0A09)
    message = refused(warehouse, landing, payload,
                      r"flights_2013-04-02.csv: cannot be read as csv: a gzip file \(it starts with 1f 8b\) named "
                      r"\.csv: deliver it uncompressed, or name it \.csv\.gz")
    assert "delimiter" not in message


def test_a_zip_archive_named_csv_is_named(warehouse, landing):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"flights_{DAY}.csv", flights_csv(landing))
    refused(warehouse, landing, buffer.getvalue(),
            r"flights_2013-04-02.csv: cannot be read as csv: a zip archive \(it starts with 50 4b 03 04\) named \.csv")


def test_a_parquet_file_named_csv_is_named(warehouse, landing):
    buffer = io.BytesIO()
    pq.write_table(pacsv.read_csv(io.BytesIO(flights_csv(landing).encode())), buffer)
    refused(warehouse, landing, buffer.getvalue(),
            r"flights_2013-04-02.csv: cannot be read as csv: a Parquet file \(it starts with PAR1\) named \.csv: "
            r"the contract says csv")


def test_utf16_text_is_refused_by_its_byte_order_mark(warehouse, landing):
    refused(warehouse, landing, flights_csv(landing).encode("utf-16"),
            r"flights_2013-04-02.csv: cannot be read as csv: UTF-16 text \(byte order mark ff fe\)")


def test_missing_column_is_refused(warehouse, landing):
    lines = [",".join(line.split(",")[:-1]) for line in flights_csv(landing).splitlines()]
    refused(warehouse, landing, "\n".join(lines).encode(), r"missing column\(s\) time_hour$")


def test_renamed_column_is_refused_and_named(warehouse, landing):
    text = flights_csv(landing).replace('"tailnum"', '"tail_number"', 1)
    refused(warehouse, landing, text.encode(), r"missing column\(s\) tailnum; unexpected tail_number: renamed\?")


def test_a_file_without_its_header_is_refused_without_repeating_its_first_row(warehouse, landing):
    """Its first row stands where the header belongs: those are values (of bookings: personal data), not names."""
    lines = flights_csv(landing).splitlines()
    message = refused(warehouse, landing, "\n".join(lines[1:]).encode(),
                      r"missing column\(s\) year, .*; 19 other unexpected name\(s\), not shown")
    reason = message.split(".csv: ", 1)[1]  # the file's name has the date in it
    assert not [value for value in lines[1].split(",") if len(value.strip('"')) > 3 and value.strip('"') in reason]


def test_wrong_delimiter_is_refused_with_a_hint(warehouse, landing):
    text = flights_csv(landing).replace(",", ";")
    refused(warehouse, landing, text.encode(), r"flights_2013-04-02.csv: .*wrong delimiter\? the contract says ','")


def test_same_file_as_another_day_is_refused(warehouse, landing):
    ingest(warehouse, FLIGHTS, landing, DAY - dt.timedelta(days=1), DAY - dt.timedelta(days=1), "previous")
    copy = delivered_file(landing, "flights", DAY - dt.timedelta(days=1)).read_bytes()
    redeliver(landing, FLIGHTS, DAY, copy)
    with pytest.raises(DeliveryError, match=r"identical to .*flights_2013-04-01.csv, already delivered for another day"):
        ingest(warehouse, FLIGHTS, landing, DAY, DAY, "bad")


def test_same_file_twice_for_its_day_republishes_the_same_version(warehouse, landing):
    before = ingest(warehouse, FLIGHTS, landing, DAY, DAY, "again")
    after = ingest(warehouse, FLIGHTS, landing, DAY, DAY, "once more")
    assert before.published and after.published and before.version == after.version


def test_file_dated_in_the_future_is_refused(warehouse, landing):
    future = dt.date.today() + dt.timedelta(days=3)
    with pytest.raises(DeliveryError, match=f"flights dated {future}, in the future"):
        ingest(warehouse, FLIGHTS, landing, future, future, "bad")


def test_rows_dated_after_their_delivery_are_not_published(warehouse, landing):
    text = flights_csv(landing).replace("\n2013,4,2,", "\n2013,4,3,", 5)
    redeliver(landing, FLIGHTS, DAY, text.encode())
    batch = ingest(warehouse, FLIGHTS, landing, DAY, DAY, "bad")
    assert not batch.published
    assert [(v.rule.kind, v.rows) for v in batch.blocking] == [("row_date", 5)]
    # each example shows the row's own date, not the delivery's alone
    assert batch.blocking[0].examples[0] == "row dated 2013-04-03, delivered 2013-04-02 (flights_2013-04-02.csv row 1)"
    assert published_batches(warehouse) == [("good",)]


def test_a_flight_delivered_on_two_days_is_not_published_and_both_files_are_named(warehouse, landing):
    previous = DAY - dt.timedelta(days=1)
    ingest(warehouse, FLIGHTS, landing, previous, previous, "previous")
    earlier = flights_csv(landing, previous).splitlines()[7]  # data row 7 of the day before
    text = flights_csv(landing).rstrip("\n") + "\n" + earlier + "\n"
    redeliver(landing, FLIGHTS, DAY, text.encode(), rows=len(text.splitlines()) - 1)
    repeated_row = len(text.splitlines()) - 1
    fields = [value.strip('"') for value in earlier.split(",")]
    key = f"({', '.join(fields[i] for i in (0, 1, 2, 9, 10, 12))})"  # year, month, day, carrier, flight, origin
    expected = f"{key} in flights_{previous}.csv row 7 and flights_{DAY}.csv row {repeated_row}"
    for first_day in (DAY, previous):  # against the published day, and both days in one run
        batch = ingest(warehouse, FLIGHTS, landing, first_day, DAY, "bad")
        assert not batch.published
        [violation] = batch.blocking
        assert violation.rule.kind == "key_across_days" and violation.examples == [expected]
        assert violation.rows == (1 if first_day == DAY else 2)
    assert sorted(published_batches(warehouse)) == [("good",), ("previous",)]


def test_within_day_duplicates_name_the_file_and_rows(warehouse, landing):
    lines = flights_csv(landing).splitlines()
    redeliver(landing, FLIGHTS, DAY, "\n".join(lines + [lines[3]]).encode(), rows=len(lines))
    batch = ingest(warehouse, FLIGHTS, landing, DAY, DAY, "bad")
    [violation] = batch.blocking
    assert violation.rule.kind == "key" and violation.rows == 1
    assert violation.examples[0].endswith(f"twice in flights_{DAY}.csv (rows 3 and {len(lines)})")


def test_changed_type_fails_the_gate_and_keeps_the_last_good_version(warehouse, landing):
    good_version = ingest(warehouse, FLIGHTS, landing, DAY, DAY, "good").version
    lines = flights_csv(landing).splitlines()
    header = lines[0].split(",")
    flight = header.index('"flight"')
    changed = [lines[0]] + [",".join(v if i != flight else f"UA{v}" for i, v in enumerate(line.split(",")))
                            for line in lines[1:]]
    redeliver(landing, FLIGHTS, DAY, "\n".join(changed).encode())
    batch = ingest(warehouse, FLIGHTS, landing, DAY, DAY, "bad")
    assert not batch.published and batch.version == good_version
    rule = batch.blocking[0]
    assert rule.rule.name == "flights.flight is a INTEGER" and rule.rows == len(lines) - 1
    assert "flights_2013-04-02.csv row 1" in rule.examples[0]
    assert published_batches(warehouse) == [("good",)]


def test_extra_column_is_ingested_with_a_warning(warehouse, landing):
    lines = flights_csv(landing).splitlines()
    text = "\n".join([lines[0] + ',"gate"'] + [line + ",B22" for line in lines[1:]])
    path = redeliver(landing, FLIGHTS, DAY, text.encode())
    batch = ingest(warehouse, FLIGHTS, landing, DAY, DAY, "extra")
    assert batch.published and batch.unexpected_columns == {str(path): ["gate"]}


def test_the_dagster_gate_reports_failed_contracts_and_refused_files(tmp_path, monkeypatch, landing):
    """In Dagster: a failed contract is a failed blocking check and the asset is not materialized; a
    refused file fails the step with the file named."""
    from platform_assets.resources import WarehouseResource
    from platform_assets.sources.raw_assets import RAW_ASSETS

    monkeypatch.setenv("PLATFORM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PLATFORM_DELIVERY_RETRIES", "0")
    text = flights_csv(landing).replace("\n2013,4,2,", "\n2013,4,3,", 1)
    redeliver(landing, FLIGHTS, DAY, text.encode())
    redeliver(landing, SOURCES["weather"], DAY, b"")
    result = dg.materialize(
        RAW_ASSETS, partition_key=DAY.isoformat(), raise_on_error=False,
        resources={"warehouse": WarehouseResource(path=str(tmp_path / "warehouse" / "warehouse.duckdb"))},
        selection=[dg.AssetKey(["raw", "flights"]), dg.AssetKey(["raw", "weather"]), dg.AssetKey(["raw", "planes"])],
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error.message
    assert "weather_2013-04-02.jsonl: empty file" in failure
    materialized = {e.asset_key.path[1] for e in result.get_asset_materialization_events()}
    assert materialized == {"planes"}
    checks = {(e.asset_key.path[1], e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    assert checks[("flights", "contract")] is False and checks[("weather", "contract")] is False
    assert checks[("planes", "contract")] is True
