"""Live evaluation and the release decisions it drives, one daily partition at a time: once a day's arrivals are
known, every version that scored it (champion, shadow, canary) is measured on its flights, overall and by segment;
then the challenger on trial moves on or is retired, and a champion beyond its error budget is rolled back
(release.py holds the rules, registry.py the moves)."""

import datetime as dt
import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from platform_assets.checks.daily import daily_check_spec, per_day
from platform_assets.lineage import table_dataset, tracked
from platform_assets.ml.assets import FEATURES_TABLE, SCORES_TABLE, log_artifacts, table_rows
from platform_assets.ml.card import CARD_JSON, CARD_MARKDOWN, card_markdown, with_release
from platform_assets.ml.model import LABEL
from platform_assets.ml.policy import load_policy
from platform_assets.ml.registry import (
    CANARY, CANARY_SHARE_TAG, CHAMPION, HISTORY_FILE, PREVIOUS_CHAMPION_TAG, SHADOW, alias_version, champion_version,
    challenger_version, promote, retire_trial, rollback, start_trial, why_no_champion,
)
from platform_assets.ml.release import LIVE_COLUMNS, budget_breach, judge_live, live_metrics, side_by_side, trial_step
from platform_assets.ml.signoff import SignOffError, approval_of
from platform_assets.partitions import daily_partitions, partition_dates, single_run
from platform_assets.resources import WAREHOUSE_OP_TAGS, MlflowResource, WarehouseResource
from platform_assets.settings import load_settings

if TYPE_CHECKING:  # imported where used: loading the code location must not import pandas
    import pandas as pd

LIVE_KEY = dg.AssetKey(["ml", "flight_delay_live_quality"])
LIVE_TABLE = "ml.flight_delay_live_quality"
BUDGET_CHECK = "champion_within_error_budget"
AUTOMATIC = "automatic release (ml/flight_delay_live_quality)"
_LABELLED_SCORES = (
    f"SELECT s.data_date, s.flight_id, s.model_version, s.role, s.canary_share, s.delay_probability, f.carrier, "
    f"f.origin, f.{LABEL} FROM {SCORES_TABLE} s JOIN {FEATURES_TABLE} f USING (flight_id) "
    f"WHERE f.{LABEL} IS NOT NULL")


def _live_start(version) -> dt.date:
    """The first day a version can be judged live on: the start of its holdout (it never trained on what follows)."""
    return dt.date.fromisoformat(version.tags.get("holdout_start", "9999-12-31"))


def _daily(store, version, metric: str) -> "pd.Series":
    """The version's live `metric` per labelled day it served as champion."""
    import pandas as pd  # noqa: PLC0415

    frame = store.read(
        f"SELECT data_date, value FROM {LIVE_TABLE} WHERE model_version = $1 AND role = '{CHAMPION}' AND "
        "scope = 'overall' AND metric = $2 AND data_date >= $3 ORDER BY data_date",
        [str(version.version), metric, _live_start(version)])
    return pd.Series(frame["value"].to_numpy(dtype=float), index=pd.to_datetime(frame["data_date"]).dt.date)


def _expected(client, store, name: str, champion, metric: str) -> tuple[float, str]:
    """What the champion should reach live: its previous champion's live level, or its own holdout value."""
    previous = champion.tags.get(PREVIOUS_CHAMPION_TAG)
    if previous:
        level = _daily(store, client.get_model_version(name, previous), metric)
        if len(level):
            return float(level.mean()), f"version {previous}'s live level ({len(level)} days)"
    return float(client.get_run(champion.run_id).data.metrics[f"holdout_{metric}"]), "its own holdout"


def _update_card(client, name: str, version, release: dict, sign_off: dict | None) -> None:
    """Add the trial's live results (and the sign-off) to the version's model card in MLflow."""
    with tempfile.TemporaryDirectory() as folder:
        card = json.loads(Path(client.download_artifacts(version.run_id, CARD_JSON, folder)).read_text())
    card = with_release(card, release, sign_off)
    log_artifacts({CARD_JSON: json.dumps(card, indent=2) + "\n", CARD_MARKDOWN: card_markdown(card)},
                  run_id=version.run_id)


