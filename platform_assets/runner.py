"""Materialize the whole graph for a date range as one run on the platform's Dagster instance, headless."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from platform_assets.progress import follow_run
from platform_assets.settings import load_settings
from platform_assets.sources.landing import delivered_manifests

QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# Before the first step, Dagster records a planned-materialization event per asset AND partition (on sqlite
# two connections and commits each, 20-90 ms: 150 s and more for the demo's 334 days). With this setting, read
# by the instance when it creates the run, it records one event per asset carrying the partition range.
# Trade-off: until the run ends, the UI and declarative automation do not see its partitions as in progress,
# and a failed run's partitions show as missing rather than failed. Failed runs are still alerted
# (owner_alert_sensor reads runs, not partition status). Only these headless runs use it.
PLANNED_EVENTS_AS_RANGES = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"


@dataclass
class RangeRun:
    """The runs that materialized a range: one when every source published; otherwise a second run carries
    everything that does not read the sources that did not publish (`held_back`: asset -> why)."""

    results: list[dg.ExecuteInProcessResult]
    unpublished: dict[str, str] = field(default_factory=dict)  # raw asset -> why it did not publish
    held_back: dict[str, list[str]] = field(default_factory=dict)  # raw asset -> the assets that read it

    @property
    def success(self) -> bool:
        return all(result.success for result in self.results)

    @property
    def run_id(self) -> str:
        return self.results[0].run_id

    @property
    def run_ids(self) -> list[str]:
        return [result.run_id for result in self.results]


def unpublished_sources(result: dg.ExecuteInProcessResult, raw_keys: Sequence[dg.AssetKey]) -> dict[dg.AssetKey, str]:
    """The raw assets of the run that did not materialize, with the reason their step gave."""
    materialized = {event.asset_key for event in result.get_asset_materialization_events()}
    reasons = {}
    for event in result.get_asset_check_evaluations():
        if event.asset_key in raw_keys and not event.passed and event.check_name == "contract":
            refused = event.metadata.get("refused")
            reasons[event.asset_key] = refused.value if refused is not None else "its contract check failed"
    return {key: reasons.get(key, "not materialized") for key in raw_keys if key not in materialized}


def _readers(graph, sources: dict[dg.AssetKey, str], selected: set[dg.AssetKey]) -> dict[dg.AssetKey, set]:
    """Each source's downstream assets among `selected`."""
    return {source: (dg.AssetSelection.assets(source).downstream().resolve(graph) - {source}) & selected
            for source in sources}


def materialize_range(
    instance: dg.DagsterInstance, first_day: dt.date, last_day: dt.date, show_progress: bool = True,
    assets: Sequence[dg.AssetKey] | None = None,
) -> RangeRun:
    """One run of `materialize_all` (or only `assets` of it) over [first_day, last_day], its steps in this
    process (the platform's executor), its resources bound to this process's settings now. When a source is
    refused or not delivered, Dagster skips every step after the raw layer; a second run then materializes
    what does not read that source, so one source holds back only its readers."""
    from platform_assets.definitions import build_definitions  # noqa: PLC0415  (loads the code location)

    definitions = build_definitions()
    job = definitions.resolve_job_def("materialize_all")
    graph = definitions.resolve_asset_graph()
    selected = set(assets) if assets is not None else set(graph.get_all_asset_keys())
    # A source that has never delivered anything (a source being onboarded, one the demo does not simulate) is
    # left out with what reads it, and said so, instead of being waited for and refused.
    landing_dir = load_settings().landing_dir
    never = {key: f"nothing delivered yet in {landing_dir / key.path[1]}/" for key in selected
             if key.path[0] == "raw" and graph.has(key) and not delivered_manifests(landing_dir, key.path[1])[0]}
    left_out = _readers(graph, never, selected)
    selected -= set(never) | set().union(*left_out.values())
    raw_keys = [key for key in selected if key.path[0] == "raw" and graph.has(key)]
    finished = threading.Event()
    follower = threading.Thread(target=follow_run, args=(instance, time.time() - 1, finished), daemon=True)
    if show_progress:
        follower.start()
    previous = os.environ.get(PLANNED_EVENTS_AS_RANGES)
    os.environ[PLANNED_EVENTS_AS_RANGES] = "true"
    tags = {ASSET_PARTITION_RANGE_START_TAG: first_day.isoformat(), ASSET_PARTITION_RANGE_END_TAG: last_day.isoformat()}
    try:
        result = job.execute_in_process(instance=instance, tags=tags, run_config=QUIET_LOGS, raise_on_error=False,
                                        asset_selection=assets if not never else list(selected))
        run = RangeRun([result])
        unpublished = unpublished_sources(result, raw_keys) if not result.success else {}
        readers = _readers(graph, unpublished, selected)
        run.unpublished = {source.to_user_string(): reason for source, reason in (never | unpublished).items()}
        run.held_back = {source.to_user_string(): sorted(key.to_user_string() for key in keys)
                         for source, keys in (left_out | readers).items()}
        if unpublished:
            rest = list(selected - set(raw_keys) - set().union(*readers.values()))
            if rest:
                run.results.append(job.execute_in_process(
                    instance=instance, tags={**tags, "platform/after_refused_sources": "true"},
                    run_config=QUIET_LOGS, raise_on_error=False, asset_selection=rest))
        return run
    finally:
        if previous is None:
            os.environ.pop(PLANNED_EVENTS_AS_RANGES)
        else:
            os.environ[PLANNED_EVENTS_AS_RANGES] = previous
        finished.set()
        if show_progress:
            follower.join()
