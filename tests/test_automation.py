"""Sensors and alerts against a real Dagster instance: the landing-zone sensor, retries of a delivery that
is not readable yet, and alerts routed to owners through the alert log and a webhook on 127.0.0.1."""

import csv
import datetime as dt
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg
import pytest

from deliveries import DEMO_RAW_KEYS, delivered_file, redeliver
from platform_assets.automation.alerts import owner_alert_sensor
from platform_assets.automation.landing import landing_zone_sensor
from platform_assets.definitions import defs
from platform_assets.resources import build_resources
from platform_assets.settings import REPO_ROOT, SettingsError, load_settings
from platform_assets.simulator.deliver import deliver_day
from platform_assets.sources.landing import manifest_path
from platform_assets.sources.raw_assets import RAW_ASSETS

DAY = dt.date(2013, 3, 4)


@pytest.fixture
def instance(data_dir):
    home = data_dir / "dagster_home"
    home.mkdir(parents=True)
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield instance


def evaluate(sensor, instance, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=defs.get_repository_def())
    result = sensor(context)
    requests = result.run_requests if isinstance(result, dg.SensorResult) else []
    return requests, context.cursor, result


def by_source(requests) -> dict[str, dg.RunRequest]:
    return {request.tags["platform/source"]: request for request in requests}


def test_a_complete_delivery_gives_exactly_one_run_request_per_source(data_dir, instance):
    landing = load_settings().landing_dir
    deliver_day(landing, DAY)
    requests, cursor, _ = evaluate(landing_zone_sensor, instance)
    requested = by_source(requests)
    assert set(requested) == {"flights", "weather", "bookings", "planes", "airports", "airlines"}
    for name, request in requested.items():
        assert request.asset_selection == [dg.AssetKey(["raw", name])]
        assert request.partition_key == (None if name in ("planes", "airports", "airlines") else DAY.isoformat())
        assert request.run_key.split(":")[:3] == ["landing", name, str(DAY)]

    again, cursor, _ = evaluate(landing_zone_sensor, instance, cursor)
    assert again == [], "the same delivery must not start a second run"

    deliver_day(landing, DAY, scale=2)  # a re-delivery of the day's bookings is a new delivery of bookings only
    redelivered, _, _ = evaluate(landing_zone_sensor, instance, cursor)
    assert [(r.tags["platform/source"], r.partition_key) for r in redelivered] == [("bookings", DAY.isoformat())]
    assert redelivered[0].run_key != requested["bookings"].run_key


def test_an_incomplete_delivery_waits_and_holds_back_only_its_source(data_dir, instance):
    landing = load_settings().landing_dir
    deliver_day(landing, DAY)
    listed = json.loads(manifest_path(landing, "weather", DAY).read_text())["files"]
    (landing / "weather" / listed[0]["name"]).unlink()  # the manifest lists a file that has not arrived
    requests, cursor, result = evaluate(landing_zone_sensor, instance)
    assert "weather" not in by_source(requests) and "flights" in by_source(requests)

    manifest_path(landing, "flights", DAY + dt.timedelta(days=1)).parent.mkdir(parents=True, exist_ok=True)
    deliver_day(landing, DAY + dt.timedelta(days=1))
    manifest_path(landing, "flights", DAY + dt.timedelta(days=1)).unlink()  # files without their manifest
    requests, _, result = evaluate(landing_zone_sensor, instance, cursor)
    assert sorted(r.tags["platform/source"] for r in requests) == ["bookings", "weather"]


