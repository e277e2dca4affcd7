"""Delivery of lineage to a Marquez-compatible endpoint: real HTTP on 127.0.0.1, real materializations.
Every event arrives; an endpoint that stops mid-run or fails neither fails the run nor loses an event: the
events wait in the queue and are delivered once it is back. FAIL events carry the reason."""

import datetime as dt
import json
import os
import subprocess
import sys

import dagster as dg
import pytest

from lineage_receiver import LineageReceiver
from openlineage_spec import event_problems

DAY = dt.date(2013, 2, 4)
SOURCE_COUNT = 6


def _local_events(settings) -> list[dict]:
    return [json.loads(line) for line in (settings.lineage_dir / "events.jsonl").read_text().splitlines()]


def _identities(events) -> list[tuple[str, str]]:
    return [(event["run"]["runId"], event["eventType"]) for event in events]


def _lineage_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "platform_assets.lineage", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=120)


@pytest.fixture
def openlineage_env(monkeypatch):
    """Point the transport somewhere; afterwards drop the variables the client derives from OPENLINEAGE_URL."""
    before = set(os.environ)
    yield lambda url: monkeypatch.setenv("OPENLINEAGE_URL", url)
    for name in set(os.environ) - before:
        if name.startswith("OPENLINEAGE"):
            os.environ.pop(name)


@pytest.fixture
def delivered(data_dir):
    from platform_assets.demo import deliver
    from platform_assets.settings import load_settings

    settings = load_settings()
    deliver(settings, DAY, DAY)
    return settings


def _materialize_raw(settings) -> dg.ExecuteInProcessResult:
    from platform_assets.resources import WarehouseResource
    from platform_assets.sources.raw_assets import RAW_ASSETS

    from deliveries import DEMO_RAW_KEYS

    return dg.materialize(RAW_ASSETS, partition_key=DAY.isoformat(), raise_on_error=False, selection=DEMO_RAW_KEYS,
                          resources={"warehouse": WarehouseResource(path=str(settings.warehouse_path))})


def test_the_receiver_gets_every_event_of_the_run(pipeline_run):
    """The pipeline's second run delivered to an HTTP receiver (conftest): the same events as recorded."""
    run_id = pipeline_run["second"].run_id
    recorded = [e for e in _local_events(pipeline_run["settings"])
                if e["run"]["facets"]["parent"]["run"]["runId"] == run_id]
    received = pipeline_run["lineage_receiver"].events
    assert len(recorded) > 40
    assert _identities(received) == _identities(recorded)
    assert received == recorded
    assert not (pipeline_run["settings"].lineage_dir / "pending.jsonl").read_text()


def test_a_receiver_that_stops_mid_run_gets_every_event_once_it_is_back(delivered, openlineage_env):
    receiver = LineageReceiver(stop_after=3).start()
    openlineage_env(receiver.url)

    result = _materialize_raw(delivered)

    assert result.success
    recorded = _local_events(delivered)
    assert len(recorded) == 2 * SOURCE_COUNT
    assert 3 <= len(receiver.events) < len(recorded)
    pending = _lineage_cli("pending")
    assert pending.returncode == 0
    waiting = len(recorded) - len(receiver.events)
    assert f"{waiting} event(s) pending delivery to {receiver.url}/api/v1/lineage" in pending.stdout
    assert "failed: ConnectionError" in pending.stdout

    back = LineageReceiver(port=receiver.port).start()
    try:
        flushed = _lineage_cli("flush")
    finally:
        back.stop()
    assert flushed.returncode == 0, flushed.stdout + flushed.stderr
    assert f"delivered {waiting} event(s)" in flushed.stdout
    assert _identities(receiver.events + back.events) == _identities(recorded)
    assert "0 event(s) pending" in _lineage_cli("pending").stdout


def test_a_failing_endpoint_is_tried_once_and_the_run_goes_on(delivered, openlineage_env):
    receiver = LineageReceiver(failing=True).start()
    openlineage_env(receiver.url)
    try:
        result = _materialize_raw(delivered)
    finally:
        receiver.stop()

    assert result.success
    assert receiver.requests == 1  # no retries inside the step; later events wait behind the failure
    queued = [json.loads(line) for line in (delivered.lineage_dir / "pending.jsonl").read_text().splitlines()]
    assert _identities(queued) == _identities(_local_events(delivered))
    state = json.loads((delivered.lineage_dir / "delivery.json").read_text())
    assert "503" in state["error"] or "RetryError" in state["error"]


def test_refused_and_unpublished_deliveries_end_in_fail_with_the_reason(delivered, monkeypatch):
    from deliveries import delivered_file, redeliver

    monkeypatch.setenv("PLATFORM_DELIVERY_RETRIES", "0")  # the missing file fails at once (retries: test_automation)

    landing = delivered.landing_dir
    delivered_file(landing, "weather", DAY).unlink()
    flights = delivered_file(landing, "flights", DAY).read_text()
    redeliver(landing, "flights", DAY, flights.replace("\n2013,2,4,", "\n2013,2,5,", 1).encode())

    result = _materialize_raw(delivered)

    assert not result.success
    events = _local_events(delivered)
    assert [problem for event in events for problem in event_problems(event)] == []
    ends = {e["job"]["name"]: e for e in events if e["eventType"] != "START"}
    assert ends["raw/planes"]["eventType"] == "COMPLETE"
    weather = ends["raw/weather"]
    assert weather["eventType"] == "FAIL"
    assert "listed in the manifest but not (yet) in the landing zone" in \
        weather["run"]["facets"]["errorMessage"]["message"]
    flights_end = ends["raw/flights"]
    assert flights_end["eventType"] == "FAIL"
    message = flights_end["run"]["facets"]["errorMessage"]["message"]
    assert "blocking check failed: contract" in message and "NOT published" in message
    assert "version" not in flights_end["outputs"][0]["facets"]