def _rollback_if_due(client, store, name: str, policy, history: Path) -> dict:
    champion = champion_version(client, name)
    if champion is None:
        return {}
    metric = policy.release.rollback.metric
    expected, source = _expected(client, store, name, champion, metric)
    breach = budget_breach(policy.release, _daily(store, champion, metric), expected, source)
    if breach is None:
        return {"champion": str(champion.version), "expected": f"{metric} {expected:.4f} ({source})"}
    reason = breach.reason(str(champion.version))
    if not champion.tags.get(PREVIOUS_CHAMPION_TAG):
        return {"champion": str(champion.version), "breach": f"{reason}; no earlier champion to restore: retrain"}
    move = rollback(client, name, AUTOMATIC, reason, history, evidence=asdict(breach))
    return {"champion": move.to_version, "breach": reason, "rolled_back": move.line()}


def _trial_frame(store, challenger, stage: str, share: float) -> "pd.DataFrame":
    """The labelled live flights of the challenger's current stage, scored by it and by the day's champion."""
    return store.read(
        f"{_LABELLED_SCORES} AND s.data_date >= $1 AND (s.role = '{CHAMPION}' OR (s.model_version = $2 AND "
        "s.role = $3)) AND s.data_date IN (SELECT data_date FROM "
        f"{SCORES_TABLE} WHERE model_version = $2 AND role = $3 AND canary_share = $4)",
        [_live_start(challenger), str(challenger.version), stage, share])


def _advance_trial(client, store, name: str, policy, history: Path) -> dict:
    import pandas as pd  # noqa: PLC0415

    challenger = challenger_version(client, name)
    if challenger is None:
        return {}
    version = str(challenger.version)
    canary = alias_version(client, name, CANARY)
    stage = CANARY if canary is not None else SHADOW
    share = float(challenger.tags.get(CANARY_SHARE_TAG, 0)) if stage == CANARY else 0.0
    both = side_by_side(_trial_frame(store, challenger, stage, share), version)
    days = sorted(pd.to_datetime(both["data_date"]).dt.date.unique())
    champions = ",".join(sorted(both["model_version_champion"].unique())) if len(both) else None
    needed = policy.release.shadow_days if stage == SHADOW else policy.release.canary.days_per_step
    decision = judge_live(policy.gate, both, champions) if len(days) >= needed and len(both) else None
    try:
        approval, sign_off_problem = approval_of(challenger, policy.approvals_path, name), None
    except SignOffError as error:
        approval, sign_off_problem = None, str(error)
    step = trial_step(policy.release, stage, share or None, days, decision, approval is not None)
    evidence = {**step.evidence, "champion_versions": champions, "sign_off": approval}
    if step.action == "canary":
        move = start_trial(client, name, version, CANARY, AUTOMATIC, step.reason, history, share=step.share,
                           evidence=evidence)
    elif step.action == "promote":
        move = promote(client, name, version, AUTOMATIC, step.reason, history, evidence=evidence)
    elif step.action == "retire":
        move = retire_trial(client, name, version, AUTOMATIC, step.reason, history, evidence=evidence)
    else:
        move = None
    if move is not None:
        outcome = (f"canary at share {step.share:g}" if step.action == "canary" else
                   "promoted to champion" if step.action == "promote" else "retired, never served")
        _update_card(client, name, challenger, {**evidence, "outcome": outcome, "reason": step.reason}, approval)
    return {"challenger": version, "stage": stage, "trial": step.action, "trial_reason": step.reason,
            **({"moved": move.line()} if move else {}), **({"sign_off_problem": sign_off_problem}
                                                           if sign_off_problem else {})}


