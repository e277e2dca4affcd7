"""The delivery contract at the front door: only files a manifest lists are read, every manifest entry is a
plain name inside its source's folder, the rows read equal the rows announced, an empty delivery is a finding,
and one bad manifest refuses that delivery only."""

import datetime as dt
import json
import os

import dagster as dg
import duckdb
import pytest

from deliveries import delivered_file, redeliver
from platform_assets.simulator.deliver import deliver_day
from platform_assets.sources.definitions import SOURCES
from platform_assets.sources.landing import DeliveryError, manifest_path, read_manifest, unlisted_files
from platform_assets.sources.ingest import ingest

DAY = dt.date(2013, 6, 3)
BOOKINGS = SOURCES["bookings"]


@pytest.fixture
def landing(tmp_path):
    for day in (DAY - dt.timedelta(days=1), DAY):
        deliver_day(tmp_path / "landing", day)
    return tmp_path / "landing"


@pytest.fixture
def warehouse(tmp_path):
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as connection:
        yield connection


def rewrite_manifest(landing, source, day, change) -> None:
    path = manifest_path(landing, source, day)
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def altered_bookings(landing) -> bytes:
    """The day's bookings export, changed after export: every fare set to 1 dollar."""
    lines = delivered_file(landing, "bookings", DAY).read_text().splitlines()
    header = lines[0].split(",")
    fare = header.index('"fare_usd"') if '"fare_usd"' in header else header.index("fare_usd")
    return "\n".join([lines[0]] + [",".join(v if i != fare else "1.0" for i, v in enumerate(line.split(",")))
                                   for line in lines[1:]]).encode()


def published_fares(warehouse) -> set:
    try:
        return {row[0] for row in warehouse.execute("SELECT DISTINCT fare_usd FROM raw.bookings").fetchall()}
    except duckdb.CatalogException:
        return set()


def test_a_file_no_manifest_lists_is_never_read(landing, warehouse):
    """Tamper by omission: the altered file sits beside the delivery, its entry left out of the manifest."""
    (landing / "bookings" / "bookings_extra.csv").write_bytes(altered_bookings(landing))
    assert [p.name for p in unlisted_files(landing, "bookings")] == ["bookings_extra.csv"]
    batch = ingest(warehouse, BOOKINGS, landing, DAY, DAY, "b")
    assert batch.published and "1.0" not in published_fares(warehouse)
    sources = {row[0] for row in warehouse.execute("SELECT DISTINCT _source_file FROM raw.bookings").fetchall()}
    assert sources == {str(delivered_file(landing, "bookings", DAY))}


def test_a_manifest_without_the_day_s_file_refuses_the_delivery(landing, warehouse):
    rewrite_manifest(landing, "bookings", DAY, lambda m: m.update(files=[]))
    with pytest.raises(DeliveryError, match=r"manifest_2013-06-03.json: files must be a non-empty list"):
        ingest(warehouse, BOOKINGS, landing, DAY, DAY, "b")
    assert published_fares(warehouse) == set()


@pytest.mark.parametrize("name", ["../bookings/bookings_2013-06-03.csv", "/etc/passwd", "..", "sub/b.csv",
                                  ".hidden.csv", "_manifests", "", "b\nc.csv", "b\x00.csv", "x" * 256, 42])
def test_a_manifest_entry_must_be_a_plain_name_in_the_source_folder(landing, warehouse, name):
    rewrite_manifest(landing, "bookings", DAY, lambda m: m["files"][0].update(name=name))
    with pytest.raises(DeliveryError, match=r"files\[0\].name .* is not a plain file name in the source's folder"):
        ingest(warehouse, BOOKINGS, landing, DAY, DAY, "b")
    assert published_fares(warehouse) == set()


def test_an_absolute_or_parent_path_cannot_reach_an_altered_file_outside(landing, warehouse, tmp_path):
    outside = tmp_path / "outside.csv"
    outside.write_bytes(altered_bookings(landing))
    for name in (str(outside), "../../outside.csv"):
        rewrite_manifest(landing, "bookings", DAY, lambda m, name=name: m["files"][0].update(name=name))
        with pytest.raises(DeliveryError, match="is not a plain file name"):
            ingest(warehouse, BOOKINGS, landing, DAY, DAY, "b")
    assert published_fares(warehouse) == set()


