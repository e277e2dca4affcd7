"""The benchmark's own helpers (the benchmark itself is `make bench`, not a test): which tables are compared
and where each side keeps them, the comparison, the period and scales, the memory sampler on a real child, and
the step timeline of real runs on both targets."""

import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

from platform_assets.bench.measure import run_measured
from platform_assets.bench.report import (
    benchmark_tables, bench_period, compare_row_counts, models_in_build_order, parse_scales, parse_targets,
    rows_per_layer, step_overlap, summary_table,
)


def _model(name: str, folder: str, schema: str, layer: str, parents: list[str]) -> dict:
    return {"resource_type": "model", "name": name, "alias": name, "fqn": ["p", folder, name], "schema": schema,
            "config": {"meta": {"layer": layer}}, "depends_on": {"nodes": parents}}


MANIFEST = {"nodes": {
    "model.p.features": _model("features", "marts", "marts_audit", "features", ["model.p.flights"]),
    "model.p.flights": _model("flights", "marts", "marts_audit", "cleaned", ["model.p.stg", "source.p.raw.f"]),
    "model.p.stg": _model("stg", "staging", "staging", "cleaned", ["source.p.raw.f"]),
    "test.p.unique": {"resource_type": "test", "depends_on": {"nodes": ["model.p.stg"]}},
}}


def test_marts_are_compared_where_the_platform_publishes_them_and_the_baseline_builds_them():
    tables = {t.name: t for t in benchmark_tables(MANIFEST, ["f"], "marts")}
    assert list(tables) == ["raw/f", "marts/flights", "staging/stg", "marts/features", "ml/flight_delay_predictions"]
    assert (tables["marts/flights"].platform_relation, tables["marts/flights"].baseline_relation) == (
        "marts.flights", "marts_audit.flights")
    assert tables["staging/stg"].platform_relation == tables["staging/stg"].baseline_relation == "staging.stg"
    assert tables["marts/features"].layer == "features"


def test_models_come_after_every_model_they_select_from():
    assert [node["name"] for node in models_in_build_order(MANIFEST)] == ["stg", "flights", "features"]
    cyclic = {"nodes": {"model.p.a": _model("a", "x", "x", "cleaned", ["model.p.b"]),
                        "model.p.b": _model("b", "x", "x", "cleaned", ["model.p.a"])}}
    with pytest.raises(ValueError, match="cycle"):
        models_in_build_order(cyclic)


def test_row_counts_match_only_when_every_table_exists_on_both_sides_with_equal_rows():
    tables = benchmark_tables(MANIFEST, ["f"], "marts")
    counts = {t.name: 10 for t in tables}
    assert compare_row_counts(tables, counts, dict(counts)) == {"row_counts_match": True, "mismatches": []}
    assert compare_row_counts(tables, counts, {**counts, "staging/stg": 9})["mismatches"] == [
        {"table": "staging/stg", "platform": 10, "baseline": 9}]
    missing = compare_row_counts(tables, {**counts, "raw/f": None}, {**counts, "raw/f": None})
    assert not missing["row_counts_match"]
    assert rows_per_layer(tables, counts) == {"raw": 10, "cleaned": 20, "features": 10, "ml": 10}


def test_scales_and_period_are_validated():
    assert parse_scales("1 5,20") == [1.0, 5.0, 20.0]
    for bad in ("", "0", "-1 5"):
        with pytest.raises(ValueError, match="SCALES"):
            parse_scales(bad)
    last_day = dt.date(2013, 12, 31)
    assert bench_period("2013-01-01", "2013-11-30", None, last_day) == (dt.date(2013, 1, 1), dt.date(2013, 11, 30))
    assert bench_period("2013-01-01", "2013-11-30", "10", last_day) == (dt.date(2013, 1, 1), dt.date(2013, 1, 10))
    with pytest.raises(ValueError, match="end before 2013-12-31"):
        bench_period("2013-12-01", "2013-12-31", None, last_day)
    with pytest.raises(ValueError, match="empty"):
        bench_period("2013-02-01", "2013-01-01", None, last_day)


def test_targets_always_include_embedded_beside_team():
    assert parse_targets("embedded") == ["embedded"]
    assert parse_targets("team") == parse_targets("team,embedded") == parse_targets("embedded, team") == [
        "embedded", "team"]
    for bad in ("", "kubernetes", "embedded,dev"):
        with pytest.raises(ValueError, match="BENCH_TARGETS"):
            parse_targets(bad)


def test_overlap_counts_steps_running_at_once_but_not_steps_that_touch():
    def step(name, start, end):
        return {"step": name, "start": start, "end": end}

    # a: 0-4, b: 1-3 and c: 2-6 at once; d starts as c ends; e was skipped (never started)
    overlap = step_overlap([step("a", 0, 4), step("b", 1, 3), step("c", 2, 6), step("d", 6, 7),
                            {"step": "e", "start": None, "end": 7}])
    assert overlap["steps"] == 4 and overlap["max_concurrent_steps"] == 3
    assert overlap["seconds_with_two_or_more"] == 3.0  # 1-4: a with b and c
    assert overlap["overlapping_pairs"] == [{"steps": ["a", "b"], "seconds": 2}, {"steps": ["a", "c"], "seconds": 2},
                                            {"steps": ["b", "c"], "seconds": 1}]
    assert step_overlap([step("a", 0, 1), step("b", 1, 2)])["max_concurrent_steps"] == 1


