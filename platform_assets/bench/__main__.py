"""`make bench`: at each scale of the demo data, the whole graph through Dagster against the bare baseline.

Per scale: deliver the period (and the day after it) into a landing zone cached under <data>/bench/landing;
then, in a temporary data folder each, (1) the platform materializes the period as one run, as `make demo`
does, (2) the next day is materialized as one run (the incremental path), then the same day again launched on
the run server as `make dev` launches a delivery's run, (3) the baseline does the same work in one bare process. Every measured side runs as its own child process: wall time from its start to its exit,
peak RSS of its whole process tree (Dagster's step processes and dbt included), and the timeline of the run's
steps from the instance's event log (which steps ran at once). Writes <data>/bench/bench_<timestamp>.json and
latest.json, and prints a table.

With --targets embedded,team (BENCH_TARGETS, or PLATFORM_TARGET=team): at each scale the same runs also on the
team target, on PostgreSQL, Redis and two Celery workers that the benchmark starts in that scale's own data
folder (platform_assets.team.servers.up) and always stops afterwards; their processes are sampled with the run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import psutil

from platform_assets.bench.measure import run_measured
from platform_assets.bench.report import (
    LAYERS, Table, benchmark_tables, bench_period, compare_row_counts, median_seconds, parse_scales, parse_targets,
    per_second, ratio, rows_per_layer, summary_table, team_table,
)
from platform_assets.bench.sides import BIN, child_env, run_platform, run_server, side_result
from platform_assets.bench.team import bench_embedded_selection, bench_team, team_comparison
from platform_assets.settings import DBT_PROJECT_DIR, REPO_ROOT, TEAM_VARIABLES, load_settings
from platform_assets.simulator.deliver import LAST_DATA_DAY, deliver_day, delivered_days
from platform_assets.sources.landing import days_between
from platform_assets.sources.definitions import SOURCES
from platform_assets.transformations.publish import PUBLISHED_SCHEMA

CODE_LOCATION_SAMPLES = 3


def code_location_load(scratch: Path, memory_limit: str, logs: Path) -> dict:
    """`dagster definitions validate` wall time (the CLI start, imports and loading the definitions), and
    the import time of the definitions module alone; the median of a few samples each."""
    env = child_env(scratch, 1, 13, memory_limit)
    (scratch / "dagster_home").mkdir(parents=True, exist_ok=True)
    validate = [BIN / "dagster", "definitions", "validate", "-w", "workspace.yaml"]
    cli = []
    for index in range(CODE_LOCATION_SAMPLES):
        measured = run_measured([str(part) for part in validate], env, logs / f"validate_{index}.log", REPO_ROOT)
        if measured.returncode != 0:
            raise RuntimeError(f"dagster definitions validate failed, see {logs / f'validate_{index}.log'}")
        cli.append(measured.seconds)
    timer = ("import time; started = time.perf_counter(); import platform_assets.definitions; "
             "print(time.perf_counter() - started)")
    imports = [float(subprocess.run([sys.executable, "-c", timer], env=env, cwd=REPO_ROOT, check=True,
                                    capture_output=True, text=True).stdout.split()[-1])
               for _ in range(CODE_LOCATION_SAMPLES)]
    return {"code_location_load_seconds": median_seconds(cli), "definitions_import_seconds": median_seconds(imports),
            "code_location_samples": {"validate_cli": [round(s, 2) for s in cli],
                                      "import": [round(s, 2) for s in imports]}}


def compile_models(first: dt.date, last: dt.date, scratch: Path) -> dict:
    """The dbt models compiled for the period against an empty warehouse (every model as a full build):
    the SQL the baseline runs."""
    (scratch / "warehouse").mkdir(parents=True, exist_ok=True)
    target = scratch / "target"
    subprocess.run(
        [str(BIN / "dbt"), "compile", "--quiet", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir",
         str(DBT_PROJECT_DIR), "--target-path", str(target),
         "--vars", json.dumps({"start_date": str(first), "end_date": str(last)})],
        env={**os.environ, "PLATFORM_DATA_DIR": str(scratch)}, check=True,
    )
    return json.loads((target / "manifest.json").read_text())


def deliver_period(landing: Path, first: dt.date, last: dt.date, seed: int, scale: float) -> float:
    """Deliver the days not yet in this cached landing zone (same seed and scale give the same files)."""
    started = time.perf_counter()
    missing = sorted(set(days_between(first, last)) - set(delivered_days(landing)))
    for index, day in enumerate(missing, 1):
        deliver_day(landing, day, seed, scale)
        if index % 60 == 0 or index == len(missing):
            print(f"    delivered {index}/{len(missing)} days (up to {day})", flush=True)
    return time.perf_counter() - started


def row_counts(warehouse: Path, relations: dict[str, str]) -> dict[str, int | None]:
    if not warehouse.exists():
        return dict.fromkeys(relations)
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        existing = {f"{schema}.{table}" for schema, table in
                    connection.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()}
        return {name: connection.execute(f"SELECT count(*) FROM {relation}").fetchall()[0][0]
                if relation in existing else None for name, relation in relations.items()}


def platform_layer_seconds(phases: dict, step_layers: dict[str, str]) -> dict[str, float | None]:
    """Raw and ml: their steps' wall time. Cleaned and features share one dbt build: the models' own
    execution time (the build's tests, publishing and start-up are in its step time, reported separately)."""
    seconds: dict[str, float | None] = dict.fromkeys(LAYERS)
    for step, step_seconds in phases["steps_seconds"].items():
        layer = step_layers.get(step)
        if layer in ("raw", "ml"):
            seconds[layer] = round((seconds[layer] or 0.0) + step_seconds, 2)
    seconds.update(phases["dbt_model_seconds_by_layer"])
    return seconds


def baseline_layer_seconds(phases: dict, tables: list[Table]) -> dict[str, float]:
    layer_of = {t.name: t.layer for t in tables}
    seconds = {"raw": sum(phases["ingest_seconds"].values()), "cleaned": 0.0, "features": 0.0,
               "ml": phases["train_seconds"] + phases["score_seconds"]}
    for model, model_seconds in phases["model_seconds"].items():
        seconds[layer_of[model]] += model_seconds
    return {layer: round(value, 2) for layer, value in seconds.items()}


def step_layer_map(phases: dict) -> dict[str, str]:
    """Steps named after their assets: `raw_ingestion` is raw, `ml__*` is ml (a multi-layer dbt step is neither)."""
    return {step: ("raw" if step.startswith("raw") else "ml" if step.startswith("ml__") else "dbt")
            for step in phases.get("steps_seconds", {})}


def bench_scale(scale: float, first: dt.date, last: dt.date, args, bench_dir: Path, manifest: dict,
                next_day_manifest: dict) -> dict:
    print(f"== scale {scale:g}: {first}..{last} ({(last - first).days + 1} days) and the next day", flush=True)
    landing = bench_dir / "landing" / f"seed_{args.seed}_scale_{scale:g}"
    next_day = last + dt.timedelta(days=1)
    deliver_seconds = deliver_period(landing, first, next_day, args.seed, scale)
    work = Path(tempfile.mkdtemp(prefix=f"scale_{scale:g}_", dir=args.work_dir))
    logs = bench_dir / "logs" / f"scale_{scale:g}"
    tables = benchmark_tables(manifest, list(SOURCES), PUBLISHED_SCHEMA)
    layer_of_asset = {t.name: t.layer for t in tables}
    try:
        platform_dir = work / "platform"
        platform_dir.mkdir()
        (platform_dir / "landing").symlink_to(landing.resolve(), target_is_directory=True)
        env = child_env(platform_dir, scale, args.seed, args.memory_limit)

        print("    platform: the period as one run", flush=True)
        history, history_phases, history_ok = run_platform("history", platform_dir, first, last, env, logs,
                                                           layer_of_asset)
        platform_counts = row_counts(platform_dir / "warehouse" / "warehouse.duckdb",
                                     {t.name: t.platform_relation for t in tables})
        print(f"    platform: {history.seconds:.1f} s, peak {history.peak_rss_mb:.0f} MB; the next day as one run",
              flush=True)
        incremental, incremental_phases, incremental_ok = run_platform("next_day", platform_dir, next_day, next_day,
                                                                       env, logs, layer_of_asset, daily=True)

        print(f"    incremental day: {incremental.seconds:.1f} s; the same day again, launched on the run server",
              flush=True)
        with run_server(env, logs / "run_server.log") as server:
            launched, launched_phases, launched_ok = run_platform(
                "next_day_launched", platform_dir, next_day, next_day, env, logs, layer_of_asset, daily=True,
                launch=True, servers={"run server": [server]})
        launched_seconds = launched_phases.get("requested_to_end_seconds")
        print(f"    launched day: {launched_seconds} s from the request; baseline", flush=True)
        baseline_dir = work / "baseline"
        baseline_out = baseline_dir / "baseline.json"
        baseline_dir.mkdir()
        manifest_file = work / "manifest.json"
        manifest_file.write_text(json.dumps(manifest))
        command = [sys.executable, "-m", "platform_assets.bench.baseline", "--landing", str(landing), "--warehouse",
                   str(baseline_dir / "warehouse" / "warehouse.duckdb"), "--manifest", str(manifest_file),
                   "--start", str(first), "--end", str(last), "--seed", str(args.seed), "--out", str(baseline_out)]
        baseline = run_measured(command, child_env(baseline_dir, scale, args.seed, args.memory_limit),
                                logs / "baseline.log", REPO_ROOT)
        if baseline.returncode != 0:
            raise RuntimeError(f"the baseline failed at scale {scale:g}, see {logs / 'baseline.log'}")
        baseline_phases = json.loads(baseline_out.read_text())
        baseline_counts = row_counts(baseline_dir / "warehouse" / "warehouse.duckdb",
                                     {t.name: t.baseline_relation for t in tables})
        print(f"    baseline: {baseline.seconds:.1f} s, peak {baseline.peak_rss_mb:.0f} MB; the next day", flush=True)
        next_manifest_file = work / "manifest_next_day.json"
        next_manifest_file.write_text(json.dumps(next_day_manifest))
        baseline_next = run_measured(
            [sys.executable, "-m", "platform_assets.bench.baseline", "--new-day", "--landing", str(landing),
             "--warehouse", str(baseline_dir / "warehouse" / "warehouse.duckdb"), "--manifest",
             str(next_manifest_file), "--start", str(next_day), "--end", str(next_day), "--seed", str(args.seed),
             "--out", str(baseline_dir / "next_day.json")],
            child_env(baseline_dir, scale, args.seed, args.memory_limit), logs / "baseline_next_day.log", REPO_ROOT)
        if baseline_next.returncode != 0:
            raise RuntimeError(f"the baseline's new day failed at scale {scale:g}, see {logs / 'baseline_next_day.log'}")
        baseline_next_phases = json.loads((baseline_dir / "next_day.json").read_text())
        print(f"    baseline next day: {baseline_next.seconds:.1f} s", flush=True)
        embedded_selection = team = None
        if "team" in args.targets:
            if args.team_select:
                embedded_selection = bench_embedded_selection(scale, first, last, args, work, landing, logs,
                                                              layer_of_asset)
            team = bench_team(scale, first, last, args, work, landing, logs, tables, layer_of_asset, baseline_counts)
    finally:
        if args.keep:
            print(f"    kept {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)

    rows = rows_per_layer(tables, platform_counts)
    platform_layers = platform_layer_seconds(history_phases, step_layer_map(history_phases)) if history_phases else {}
    baseline_layers = baseline_layer_seconds(baseline_phases, tables)
    comparison = compare_row_counts(tables, platform_counts, baseline_counts)
    result = {
        "scale": scale,
        "days": (last - first).days + 1,
        "platform_seconds": round(history.seconds, 1),
        "baseline_seconds": round(baseline.seconds, 1),
        "ratio": ratio(history.seconds, baseline.seconds),
        "platform_peak_rss_mb": round(history.peak_rss_mb),
        "baseline_peak_rss_mb": round(baseline.peak_rss_mb),
        "platform_cpu_seconds": round(history.cpu_seconds, 1),
        "baseline_cpu_seconds": round(baseline.cpu_seconds, 1),
        "platform_peak_rss_sum_mb": round(history.peak_rss_sum_mb),
        "baseline_peak_rss_sum_mb": round(baseline.peak_rss_sum_mb),
        "platform_overlap": history_phases.get("overlap"),
        "incremental_day_seconds": round(incremental.seconds, 1),
        "incremental_peak_rss_mb": round(incremental.peak_rss_mb),
        # The new day against the baseline's new day (issue 19): the fixed cost of a run, beside the history ratio.
        "baseline_new_day_seconds": round(baseline_next.seconds, 1),
        "new_day_ratio": ratio(incremental.seconds, baseline_next.seconds),
        "baseline_new_day_peak_rss_mb": round(baseline_next.peak_rss_mb),
        # The same day again as `make dev` runs a delivery's run: launched on the warm run server, from the request
        # (definitions loaded, as in the daemon) to the run's end; peak memory of the client, server and run.
        "new_day_launched_seconds": launched_seconds,
        "new_day_launched_ratio": ratio(launched_seconds, baseline_next.seconds) if launched_seconds else None,
        "new_day_launched_peak_rss_mb": round(launched.peak_rss_mb),
        "new_day_launched_success": launched_ok,
        "row_counts_match": comparison["row_counts_match"] and history_ok,
        "row_count_mismatches": comparison["mismatches"],
        "platform_success": history_ok,
        "incremental_success": incremental_ok,
        "rows_per_layer": rows,
        "layers": {
            layer: {
                "rows": rows[layer],
                "platform_seconds": platform_layers.get(layer),
                "baseline_seconds": baseline_layers[layer],
                "platform_rows_per_second": per_second(rows[layer], platform_layers.get(layer)),
                "baseline_rows_per_second": per_second(rows[layer], baseline_layers[layer]),
            }
            for layer in LAYERS
        },
        "tables": {t.name: {"platform": platform_counts[t.name], "baseline": baseline_counts[t.name]} for t in tables},
        "platform_phases": history_phases,
        "incremental_phases": incremental_phases,
        "new_day_launched_phases": launched_phases,
        "baseline_phases": baseline_phases,
        "baseline_new_day_phases": baseline_next_phases,
        "deliver_seconds_not_measured": round(deliver_seconds, 1),
    }
    if team is not None:
        embedded = embedded_selection or side_result(history, history_phases, history_ok, incremental,
                                                     incremental_phases, incremental_ok)
        if embedded_selection is None:  # the same runs as above: not twice in the report
            embedded = {key: value for key, value in embedded.items() if key not in ("phases", "incremental_phases")}
        result["team"] = {"embedded": embedded, "team": team, "comparison": team_comparison(embedded, team)}
        result["row_counts_match"] = result["row_counts_match"] and team["row_counts_match"]
    return result


def git_commit() -> str | None:
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
    return result.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platform_assets.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default=os.environ.get("SCALES") or "1 5 20")
    parser.add_argument("--start", default=os.environ.get("BENCH_START") or "2013-01-01")
    parser.add_argument("--end", default=os.environ.get("BENCH_END") or "2013-11-30")
    parser.add_argument("--days", default=os.environ.get("BENCH_DAYS") or None,
                        help="the first N days from --start instead of --end (quick runs)")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("PLATFORM_SEED", "13")))
    parser.add_argument("--memory-limit", default=os.environ.get("BENCH_DUCKDB_MEMORY_LIMIT") or "1GB",
                        help="DuckDB memory limit of both sides (DUCKDB_MEMORY_LIMIT); larger work spills to disk")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the temporary data folders go")
    parser.add_argument("--keep", action="store_true", default=bool(os.environ.get("BENCH_KEEP")),
                        help="keep each scale's data folders (printed) instead of deleting them")
    parser.add_argument("--skip-code-location", action="store_true")
    parser.add_argument("--targets", default=os.environ.get("BENCH_TARGETS") or (
                            "embedded,team" if os.environ.get("PLATFORM_TARGET") == "team" else "embedded"),
                        help="embedded (default), or embedded,team: the same runs also on the team target, on "
                             "servers the benchmark starts and stops (default embedded,team when "
                             "PLATFORM_TARGET=team)")
    parser.add_argument("--target", dest="targets", help="--target team is --targets embedded,team")
    parser.add_argument("--team-select", default=os.environ.get("BENCH_TEAM_SELECT") or None,
                        help="only these assets on team (asset keys or their first part: raw, staging, "
                             "intermediate, marts, ml), compared with the embedded target on the same ones")
    args = parser.parse_args(argv)
    # The benchmark starts the servers it measures: never the ones of the environment it was started in.
    for name in ("PLATFORM_TARGET", *TEAM_VARIABLES.values()):
        os.environ.pop(name, None)
    os.environ.pop("DAGSTER_HOME", None)
    try:
        args.targets = parse_targets(args.targets)
        scales = parse_scales(args.scales)
        first, last = bench_period(args.start, args.end, args.days, LAST_DATA_DAY)
    except ValueError as error:
        print(f"make bench: {error}", file=sys.stderr)
        return 2

    bench_dir = load_settings().data_dir / "bench"
    bench_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d_%H%M%S")
    logs = bench_dir / "logs"
    report = {
        "created_at": dt.datetime.now().isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "machine": {"cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                    "python": platform.python_version(), "load_average_at_start": os.getloadavg()},
        "config": {"scales": scales, "start": str(first), "end": str(last), "seed": args.seed,
                   "duckdb_memory_limit": args.memory_limit, "targets": args.targets,
                   "team_select": args.team_select},
    }
    with tempfile.TemporaryDirectory(prefix="scratch_", dir=bench_dir) as scratch:
        if not args.skip_code_location:
            print("== code location load (dagster definitions validate)", flush=True)
            report.update(code_location_load(Path(scratch) / "code_location", args.memory_limit, logs))
            print(f"    {report['code_location_load_seconds']} s (definitions import alone "
                  f"{report['definitions_import_seconds']} s)", flush=True)
        manifest = compile_models(first, last, Path(scratch) / "compile")
        next_day = last + dt.timedelta(days=1)
        next_day_manifest = compile_models(next_day, next_day, Path(scratch) / "compile_next_day")
    if args.work_dir is None:
        args.work_dir = bench_dir / "tmp"
    args.work_dir.mkdir(parents=True, exist_ok=True)
    report["scales"] = []
    for scale in scales:  # the report is rewritten after each scale: a long run keeps what it measured
        report["scales"].append(bench_scale(scale, first, last, args, bench_dir, manifest,
                                            next_day_manifest))
        report["machine"]["load_average_at_end"] = os.getloadavg()
        for name in (f"bench_{stamp}.json", "latest.json"):
            (bench_dir / name).write_text(json.dumps(report, indent=2, default=str))
    print(f"\n{summary_table(report['scales'])}")
    if "team" in args.targets:
        print(f"\nteam against embedded{f' (only {args.team_select})' if args.team_select else ''}:\n"
              f"{team_table(report['scales'])}")
    if "code_location_load_seconds" in report:
        print(f"\ncode location load: {report['code_location_load_seconds']} s (`dagster definitions validate`), "
              f"definitions import {report['definitions_import_seconds']} s")
    print(f"machine: {report['machine']['cores']} cores, {report['machine']['memory_gb']} GB; load average "
          f"{report['machine']['load_average_at_start'][0]:.1f} at start, "
          f"{report['machine']['load_average_at_end'][0]:.1f} at end")
    print(f"written: {bench_dir / f'bench_{stamp}.json'} (and latest.json)")
    return 0 if all(result["row_counts_match"] for result in report["scales"]) else 1


if __name__ == "__main__":
    sys.exit(main())
