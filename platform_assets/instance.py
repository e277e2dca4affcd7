"""The Dagster instance under <data>/dagster_home: local sqlite storage by default."""

from __future__ import annotations

import os
from pathlib import Path

from platform_assets.settings import Settings

DAGSTER_YAML = """\
# Dagster instance of this data platform (written by platform_assets.instance; edit freely, it is kept).
# Storage: sqlite files in this folder (the event log writes a run's per-day asset events in batches:
# platform_assets/event_log.py). For a team deployment, replace with `storage: postgres:` (README).
concurrency:
  runs:
    # DuckDB allows one writing process per warehouse file: queued runs start one at a time. Within a run,
    # steps run one after another in the run's process (platform_assets/definitions.py).
    max_concurrent_runs: 1
telemetry:
  enabled: false
# Evaluate each asset's freshness policy (from the governance catalog's SLAs) in the daemon.
freshness:
  enabled: true
"""

SQLITE_EVENT_LOG = """\
event_log_storage:
  module: platform_assets.event_log
  class: BatchedSqliteEventLogStorage
  config:
    base_dir: {base_dir}
"""

# For a team: runs, event logs and schedules in PostgreSQL (the URL from the environment, never in the file).
POSTGRES_STORAGE = """\
storage:
  postgres:
    postgres_url:
      env: DAGSTER_PG_URL
"""


def prepare_instance(settings: Settings) -> Path:
    """Create DAGSTER_HOME with its dagster.yaml if missing (Postgres storage when DAGSTER_PG_URL is set,
    local sqlite otherwise), point this process at it, return it."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        storage = POSTGRES_STORAGE if os.environ.get("DAGSTER_PG_URL") else SQLITE_EVENT_LOG.format(
            base_dir=home / "history" / "runs")  # where Dagster's default sqlite storage keeps event logs
        config.write_text(DAGSTER_YAML + storage)
    os.environ["DAGSTER_HOME"] = str(home)
    return home