def test_bad_manifests_start_a_run_that_refuses_them_and_never_stop_the_sensor(data_dir, instance, monkeypatch):
    """A manifest that is not JSON, or `{}`, is that delivery's problem: its run refuses it naming the manifest,
    every other delivery is requested and ingested, and a stray name is ignored."""
    monkeypatch.setenv("PLATFORM_DELIVERY_RETRIES", "0")
    landing = load_settings().landing_dir
    deliver_day(landing, DAY)
    manifest_path(landing, "weather", DAY).write_text("{not json")
    manifest_path(landing, "bookings", DAY).write_text("{}")
    stray = manifest_path(landing, "flights", DAY).with_name(f"manifest_{DAY} (copy).json")
    stray.write_bytes(manifest_path(landing, "flights", DAY).read_bytes())
    outside = manifest_path(landing, "flights", DAY).with_name("manifest_2019-03-04.json")  # no such partition
    outside.write_bytes(manifest_path(landing, "flights", DAY).read_bytes())
    requests, cursor, _ = evaluate(landing_zone_sensor, instance)
    assert {(r.tags["platform/source"], r.partition_key) for r in requests} >= {
        ("weather", str(DAY)), ("bookings", str(DAY)), ("flights", str(DAY))}
    assert all(r.partition_key in (None, str(DAY)) for r in requests), "no partition named after a stray file"

    result = materialize_raw(instance, DAY)
    assert not result.success
    materialized = {e.asset_key.path[1] for e in result.get_asset_materialization_events()}
    assert materialized == {"flights", "planes", "airports", "airlines"}
    refused = {e.asset_key.path[1]: e.metadata["refused"].value for e in result.get_asset_check_evaluations()
               if not e.passed and e.check_name == "contract"}
    assert "manifest_2013-03-04.json: not valid JSON" in refused["weather"]
    assert "manifest_2013-03-04.json: lacks source, data_date, files" in refused["bookings"]

    deliver_day(landing, DAY + dt.timedelta(days=1))  # the next good delivery is still requested
    following, _, _ = evaluate(landing_zone_sensor, instance, cursor)
    assert {r.tags["platform/source"] for r in following if r.partition_key == str(DAY + dt.timedelta(days=1))} \
        == {"flights", "weather", "bookings"}


def materialize_raw(instance, day):
    return dg.materialize(RAW_ASSETS, partition_key=day.isoformat(), instance=instance, selection=DEMO_RAW_KEYS,
                          resources=build_resources(), raise_on_error=False)


def test_a_day_ingested_after_its_delivery_is_not_requested_again(data_dir, instance):
    deliver_day(load_settings().landing_dir, DAY)
    assert materialize_raw(instance, DAY).success
    requests, cursor, _ = evaluate(landing_zone_sensor, instance)
    assert requests == [] and str(DAY) in json.loads(cursor)["flights"]


def _waits(instance) -> bool:
    runs = instance.get_runs(limit=1)
    return bool(runs) and any("not delivered yet, waiting" in (entry.user_message or "")
                              for entry in instance.all_logs(runs[0].run_id))


def test_a_delivery_arriving_while_the_step_waits_is_ingested(data_dir, instance, monkeypatch):
    monkeypatch.setenv("PLATFORM_DELIVERY_RETRY_SECONDS", "2")
    landing = load_settings().landing_dir

    def deliver_once_the_step_waits():
        while not _waits(instance):
            time.sleep(0.2)
        deliver_day(landing, DAY)

    late = threading.Thread(target=deliver_once_the_step_waits, daemon=True)
    late.start()
    result = materialize_raw(instance, DAY)
    late.join(5)
    assert result.success and _waits(instance)
    assert {e.asset_key for e in result.get_asset_materialization_events()} == set(DEMO_RAW_KEYS)