def test_summary_table_has_one_row_per_scale():
    table = summary_table([{"scale": 1.0, "platform_seconds": 12.0, "baseline_seconds": 4.0, "ratio": 3.0,
                            "row_counts_match": True}])
    lines = table.splitlines()
    assert len(lines) == 3 and lines[2].startswith("| 1.0 | 12.0 | 4.0 | 3.00 |") and "| yes |" in lines[2]


def test_peak_memory_covers_the_child_processes(tmp_path):
    # The measured child starts a grandchild that holds 300 MB: the tree's peak must see it.
    grandchild = "import time; block = bytearray(300 * 2**20); time.sleep(1.5)"
    child = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {grandchild!r}], check=True)"
    measured = run_measured([sys.executable, "-c", child], {}, tmp_path / "child.log", tmp_path)
    assert measured.returncode == 0
    assert measured.peak_rss_mb > 300
    assert measured.seconds >= 1.5
    assert 0 < measured.cpu_seconds < measured.seconds  # mostly asleep


# The step timeline and which steps ran at once, from real runs' event logs: the platform's own steps in process on
# the embedded target, and a job's independent steps on the team target's two Celery workers.

def test_embedded_steps_run_one_after_another_in_the_run_process(tmp_path):
    from platform_assets.bench.sides import child_env, run_platform
    from platform_assets.simulator.deliver import deliver_day

    day = dt.date(2013, 1, 1)
    deliver_day(tmp_path / "landing", day, 13, 0.2)
    env = child_env(tmp_path, 0.2, 13, "1GB")
    measured, phases, success = run_platform("raw_day", tmp_path, day, day, env, tmp_path / "logs", {}, select="raw")
    assert success, (tmp_path / "logs" / "raw_day.log").read_text()[-3000:]
    timeline = {entry["step"]: entry for entry in phases["timeline"]}
    assert set(timeline) == {"raw_ingestion", "raw_snapshots"}, "only the raw assets were selected"
    for entry in timeline.values():
        assert entry["status"] == "success"
        assert 0 < entry["start"] < entry["end"] < measured.seconds, entry
        assert entry["seconds"] == pytest.approx(entry["end"] - entry["start"], abs=0.011)
    pids = {entry["pid"] for entry in timeline.values()}
    assert len(pids) == 1 and None not in pids, "embedded: every step in the run's one process"
    assert phases["overlap"] == {"steps": 2, "max_concurrent_steps": 1, "seconds_with_two_or_more": 0.0,
                                 "overlapping_pairs": []}
    assert set(measured.groups) == {"run"} and measured.groups["run"].peak_pss_mb == pytest.approx(
        measured.peak_rss_mb)


def test_independent_steps_on_two_celery_workers_overlap_and_the_servers_memory_is_sampled(tmp_path):
    from test_team_servers import JOB_FILE, read_env_file  # the team servers and their job, as tested there

    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableJob
    from platform_assets.bench.platform_run import step_timeline
    from platform_assets.bench.team import server_pids
    from platform_assets.instance import prepare_instance
    from platform_assets.settings import load_settings
    from platform_assets.team.servers import down, team_env_file, up

    data_dir = Path(tempfile.mkdtemp(prefix="platform-bench-team-"))  # the postgres user must reach it
    data_dir.chmod(0o755)
    previous = dict(os.environ)
    try:
        servers = up(data_dir)
        os.environ.update({"PLATFORM_DATA_DIR": str(data_dir), **read_env_file(team_env_file(data_dir))})
        pids = server_pids(servers)
        # A child that holds 100 MB for a second, measured with the servers: each group sampled, the sum's peak.
        measured = run_measured([sys.executable, "-c", "import time; block = bytearray(100 * 2**20); time.sleep(1)"],
                                {}, tmp_path / "child.log", tmp_path, servers=pids)
        assert set(measured.groups) == {"run", "postgres", "redis", "workers"}
        assert all(group.peak_rss_mb > 0 for group in measured.groups.values()), measured.groups
        assert measured.groups["workers"].peak_rss_mb > 100, "two Python processes with dagster imported"
        assert measured.groups["run"].peak_pss_mb > 100
        assert measured.peak_rss_sum_mb >= sum(group.peak_rss_mb for group in measured.groups.values()) * 0.9

        started = time.time()
        with dg.DagsterInstance.from_config(str(prepare_instance(load_settings()))) as instance:
            job = ReconstructableJob.for_file(str(JOB_FILE), "two_sources")  # as a worker imports it
            result = dg.execute_job(job, instance, tags={"dagster/partition": "2013-01-01"})
            assert result.success
            timeline = {entry["step"]: entry for entry in step_timeline(instance.all_logs(result.run_id), started)}
    finally:
        stopped = down(data_dir)
        os.environ.clear()
        os.environ.update(previous)
        shutil.rmtree(data_dir, ignore_errors=True)
    assert len(stopped) == 4, stopped
    flights, weather, join = timeline["load_flights"], timeline["load_weather"], timeline["join_flights_and_weather"]
    assert flights["pid"] != weather["pid"], "each on its own worker's pool process"
    overlap = step_overlap(list(timeline.values()))
    assert overlap["max_concurrent_steps"] == 2
    [pair] = overlap["overlapping_pairs"]
    assert sorted(pair["steps"]) == ["load_flights", "load_weather"] and pair["seconds"] > 1.0, overlap
    assert overlap["seconds_with_two_or_more"] == pair["seconds"]
    assert join["start"] >= max(flights["end"], weather["end"]), "the step that needs both starts after both"
