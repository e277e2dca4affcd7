"""Materialize the whole graph for a date range as one run on the platform's Dagster instance, headless."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import threading
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.execution.api import create_execution_plan, execute_run
from dagster._core.launcher import WorkerStatus
from dagster._core.snap import snapshot_from_execution_plan
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from platform_assets.progress import follow_run
from platform_assets.run_admission import create_admitted_run, runner_tag
from platform_assets.run_server import server_file, server_running
from platform_assets.settings import Settings, SettingsError, load_settings
from platform_assets.sources.landing import delivered_manifests

LAUNCHED_POLL_SECONDS = 0.2  # a launched run's status, read until it ends
LAUNCHED_HEALTH_SECONDS = 2.0  # and whether its process still lives
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

    results: list[dg.JobExecutionResult]
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


def unpublished_sources(result: dg.JobExecutionResult, raw_keys: Sequence[dg.AssetKey]) -> dict[dg.AssetKey, str]:
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


def materialize_all_job(data_dir: str, target: str) -> dg.JobDefinition:
    """`materialize_all` with its resources bound to this process's settings and the run's data folder. The run
    records this function (with its arguments) as its job's origin: every process that runs its steps rebuilds the
    job with it, this one (in-process executor) or a Celery worker (team), which then also works in the run's data
    folder. Server URLs and passwords are never arguments (they would be stored with the run): a worker has them in
    its environment, and a worker of another target refuses the step."""
    from platform_assets.definitions import build_definitions  # noqa: PLC0415  (loads the code location)

    settings = load_settings()
    if settings.target != target:
        raise SettingsError(f"PLATFORM_TARGET={settings.target} in this process (pid {os.getpid()}), but the run was "
                            f"started on {target}: start the workers with the settings of the runs they take")
    return build_definitions(dataclasses.replace(settings, data_dir=Path(data_dir))).resolve_job_def("materialize_all")


def reconstructable_job(settings: Settings) -> ReconstructableJob:
    return dg.build_reconstructable_job(
        "platform_assets.runner", materialize_all_job.__name__,
        reconstructable_kwargs={"data_dir": str(settings.data_dir), "target": settings.target})


def _execute(instance: dg.DagsterInstance, settings: Settings, job: ReconstructableJob, tags: dict[str, str],
             assets: Sequence[dg.AssetKey], every_asset: bool, checks: Sequence[dg.AssetCheckKey] | None,
             first_day: dt.date, last_day: dt.date, wait_seconds: float | None,
             launch: bool = False) -> dg.JobExecutionResult:
    """Create the run once no other run writes its assets and days (platform_assets/run_admission.py), then
    execute it here with the platform's executor: on embedded its steps in this process, on team as Celery tasks
    (what `dg.execute_job` does, with the run created under the admission lock). `launch`: hand it to the
    instance's run launcher instead (the run server's forked process, as a sensor's run under `make dev`) and wait
    for it to end."""
    assets = frozenset(assets)
    run_tags = {**tags, **runner_tag()}

    check_selection = None if checks is None else frozenset(c for c in checks if c.asset_key in assets)

    def create() -> dg.DagsterRun:  # instance.create_run_for_job, which takes no check selection
        job_def = job.get_definition()
        if not every_asset or check_selection is not None:
            job_def = job_def.get_subset(asset_selection=assets, asset_check_selection=check_selection)
        plan = create_execution_plan(job_def, run_config=QUIET_LOGS, instance_ref=instance.get_ref(), tags=run_tags)
        return instance.create_run(
            job_name=job_def.name, run_id=None, run_config=QUIET_LOGS, op_selection=None, resolved_op_selection=None,
            asset_selection=None if every_asset and check_selection is None else assets,
            asset_check_selection=check_selection, step_keys_to_execute=plan.step_keys_to_execute, status=None,
            tags=run_tags, root_run_id=None, parent_run_id=None, job_snapshot=job_def.get_job_snapshot(),
            execution_plan_snapshot=snapshot_from_execution_plan(plan, job_def.get_job_snapshot_id()),
            parent_job_snapshot=job_def.get_parent_job_snapshot(), remote_job_origin=None,
            job_code_origin=job.get_python_origin(), asset_graph=job_def.asset_layer.asset_graph)

    run = create_admitted_run(instance, settings, assets, first_day, last_day, create, wait_seconds)
    if not launch:
        return execute_run(job, run, instance)
    instance.launch_run(run.run_id, workspace=None)  # the run server's: no workspace is needed
    launcher, next_check = instance.run_launcher, time.monotonic()
    while not (run := instance.get_run_by_id(run.run_id)).is_finished:
        if launcher.supports_check_run_worker_health and time.monotonic() >= next_check:
            # Its process died without ending the run: no daemon's run monitoring watches a headless run.
            health = launcher.check_run_worker_health(run)
            if health.status == WorkerStatus.FAILED:
                instance.report_run_failed(run, health.msg)
            next_check = time.monotonic() + LAUNCHED_HEALTH_SECONDS
        time.sleep(LAUNCHED_POLL_SECONDS)
    events = [entry.dagster_event for entry in instance.all_logs(run.run_id) if entry.is_dagster_event]
    return dg.JobExecutionResult(job.get_definition(), nullcontext(), events, run)


def materialize_range(
    instance: dg.DagsterInstance, first_day: dt.date, last_day: dt.date, show_progress: bool = True,
    assets: Sequence[dg.AssetKey] | None = None, wait_seconds: float | None = None,
    checks: Sequence[dg.AssetCheckKey] | None = None, launch: bool = False,
) -> RangeRun:
    """One run of `materialize_all` (or only `assets` of it) over [first_day, last_day] with the platform's
    executor (embedded: its steps in this process; team: on the Celery workers), its resources bound to this
    process's settings now (`checks`: only those of their checks; None: all). It starts once no other run of the
    instance writes the same assets and days (waiting at most `wait_seconds`, None: as long as it takes). When a
    source is refused or not delivered, Dagster skips every step after the raw layer; a second run then
    materializes what does not read that source, so one source holds back only its readers. `launch`: each run
    through the run server (platform_assets/run_server.py, which must be running for the data folder) instead of
    in this process."""
    from platform_assets.definitions import build_definitions  # noqa: PLC0415  (loads the code location)

    settings = load_settings()
    if launch and not server_running(settings.data_dir):
        found = server_file(settings.data_dir)
        raise SettingsError(f"no run server runs for {settings.data_dir} ({found} "
                            f"{'was left by a server that stopped' if found.exists() else 'is absent'}): start one "
                            "with `python -m platform_assets.run_server` (make dev does)")
    definitions = build_definitions(settings)
    job = reconstructable_job(settings)
    graph = definitions.resolve_asset_graph()
    selected = set(assets) if assets is not None else set(graph.materializable_asset_keys)
    # A source that has never delivered anything (a source being onboarded, one the demo does not simulate) is
    # left out with what reads it, and said so, instead of being waited for and refused.
    landing_dir = settings.landing_dir
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
    os.environ[PLANNED_EVENTS_AS_RANGES] = "true"  # read where the run is created: in this process
    tags = {ASSET_PARTITION_RANGE_START_TAG: first_day.isoformat(), ASSET_PARTITION_RANGE_END_TAG: last_day.isoformat()}
    span = (first_day, last_day, wait_seconds, launch)
    try:
        result = _execute(instance, settings, job, tags, sorted(selected), assets is None and not never, checks, *span)
        run = RangeRun([result])
        unpublished = unpublished_sources(result, raw_keys) if not result.success else {}
        readers = _readers(graph, unpublished, selected)
        run.unpublished = {source.to_user_string(): reason for source, reason in (never | unpublished).items()}
        run.held_back = {source.to_user_string(): sorted(key.to_user_string() for key in keys)
                         for source, keys in (left_out | readers).items()}
        if unpublished:
            rest = sorted(selected - set(raw_keys) - set().union(*readers.values()))
            if rest:
                run.results.append(_execute(instance, settings, job, {**tags, "platform/after_refused_sources": "true"},
                                            rest, False, checks, *span))
        return run
    finally:
        if previous is None:
            os.environ.pop(PLANNED_EVENTS_AS_RANGES)
        else:
            os.environ[PLANNED_EVENTS_AS_RANGES] = previous
        finished.set()
        if show_progress:
            follower.join()
