"""`make demo`: deliver the demo period into the landing zone, materialize the whole graph headless on the
platform's Dagster instance, and print what was built and where to look."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time

import dagster as dg

from platform_assets.instance import prepare_instance
from platform_assets.settings import Settings, load_settings
from platform_assets.simulator.deliver import deliver_day, delivered_days
from platform_assets.sources.landing import days_between

LAYER_SCHEMAS = ["raw", "staging", "intermediate", "marts", "ml"]


def deliver(settings: Settings, first_day: dt.date, last_day: dt.date) -> None:
    """The demo's sources for the days not delivered yet (any other source is delivered by its own system)."""
    already = set(delivered_days(settings.landing_dir))
    missing = [day for day in days_between(first_day, last_day) if day not in already]
    print(f"[1/3] landing zone {settings.landing_dir}: {len(already)} day(s) already delivered, "
          f"delivering {len(missing)}", flush=True)
    for index, day in enumerate(missing, 1):
        deliver_day(settings.landing_dir, day, settings.seed, settings.scale)
        if index % 30 == 0 or index == len(missing):
            print(f"  delivered {index}/{len(missing)} days (up to {day})", flush=True)


def layer_row_counts(settings: Settings) -> dict[str, dict[str, int]]:
    from platform_assets.resources import build_resources  # noqa: PLC0415

    with build_resources(settings)["warehouse"].open(read_only=True) as store:
        tables = store.read("SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema IN "
                            f"({', '.join(repr(schema) for schema in LAYER_SCHEMAS)}) ORDER BY 1, 2")
        counts = {schema: {} for schema in LAYER_SCHEMAS}
        for schema, table in tables.itertuples(index=False):
            counts[schema][table] = int(store.read(f'SELECT count(*) AS n FROM "{schema}"."{table}"')["n"][0])
        return counts


def check_results(instance: dg.DagsterInstance, run_id: str) -> tuple[int, list[str]]:
    """(checks that passed on every day, each failed check with the days it failed). A check of daily data has one
    result per day of the run (platform_assets/checks/daily.py); it is counted once."""
    days: dict[str, list] = {}
    severity: dict[str, str] = {}
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.get_dagster_event().event_specific_data
        name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
        days.setdefault(name, [])
        if not evaluation.passed:
            days[name].append(evaluation.partition)
            severity[name] = evaluation.severity.value
    failed = [f"{name} ({severity[name]}" + (f", {len(failed_days)} day(s)" if any(failed_days) else "") + ")"
              for name, failed_days in days.items() if failed_days]
    return len(days) - len(failed), failed


def latest_metadata(instance: dg.DagsterInstance, key: str) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey.from_user_string(key))
    if event is None or event.asset_materialization is None:
        return {}
    return {key: value.value for key, value in event.asset_materialization.metadata.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platform_assets.demo", description=__doc__)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2013, 1, 1))
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2013, 11, 30))
    args = parser.parse_args(argv)
    settings = load_settings()
    started = time.monotonic()
    home = prepare_instance(settings)
    deliver(settings, args.start, args.end)

    from platform_assets.runner import materialize_range  # noqa: PLC0415  (loads the code location)

    print(f"[2/3] {time.monotonic() - started:.0f} s: materializing the whole graph for {args.start}..{args.end} "
          f"as one run (instance {home}); times below count from the start of the run", flush=True)
    with dg.DagsterInstance.get() as instance:
        result = materialize_range(instance, args.start, args.end)
        passed, failed = 0, []
        for run_id in result.run_ids:
            run_passed, run_failed = check_results(instance, run_id)
            passed, failed = passed + run_passed, failed + run_failed
        model = latest_metadata(instance, "ml/delay_model")
        predictions = latest_metadata(instance, "ml/flight_delay_predictions")
        drift = latest_metadata(instance, "ml/flight_delay_drift")

    print(f"[3/3] summary (run {', '.join(result.run_ids)}, {'SUCCESS' if result.success else 'FAILED'}, "
          f"{time.monotonic() - started:.0f}s in all)")
    for source, readers in sorted(result.held_back.items()):
        print(f"  not published {source}: {result.unpublished[source]}")
        print(f"                held back what reads it: {', '.join(readers) or 'nothing'}")
    counts = layer_row_counts(settings)
    for schema, tables in counts.items():
        listed = ", ".join(f"{table} {rows:,}" for table, rows in tables.items()) or "(no tables)"
        print(f"  {schema:13} {listed}")
    print(f"  checks        {passed} passed, {len(failed)} failed")
    for failure in failed:
        print(f"                  failed: {failure}")
    if model:
        print(f"  model         version {model.get('model_version')}, holdout ROC AUC "
              f"{model.get('holdout_roc_auc', float('nan')):.3f}, average precision "
              f"{model.get('holdout_average_precision', float('nan')):.3f}, "
              f"{'promoted' if model.get('promoted_to_champion') else 'not promoted'} ({model.get('gate_decision')}); "
              "training "
              f"{model.get('training_seconds')}s, gate {model.get('gate_seconds')}s")
    if model or predictions:
        print(f"  serving       {serving_line(model, predictions)}")
    if drift.get("skipped"):
        print("  drift         not measured: " + ("no flight was scored (no model serves)" if predictions.get("skipped")
                                                  else drift["skipped"]))
    elif drift:
        print(f"  drift         {drift.get('days_significant')} of {drift.get('days_judged')} judged days significant "
              f"(policy: lifecycle.yml drift:, measures in table ml.flight_delay_drift)")
    print(f"  data folder   {settings.data_dir}")
    report = governance_report(settings)
    print("  look at       make dev     Dagster UI on http://127.0.0.1:3000: the asset graph by layer, each asset's "
          "owner, columns, rows and checks, the run")
    print(f"                {report}")
    print("                make mlflow  MLflow UI on http://127.0.0.1:5000: the training runs, metrics, the "
          "registered model")
    return 0 if result.success else 1


def serving_line(model: dict, predictions: dict) -> str:
    """Which version scores the flights, or why none does (the reason predictions and drift were skipped)."""
    if predictions.get("skipped"):
        return f"{predictions['skipped']}; predictions skipped, nothing failed"
    return str(model.get("serving") or f"version {predictions.get('model_version')}")


def governance_report(settings: Settings) -> str:
    """Write the governance catalog's HTML report into the data folder; say where it is, or why it is not."""
    out = settings.data_dir / "governance" / "report.html"
    command = [sys.executable, "-m", "governance.cli", "report", "--out", str(out)]
    written = subprocess.run(command, capture_output=True, text=True, check=False,
                             env={**os.environ, "PLATFORM_DATA_DIR": str(settings.data_dir)})
    if written.returncode != 0:
        reason = (written.stderr.strip().splitlines() or ["no message"])[-1]
        return f"governance report not written: {reason}"
    return f"{out}  governance report (owners, classification, lineage, checks): open it in a browser"


if __name__ == "__main__":
    sys.exit(main())
