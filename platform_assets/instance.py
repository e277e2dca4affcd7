"""The Dagster instance under <data>/dagster_home: local sqlite storage by default."""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

import yaml

from platform_assets.settings import Settings

DAGSTER_YAML = """\
# Dagster instance of this data platform (written by platform_assets.instance; edit freely, it is kept: only a
# missing run_launcher or run_monitoring block is ever appended).
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

# A run whose process died (killed, out of memory, the machine or `make dev` stopped) would stay STARTED and hold
# the one-run queue forever. The daemon's run monitoring asks the run launcher whether each run's process is alive
# and marks a dead run FAILURE. Each block is keyed by its top-level key: an existing dagster.yaml without it gets it
# appended (prepare_instance); one that has the key, even `enabled: false`, is kept as it is.
RUN_MONITORING_BLOCKS = {
    "run_launcher": """\
# Dagster's default launcher, which can also tell run monitoring whether a run's process is alive.
run_launcher:
  module: platform_assets.run_launcher
  class: LocalRunLauncher
""",
    "run_monitoring": """\
# A run whose process is gone is marked FAILURE within poll_interval_seconds; a run that has not started after
# start_timeout_seconds too. The launcher cannot resume a run in a new process: re-run its partitions.
run_monitoring:
  enabled: true
  poll_interval_seconds: {poll}
  start_timeout_seconds: {start_timeout}
  max_resume_run_attempts: 0
""",
}

# For a team: runs, event logs and schedules in PostgreSQL (the URL from the environment, never in the file).
POSTGRES_STORAGE = """\
storage:
  postgres:
    postgres_url:
      env: DAGSTER_PG_URL
"""


def run_monitoring_blocks(settings: Settings) -> dict[str, str]:
    return {key: block.format(poll=settings.run_monitoring_poll_seconds,
                              start_timeout=settings.run_start_timeout_seconds)
            for key, block in RUN_MONITORING_BLOCKS.items()}


def missing_blocks(text: str, blocks: dict[str, str]) -> str:
    """The blocks whose top-level key the dagster.yaml `text` lacks, to append (nothing if it does not parse:
    Dagster will say what is wrong with it)."""
    try:
        present = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return ""
    return "".join(block for key, block in blocks.items() if key not in present)


def prepare_instance(settings: Settings) -> Path:
    """Create DAGSTER_HOME with its dagster.yaml if missing (Postgres storage when DAGSTER_PG_URL is set,
    local sqlite otherwise) and its storage, point this process at it, return it. An existing dagster.yaml is kept;
    run monitoring is appended to one written before it existed. Processes that start at once on a new data folder
    (`make dev` and `make demo`, a daemon and a run) take turns: Dagster creating the same new sqlite storage from two
    processes fails and can leave it unusable ("more than one head present")."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".prepare.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _write_config(home / "dagster.yaml", run_monitoring_blocks(settings), home)
        os.environ["DAGSTER_HOME"] = str(home)
        import dagster as dg  # late: the settings and the CLI load without it

        with dg.DagsterInstance.from_config(str(home)) as instance:  # creates (or upgrades) the storage once
            instance.get_runs(limit=1)
    return home


def _write_config(config: Path, blocks: dict[str, str], home: Path) -> None:
    if not config.exists():
        storage = POSTGRES_STORAGE if os.environ.get("DAGSTER_PG_URL") else SQLITE_EVENT_LOG.format(
            base_dir=home / "history" / "runs")  # where Dagster's default sqlite storage keeps event logs
        config.write_text(DAGSTER_YAML + "".join(blocks.values()) + storage)
        return
    text = config.read_text()
    added = missing_blocks(text, blocks)
    if added:
        with config.open("a") as file:  # appended, never rewritten: the user's lines stay as they are
            file.write(("" if text.endswith("\n") else "\n") + added)
        print(f"{config}: added run monitoring (a run whose process died is marked failed; "
              "docs/operations.md)", file=sys.stderr)