@dg.asset(
    key=LIVE_KEY,
    group_name="ml",
    description="Live quality of every model version that scored a day (champion, shadow, canary), once the day's "
    "arrivals are known: the promotion gate's metrics overall and per carrier and origin, one row per day, version, "
    f"role, scope and metric in `{LIVE_TABLE}`. Then the release decisions (policy: platform_assets/ml/lifecycle.yml, "
    "`release`): a challenger on trial is promoted, moved to the next canary share or retired once enough of its "
    "live days are labelled (and signed off where required); a champion beyond its error budget on enough labelled "
    "days in a row is rolled back to the previous champion. Every move is in champion_history.jsonl.",
    deps=[dg.AssetKey(["marts", "flight_features"]), dg.AssetKey(["ml", "flight_delay_predictions"])],
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    op_tags=WAREHOUSE_OP_TAGS,
    kinds={"duckdb", "mlflow"},
    check_specs=[daily_check_spec(dg.AssetCheckSpec(
        BUDGET_CHECK, asset=LIVE_KEY,
        description="ERROR, not blocking: fails when the champion's live metric fell below its expected level (the "
        "previous champion's live level, or its own holdout) by more than the error budget on the last labelled days "
        "in a row (lifecycle.yml: release.rollback). The alias has then moved back on its own (or, for a first "
        "champion, there is nothing to restore); the owners' alert sensor routes the failure to ml-platform. Judges "
        "the run's days together: each day of a run has the run's result.",
    ))],
    output_required=False,
)
@tracked(inputs=[table_dataset(FEATURES_TABLE), table_dataset(SCORES_TABLE)], outputs=[table_dataset(LIVE_TABLE)])
def flight_delay_live_quality(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource
):
    import pandas as pd  # noqa: PLC0415
    import mlflow as mlflow_client  # noqa: PLC0415

    policy = load_policy()
    first_day, last_day = partition_dates(context)
    mlflow.configure()
    client, name = mlflow_client.MlflowClient(), mlflow.registered_model_name
    history = load_settings().mlflow_dir / HISTORY_FILE
    with warehouse.open() as store:
        scored = (store.read(f"{_LABELLED_SCORES} AND s.data_date BETWEEN $1 AND $2", [first_day, last_day])
                  if table_rows(store, SCORES_TABLE) is not None else pd.DataFrame())
        rows = live_metrics(policy.gate, scored) if len(scored) else pd.DataFrame(columns=LIVE_COLUMNS)
        existing = table_rows(store, LIVE_TABLE)
        total = store.replace_days(LIVE_TABLE, rows, first_day, last_day) if len(rows) or existing is not None else 0
        if existing is None and not len(rows):
            outcome = {}
        else:
            outcome = _rollback_if_due(client, store, name, policy, history)
            outcome |= _advance_trial(client, store, name, policy, history)
    skipped = None
    if not len(scored):
        no_champion = why_no_champion(client, name)
        skipped = f"no labelled, scored flights in {first_day}..{last_day}" + (f": {no_champion}" if no_champion
                                                                                else "")
        context.log.warning(f"live quality not measured: {skipped}")
    for line in (outcome.get("rolled_back"), outcome.get("moved")):
        if line:
            context.log.info(line)
    if outcome.get("breach"):
        context.log.error(outcome["breach"])
    versions = sorted({(str(version), role) for version, role in zip(scored.get("model_version", []),
                                                                      scored.get("role", []))})
    metadata = {
        "days_evaluated": int(scored["data_date"].nunique()) if len(scored) else 0,
        "scoring_versions": ", ".join(f"{version} ({role})" for version, role in versions) or "none",
        **{key: str(value) for key, value in outcome.items()},
    }
    if skipped:
        metadata["skipped"] = skipped
    yield from per_day(context, [dg.AssetCheckResult(
        check_name=BUDGET_CHECK, passed="breach" not in outcome, severity=dg.AssetCheckSeverity.ERROR,
        metadata={"reason": outcome.get("rolled_back") or outcome.get("breach") or "within the error budget",
                  **{key: metadata[key] for key in ("champion", "expected", "breach") if key in metadata}},
    )])
    yield dg.MaterializeResult(metadata={"dagster/row_count": total, **metadata})
