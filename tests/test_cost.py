"""Cost accounting (docs/cost.md): the verdict and attribution rules, a real wrapped asset's cost rows, trend
alerts routed to the owner, and the cost of every materialization of the shared pipeline run."""

import datetime as dt
import json
import time

import dagster as dg
import duckdb
import pytest

from conftest import PIPELINE_FIRST_DAY, PIPELINE_LAST_DAY
from governance.catalog import Budget, Dataset, load_catalog
from governance.cost import TREND_FLOOR_SECONDS, cost_verdict, read_costs, sparkline, summarize, trailing_median
from platform_assets.cost.accounting import Held, attribute, with_cost_accounting
from platform_assets.cost.meter import Reading

# --- pure rules -------------------------------------------------------------------------------------------


def test_a_budget_is_per_day_of_data_and_names_what_is_over():
    budget = Budget(seconds_per_day=2, peak_memory_mb=100)
    assert cost_verdict(50.0, 1.0, 10 * 2**20, 30, budget, []) is None  # 1.7 s per day of 30
    assert cost_verdict(3.0, 1.0, 10 * 2**20, None, budget, []) == "3.0 s per day, budget 2 s"
    assert "peak memory 200 MB, budget 100 MB" in cost_verdict(1.0, 1.0, 200 * 2**20, 1, budget, [])


def test_the_trend_needs_three_previous_and_a_real_slowdown():
    assert trailing_median([1.0, 1.0]) is None
    assert cost_verdict(10.0, 1.0, None, 1, None, [1.0, 1.0]) is None  # too little history
    over = cost_verdict(10.0, 1.0, None, 1, None, [1.0, 1.2, 0.9, 50.0])
    assert over.startswith("10.0 s, 9.1x the median 1.1 s")
    assert cost_verdict(0.3, 0.1, None, 1, None, [0.1, 0.1, 0.1]) is None  # 3x, but 0.2 s is noise
    assert TREND_FLOOR_SECONDS == 1.0


def test_an_empty_budget_is_refused_with_its_dataset():
    with pytest.raises(ValueError, match="a budget limits"):
        Budget()
    entry = load_catalog().datasets["raw/flights"].model_dump()
    with pytest.raises(ValueError, match="greater than 0"):
        Dataset.model_validate({**entry, "budget": {"seconds_per_day": 0}})


def test_a_shared_invocation_is_split_by_own_time_and_the_rest_goes_to_the_last():
    key = dg.AssetKey("a")
    held = [Held(None, key, Reading(1.0, 0.5, 100, None), None),   # sequential: keeps its interval
            Held(None, key, Reading(9.0, 3.0, 300, 0), 1.0),       # dbt: the whole build arrives at once
            Held(None, key, Reading(0.0, 0.0, 50, 0), 3.0),
            ]
    shares = attribute(held, Reading(0.4, 0.2, 10, 0))
    assert [round(h.reading.wall_seconds, 2) for h in shares] == [1.0, 2.35, 7.05]
    assert [round(h.reading.cpu_seconds, 2) for h in shares] == [0.5, 0.8, 2.4]
    assert {h.reading.peak_memory_bytes for h in shares[1:]} == {300}
    assert sum(h.reading.wall_seconds for h in shares) == pytest.approx(10.4)


def test_summary_orders_by_latest_cost_with_its_trend():
    now = dt.datetime(2026, 1, 10)
    rows = [{"dataset": name, "days": 1, "recorded_at": now - dt.timedelta(hours=age), "wall_seconds": seconds,
             "cpu_seconds": 0.0, "peak_memory_bytes": None, "bytes_written": None, "spill_bytes": None, "alert": None}
            for name, age, seconds in [("raw/flights", 4, 1.0), ("raw/flights", 3, 1.0), ("raw/flights", 2, 1.0),
                                       ("raw/flights", 1, 3.0), ("raw/weather", 1, 0.5)]]
    costs = summarize(load_catalog(), rows)
    assert [c.dataset for c in costs] == ["raw/flights", "raw/weather"]
    assert costs[0].trend == 3.0 and costs[0].owner == "flight-operations" and costs[1].trend is None
    assert sparkline(costs[0].recent_seconds) == "▁▁▁█"

    from governance.graph import load_asset_graph
    from governance.report import render_report

    page = render_report(load_catalog(), load_asset_graph(), {}, costs={c.dataset: c for c in costs})
    assert "<th>cost (latest)</th>" in page and "<td>3.0 s, 3.00x its median</td>" in page
    assert page.count("<td>0.5 s</td>") == 1


# --- a real wrapped asset -----------------------------------------------------------------------------------

SLEEP = {"seconds": 0.0}


@dg.asset(key=["ml", "flight_delay_drift"])  # a stand-in with a real dataset's key: its owner gets the alert
def stand_in(context: dg.AssetExecutionContext):
    time.sleep(SLEEP["seconds"])
    yield dg.MaterializeResult(metadata={"dagster/row_count": 7})


