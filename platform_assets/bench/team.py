"""The team target's side of the benchmark: at one scale, the period and the next day on PostgreSQL, Redis and two
Celery workers started for it in that scale's data folder (always stopped afterwards), their processes sampled with
the run; and the comparison with the embedded target on the same assets."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from platform_assets.bench.report import Table, compare_row_counts, ratio
from platform_assets.bench.sides import child_env, environment, run_platform, side_result
from platform_assets.team.servers import down, up


def postgres_row_counts(url: str, relations: dict[str, str]) -> dict[str, int | None]:
    import psycopg2  # noqa: PLC0415
    from psycopg2 import sql  # noqa: PLC0415

    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT table_schema, table_name FROM information_schema.tables")
        existing = {f"{schema}.{table}" for schema, table in cursor.fetchall()}
        counts = {}
        for name, relation in relations.items():
            if relation not in existing:
                counts[name] = None
                continue
            cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*relation.split(".", 1))))
            counts[name] = cursor.fetchone()[0]
    connection.close()
    return counts


def server_pids(servers) -> dict[str, list[int]]:
    """The team servers' main processes (their pid files), by group; each is sampled with its descendants (the
    PostgreSQL backends, the workers' pool processes)."""
    postmaster = int((servers.postgres.cluster / "postmaster.pid").read_text().splitlines()[0])
    redis = int(servers.redis.pid_file.read_text().strip())
    workers = [pid for worker in servers.workers if (pid := worker.pid()) is not None]
    if len(workers) != len(servers.workers):
        raise RuntimeError(f"a Celery worker of {servers.data_dir} is not running (logs in "
                           f"{servers.workers[0].folder})")
    return {"postgres": [postmaster], "redis": [redis], "workers": workers}


def selected_tables(tables: list[Table], select: str | None) -> list[Table]:
    """The compared tables of a --team-select (asset keys or their first part); all without one."""
    if not select:
        return tables
    names = {name.strip() for name in select.split(",")}
    return [t for t in tables if t.name in names or t.name.split("/")[0] in names]


def bench_team(scale: float, first: dt.date, last: dt.date, args, work: Path, landing: Path, logs: Path,
               tables: list[Table], layer_of_asset: dict[str, str], baseline_counts: dict) -> dict:
    """The period and the next day on the team target, on servers started for this scale in its own data folder
    and stopped afterwards, whatever happens."""
    next_day = last + dt.timedelta(days=1)
    team_dir = work / "team"
    team_dir.mkdir()
    for folder in (work, team_dir):
        folder.chmod(0o755)  # PostgreSQL runs as the postgres user when this is root: it must enter the folder
    (team_dir / "landing").symlink_to(landing.resolve(), target_is_directory=True)
    try:
        began = time.perf_counter()
        with environment(child_env(team_dir, scale, args.seed, args.memory_limit)):
            servers = up(team_dir)  # the workers run steps: with the measured run's settings (scale, memory limit)
        print(f"    team: servers up in {time.perf_counter() - began:.1f} s ({team_dir / 'team'}); the period",
              flush=True)
        env = child_env(team_dir, scale, args.seed, args.memory_limit, team=servers.settings())
        pids = server_pids(servers)
        measured, phases, success = run_platform("team_history", team_dir, first, last, env, logs, layer_of_asset,
                                                 select=args.team_select, servers=pids)
        compared = selected_tables(tables, args.team_select)
        counts = postgres_row_counts(servers.postgres.url("warehouse"),
                                     {t.name: t.platform_relation for t in compared})
        print(f"    team: {measured.seconds:.1f} s, peak {measured.peak_rss_mb:.0f} MB with the servers, at most "
              f"{(phases.get('overlap') or {}).get('max_concurrent_steps')} steps at once; the next day", flush=True)
        incremental, incremental_phases, incremental_ok = run_platform(
            "team_next_day", team_dir, next_day, next_day, env, logs, layer_of_asset, daily=True,
            select=args.team_select, servers=server_pids(servers))
    finally:
        stopped = down(team_dir)
        print(f"    team: stopped {', '.join(stopped) or 'nothing'}", flush=True)
    comparison = compare_row_counts(compared, counts, baseline_counts)
    return {
        **side_result(measured, phases, success, incremental, incremental_phases, incremental_ok),
        "selection": args.team_select,
        "servers_start_seconds_not_measured": servers.seconds,
        "row_counts_match": comparison["row_counts_match"] and success,
        "row_count_mismatches": comparison["mismatches"],
        "tables": counts,
    }


def bench_embedded_selection(scale: float, first: dt.date, last: dt.date, args, work: Path, landing: Path,
                             logs: Path, layer_of_asset: dict[str, str]) -> dict:
    """The embedded target on the team side's selection, when there is one: what the team side compares with."""
    next_day = last + dt.timedelta(days=1)
    data_dir = work / "embedded_selection"
    data_dir.mkdir()
    (data_dir / "landing").symlink_to(landing.resolve(), target_is_directory=True)
    env = child_env(data_dir, scale, args.seed, args.memory_limit)
    measured, phases, success = run_platform("embedded_selection_history", data_dir, first, last, env, logs,
                                             layer_of_asset, select=args.team_select)
    incremental, incremental_phases, incremental_ok = run_platform(
        "embedded_selection_next_day", data_dir, next_day, next_day, env, logs, layer_of_asset, daily=True,
        select=args.team_select)
    print(f"    embedded on the team's selection: {measured.seconds:.1f} s, peak {measured.peak_rss_mb:.0f} MB",
          flush=True)
    return {**side_result(measured, phases, success, incremental, incremental_phases, incremental_ok),
            "selection": args.team_select}


def team_comparison(embedded: dict, team: dict) -> dict:
    """Team against embedded on the same selection: the ratios of wall time and of peak memory."""
    return {
        "seconds_ratio": ratio(team["seconds"], embedded["seconds"]),
        "peak_memory_ratio": ratio(team["peak_rss_mb"], embedded["peak_rss_mb"]),
        "incremental_day_seconds_ratio": ratio(team["incremental_day_seconds"], embedded["incremental_day_seconds"]),
        "max_concurrent_steps": {"embedded": (embedded["overlap"] or {}).get("max_concurrent_steps"),
                                 "team": (team["overlap"] or {}).get("max_concurrent_steps")},
    }
