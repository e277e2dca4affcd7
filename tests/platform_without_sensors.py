"""The platform's assets, checks, jobs and resources without its sensors and automation: a code location on which
a daemon runs only the runs a test submits (tests/test_operations.py)."""

import dagster as dg

from deliveries import DEMO_RAW_KEYS
from platform_assets.definitions import build_definitions
from platform_assets.partitions import daily_partitions

_platform = build_definitions()
# The raw layer of the sources the simulator delivers (a source a user adds is not delivered in tests).
demo_raw = dg.define_asset_job("demo_raw", selection=DEMO_RAW_KEYS, partitions_def=daily_partitions)
defs = dg.Definitions(assets=_platform.assets, asset_checks=_platform.asset_checks, jobs=[*_platform.jobs, demo_raw],
                      resources=_platform.resources, executor=_platform.executor)
