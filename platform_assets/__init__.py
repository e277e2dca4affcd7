"""The platform: its Dagster code location, sources, transformations, checks, ML and operations."""

import os

# Dagster hands a step's asset events to the event log in batches of this size when it is set, read at every event
# wherever steps run: the run's process, a Celery worker (both import this package), the daemon, the UI. The sqlite
# log stores a batch in one transaction (platform_assets/event_log.py), PostgreSQL's in one statement; one at a time,
# the demo's ~9,000 materializations of a run cost minutes.
os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "1000")
