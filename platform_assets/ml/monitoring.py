"""Drift monitoring of the serving model, one daily partition at a time (drift.py holds the measures)."""

import datetime as dt
import time
from typing import TYPE_CHECKING

import dagster as dg

from platform_assets.checks.daily import DailyResults, daily_check_spec, per_day, run_days
from platform_assets.lineage import table_dataset, tracked
from platform_assets.ml.assets import FEATURES_TABLE, PREDICTIONS_TABLE, log_artifacts, table_rows
from platform_assets.ml.drift import (
    PROFILE_ARTIFACT, SCORE, DayDrift, days_markdown, drift_rows, features_markdown, measure_day,
)
from platform_assets.ml.model import FEATURES, LABEL
from platform_assets.ml.plots import drift_png, markdown_image
from platform_assets.ml.policy import load_policy
from platform_assets.ml.registry import why_no_champion
from platform_assets.partitions import INLINE_DAYS, daily_partitions, partition_dates, single_run
from platform_assets.resources import WAREHOUSE_OP_TAGS, MlflowResource, WarehouseResource
from platform_assets.settings import DATA_START

if TYPE_CHECKING:  # imported where used: loading the code location must not import pandas
    import pandas as pd

DRIFT_KEY = dg.AssetKey(["ml", "flight_delay_drift"])
DRIFT_CHECK = "no_significant_drift"
DRIFT_TABLE = "ml.flight_delay_drift"
MONITORING_EXPERIMENT = "flight_delay_monitoring"
_DRIFT_COLUMNS = ["data_date", "model_version", "window_rows", "judged", "significant", "measure", "name", "value",
                  "reference", "band"]


def _reference_profiles(mlflow: MlflowResource, versions) -> dict[str, dict]:
    """The reference profile each model version stored at training."""
    import mlflow as mlflow_client  # noqa: PLC0415

    client = mlflow_client.MlflowClient()
    profiles = {}
    for version in versions:
        run_id = client.get_model_version(mlflow.registered_model_name, version).run_id
        try:
            profiles[version] = mlflow_client.artifacts.load_dict(f"runs:/{run_id}/{PROFILE_ARTIFACT}")
        except (OSError, mlflow_client.MlflowException) as error:
            raise dg.Failure(
                f"version {version} of '{mlflow.registered_model_name}' has no {PROFILE_ARTIFACT} in MLflow run "
                f"{run_id} ({error}): retrain ml/delay_model and re-score these days") from error
    return profiles


def _measure(frame: "pd.DataFrame", profiles: dict[str, dict], first_day: dt.date, last_day: dt.date,
             policy) -> list[DayDrift]:
    """Each day with scored flights, judged on the window ending on it, against the version that scored it."""
    import pandas as pd  # noqa: PLC0415

    by_day = {day.date(): rows for day, rows in frame.groupby("data_date")}
    days = []
    for day in pd.date_range(first_day, last_day).date:
        if day not in by_day:
            continue
        version = by_day[day]["model_version"].mode().iloc[0]
        in_window = pd.concat([by_day[earlier] for earlier in pd.date_range(
            day - dt.timedelta(days=policy.window_days - 1), day).date if earlier in by_day])
        days.append(measure_day(profiles[version], in_window[in_window["model_version"] == version], day, version,
                                policy))
    return days


def _measure_scored(store, mlflow: MlflowResource, first_day: dt.date, last_day: dt.date, policy) -> list[DayDrift]:
    frame = store.read(
        f"SELECT f.data_date, f.flight_date, {', '.join('f.' + c for c in FEATURES)}, f.{LABEL}, p.{SCORE}, "
        f"p.model_version FROM {FEATURES_TABLE} f JOIN {PREDICTIONS_TABLE} p USING (flight_id) "
        "WHERE f.data_date BETWEEN $1 AND $2 ORDER BY f.flight_id",
        [first_day - dt.timedelta(days=policy.window_days - 1), last_day],
    )
    profiles = _reference_profiles(mlflow, frame["model_version"].unique())
    return _measure(frame, profiles, first_day, last_day, policy)


