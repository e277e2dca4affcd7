"""End to end through the daemon's own evaluation path: a replayed day is picked up by the landing-zone
sensor, ingested, and carried through the cleaned, feature and model layers by declarative automation."""

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from dagster_servers import start_run_server, stop
from deliveries import demo_asset_keys
from governance.catalog import load_catalog

from platform_assets.run_launcher import RUN_SERVER_TAG
from platform_assets.settings import REPO_ROOT
from test_operations import FAST_QUEUE  # the queue every second: each step of the chain is a queued run

HISTORY = (dt.date(2013, 1, 1), dt.date(2013, 1, 10))  # enough for a model that reaches the floors
REPLAYED = "2013-01-11"
TIMEOUT_SECONDS = 420
EXPECTED = ("raw/bookings", "staging/stg_flights__flights", "marts/bookings", "marts/flight_features",
            "ml/flight_delay_predictions")


def materialized(instance: dg.DagsterInstance, key: str, partition: str) -> bool:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey.from_user_string(key), asset_partitions=[partition]), limit=1)
    return bool(records.records)


def test_a_replayed_day_flows_through_sensor_and_automation(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    monkeypatch.setenv("PLATFORM_DATA_DIR", str(folder))
    from platform_assets.demo import deliver
    from platform_assets.instance import prepare_instance
    from platform_assets.runner import materialize_range
    from platform_assets.settings import load_settings
    from platform_assets.simulator.deliver import next_days, deliver_day

    settings = load_settings()
    home = prepare_instance(settings)
    with (home / "dagster.yaml").open("a") as config:
        config.write(FAST_QUEUE)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("PLATFORM_AUTOMATION_INTERVAL_SECONDS", "5")  # the daemon's sensors tick every 5 s, not 30
    deliver(settings, *HISTORY)
    with dg.DagsterInstance.get() as instance:
        assert materialize_range(instance, *HISTORY, show_progress=False).success  # history and a champion

        # The day is delivered (what `make replay` does) and then the daemon starts: its first sensor tick finds
        # the new delivery beside the history's, which the backfill already ingested.
        assert [str(day) for day in next_days(settings.landing_dir, 1)] == [REPLAYED]
        deliver_day(settings.landing_dir, dt.date.fromisoformat(REPLAYED), settings.seed, settings.scale)
        env = {**os.environ, "DAGSTER_HOME": str(home)}
        run_server = start_run_server(env, tmp_path / "run_server.log")  # as `make dev`: runs start on it
        log = (tmp_path / "daemon.log").open("w")
        daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.time() + TIMEOUT_SECONDS
            # Automation ticks every 5 s: a moment with every run finished can come before its next tick has
            # started the last model's run, so wait for each expected asset, not for a quiet instance.
            while time.time() < deadline and not (all(materialized(instance, key, REPLAYED) for key in EXPECTED)
                                                  and all(r.is_finished for r in instance.get_runs())):
                assert daemon.poll() is None, "the daemon stopped"
                time.sleep(3)
        finally:
            daemon.terminate()
            daemon.wait(30)
            stop(run_server)
            log.close()
        runs = instance.get_runs()
        summary = [(r.tags.get("platform/trigger"), r.tags.get("dagster/partition"), r.status.value,
                    [e.dagster_event.step_failure_data.error.message[:600] for e in instance.all_logs(
                        r.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)]) for r in runs]
        assert materialized(instance, "ml/flight_delay_predictions", REPLAYED), (
            f"runs: {summary}\n{(tmp_path / 'daemon.log').read_text()[-3000:]}")
        replay_runs = [r for r in runs if r.tags.get("dagster/partition") == REPLAYED]
        sensor_runs = [r for r in replay_runs if r.tags.get("platform/trigger") == "landing_zone_sensor"]
        assert sorted(r.tags["platform/source"] for r in sensor_runs) == ["bookings", "flights", "weather"], summary
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in sensor_runs), summary
        assert [r for r in replay_runs if r.tags.get("platform/trigger") == "downstream_automation"], summary
        for key in EXPECTED:
            assert materialized(instance, key, REPLAYED), (key, summary)
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in replay_runs), summary
        assert all(RUN_SERVER_TAG in r.tags for r in replay_runs), "each forked by the run server"

        # The daemon evaluated the freshness policies that come from the catalog's SLAs: all fresh now.
        from platform_assets.definitions import defs

        demo = demo_asset_keys(defs.resolve_asset_graph())
        with_sla = [dg.AssetKey.from_user_string(key) for key, dataset in load_catalog().datasets.items()
                    if dataset.freshness_sla and dg.AssetKey.from_user_string(key) in demo]
        states = {key.to_user_string(): record.freshness_state.value
                  for key, record in instance.get_freshness_state_records(with_sla).items()}
        assert states == {key.to_user_string(): "PASS" for key in with_sla}
