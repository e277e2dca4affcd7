"""The platform side: materialize the whole graph for a date range as one run through Dagster, exactly as
`make demo` does (platform_assets/runner.py over the instance in PLATFORM_DATA_DIR), and afterwards read
where the run's time went from the instance's event log.

`python -m platform_assets.bench.platform_run --start D --end D --out FILE [--daily] [--select raw,marts,...]`
(the measured child process; the target is the environment's PLATFORM_TARGET, as for `make demo`)
"""

import time

STARTED = time.time()  # before importing Dagster: start-up is part of the platform's cost

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import dagster as dg  # noqa: E402

from platform_assets.bench.report import step_overlap  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platform_assets.bench.platform_run", description=__doc__)
    parser.add_argument("--start", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--end", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--daily", action="store_true",
                        help="only the daily-partitioned assets (the path of a new delivery: no retraining)")
    parser.add_argument("--select", default=None,
                        help="only these assets: comma-separated asset keys or their first part (raw, staging, "
                             "intermediate, marts, ml); every asset by default")
    parser.add_argument("--launch", action="store_true",
                        help="hand the run to the data folder's run server (as under make dev) instead of running it "
                             "in this process")
    args = parser.parse_args(argv)

    from platform_assets.instance import prepare_instance  # noqa: PLC0415
    from platform_assets.runner import materialize_range  # noqa: PLC0415
    from platform_assets.settings import load_settings  # noqa: PLC0415

    prepare_instance(load_settings())
    assets = selected_assets(args.daily, args.select)
    executing = time.time()  # the definitions are loaded: from here on, what a warm process (the daemon) pays too
    with dg.DagsterInstance.get() as instance:
        result = materialize_range(instance, args.start, args.end, show_progress=False, assets=assets,
                                   launch=args.launch)
    args.out.write_text(json.dumps({
        "run_id": result.run_id, "run_ids": result.run_ids, "success": result.success,
        "started_at": STARTED, "executing_at": executing, "finished_at": time.time(),
    }))
    return 0 if result.success else 1


def selected_assets(daily: bool, select: str | None) -> list[dg.AssetKey] | None:
    """`daily`: what a new delivery flows through, every partitioned asset (the model retrains on demand, not
    daily). `select`: only the assets named, by key or the key's first part. None: the whole graph."""
    if not daily and not select:
        return None
    from platform_assets.definitions import defs  # noqa: PLC0415

    graph = defs.resolve_asset_graph()
    keys = sorted(graph.materializable_asset_keys)
    if daily:
        keys = [key for key in keys if graph.get(key).partitions_def is not None]
    if select:
        names = {name.strip() for name in select.split(",") if name.strip()}
        unknown = {name for name in names
                   if not any(name in (key.to_user_string(), key.path[0]) for key in graph.materializable_asset_keys)}
        if unknown:
            raise SystemExit(f"--select: no asset named or under {', '.join(sorted(unknown))}")
        keys = [key for key in keys if key.to_user_string() in names or key.path[0] in names]
    return keys


def run_phases(dagster_home: Path, child: dict, layer_of_asset: dict[str, str]) -> dict:
    """Where the run's wall time went: start-up (imports, loading the definitions, the execution plan) until
    the run's first event, then the planned-materialization events until the run starts, each step, and per
    layer the dbt models' own execution time."""
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        logs = instance.all_logs(child["run_id"])
        runs_logs = [logs, *(instance.all_logs(run_id) for run_id in child.get("run_ids", [])[1:])]
    timeline = [entry for index, run_logs in enumerate(runs_logs)
                for entry in step_timeline(run_logs, child["started_at"], run=index if len(runs_logs) > 1 else None)]
    created = logs[0].timestamp
    started, steps, step_started = None, {}, {}
    model_seconds: dict[str, tuple[str, float]] = {}  # one event per partition, each with the model's duration
    for entry in logs:
        event = entry.get_dagster_event() if entry.is_dagster_event else None
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.RUN_START:
            started = entry.timestamp
        elif event.event_type == dg.DagsterEventType.STEP_START:
            step_started[event.step_key] = entry.timestamp
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            steps[event.step_key] = round(entry.timestamp - step_started.get(event.step_key, entry.timestamp), 2)
        elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            duration = entry.asset_materialization.metadata.get("Execution Duration")
            layer = layer_of_asset.get(event.asset_key.to_user_string())
            if duration is not None and layer is not None:
                model_seconds[event.asset_key.to_user_string()] = (layer, float(duration.value))
    kinds = Counter(entry.get_dagster_event().event_type for entry in logs if entry.is_dagster_event)
    return {
        "startup_seconds": round(created - child["started_at"], 2),
        "run_creation_seconds": round((started or created) - created, 2),
        "events": len(logs),
        "planned_materialization_events": kinds[dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED],
        "materialization_events": kinds[dg.DagsterEventType.ASSET_MATERIALIZATION],
        "steps_seconds": steps,
        "dbt_model_seconds_by_layer": {
            layer: round(sum(seconds for model_layer, seconds in model_seconds.values() if model_layer == layer), 2)
            for layer in sorted({layer for layer, _ in model_seconds.values()})
        },
        "run_seconds": round(child["finished_at"] - (started or created), 2),
        # From the moment the run is requested, the definitions loaded (as in the daemon that launches a
        # sensor's run), to its end: the run's planning and creation, its launch and its steps.
        "requested_to_end_seconds": round(child["finished_at"] - child["executing_at"], 2),
        "timeline": timeline,
        "overlap": step_overlap(timeline),
    }


STEP_ENDS = {dg.DagsterEventType.STEP_SUCCESS: "success", dg.DagsterEventType.STEP_FAILURE: "failure",
             dg.DagsterEventType.STEP_SKIPPED: "skipped"}


def step_timeline(logs: list, origin: float, run: int | None = None) -> list[dict]:
    """Each step of a run from its event log: when it started and ended (seconds after `origin`, the measured
    process's start), how it ended, and the pid of the process that ran it (the run's own process when steps run
    in process, a worker's pool process on Celery). A skipped step never started; one without an end did not
    finish (the run died)."""
    steps: dict[str, dict] = {}
    for entry in logs:
        event = entry.get_dagster_event() if entry.is_dagster_event else None
        if event is None or event.step_key is None:
            continue
        at = round(entry.timestamp - origin, 2)
        if event.event_type == dg.DagsterEventType.STEP_START:
            steps.setdefault(event.step_key, {"step": event.step_key, "start": at, "end": None,
                                              "status": "unfinished", "pid": event.pid})
        elif event.event_type in STEP_ENDS:
            step = steps.setdefault(event.step_key, {"step": event.step_key, "start": None, "pid": event.pid})
            step.update(end=at, status=STEP_ENDS[event.event_type])
    timeline = sorted(steps.values(), key=lambda step: (step["start"] is None, step["start"] or 0, step["step"]))
    for step in timeline:
        step["seconds"] = round(step["end"] - step["start"], 2) if None not in (step["start"], step["end"]) else None
        if run is not None:
            step["run"] = run
    return timeline


if __name__ == "__main__":
    sys.exit(main())