def test_a_materialization_twice_its_median_is_recorded_and_alerted_to_its_owner(data_dir, monkeypatch):
    from platform_assets.automation.alerts import run_alerts
    from platform_assets.settings import load_settings

    accounted = with_cost_accounting(stand_in)
    assert with_cost_accounting(accounted) is accounted
    settings = load_settings()
    instance = dg.DagsterInstance.ephemeral()
    defs = dg.Definitions(assets=[accounted])
    results = []
    for seconds in (0.0, 0.0, 0.0, TREND_FLOOR_SECONDS + 0.3):
        SLEEP["seconds"] = seconds
        results.append(dg.materialize([accounted], instance=instance))
    monkeypatch.setenv("PLATFORM_COST_ACCOUNTING", "off")
    results.append(dg.materialize([accounted], instance=instance))  # not accounted: no metadata, no row

    rows = read_costs(settings.warehouse_path)
    assert len(rows) == 4 and {r["dataset"] for r in rows} == {"ml/flight_delay_drift"}
    assert [r["alert"] is not None for r in sorted(rows, key=lambda r: r["recorded_at"])] == [False] * 3 + [True]
    assert all(r["rows_out"] == 7 and r["peak_memory_bytes"] > 0 and r["days"] is None for r in rows)
    events = [r.asset_materializations_for_node(accounted.node_def.name)[0] for r in results]
    assert events[3].metadata["cost/wall_seconds"].value >= TREND_FLOOR_SECONDS
    assert "cost/alert" in events[3].metadata and "cost/wall_seconds" not in events[4].metadata
    alerts = run_alerts(instance, defs.get_repository_def(), settings, results[3].run_id)
    assert [(a["kind"], a["dataset"], a["owner"]) for a in alerts] == [("cost", "ml/flight_delay_drift", "team:ml-platform")]
    assert "the median" in alerts[0]["message"]
    assert run_alerts(instance, defs.get_repository_def(), settings, results[2].run_id) == []


# --- the shared pipeline run --------------------------------------------------------------------------------

NUMERIC = ("cost/wall_seconds", "cost/cpu_seconds", "cost/peak_memory_mb")


def test_every_materialization_of_the_pipeline_carries_its_cost_and_has_its_row(pipeline_run):
    instance, settings = pipeline_run["instance"], pipeline_run["settings"]
    runs = [pipeline_run["first"], pipeline_run["second"]]
    run_ids = [run_id for run in runs for run_id in run.run_ids]
    records = [(run_id, record.dagster_event.event_specific_data.materialization) for run_id in run_ids
               for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)]
    materializations = [materialization for _, materialization in records]  # one per partition of the range
    assert materializations
    for event in materializations:
        for name in NUMERIC:
            assert isinstance(event.metadata[name], (dg.FloatMetadataValue, dg.IntMetadataValue)), (event.asset_key,
                                                                                                   name)
    # each day's copy of a range run's cost says how many days that cost covers
    days = (PIPELINE_LAST_DAY - PIPELINE_FIRST_DAY).days + 1
    assert {m.metadata["cost/days"].value for m in materializations if m.partition} == {days}
    assert not any("cost/days" in m.metadata for m in materializations if not m.partition)
    dbt_models = [m for m in materializations if m.asset_key.path[0] in ("staging", "intermediate", "marts")]
    assert dbt_models and all(m.metadata["cost/own_seconds"].value > 0 for m in dbt_models)

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as connection:
        rows = connection.execute("SELECT run_id, dataset, step, days, wall_seconds, own_seconds, table_bytes "
                                  "FROM ops.asset_costs").fetchall()
    mine = [row for row in rows if row[0] in run_ids]
    # one row per asset materialized by a run (Dagster reports it once per partition of the run's range)
    assert sorted((row[0], row[1]) for row in mine) == sorted({(run_id, m.asset_key.to_user_string())
                                                                 for run_id, m in records})
    assert {row[3] for row in mine if row[1].startswith("marts/")} == {10}
    assert all(row[6] > 0 for row in mine if row[1].startswith(("raw/", "marts/")))


def test_governance_cost_lists_every_materialized_dataset(pipeline_run, monkeypatch, capsys):
    from governance.cli import main

    monkeypatch.setenv("PLATFORM_DATA_DIR", str(pipeline_run["settings"].data_dir))
    assert main(["--json", "cost"]) == 0
    answer = json.loads(capsys.readouterr().out)
    listed = [d["dataset"] for d in answer["datasets"]]
    assert {"raw/flights", "marts/flights", "ml/delay_model"} <= set(listed)
    seconds = [d["wall_seconds"] for d in answer["datasets"]]
    assert seconds == sorted(seconds, reverse=True)
    assert main(["cost"]) == 0 and "trend" in capsys.readouterr().out


def test_governance_cost_names_a_missing_warehouse(tmp_path, monkeypatch, capsys):
    from governance.cli import main

    monkeypatch.setenv("PLATFORM_DATA_DIR", str(tmp_path / "nothing"))
    assert main(["cost"]) == 1
    assert "no warehouse at" in capsys.readouterr().err
