"""The team target's servers, started here through platform_assets.team as `make team-up` starts them: a real
PostgreSQL, a real Redis and two real Celery workers. On them: the Dagster instance on PostgreSQL runs several runs
at once but never two over the same source and day, the Celery executor runs independent steps of one run at once
on two workers, and MLflow keeps runs and the model registry in PostgreSQL."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import psutil
import psycopg2
import pytest
import redis

from platform_assets.instance import prepare_instance
from platform_assets.settings import REPO_ROOT, TEAM_VARIABLES, load_settings
from platform_assets.team.servers import down, status, team_env_file, up
from test_operations import FAST_QUEUE  # the queue every second, as there

BIN = Path(sys.executable).parent
JOB_FILE = REPO_ROOT / "tests" / "team_job.py"
TIMEOUT_SECONDS = 60


def read_env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


@pytest.fixture(scope="module")
def team():
    """`team up` on a new data folder under /tmp (the postgres user must reach it), its settings in this process's
    environment as the Makefile exports them from team.env; `team down` afterwards."""
    data_dir = Path(tempfile.mkdtemp(prefix="platform-team-"))
    data_dir.chmod(0o755)
    previous = dict(os.environ)
    os.environ["PLATFORM_DATA_DIR"] = str(data_dir)
    began = time.perf_counter()
    try:
        servers = up(data_dir)
        print(f"team up {time.perf_counter() - began:.1f} s: {servers.seconds}")
        os.environ.update(read_env_file(team_env_file(data_dir)))
        yield servers
    finally:
        stopped = down(data_dir)
        os.environ.clear()
        os.environ.update(previous)
        shutil.rmtree(data_dir, ignore_errors=True)
        print(f"team down: {stopped}")


def test_team_up_reuses_what_runs_and_writes_private_settings(team):
    again = up(team.data_dir)
    assert again.seconds == {}, "nothing started the second time"
    assert (again.postgres.port, again.redis.port) == (team.postgres.port, team.redis.port)
    assert [worker.pid() for worker in again.workers] == [worker.pid() for worker in team.workers]
    assert all(worker.pid() for worker in team.workers)
    running, lines = status(team.data_dir)
    assert running, lines

    env_file = team_env_file(team.data_dir)
    assert env_file.stat().st_mode & 0o777 == 0o600, "it holds the broker's password"
    settings = read_env_file(env_file)
    assert set(settings) == {"PLATFORM_TARGET", *TEAM_VARIABLES.values()}
    loaded = load_settings()
    assert loaded.target == "team" and loaded.dagster_pg_url.startswith("postgresql+psycopg2://postgres:")
    with pytest.raises(psycopg2.OperationalError, match="password"):  # nobody connects without the password
        psycopg2.connect(loaded.warehouse_url.replace(urlparse(loaded.warehouse_url).password, "wrong"))
    assert loaded.dagster_home == team.data_dir / "team" / "dagster_home"

    # Redis listens on 127.0.0.1 only and answers only with the password.
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=team.redis.port).ping()
    assert redis.Redis.from_url(loaded.celery_broker).config_get("bind") == {"bind": "127.0.0.1"}
    with psycopg2.connect(loaded.warehouse_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT datname FROM pg_database")
        assert {"warehouse", "dagster", "mlflow"} <= {row[0] for row in cursor.fetchall()}
        cursor.execute("SHOW listen_addresses")
        assert cursor.fetchone()[0] == "127.0.0.1"
        cursor.execute("CREATE ROLE someone LOGIN PASSWORD 'a-password'")  # a login like governance apply's
    for private in ("dagster", "mlflow"):  # the platform's own stores take no other login
        with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
            psycopg2.connect(host="127.0.0.1", port=team.postgres.port, user="someone", password="a-password",
                             dbname=private)


def test_mlflow_keeps_runs_and_the_registry_in_postgres(team):
    import mlflow
    from sklearn.linear_model import LogisticRegression

    from platform_assets.ml.registry import CHAMPION, promote
    from platform_assets.resources import build_resources

    settings = load_settings()
    resource = build_resources(settings)["mlflow"]
    assert resource.tracking_uri == settings.mlflow_tracking_url and resource.tracking_uri.endswith("/mlflow")
    experiment_id = resource.configure()
    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_param("features", "x")
        mlflow.log_metric("holdout_roc_auc", 0.75)
        logged = mlflow.sklearn.log_model(model, name="model", registered_model_name=resource.registered_model_name,
                                          pip_requirements=["scikit-learn"], serialization_format="pickle")
    client = mlflow.MlflowClient(tracking_uri=resource.tracking_uri)
    version = str(logged.registered_model_version)
    promote(client, resource.registered_model_name, version, "test", "a first version", settings.mlflow_dir / "h.jsonl")

    champion = client.get_model_version_by_alias(resource.registered_model_name, CHAMPION)
    assert str(champion.version) == version and champion.run_id == run.info.run_id
    assert client.get_run(run.info.run_id).data.metrics == {"holdout_roc_auc": 0.75}
    loaded = mlflow.sklearn.load_model(f"models:/{resource.registered_model_name}@{CHAMPION}")
    assert list(loaded.predict([[0.0], [3.0]])) == [0, 1]
    # The artifacts in the data folder, as set explicitly; the tracking data in the mlflow database.
    artifacts = settings.mlflow_dir / "artifacts"
    assert client.get_experiment(experiment_id).artifact_location == artifacts.as_uri()
    assert any(path.name == "MLmodel" for path in artifacts.rglob("MLmodel"))
    with psycopg2.connect(settings.mlflow_tracking_url.replace("+psycopg2", "")) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT name, alias, version FROM registered_model_aliases")
        assert cursor.fetchall() == [(resource.registered_model_name, CHAMPION, int(version))]
        cursor.execute("SELECT count(*) FROM runs WHERE run_uuid = %s", (run.info.run_id,))
        assert cursor.fetchone()[0] == 1


# --- runs and steps on the workers, through a real daemon ---


def step_windows(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[float, float, int]]:
    """step -> (start, end, pid of the process that ran it), from the run's event log."""
    starts, windows = {}, {}
    for record in instance.get_records_for_run(run_id).records:
        entry = record.event_log_entry
        event = entry.dagster_event
        if event is None or entry.step_key is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            starts[entry.step_key] = (entry.timestamp, event.pid)
        elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
            start, pid = starts[entry.step_key]
            windows[entry.step_key] = (start, entry.timestamp, pid)
    return windows


