"""Resources: the warehouse, dbt and MLflow. Everything points under the one data folder."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import dagster as dg
import duckdb
from dagster_dbt import DbtCliResource
from packaging.version import Version

from platform_assets.settings import DBT_PROJECT_DIR, Settings, load_settings
from platform_assets.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse

# DuckDB allows one writing process per file. Steps run one at a time in the run's process (the in-process
# executor, definitions.py) and the instance's run queue (dagster.yaml) runs one run at a time. Every step that
# opens the warehouse carries this op tag: an executor that runs steps in parallel limits it to one at a time
# with `tag_concurrency_limits: [{key: platform/warehouse, value: duckdb, limit: 1}]`. (Dagster concurrency
# pools would say this more directly, but with sqlite instance storage (dagster 1.13.27) every pooled step stays
# "blocked by limit" and the run hangs.)
WAREHOUSE_OP_TAGS = {"platform/warehouse": "duckdb"}


# DuckDB's message when another process holds the file: 'IO Error: Could not set lock on file "<path>": Conflicting
# lock is held in <program> (PID <n>). See also ...'. One writing process, or several readers, per file.
LOCK_CONFLICT = re.compile(
    r"Could not set lock on file .*Conflicting lock is held in (?P<program>.*?) \(PID (?P<pid>\d+)\)")


class WarehouseLockedError(RuntimeError):
    """Another process held the warehouse file for longer than the step was allowed to wait."""


def lock_wait_schedule(limit_seconds: float, first: float = 0.5, longest: float = 10.0) -> list[float]:
    """The pauses between attempts to open a locked warehouse: doubling from `first`, none longer than `longest`
    (so a waiter notices a free file soon), adding up to `limit_seconds` (the last one shortened)."""
    pauses: list[float] = []
    pause, left = first, limit_seconds
    while left > 0:
        pauses.append(min(pause, longest, left))
        left -= pauses[-1]
        pause *= 2
    return pauses


def lock_holder(message: str) -> str | None:
    """'PID <n> (<program>)' when DuckDB's error `message` says another process holds the file; else None."""
    match = LOCK_CONFLICT.search(message)
    return f"PID {match['pid']} ({match['program']})" if match else None


def connect_waiting(path: str, read_only: bool, config: dict, wait_seconds: float) -> duckdb.DuckDBPyConnection:
    """duckdb.connect, waiting with backoff while another process holds the file (each wait logged) for at most
    `wait_seconds`; then WarehouseLockedError. Any other error surfaces at once."""
    pauses, waited = iter(lock_wait_schedule(wait_seconds)), 0.0
    while True:
        try:
            return duckdb.connect(path, read_only=read_only, config=config)
        except duckdb.IOException as error:
            holder = lock_holder(str(error))
            if holder is None:
                raise
            pause = next(pauses, None)
            if pause is None:
                raise WarehouseLockedError(
                    f"warehouse {path} is still locked by {holder} after waiting {waited:.1f} s: let that process "
                    f"finish (or stop it), or wait longer with PLATFORM_WAREHOUSE_LOCK_WAIT_SECONDS") from None
        dg.get_dagster_logger().info(f"warehouse {path} is locked by {holder}: waiting {pause:.1f} s more "
                                     f"(waited {waited:.1f} s so far, at most {wait_seconds:g} s)")
        time.sleep(pause)
        waited += pause


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse file. Swap this resource (and the dbt target) for another warehouse."""

    path: str
    memory_limit: str | None = None  # DuckDB's default (80% of RAM) when unset; larger work spills to disk
    lock_wait_seconds: float = 300.0  # while another process holds the file (settings.py)

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        if not read_only:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
        config = {"memory_limit": self.memory_limit} if self.memory_limit else {}
        connection = connect_waiting(self.path, read_only, config, self.lock_wait_seconds)
        connection.execute("SET enable_progress_bar = false")  # a step's log is not a terminal
        try:
            yield connection
        finally:
            connection.close()

    def wait_until_free(self) -> None:
        """Return once the warehouse could be opened for writing, waiting as `connect` does: for a tool that opens
        it itself (dbt) and would fail at once."""
        with self.connect():
            pass

    def spill_folder(self) -> Path | None:
        """Where DuckDB spills what does not fit in memory: its default, beside the database file."""
        return Path(self.path + ".tmp")

    @contextmanager
    def open(self, read_only: bool = False) -> Iterator[Warehouse]:
        """The warehouse behind the interface every step uses (platform_assets/warehouse)."""
        with self.connect(read_only) as connection:
            yield DuckDBWarehouse(connection)


class PostgresWarehouseResource(dg.ConfigurableResource):
    """The team target's warehouse: PostgreSQL at `url` (PLATFORM_WAREHOUSE_URL). Raw ingestion stages each batch
    in a scratch DuckDB (`memory_limit`, as DUCKDB_MEMORY_LIMIT) and publishes it on the server
    (platform_assets/warehouse/postgres.py)."""

    url: str
    data_dir: str  # its masking secret keys the governed views (governance apply after a step creates tables)
    memory_limit: str | None = None
    lock_wait_seconds: float = 0.0  # the server takes concurrent writers: nothing to wait for

    def wait_until_free(self) -> None:
        """Nothing holds a PostgreSQL warehouse the way a process holds a DuckDB file."""

    def spill_folder(self) -> Path | None:
        """The server's spill is its own (pg_stat_database.temp_bytes, all sessions): not measured per step."""
        return None

    @contextmanager
    def open(self, read_only: bool = False) -> Iterator[Warehouse]:
        warehouse = PostgresWarehouse(self.url, self.memory_limit, governed_from=Path(self.data_dir))
        try:
            yield warehouse
        finally:
            warehouse.close()