def _why_nothing_scored(mlflow: MlflowResource, first_day: dt.date, last_day: dt.date) -> str:
    import mlflow as mlflow_client  # noqa: PLC0415

    no_champion = why_no_champion(mlflow_client.MlflowClient(), mlflow.registered_model_name)
    return f"no scored flights in {first_day}..{last_day}" + (f": {no_champion}" if no_champion else "")


def _log_daily_metrics(run_id: str, days: list[DayDrift]) -> None:
    """One batch: per day (step = days since the data start), the drift measures that have a value."""
    import mlflow as mlflow_client  # noqa: PLC0415
    from mlflow.entities import Metric  # noqa: PLC0415

    now, metrics = int(time.time() * 1000), []
    for drift in days:
        step = (drift.day - dt.date.fromisoformat(DATA_START)).days
        values = {"features_drifted": len(drift.drifted_features), "prediction_psi": drift.prediction_psi,
                  f"performance_{drift.performance_metric}": drift.performance, "significant": float(drift.significant)}
        metrics += [Metric(key, float(value), now, step) for key, value in values.items() if value == value]
    for start in range(0, len(metrics), 1000):  # the store's batch limit
        mlflow_client.MlflowClient().log_batch(run_id, metrics=metrics[start:start + 1000])


def _listed(days: list[str]) -> str:
    if len(days) <= INLINE_DAYS:
        return ", ".join(days) or "none"
    return f"{len(days)} days, the last: {', '.join(days[-INLINE_DAYS:])} (all in {DRIFT_TABLE})"


def drift_by_day(run_result: dg.AssetCheckResult, measured: list[DayDrift], days: list[str]):
    """Each day of the run judged on its own drift; a day with nothing scored passes, saying so. With nothing
    scored on any day (no model serves), or a run of one day: the run's result."""
    if len(days) <= 1 or not measured:
        return run_result
    by_day = {str(drift.day): drift for drift in measured}
    not_measured = dg.AssetCheckResult(passed=True, severity=dg.AssetCheckSeverity.WARN,
                                       metadata={"judged": False, "note": "nothing scored this day"})
    return DailyResults(DRIFT_CHECK, {day: dg.AssetCheckResult(
        passed=not by_day[day].significant, severity=dg.AssetCheckSeverity.WARN, metadata={
            "judged": by_day[day].judged, "significant": by_day[day].significant,
            "model_version": by_day[day].model_version,
            "reasons": "; ".join(by_day[day].reasons) or "none"}) if day in by_day else not_measured for day in days})


