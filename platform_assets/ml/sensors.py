"""Retraining on drift: when the drift check reports significant drift, request a training run of the model."""

import dagster as dg

from platform_assets.ml.assets import MODEL_KEY
from platform_assets.ml.monitoring import DRIFT_CHECK, DRIFT_KEY

DRIFT_CHECK_KEY = dg.AssetCheckKey(DRIFT_KEY, DRIFT_CHECK)

# Training alone, with its schema check and its promotion gate: the gate decides whether the result serves.
retrain_delay_model = dg.define_asset_job(
    "retrain_delay_model", selection=dg.AssetSelection.assets(MODEL_KEY),
    description="Retrain the delay classifier on every published labelled flight; the gate decides promotion.",
)


def _evaluation(record):
    """The check's result in this execution record, or None while it is only planned."""
    event = record.event.dagster_event if record.event else None
    if event is None or event.event_type != dg.DagsterEventType.ASSET_CHECK_EVALUATION:
        return None
    return event.event_specific_data


def _executions_after(instance: dg.DagsterInstance, seen: int, page: int = 100) -> list:
    """Every execution record of the check after `seen`: a run of many days records one per day
    (platform_assets/checks/daily.py), more than a page."""
    records, cursor = [], None
    while True:
        history = instance.event_log_storage.get_asset_check_execution_history(DRIFT_CHECK_KEY, limit=page,
                                                                               cursor=cursor)
        records += [record for record in history if record.id > seen]
        if len(history) < page or history[-1].id <= seen:
            return records
        cursor = history[-1].id


def _in_progress(instance: dg.DagsterInstance, record) -> bool:
    run = instance.get_run_by_id(record.run_id)
    return run is not None and not run.is_finished


@dg.sensor(
    name="retrain_on_drift",
    job=retrain_delay_model,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=f"Requests a `retrain_delay_model` run when `{DRIFT_KEY.to_user_string()}:{DRIFT_CHECK}` fails "
    "(significant drift), unless the model was trained in or after that run. The cursor is the last check "
    "execution seen; the run key names the execution, so one evaluation never starts two runs.",
)
def retrain_on_drift(context: dg.SensorEvaluationContext):
    seen = int(context.cursor or 0)
    new = sorted(_executions_after(context.instance, seen), key=lambda record: record.id)
    results = [(record, _evaluation(record)) for record in new]
    # Never move the cursor past an execution that may still report; re-reading the ones after it is harmless.
    pending = [record.id for record, result in results if result is None and _in_progress(context.instance, record)]
    if not new:
        return dg.SkipReason(f"no new execution of {DRIFT_CHECK}")
    context.update_cursor(str(min(pending) - 1 if pending else new[-1].id))
    drifted = [record for record, result in results if result is not None and not result.passed]
    if not drifted:
        return dg.SkipReason(f"{len(new)} new execution(s) of {DRIFT_CHECK}, none with significant drift")
    latest = drifted[-1]
    trained = context.instance.get_latest_materialization_event(MODEL_KEY)
    if trained is not None and (trained.run_id == latest.run_id or trained.timestamp > latest.event.timestamp):
        return dg.SkipReason(f"significant drift in run {latest.run_id}, but the model was trained in or after "
                             f"that run (run {trained.run_id})")
    return dg.RunRequest(
        run_key=f"drift-check-execution-{latest.id}",
        tags={"platform/trigger": "retrain_on_drift", "platform/drift_run_id": latest.run_id},
    )