def test_a_symlink_leaving_the_landing_zone_is_refused_and_not_read(landing, warehouse, tmp_path):
    outside = tmp_path / "outside.csv"
    payload = altered_bookings(landing)
    outside.write_bytes(payload)
    listed = delivered_file(landing, "bookings", DAY)
    redeliver(landing, "bookings", DAY, payload)  # the manifest even carries the altered file's sha256
    listed.unlink()
    listed.symlink_to(outside)
    with pytest.raises(DeliveryError, match=rf"{listed.name}: a symlink to {outside}, outside the landing zone"):
        ingest(warehouse, BOOKINGS, landing, DAY, DAY, "b")
    assert published_fares(warehouse) == set()


def test_a_symlink_into_another_source_s_folder_is_refused(landing, warehouse):
    listed = delivered_file(landing, "bookings", DAY)
    other = landing / "flights" / "borrowed.csv"
    listed.rename(other)
    listed.symlink_to(other)
    with pytest.raises(DeliveryError, match="outside the source's own folder"):
        ingest(warehouse, BOOKINGS, landing, DAY, DAY, "b")


def test_an_oversized_manifest_is_refused_unread(landing):
    manifest_path(landing, "bookings", DAY).write_bytes(b" " * (5 * 2**20))
    with pytest.raises(DeliveryError, match=r"5,242,880 bytes, more than a manifest's"):
        read_manifest(landing, "bookings", DAY)


def test_a_symlink_inside_the_landing_zone_is_read(landing, warehouse):
    listed = delivered_file(landing, "bookings", DAY)
    kept = landing / "bookings" / "kept.csv"
    listed.rename(kept)
    listed.symlink_to(kept)
    assert ingest(warehouse, BOOKINGS, landing, DAY, DAY, "b").published


@pytest.mark.parametrize("content, problem", [
    (b"{not json", r"not valid JSON \(line 1 column 2\)"),
    (b"{}", "lacks source, data_date, files"),
    (b"[]", "must be a JSON object"),
    (b"\xff\xfe", "not valid JSON"),
    (json.dumps({"source": "flights", "data_date": "2013-06-03", "files": []}).encode(), "says source 'flights'"),
    (json.dumps({"source": "bookings", "data_date": "2013-06-04", "files": []}).encode(), "says data_date"),
    (json.dumps({"source": "bookings", "data_date": "2013-06-03",
                 "files": [{"name": "b.csv", "sha256": "x", "rows": 1}]}).encode(), r"files\[0\].sha256 of b.csv is not 64"),
    (json.dumps({"source": "bookings", "data_date": "2013-06-03",
                 "files": [{"name": "b.csv", "sha256": "0" * 64, "rows": "10"}]}).encode(), r"files\[0\].rows of b.csv must be"),
])
def test_a_manifest_that_cannot_be_read_refuses_that_delivery_naming_it(landing, content, problem):
    manifest_path(landing, "bookings", DAY).write_bytes(content)
    with pytest.raises(DeliveryError, match=rf"manifest_2013-06-03.json: {problem}.*delivery of bookings for "
                                            "2013-06-03 is refused"):
        read_manifest(landing, "bookings", DAY)


def test_rows_read_must_equal_rows_announced(landing, warehouse):
    lines = delivered_file(landing, "bookings", DAY).read_text().splitlines()
    redeliver(landing, "bookings", DAY, "\n".join(lines[:-300]).encode())  # 300 rows fewer, manifest unchanged
    announced = len(lines) - 1
    with pytest.raises(DeliveryError, match=rf"{announced - 300:,} data rows read, but the manifest announced "
                                            rf"{announced:,}"):
        ingest(warehouse, BOOKINGS, landing, DAY, DAY, "b")
    assert published_fares(warehouse) == set()


