"""The Dagster instance on a real PostgreSQL server, started here: runs, event logs, sensors and alerts work
the same as on the default sqlite storage."""

import datetime as dt
import json
import shutil
import tempfile
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from deliveries import DEMO_RAW_KEYS
from platform_assets.instance import POSTGRES_STORAGE, prepare_instance
from platform_assets.resources import build_resources
from platform_assets.settings import REPO_ROOT, load_settings
from platform_assets.simulator.deliver import deliver_day
from platform_assets.team.postgres import start_postgres, stop_postgres

DAY = dt.date(2013, 5, 6)


@pytest.fixture(scope="module")
def postgres_url():
    # under /tmp, not pytest's folder: the server runs as the postgres user, who cannot enter root's 0700 folders
    server = start_postgres(Path(tempfile.mkdtemp(prefix="platform-pg-")), databases=("dagster",))
    try:
        yield server.url("dagster", driver="postgresql+psycopg2")
    finally:
        stop_postgres(server)
        shutil.rmtree(server.folder, ignore_errors=True)


def test_the_docs_document_the_postgres_storage_that_is_tested():
    assert POSTGRES_STORAGE.strip() in (REPO_ROOT / "docs" / "operations.md").read_text()


def test_runs_sensors_and_alerts_on_postgres_storage(data_dir, postgres_url, monkeypatch):
    monkeypatch.setenv("DAGSTER_PG_URL", postgres_url)
    settings = load_settings()
    home = prepare_instance(settings)
    assert "postgres_url" in (home / "dagster.yaml").read_text()
    from platform_assets.automation.alerts import owner_alert_sensor
    from platform_assets.automation.landing import landing_zone_sensor
    from platform_assets.definitions import defs
    from platform_assets.sources.raw_assets import RAW_ASSETS

    deliver_day(settings.landing_dir, DAY)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        context = dg.build_sensor_context(instance=instance, repository_def=defs.get_repository_def())
        requests = landing_zone_sensor(context).run_requests
        assert sorted((r.tags["platform/source"], r.partition_key) for r in requests) == sorted(
            (name, None if name in ("planes", "airports", "airlines") else DAY.isoformat())
            for name in ("flights", "weather", "bookings", "planes", "airports", "airlines"))

        result = dg.materialize(RAW_ASSETS, partition_key=DAY.isoformat(), instance=instance, selection=DEMO_RAW_KEYS,
                                resources=build_resources())
        assert result.success
        context = dg.build_sensor_context(instance=instance, cursor=context.cursor,
                                          repository_def=defs.get_repository_def())
        assert isinstance(landing_zone_sensor(context), dg.SkipReason), "the same delivery must not run twice"
        alerts = dg.build_sensor_context(instance=instance, repository_def=defs.get_repository_def())
        owner_alert_sensor(alerts)
        assert json.loads(alerts.cursor)["RUN_SUCCESS"], "the alert sensor read the run history from Postgres"

    with psycopg2.connect(postgres_url.replace("+psycopg2", "")) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs WHERE run_id = %s", (result.run_id,))
        assert cursor.fetchone()[0] == 1
        cursor.execute("SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = "
                       "'ASSET_MATERIALIZATION'", (result.run_id,))
        assert cursor.fetchone()[0] == 6, "one materialization per raw source, stored in Postgres"
