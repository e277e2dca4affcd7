"""A small job on the platform's executor (platform_assets/execution.py), for the team target's tests
(tests/test_team_servers.py): two independent steps that each hold a worker for a while, and a step that needs
both. Launched with the tags the landing sensor gives its runs (platform/source_day)."""

import time

import dagster as dg

from platform_assets.execution import platform_executor
from platform_assets.partitions import daily_partitions
from platform_assets.settings import load_settings

STEP_SECONDS = 2.0


@dg.op
def load_flights() -> int:
    time.sleep(STEP_SECONDS)
    return 1


@dg.op
def load_weather() -> int:
    time.sleep(STEP_SECONDS)
    return 2


@dg.op
def join_flights_and_weather(flights: int, weather: int) -> int:
    return flights + weather


@dg.job(executor_def=platform_executor(load_settings()), partitions_def=daily_partitions)
def two_sources():
    join_flights_and_weather(load_flights(), load_weather())


defs = dg.Definitions(jobs=[two_sources])
