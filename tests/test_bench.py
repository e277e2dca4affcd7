"""The benchmark's own helpers (the benchmark itself is `make bench`, not a test): which tables are compared
and where each side keeps them, the comparison, the period and scales, and the memory sampler on a real child."""

import datetime as dt
import sys

import pytest

from platform_assets.bench.measure import run_measured
from platform_assets.bench.report import (
    benchmark_tables, bench_period, compare_row_counts, models_in_build_order, parse_scales, rows_per_layer,
    summary_table,
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
