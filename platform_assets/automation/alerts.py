"""Alerts routed to the people who own the data: failed runs, failed ERROR-severity checks and materializations
over their cost budget or trend (docs/cost.md), each sent to
the owner and on-call of the affected dataset (from the governance catalog) with what it breaks downstream."""

import datetime as dt
import json
import urllib.request
from pathlib import Path

import dagster as dg

from governance.impact import impact_of
from platform_assets.settings import Settings, load_settings

WEBHOOK_TIMEOUT_SECONDS = 5


def route(dataset: str, **alert) -> dict:
    """One alert for one dataset, addressed to its owner team and on-call, with what it affects downstream
    (assets, consumers) and every other team to tell."""
    affected = impact_of(dataset)
    return {"dataset": dataset, "owner": affected.owner.team, "contact": affected.owner.contact,
            "on_call": affected.owner.on_call, **alert,
            "downstream": [below["dataset"] for below in affected.downstream],
            "consumers": [{"name": c.name, "kind": c.kind, "criticality": c.criticality, "owner": c.owner,
                           "contact": c.contact, "via": c.via} for c in affected.consumers],
            "also_notify": [{"team": n.team, "contact": n.contact, "because": n.because}
                            for n in affected.notify[1:]]}


def _step_assets(repository: dg.RepositoryDefinition, step_keys: set[str]) -> set[str]:
    return {key.to_user_string() for assets in repository.assets_defs_by_key.values()
            if assets.is_executable and assets.node_def.name in step_keys for key in assets.keys}


def run_alerts(instance: dg.DagsterInstance, repository: dg.RepositoryDefinition, settings: Settings,
               run_id: str) -> list[dict]:
    """The alerts a finished run raises: each failed ERROR-severity check, and, if the run failed, each asset
    its failed or interrupted steps did not update."""
    run = instance.get_run_by_id(run_id)
    events = [e.dagster_event for e in instance.all_logs(run_id) if e.dagster_event]
    common = {"run_id": run_id, "job": run.job_name, "run_url": settings.run_url(run_id),
              "time": dt.datetime.now(dt.UTC).isoformat()}
    alerts = []
    # A check of daily data has one result per day of the run (platform_assets/checks/daily.py): one alert per
    # check, naming the days it failed.
    failed: dict[tuple, list] = {}
    for event in events:
        if event.is_step_materialization:  # over its budget or its trend (platform_assets/cost, docs/cost.md)
            materialization = event.event_specific_data.materialization
            over = materialization.metadata.get("cost/alert")
            if over is not None:
                dataset = materialization.asset_key.to_user_string()
                alerts.append(route(dataset, kind="cost", message=f"{dataset} cost: {over.value}"[:2000],
                                    partition=materialization.partition or run.tags.get("dagster/partition"),
                                    **common))
            continue
        if event.event_type != dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            continue
        evaluation = event.event_specific_data
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            failed.setdefault((evaluation.asset_key, evaluation.check_name), []).append(evaluation)
    for evaluations in failed.values():
        evaluation = evaluations[0]
        dataset = evaluation.asset_key.to_user_string()
        refused = evaluation.metadata.get("refused") or evaluation.metadata.get("reason")
        message = f"check {evaluation.check_name} failed on {dataset}" + (f": {refused.value}" if refused else "")
        days = sorted(e.partition for e in evaluations if e.partition)
        partition = (days[0] if len(days) == 1 else f"{days[0]}..{days[-1]} ({len(days)} days)") if days else \
            run.tags.get("dagster/partition")
        alerts.append(route(dataset, kind="check_failed", check=evaluation.check_name, severity="ERROR",
                            blocking=evaluation.blocking, partition=partition, message=message[:2000], **common))
    if run.status != dg.DagsterRunStatus.FAILURE:
        return alerts
    failures = [event for event in events if event.is_step_failure]
    # A step that started and never ended was interrupted: its process died and run monitoring failed the run.
    interrupted = ({event.step_key for event in events if event.is_step_start}
                   - {event.step_key for event in events if event.is_step_success or event.is_step_failure})
    updated = {event.asset_key.to_user_string() for event in events if event.is_step_materialization}
    targeted = {key.to_user_string() for key in run.asset_selection or []} or {
        event.asset_key.to_user_string() for event in events
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED}  # a run of a subset of a job
    run_failure = next((event.message for event in events if event.event_type == dg.DagsterEventType.RUN_FAILURE),
                       None)
    reasons = {failure.step_key: failure.step_failure_data.error.message.strip() for failure in failures}
    reasons |= {step: run_failure or "its process died" for step in interrupted - reasons.keys()}
    for step, message in reasons.items():  # each dataset with the reason its own step gave
        affected = _step_assets(repository, {step})
        affected = (affected & targeted if targeted else affected) - updated
        for dataset in sorted(affected):
            alerts.append(route(dataset, kind="run_failed", message=message[:2000],
                                partition=run.tags.get("dagster/partition"), **common))
    return alerts


def send(alerts: list[dict], log: Path, webhook_url: str | None, logger) -> None:
    """Append every alert to the alert log; POST each to the webhook when one is configured. A webhook that
    is down is logged and does not stop the others (the alert log keeps the record)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        for alert in alerts:
            out.write(json.dumps(alert, default=str) + "\n")
    for alert in alerts if webhook_url else []:
        request = urllib.request.Request(webhook_url, data=json.dumps(alert, default=str).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS).close()
        except OSError as error:
            logger.warning(f"alert webhook {webhook_url} failed: {error}; the alert is in {log}")


@dg.sensor(
    name="owner_alert_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Routes failed runs, failed ERROR-severity checks and cost alerts to the owner and on-call of each "
    "affected dataset (governance catalog), with the downstream consumers it affects and a link to the run. Sinks: "
    "<data>/alerts/alerts.jsonl (append-only) and PLATFORM_ALERT_WEBHOOK_URL when set. WARN checks are not "
    "alerted: they report known gaps of the real data on every run.",
)
def owner_alert_sensor(context: dg.SensorEvaluationContext):
    settings = load_settings()
    cursor = json.loads(context.cursor) if context.cursor else {}
    alerts = []
    for outcome in (dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE):
        finished = context.instance.fetch_run_status_changes(outcome, limit=50, cursor=cursor.get(outcome.name),
                                                             ascending=True)
        for record in finished.records:
            alerts += run_alerts(context.instance, context.repository_def, settings, record.run_id)
        cursor[outcome.name] = finished.cursor
    if alerts:
        send(alerts, settings.alert_log, settings.alert_webhook_url, context.log)
    context.update_cursor(json.dumps(cursor))
    return dg.SkipReason(f"{len(alerts)} alert(s) sent" if alerts else "nothing failed")
