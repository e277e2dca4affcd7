"""PLATFORM_TARGET=team end to end: the test window's deliveries materialized through the whole graph on real
PostgreSQL, Redis and Celery workers (`make team-up`'s servers) give the same row counts in every table and the
same check results as the embedded run of the same deliveries (the `pipeline_run` fixture); the published tables
stay governed by the catalog after the run re-created them."""

import os
import shutil
import tempfile
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from conftest import PIPELINE_FIRST_DAY, PIPELINE_LAST_DAY
from platform_assets.demo import deliver, layer_row_counts
from platform_assets.instance import prepare_instance
from platform_assets.runner import materialize_range
from platform_assets.settings import load_settings
from platform_assets.team.servers import down, team_env_file, up
from test_team_servers import read_env_file


def check_outcomes(instance: dg.DagsterInstance, run_ids: list[str]) -> dict[str, bool]:
    """'asset:check' -> passed, of every check evaluated in the runs."""
    outcomes = {}
    for run_id in run_ids:
        for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            evaluation = record.get_dagster_event().event_specific_data
            outcomes[f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"] = evaluation.passed
    return outcomes


@pytest.fixture(scope="module")
def team_demo(pipeline_run):
    """The window delivered and materialized on team servers of its own (a data folder under /tmp: the postgres
    user must reach it), as `make team-up` then `PLATFORM_TARGET=team make demo` do."""
    data_dir = Path(tempfile.mkdtemp(prefix="platform-team-demo-"))
    data_dir.chmod(0o755)
    previous = dict(os.environ)
    os.environ["PLATFORM_DATA_DIR"] = str(data_dir)
    try:
        up(data_dir)
        os.environ.update(read_env_file(team_env_file(data_dir)))
        settings = load_settings()
        prepare_instance(settings)
        deliver(settings, PIPELINE_FIRST_DAY, PIPELINE_LAST_DAY)
        with dg.DagsterInstance.get() as instance:
            run = materialize_range(instance, PIPELINE_FIRST_DAY, PIPELINE_LAST_DAY, show_progress=False)
            yield {"run": run, "counts": layer_row_counts(settings), "checks": check_outcomes(instance, run.run_ids),
                   "settings": settings}
    finally:
        down(data_dir)
        os.environ.clear()
        os.environ.update(previous)
        shutil.rmtree(data_dir, ignore_errors=True)


def test_the_whole_graph_runs_on_the_team_target(team_demo):
    run = team_demo["run"]
    assert run.success, f"team run(s) {run.run_ids} failed; unpublished: {run.unpublished}"
    assert not run.held_back


def test_every_table_holds_as_many_rows_as_on_the_embedded_target(team_demo, pipeline_run):
    embedded = pipeline_run["first_counts"]
    assert team_demo["counts"] == embedded
    assert embedded["ml"]["flight_delay_predictions"] > 0 and embedded["marts"]["bookings"] > 0


def test_every_check_gives_the_same_result_as_on_the_embedded_target(team_demo, pipeline_run):
    embedded = check_outcomes(pipeline_run["instance"], pipeline_run["first"].run_ids)
    assert len(embedded) > 50
    assert team_demo["checks"] == embedded


def test_tables_the_run_created_are_governed_by_the_catalog(team_demo):
    """The run created every published table (and dbt re-created its models): the catalog's grants are applied
    again when the step closes the warehouse, so a second `governance apply` has nothing to do, and the tables
    belong to the governance owner, not to the platform's login."""
    from governance.catalog import load_catalog
    from governance.postgres import apply_catalog

    url = os.environ["PLATFORM_WAREHOUSE_URL"]
    catalog = load_catalog()
    assert apply_catalog(catalog, execute=False, url=url).steps == []
    published = sorted(key.replace("/", ".") for key, dataset in catalog.datasets.items() if dataset.published)
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT schemaname || '.' || tablename, tableowner FROM pg_tables WHERE schemaname || '.' || "
                       "tablename = ANY(%s)", (published,))
        owners = dict(cursor.fetchall())
    assert {"marts.bookings", "ml.flight_delay_predictions"} <= set(published)
    assert owners == dict.fromkeys(published, "gov_owner")
