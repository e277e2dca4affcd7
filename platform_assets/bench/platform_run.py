"""The platform side: materialize the whole graph for a date range as one run through Dagster, exactly as
`make demo` does (platform_assets/runner.py over the instance in PLATFORM_DATA_DIR), and afterwards read
where the run's time went from the instance's event log.

`python -m platform_assets.bench.platform_run --start D --end D --out FILE` (the measured child process)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platform_assets.bench.platform_run", description=__doc__)
    parser.add_argument("--start", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--end", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--daily", action="store_true",
                        help="only the daily-partitioned assets (the path of a new delivery: no retraining)")
    args = parser.parse_args(argv)

    from platform_assets.instance import prepare_instance  # noqa: PLC0415
    from platform_assets.runner import materialize_range  # noqa: PLC0415
    from platform_assets.settings import load_settings  # noqa: PLC0415

    prepare_instance(load_settings())
    executing = time.time()
    with dg.DagsterInstance.get() as instance:
        result = materialize_range(instance, args.start, args.end, show_progress=False,
                                   assets=daily_assets() if args.daily else None)
    args.out.write_text(json.dumps({
        "run_id": result.run_id, "success": result.success,
        "started_at": STARTED, "executing_at": executing, "finished_at": time.time(),
    }))
    return 0 if result.success else 1


def daily_assets() -> list[dg.AssetKey]:
    """What a new delivery flows through: every partitioned asset. The model retrains on demand, not daily."""
    from platform_assets.definitions import defs  # noqa: PLC0415

    graph = defs.resolve_asset_graph()
    return [key for key in graph.materializable_asset_keys if graph.get(key).partitions_def is not None]


def run_phases(dagster_home: Path, child: dict, layer_of_asset: dict[str, str]) -> dict:
    """Where the run's wall time went: start-up (imports, loading the definitions, the execution plan) until
    the run's first event, then the planned-materialization events until the run starts, each step, and per
    layer the dbt models' own execution time."""
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        logs = instance.all_logs(child["run_id"])
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
    }


if __name__ == "__main__":
    sys.exit(main())
