"""A measured platform run of the benchmark on either target: the child's environment, the run measured as a child
process, and where its time went (platform_assets/bench/platform_run.py)."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from platform_assets.bench.measure import Measurement, run_measured
from platform_assets.settings import REPO_ROOT, TEAM_VARIABLES, Settings

BIN = Path(sys.executable).parent


def child_env(data_dir: Path, scale: float, seed: int, memory_limit: str,
              team: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a measured child: the embedded target, or the team target on the servers whose
    settings `team` holds (never the servers of the environment the benchmark was started in)."""
    inherited = {name: value for name, value in os.environ.items()
                 if name != "PLATFORM_TARGET" and name not in TEAM_VARIABLES.values()}
    target = "team" if team else "embedded"
    return {
        **inherited,
        **(team or {}),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PLATFORM_DATA_DIR": str(data_dir),
        "DAGSTER_HOME": str(Settings(data_dir=data_dir, seed=seed, scale=scale, target=target).dagster_home),
        "PLATFORM_SCALE": f"{scale:g}",
        "PLATFORM_SEED": str(seed),
        "DUCKDB_MEMORY_LIMIT": memory_limit,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
    }


@contextmanager
def environment(values: dict[str, str]):
    """`values` in this process's environment for a while (reading the team instance needs DAGSTER_PG_URL)."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_platform(label: str, data_dir: Path, first: dt.date, last: dt.date, env: dict, logs: Path,
                 layer_of_asset: dict[str, str], daily: bool = False, select: str | None = None,
                 servers: dict[str, list[int]] | None = None, launch: bool = False) -> tuple:
    from platform_assets.bench.platform_run import run_phases  # noqa: PLC0415  (imports Dagster)

    out = data_dir / f"{label}.json"
    command = [sys.executable, "-m", "platform_assets.bench.platform_run", "--start", str(first), "--end", str(last),
               "--out", str(out), *(["--daily"] if daily else []), *(["--select", select] if select else []),
               *(["--launch"] if launch else [])]
    measured = run_measured(command, env, logs / f"{label}.log", REPO_ROOT, servers=servers)
    child = json.loads(out.read_text()) if out.exists() else None
    with environment({name: env[name] for name in ("PLATFORM_TARGET", *TEAM_VARIABLES.values()) if name in env}):
        phases = run_phases(Path(env["DAGSTER_HOME"]), child, layer_of_asset) if child else {}
    success = bool(child and child["success"] and measured.returncode == 0)
    if not success:
        print(f"    {label}: the platform run FAILED (see {logs / f'{label}.log'})", flush=True)
    return measured, phases, success


@contextmanager
def run_server(env: dict, log: Path) -> Iterator[int]:
    """The run server `make dev` starts (platform_assets/run_server.py) over the data folder of `env`, ready
    before anything is measured, as it is under `make dev` before a delivery arrives; its pid. Stopped afterwards."""
    from platform_assets.run_server import start  # noqa: PLC0415

    process = start(env, log)
    try:
        yield process.pid
    finally:
        process.terminate()
        process.wait(60)


def memory_by_group(measured: Measurement) -> dict[str, dict[str, float]]:
    return {name: {"peak_pss_mb": round(group.peak_pss_mb), "peak_rss_mb": round(group.peak_rss_mb),
                   "cpu_seconds": round(group.cpu_seconds, 1)} for name, group in measured.groups.items()}


def side_result(measured: Measurement, phases: dict, success: bool, incremental: Measurement,
                incremental_phases: dict, incremental_ok: bool) -> dict:
    """One platform side of a scale (the period and the next day), as the team comparison reports it."""
    return {
        "seconds": round(measured.seconds, 1),
        "peak_rss_mb": round(measured.peak_rss_mb),  # PSS summed over every sampled process, at its peak
        "peak_rss_sum_mb": round(measured.peak_rss_sum_mb),
        "peak_by_group_mb": memory_by_group(measured),
        "cpu_seconds": round(measured.cpu_seconds, 1),
        "success": success,
        "overlap": phases.get("overlap"),
        "incremental_day_seconds": round(incremental.seconds, 1),
        "incremental_peak_rss_mb": round(incremental.peak_rss_mb),
        "incremental_success": incremental_ok,
        "incremental_overlap": incremental_phases.get("overlap"),
        "phases": phases,
        "incremental_phases": incremental_phases,
    }
