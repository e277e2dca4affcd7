"""The platform's assets, checks, jobs and resources without its sensors and automation: a code location on which
a daemon runs only the runs a test submits (tests/test_operations.py)."""

import dagster as dg

from platform_assets.definitions import build_definitions

_platform = build_definitions()
defs = dg.Definitions(assets=_platform.assets, asset_checks=_platform.asset_checks, jobs=_platform.jobs,
                      resources=_platform.resources, executor=_platform.executor)