@dg.asset(
    key=DRIFT_KEY,
    group_name="ml",
    description="Drift of the serving model per day, each day judged on the flights of the window ending on it "
    "that the scoring version did not train on: PSI of the watched features against the version's last training "
    "days (bands 0.1 and 0.25), PSI of its scores against the scores "
    "it gave its holdout, and its performance once arrivals are known against its holdout performance "
    f"(policy: platform_assets/ml/lifecycle.yml). Table `{DRIFT_TABLE}`, one row per day and measure; plots and "
    "metrics also in MLflow. Significant drift fails the WARN check, and `retrain_on_drift` asks for retraining.",
    deps=[dg.AssetKey(["marts", "flight_features"]), dg.AssetKey(["ml", "flight_delay_predictions"])],
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    op_tags=WAREHOUSE_OP_TAGS,
    kinds={"duckdb", "mlflow"},
    check_specs=[daily_check_spec(dg.AssetCheckSpec(
        DRIFT_CHECK, asset=DRIFT_KEY,
        description="WARN: fails when any day of the run drifted significantly (lifecycle.yml, calibrated by "
        "`python -m platform_assets.ml backtest`: a watched feature in the 0.25 band, or a performance drop). Drift makes no data wrong, so it blocks nothing: the "
        "answer is retraining (sensor `retrain_on_drift`), and the promotion gate decides whether the new version "
        "serves. Each day of a run has its own result.",
    ))],
    output_required=False,
)
@tracked(inputs=[table_dataset(FEATURES_TABLE), table_dataset(PREDICTIONS_TABLE)], outputs=[table_dataset(DRIFT_TABLE)])
def flight_delay_drift(context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource):
    import pandas as pd  # noqa: PLC0415
    import mlflow as mlflow_client  # noqa: PLC0415

    policy = load_policy().drift
    first_day, last_day = partition_dates(context)
    mlflow.configure()
    with warehouse.open() as store:
        # Nothing is scored while no version has passed the gate (the table may not exist yet): no days to judge.
        days = [] if table_rows(store, PREDICTIONS_TABLE) is None else _measure_scored(store, mlflow, first_day,
                                                                                          last_day, policy)
        rows = pd.DataFrame([row for drift in days for row in drift_rows(drift)], columns=_DRIFT_COLUMNS)
        existing = table_rows(store, DRIFT_TABLE)
        # No rows and no table: nothing to replace, and a table created from an empty frame would have no types.
        total = store.replace_days(DRIFT_TABLE, rows, first_day, last_day) if days or existing is not None else 0

    skipped = None if days else _why_nothing_scored(mlflow, first_day, last_day)
    if skipped:
        context.log.warning(f"drift for {first_day}..{last_day} not measured: {skipped}")
    significant = [drift for drift in days if drift.significant]
    judged = [drift for drift in days if drift.judged]
    metadata = {
        "days_scored": len(days),
        "days_judged": len(judged),
        "days_significant": len(significant),
        # a longer run's days: the last INLINE_DAYS listed here, all in the drift table (partitions.INLINE_DAYS)
        "significant_days": _listed([str(drift.day) for drift in significant]),
        "model_versions": ", ".join(sorted({drift.model_version for drift in days})) or "none",
        "days": dg.MetadataValue.md(days_markdown(days, limit=INLINE_DAYS) if days else f"{skipped}."),
    }
    if not days:
        metadata["skipped"] = skipped
    materialization = {"dagster/row_count": total}
    if days:
        latest = judged[-1] if judged else days[-1]
        plot = drift_png(days)
        experiment_id = mlflow.configure(MONITORING_EXPERIMENT)
        with mlflow_client.start_run(experiment_id=experiment_id, run_name=f"drift {first_day}..{last_day}") as run:
            mlflow_client.set_tags({"dagster_run_id": context.run.run_id, "model_versions": metadata["model_versions"],
                                    "first_day": str(first_day), "last_day": str(last_day)})
            _log_daily_metrics(run.info.run_id, days)
            mlflow_client.log_metrics({f"psi_{k}": v for k, v in latest.feature_psi.items() if v == v})
            log_artifacts({"drift.png": plot, "drift.md": f"{days_markdown(days)}\n\n{features_markdown(latest)}\n"})
        metadata["mlflow_run"] = dg.MetadataValue.url(mlflow.run_url(experiment_id, run.info.run_id))
        materialization |= {"latest_day_features": dg.MetadataValue.md(features_markdown(latest))}
        if len(days) <= INLINE_DAYS:  # a longer run's plot is drift.png in its MLflow run (partitions.INLINE_DAYS)
            materialization["drift_plot"] = dg.MetadataValue.md(markdown_image(plot, "feature PSI and daily drift"))
    context.log.info(f"drift: {len(significant)} of {len(judged)} judged days significant")
    run_result = dg.AssetCheckResult(check_name=DRIFT_CHECK, passed=not significant,
                                     severity=dg.AssetCheckSeverity.WARN, metadata=metadata)
    yield from per_day(context, [drift_by_day(run_result, days, run_days(context))])
    yield dg.MaterializeResult(metadata=materialization | metadata)
