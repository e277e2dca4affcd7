"""The Dagster instance under <data>/dagster_home: local sqlite storage by default; on the team target under
<data>/team/dagster_home, on PostgreSQL, several runs at once."""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

import yaml

from platform_assets.settings import Settings, SettingsError, load_settings

HEADER = """\
# Dagster instance of this data platform (written by platform_assets.instance; edit freely, it is kept: only a
# missing run_launcher or run_monitoring block is ever appended).
"""
# What differs per target (settings.target): where the instance keeps its state, and how many runs run at once.
STORAGE_NOTE = {
    "embedded": """\
# Storage: sqlite files in this folder (the event log writes a run's per-day asset events in batches:
# platform_assets/event_log.py). For a team deployment, replace with `storage: postgres:` (README).
""",
    "team": """\
# Storage: PostgreSQL, the database DAGSTER_PG_URL names (the team target, docs/team.md).
""",
}
RUN_CONCURRENCY = {
    "embedded": """\
concurrency:
  runs:
    # DuckDB allows one writing process per warehouse file: queued runs start one at a time. Within a run,
    # steps run one after another in the run's process (platform_assets/definitions.py).
    max_concurrent_runs: 1
""",
    # Run-level tag limits, not op pools: a pool is one name per op, so it could only hold back every day of a
    # source at once; a run tag carries the day. Runs from the UI have no such tag (docs/team.md).
    "team": """\
concurrency:
  pools:
    # A step in a pool waits for a free slot (the dbt build: one at a time, transformations/dbt_assets.py).
    default_limit: 1
  runs:
    # The PostgreSQL warehouse takes concurrent writers: several runs at once, their steps in parallel on the
    # Celery workers (platform_assets/execution.py), but never two runs that write the same source and day: the
    # landing sensor tags each run platform/source_day=<source>/<day>.
    max_concurrent_runs: 4
    tag_concurrency_limits:
      - key: platform/source_day
        value:
          applyLimitPerUniqueValue: true
        limit: 1
""",
}
COMMON = """\
telemetry:
  enabled: false
# Evaluate each asset's freshness policy (from the governance catalog's SLAs) in the daemon.
freshness:
  enabled: true
"""


def dagster_yaml(target: str) -> str:
    """A new instance's dagster.yaml for `target`, without its run monitoring and storage blocks."""
    return HEADER + STORAGE_NOTE[target] + RUN_CONCURRENCY[target] + COMMON


DAGSTER_YAML = dagster_yaml("embedded")

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
    """Create DAGSTER_HOME with its dagster.yaml if missing (Postgres storage when DAGSTER_PG_URL is set or the
    target is `team`, local sqlite otherwise) and its storage, point this process at it, return it. An existing
    dagster.yaml is kept; run monitoring is appended to one written before it existed. Processes that start at once
    on a new data folder (`make dev` and `make demo`, a daemon and a run) take turns: Dagster creating the same new
    sqlite storage from two processes fails and can leave it unusable ("more than one head present")."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".prepare.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _write_config(home / "dagster.yaml", run_monitoring_blocks(settings), home, settings.target)
        os.environ["DAGSTER_HOME"] = str(home)
        import dagster as dg  # late: the settings and the CLI load without it

        with dg.DagsterInstance.from_config(str(home)) as instance:  # creates (or upgrades) the storage once
            instance.get_runs(limit=1)
    return home


class InstanceConfigError(ValueError):
    """An existing dagster.yaml does not fit the target; the message names the file and what to do."""


def _write_config(config: Path, blocks: dict[str, str], home: Path, target: str = "embedded") -> None:
    if not config.exists():
        postgres = target == "team" or os.environ.get("DAGSTER_PG_URL")
        storage = POSTGRES_STORAGE if postgres else SQLITE_EVENT_LOG.format(
            base_dir=home / "history" / "runs")  # where Dagster's default sqlite storage keeps event logs
        config.write_text(dagster_yaml(target) + "".join(blocks.values()) + storage)
        return
    text = config.read_text()
    if target == "team" and not _stores_in_postgres(text):
        raise InstanceConfigError(f"{config}: PLATFORM_TARGET=team keeps runs in PostgreSQL, but this file has no "
                                  "`storage: postgres:` block; add it (docs/team.md) or move the file aside")
    added = missing_blocks(text, blocks)
    if added:
        with config.open("a") as file:  # appended, never rewritten: the user's lines stay as they are
            file.write(("" if text.endswith("\n") else "\n") + added)
        print(f"{config}: added run monitoring (a run whose process died is marked failed; "
              "docs/operations.md)", file=sys.stderr)


def _stores_in_postgres(text: str) -> bool:
    try:
        storage = (yaml.safe_load(text) or {}).get("storage")
    except yaml.YAMLError:
        return True  # Dagster will say what is wrong with it
    return isinstance(storage, dict) and "postgres" in storage


def main() -> int:
    """`make instance` (and `make demo` on the team target): prepare the instance; a wrong setting is one line."""
    try:
        prepare_instance(load_settings())
    except (SettingsError, InstanceConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