class Receiver(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        Receiver.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook(monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    Receiver.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("PLATFORM_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/alerts")
    yield Receiver.received
    server.shutdown()


def test_failures_alert_the_owners_of_the_affected_datasets(data_dir, instance, webhook, monkeypatch):
    monkeypatch.setenv("PLATFORM_DELIVERY_RETRIES", "0")
    landing = load_settings().landing_dir
    deliver_day(landing, DAY)
    redeliver(landing, "flights", DAY, b"")  # refused: the run fails
    bookings = delivered_file(landing, "bookings", DAY)
    with bookings.open(newline="") as file:
        rows = list(csv.DictReader(file))
    rows[0]["fare_usd"] = "not-a-number"  # a changed type: not published by the blocking contract check
    with bookings.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    redeliver(landing, "bookings", DAY, bookings.read_bytes())  # the manifest matches: a bad file, not a torn one

    run = materialize_raw(instance, DAY)
    assert not run.success
    _, cursor, _ = evaluate(owner_alert_sensor, instance)
    alerts = [json.loads(line) for line in load_settings().alert_log.read_text().splitlines()]
    by_kind = {(a["kind"], a["dataset"]): a for a in alerts}
    refused = by_kind[("run_failed", "raw/flights")]
    assert refused["owner"] == "team:flight-operations" and refused["on_call"] == "flight-ops-oncall@example.com"
    assert "empty file" in refused["message"] and refused["run_url"].endswith(f"/runs/{run.run_id}")
    assert refused["partition"] == DAY.isoformat()
    assert {"ops-delay-dashboard", "passenger-delay-notifications", "delay-model"} <= {
        c["name"] for c in refused["consumers"]}, "every consumer downstream of raw flights is named"
    assert "marts/flights" in refused["downstream"]
    gate = by_kind[("check_failed", "raw/bookings")]
    assert gate["check"] == "contract" and gate["owner"] == "team:passenger-data"
    notified = {c["name"]: c for c in gate["consumers"]}
    assert notified["passenger-delay-notifications"]["contact"] == "julia.weiss@example.com"
    assert ("run_failed", "raw/weather") not in by_kind, "published sources are not affected"
    assert webhook == alerts, "the webhook receives every alert the log records"

    again, _, _ = evaluate(owner_alert_sensor, instance, cursor)
    assert len(load_settings().alert_log.read_text().splitlines()) == len(alerts), "each failure alerts once"


def test_retries_running_out_alert_the_owners(data_dir, instance, monkeypatch):
    monkeypatch.setenv("PLATFORM_DELIVERY_RETRIES", "1")
    monkeypatch.setenv("PLATFORM_DELIVERY_RETRY_SECONDS", "0.5")
    run = materialize_raw(instance, DAY)  # never delivered
    assert not run.success and _waits(instance)
    evaluate(owner_alert_sensor, instance)
    alerts = [json.loads(line) for line in load_settings().alert_log.read_text().splitlines()]
    failed = {a["dataset"]: a for a in alerts if a["kind"] == "check_failed"}
    assert set(failed) == {key.to_user_string() for key in DEMO_RAW_KEYS}
    assert {a["dataset"] for a in alerts if a["kind"] == "run_failed"} == set(failed)
    assert failed["raw/bookings"]["on_call"] == "passenger-data-oncall@example.com"
    assert "not delivered yet" in failed["raw/bookings"]["message"]


def test_the_automation_interval_is_a_setting_and_a_bad_number_names_its_variable(data_dir, monkeypatch):
    """PLATFORM_AUTOMATION_INTERVAL_SECONDS sets how often the landing sensor and the automation evaluate (read
    when the code location loads, in a fresh interpreter here); a setting that is not a number is refused by name."""
    monkeypatch.setenv("PLATFORM_AUTOMATION_INTERVAL_SECONDS", "5")
    intervals = subprocess.run(
        [sys.executable, "-c", "from platform_assets.definitions import defs; print(sorted({name: "
         "defs.get_sensor_def(name).minimum_interval_seconds for name in ('landing_zone_sensor', "
         "'downstream_automation')}.items()))"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert intervals.stdout.strip() == "[('downstream_automation', 5), ('landing_zone_sensor', 5)]", intervals.stderr
    for variable, value in (("PLATFORM_AUTOMATION_INTERVAL_SECONDS", "0"), ("PLATFORM_AUTOMATION_INTERVAL_SECONDS",
                                                                           "often"), ("PLATFORM_SEED", "1.5"),
                            ("PLATFORM_WAREHOUSE_LOCK_WAIT_SECONDS", "nan")):
        monkeypatch.setenv(variable, value)
        with pytest.raises(SettingsError, match=f"^{variable}='{value}': expected"):
            load_settings()
        monkeypatch.delenv(variable)
    assert load_settings().automation_interval_seconds == 30
