"""Sensors and alerts against a real Dagster instance: the landing-zone sensor, retries of a delivery that
is not readable yet, and alerts routed to owners through the alert log and a webhook on 127.0.0.1."""

import csv
import datetime as dt
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg
import pytest

from platform_assets.automation.alerts import owner_alert_sensor
from platform_assets.automation.landing import landing_zone_sensor
from platform_assets.definitions import defs
from platform_assets.resources import build_resources
from platform_assets.settings import load_settings
from platform_assets.simulator.deliver import deliver_day, manifest_path
from platform_assets.sources.raw_assets import raw_assets

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


def test_a_complete_delivery_gives_exactly_one_run_request(data_dir, instance):
    landing = load_settings().landing_dir
    deliver_day(landing, DAY)
    requests, cursor, _ = evaluate(landing_zone_sensor, instance)
    assert [(r.partition_key, r.run_key.split(":")[:2]) for r in requests] == [(DAY.isoformat(), ["landing", str(DAY)])]
    assert set(requests[0].asset_selection or raw_assets.keys) == set(raw_assets.keys)

    again, cursor, _ = evaluate(landing_zone_sensor, instance, cursor)
    assert again == [], "the same delivery must not start a second run"

    deliver_day(landing, DAY, scale=2)  # a re-delivery of the day is a new delivery
    redelivered, _, _ = evaluate(landing_zone_sensor, instance, cursor)
    assert [r.partition_key for r in redelivered] == [DAY.isoformat()]
    assert redelivered[0].run_key != requests[0].run_key


def test_an_incomplete_delivery_gives_none(data_dir, instance):
    landing = load_settings().landing_dir
    deliver_day(landing, DAY)
    manifest = manifest_path(landing, DAY)
    listed = json.loads(manifest.read_text())["files"]
    (landing / listed[0]["path"]).unlink()  # the manifest lists a file that has not arrived
    requests, cursor, result = evaluate(landing_zone_sensor, instance)
    assert requests == [] and "waiting for" in result.skip_message

    manifest.unlink()  # files without a manifest: the delivery is still being written
    deliver_day(landing, DAY + dt.timedelta(days=1))
    manifest_path(landing, DAY + dt.timedelta(days=1)).unlink()
    requests, _, result = evaluate(landing_zone_sensor, instance, cursor)
    assert requests == [] and result.skip_message == "no new complete delivery"


def materialize_raw(instance, day):
    return dg.materialize([raw_assets], partition_key=day.isoformat(), instance=instance,
                          resources=build_resources(), raise_on_error=False)


def test_a_day_ingested_after_its_delivery_is_not_requested_again(data_dir, instance):
    deliver_day(load_settings().landing_dir, DAY)
    assert materialize_raw(instance, DAY).success
    requests, cursor, _ = evaluate(landing_zone_sensor, instance)
    assert requests == [] and str(DAY) in json.loads(cursor)


def test_a_delivery_arriving_during_retries_is_ingested(data_dir, instance, monkeypatch):
    monkeypatch.setenv("PLATFORM_DELIVERY_RETRY_SECONDS", "2")
    landing = load_settings().landing_dir

    def deliver_once_the_step_waits():
        while True:
            runs = instance.get_runs(limit=1)
            if runs and instance.all_logs(runs[0].run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY):
                return deliver_day(landing, DAY)
            time.sleep(0.2)

    late = threading.Thread(target=deliver_once_the_step_waits, daemon=True)
    late.start()
    result = materialize_raw(instance, DAY)
    late.join(5)
    assert result.success
    assert [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]


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
    manifest = json.loads(manifest_path(landing, DAY).read_text())
    flights = landing / next(f["path"] for f in manifest["files"] if f["source"] == "flights")
    flights.write_bytes(b"")  # refused: the run fails
    bookings = landing / next(f["path"] for f in manifest["files"] if f["source"] == "bookings")
    with bookings.open(newline="") as file:
        rows = list(csv.DictReader(file))
    rows[0]["fare_usd"] = "not-a-number"  # a changed type: not published by the blocking contract check
    with bookings.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for entry in manifest["files"]:  # the manifest matches what was delivered: bad files, not torn ones
        entry["sha256"] = hashlib.sha256((landing / entry["path"]).read_bytes()).hexdigest()
    manifest_path(landing, DAY).write_text(json.dumps(manifest))

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
    assert not run.success
    assert [e for e in run.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    evaluate(owner_alert_sensor, instance)
    alerts = [json.loads(line) for line in load_settings().alert_log.read_text().splitlines()]
    failed = {a["dataset"]: a for a in alerts if a["kind"] == "run_failed"}
    assert set(failed) == {key.to_user_string() for key in raw_assets.keys}
    assert failed["raw/bookings"]["on_call"] == "passenger-data-oncall@example.com"
    assert "incomplete" in failed["raw/bookings"]["message"]