class PlatformDbtCliResource(DbtCliResource):
    """dagster-dbt's dbt resource without three costs of every invocation (profiled on a one-day run): a new dbt
    process (`cli` below), and
    - `dbt --version`: a second dbt process (2-6 s) that asks pypi.org for the latest release (network at run
      time, a 1 s timeout offline). The executable is the dbt-core installed beside this interpreter, so its
      version is known here.
    - a dbt adapter built in this process (loading the profile, the project and the DuckDB plugin: about 3 s).
      dagster-dbt needs it only for `fetch_row_counts`/`fetch_column_metadata`; the platform reads row counts
      and column types from the warehouse itself once dbt has exited (transformations/dbt_assets.py)."""

    @cached_property
    def _cli_version(self) -> Version:
        from dbt.version import __version__  # noqa: PLC0415

        return Version(__version__)

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:
        return None

    def cli(self, args: Sequence[str], **kwargs):
        """dagster-dbt's invocation, with dbt run in this process (transformations/in_process.py): a dbt process
        costs about 5 s of start-up and imports before its first model."""
        from platform_assets.transformations.in_process import dbt_in_process  # noqa: PLC0415

        with dbt_in_process():
            return super().cli(args, **kwargs)


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking store and artifact root, set explicitly; telemetry off; never touches the network."""

    tracking_uri: str
    artifact_location: str
    experiment_name: str = "flight_delay"
    registered_model_name: str = "flight_delay_classifier"
    ui_url: str = "http://127.0.0.1:5000"

    def configure(self, experiment_name: str | None = None) -> str:
        """Point the mlflow client at this store and return the id of the experiment (default: training's)."""
        os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        import mlflow  # noqa: PLC0415  (slow import, only ML steps need it)

        mlflow.set_tracking_uri(self.tracking_uri)
        name = experiment_name or self.experiment_name
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        return mlflow.create_experiment(name, artifact_location=self.artifact_location)

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.ui_url}/#/experiments/{experiment_id}/runs/{run_id}"


def warehouse_resource(settings: Settings) -> WarehouseResource | PostgresWarehouseResource:
    """The one place the warehouse is chosen for the target: every step reaches it through the `warehouse`
    resource (and cost accounting through this)."""
    if settings.target == "team":
        return PostgresWarehouseResource(url=settings.warehouse_url, data_dir=str(settings.data_dir),
                                         memory_limit=settings.duckdb_memory_limit)
    return WarehouseResource(path=str(settings.warehouse_path), memory_limit=settings.duckdb_memory_limit,
                             lock_wait_seconds=settings.warehouse_lock_wait_seconds)


def build_resources(settings: Settings | None = None) -> dict:
    settings = settings or load_settings()
    return {
        "warehouse": warehouse_resource(settings),
        "dbt": PlatformDbtCliResource(
            project_dir=str(DBT_PROJECT_DIR),
            profiles_dir=str(DBT_PROJECT_DIR),
            # The dbt installed beside this interpreter, whether or not the venv is activated.
            dbt_executable=os.path.join(os.path.dirname(sys.executable), "dbt"),
        ),
        "mlflow": MlflowResource(
            tracking_uri=settings.mlflow_tracking_uri, artifact_location=settings.mlflow_artifact_location
        ),
    }