def wait_for_runs(instance: dg.DagsterInstance, run_ids: list[str], daemon: subprocess.Popen, log: Path) -> list:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while not all((record := instance.get_run_record_by_id(run_id)) and record.dagster_run.is_finished
                  for run_id in run_ids):
        assert daemon.poll() is None, f"the daemon stopped:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"runs not finished after {TIMEOUT_SECONDS} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)
    return [instance.get_run_record_by_id(run_id) for run_id in run_ids]


def test_steps_run_in_parallel_on_the_workers_and_runs_at_once_except_over_the_same_source_and_day(team, tmp_path):
    from dagster._cli.job import _create_run  # the path of `dagster job launch`, with one workspace for all runs
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    settings = load_settings()
    home = prepare_instance(settings)
    config = (home / "dagster.yaml").read_text()
    assert "postgres_url" in config and "platform/source_day" in config
    (home / "dagster.yaml").write_text(config + FAST_QUEUE)
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(f"load_from:\n  - python_file:\n      relative_path: {JOB_FILE}\n"
                         f"      location_name: team_job\n      working_directory: {REPO_ROOT}\n")
    log = tmp_path / "daemon.log"
    worker_pids = {worker.pid() for worker in team.workers}
    with log.open("w") as output:
        daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", str(workspace)], cwd=REPO_ROOT,
                                  stdout=output, stderr=subprocess.STDOUT)
    try:
        with dg.DagsterInstance.get() as instance, \
                WorkspaceProcessContext(instance, WorkspaceFileTarget([str(workspace)])) as process_context:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            context = process_context.create_request_context()
            location = context.get_code_location("team_job")
            repository = location.get_repositories()["__repository__"]
            job = repository.get_full_job("two_sources")

            def submit(source: str, day: str) -> str:
                run = _create_run(instance=instance, code_location=location, remote_repo=repository, remote_job=job,
                                  run_config={}, tags={"dagster/partition": day, "platform/source": source,
                                                       "platform/source_day": f"{source}/{day}"},
                                  op_selection=None, run_id=None)
                return instance.submit_run(run.run_id, context).run_id

            # (a) one run alone: its two independent steps at once, on two worker processes
            alone = submit("flights", "2013-01-01")
            [record] = wait_for_runs(instance, [alone], daemon, log)
            assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
            windows = step_windows(instance, alone)
            (start_a, end_a, pid_a), (start_b, end_b, pid_b) = windows["load_flights"], windows["load_weather"]
            print(f"steps: load_flights {start_a:.2f}-{end_a:.2f} pid {pid_a}, "
                  f"load_weather {start_b:.2f}-{end_b:.2f} pid {pid_b}")
            assert max(start_a, start_b) < min(end_a, end_b), "the independent steps overlapped"
            assert windows["join_flights_and_weather"][0] >= max(end_a, end_b)
            assert pid_a != pid_b and {psutil.Process(pid).ppid() for pid in (pid_a, pid_b)} == worker_pids, \
                "each ran in the pool of one of the two workers team up started"
            engine_events = [entry.dagster_event.engine_event_data.metadata
                             for entry in instance.all_logs(alone, of_type=dg.DagsterEventType.ENGINE_EVENT)]
            assert {metadata["Celery worker"].value for metadata in engine_events if "Celery worker" in metadata} \
                == {f"{worker.name}@{os.uname().nodename}" for worker in team.workers}

            # (b) two days of a source at once; (c) the same source and day again waits for the first
            first, other_day, same_day = (submit("flights", "2013-01-02"), submit("flights", "2013-01-03"),
                                          submit("flights", "2013-01-02"))
            queued_at = time.time()
            records = wait_for_runs(instance, [first, other_day, same_day], daemon, log)
            assert [r.dagster_run.status for r in records] == [dg.DagsterRunStatus.SUCCESS] * 3
            first, other_day, same_day = records
            for name, record in (("first", first), ("other day", other_day), ("same day", same_day)):
                print(f"run {name}: {record.start_time - queued_at:.1f}-{record.end_time - queued_at:.1f} s")
            assert other_day.start_time < first.end_time and first.start_time < other_day.end_time, \
                "two runs over different days ran at the same time"
            assert queued_at < first.end_time, "the same-day run was queued while the first one ran"
            assert same_day.start_time >= first.end_time, "a run over the same source and day waited for the first"
    finally:
        daemon.terminate()
        daemon.wait(30)