def test_a_header_only_delivery_is_refused_unless_the_source_allows_empty(landing, warehouse):
    header = delivered_file(landing, "bookings", DAY).read_text().splitlines()[0]
    redeliver(landing, "bookings", DAY, (header + "\n").encode(), rows=0)
    with pytest.raises(DeliveryError, match="no data rows .header only. for 2013-06-03; an empty delivery is refused"):
        ingest(warehouse, BOOKINGS, landing, DAY, DAY, "b")
    # A source that may deliver nothing: published, and the volume check sees the day's 0 rows.
    history = [DAY - dt.timedelta(days=n) for n in range(6, 0, -1)]
    for day in history[:-1]:
        deliver_day(landing, day)
    ingest(warehouse, BOOKINGS, landing, history[0], DAY - dt.timedelta(days=1), "history")
    allowing = dataclasses_replace(BOOKINGS, allow_empty=True)
    batch = ingest(warehouse, allowing, landing, DAY, DAY, "empty")
    assert batch.published and batch.rows_per_day == {str(DAY): 0}
    assert [(day, rows) for day, rows, _ in batch.volume_anomalies] == [(str(DAY), 0)]


def dataclasses_replace(source, **changes):
    import dataclasses

    return dataclasses.replace(source, **changes)


def test_a_reference_snapshot_is_sent_once_and_used_until_a_newer_one_arrives(landing, warehouse):
    from platform_assets.sources.ingest import ingest_deliveries, loaded_snapshots, planned_deliveries

    planes = SOURCES["planes"]
    assert sorted(os.listdir(landing / "planes" / "_manifests")) == [f"manifest_{DAY - dt.timedelta(days=1)}.json"]
    first = planned_deliveries(landing, planes, loaded=loaded_snapshots(warehouse, planes))
    ingest_deliveries(warehouse, planes, first, "first")
    assert planned_deliveries(landing, planes, loaded=loaded_snapshots(warehouse, planes)) == [], \
        "an unchanged snapshot is not loaded again"
    later = DAY + dt.timedelta(days=5)
    deliver_day(landing, later)
    assert not manifest_path(landing, "planes", later).exists(), "an unchanged snapshot is not re-sent"
    # A newer snapshot (one aircraft more) arrives and is loaded beside the first.
    from platform_assets.sources.landing import write_delivery

    rows = warehouse.execute("SELECT count(*) FROM raw.planes").fetchall()[0][0]
    warehouse.execute(f"COPY (SELECT * EXCLUDE (_data_date, _source_file, _file_sha256, _row_number, _batch_id, "
                      f"_ingested_at) FROM raw.planes UNION ALL SELECT 'N1NEW', 2013, 'Fixed wing', 'X', 'Y', 2, "
                      f"100, NULL, 'Turbo-fan') TO '{landing}/new.parquet' (FORMAT parquet)")
    payload = (landing / "new.parquet").read_bytes()
    (landing / "new.parquet").unlink()
    write_delivery(landing, "planes", later, {"planes_new.parquet": (payload, rows + 1)})
    newer = planned_deliveries(landing, planes, loaded=loaded_snapshots(warehouse, planes))
    assert [d.data_date for d in newer] == [later]
    assert ingest_deliveries(warehouse, planes, newer, "newer").published
    assert warehouse.execute("SELECT _data_date, count(*) FROM raw.planes GROUP BY 1 ORDER BY 1").fetchall() == [
        (DAY - dt.timedelta(days=1), rows), (later, rows + 1)]


def test_a_stray_name_in_a_manifests_folder_is_ignored_with_a_warning(data_dir):
    from platform_assets.settings import load_settings
    from platform_assets.simulator.__main__ import main as simulator
    from platform_assets.sources.landing import delivered_manifests

    landing = load_settings().landing_dir
    deliver_day(landing, DAY)
    stray = manifest_path(landing, "flights", DAY).with_name(f"manifest_{DAY} (copy).json")
    stray.write_bytes(manifest_path(landing, "flights", DAY).read_bytes())
    (stray.parent / "manifest_2013-02-30.json").write_text("{}")
    manifests, ignored = delivered_manifests(landing, "flights")
    assert list(manifests) == [DAY]
    assert [w.split(": ")[1] for w in ignored] == ["ignored, not a manifest name (manifest_YYYY-MM-DD.json)"] * 2
    assert simulator(["next", "--days", "1"]) == 0  # make replay
    assert manifest_path(landing, "flights", DAY + dt.timedelta(days=1)).exists()
