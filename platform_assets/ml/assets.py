"""The model layer: train the delay classifier and register each version in MLflow, promote a version to
`champion` only when it passes the gate against the current champion, and score flights with the champion."""

import datetime as dt
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

# numpy, pandas and pandera (ml/schemas.py) are imported in the steps that use them: loading the code location
# must not import them.
from governance.catalog import load_catalog
from governance.masking import PersonalData, personal_data
from platform_assets.checks.daily import daily_check_spec, per_day
from platform_assets.lineage import model_dataset, table_dataset, tracked
from platform_assets.ml.drift import PROFILE_ARTIFACT, reference_profile
from platform_assets.ml.card import CARD_JSON, CARD_MARKDOWN, build_card, card_markdown, data_window
from platform_assets.ml.gate import judge, segment_metrics
from platform_assets.ml.model import (
    FEATURES, LABEL, as_model_input, build_pipeline, evaluate, hyperparameters_with, split_by_time,
)
from platform_assets.ml.plots import evaluation_png, markdown_image
from platform_assets.ml.policy import POLICY_PATH, load_policy
from platform_assets.ml.registry import (
    CANARY, CANARY_SHARE_TAG, CHAMPION, GATE_DECISION_TAG, HISTORY_FILE, SHADOW, alias_version, champion_version,
    promote, start_trial, why_no_champion,
)
from platform_assets.ml.release import in_canary
from platform_assets.partitions import daily_partitions, partition_dates, single_run
from platform_assets.resources import WAREHOUSE_OP_TAGS, MlflowResource, WarehouseResource
from platform_assets.settings import load_settings

FEATURES_TABLE = "marts.flight_features"
PREDICTIONS_TABLE = "ml.flight_delay_predictions"  # published: the served score of each flight
SCORES_TABLE = "ml.flight_delay_scores"  # every scoring version's score of each flight, with its role
MODEL_KEY = dg.AssetKey(["ml", "delay_model"])
GATE_CHECK = "beats_champion"
NOTHING_SERVES = "no model serves: no version has passed the promotion gate yet"
MAX_TAG_CHARACTERS = 1000  # of a decision kept as a tag; the whole comparison is in gate.md and the check
# The model is saved with skops; these are the types our own pipeline needs and that we trust on load.
SKOPS_TRUSTED_TYPES = [
    "functools.partial",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
]


class TrainingConfig(dg.Config):
    """Run configuration of a training run."""

    hyperparameters: dict[str, float] = {}  # replace some defaults (model.HYPERPARAMETERS) for this run only


def masked_frame(frame, personal: PersonalData):
    """`frame` with the values of its personal columns masked: what MLflow may keep (input examples)."""
    personal_columns = [column for column in frame.columns if personal.is_personal(str(column))]
    if not personal_columns:
        return frame
    frame = frame.copy()
    for column in personal_columns:
        frame[column] = [personal.show(str(column), value) for value in frame[column]]
    return frame


def log_artifacts(files: dict[str, bytes | str], run_id: str | None = None) -> None:
    """Log named files to MLflow run `run_id` (default: the active run)."""
    import mlflow  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as folder:
        for name, content in files.items():
            path = Path(folder) / name
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        if run_id is None:
            mlflow.log_artifacts(folder)
        else:
            mlflow.MlflowClient().log_artifacts(run_id, folder)


def pandas_dataset(frame, **dataset_args):
    """`mlflow.data.from_pandas(frame, ...)` with its schema inferred from whole columns. MLflow's own inference
    visits every value in Python to find nulls and the types of text columns: 3 s for the history's 300,000
    training rows, where pandas takes 0.04 s for the same schema (tests/test_ml_gate.py compares the two)."""
    import mlflow  # noqa: PLC0415
    from mlflow.types import ColSpec, Schema  # noqa: PLC0415
    from mlflow.types.utils import _infer_pandas_column  # noqa: PLC0415

    def column_type(column):
        # A text column's type is the type of its values: the same from each distinct value once.
        return _infer_pandas_column(column.drop_duplicates() if column.dtype.kind == "O" else column)

    dataset = mlflow.data.from_pandas(frame, **dataset_args)
    # PandasDataset.schema is a functools.cached_property: a value set on the instance is the cached one.
    dataset.schema = Schema([ColSpec(type=column_type(frame[name]), name=name, required=not frame[name].isna().any())
                             for name in frame.columns])
    return dataset


def model_owner() -> dict:
    """The owner of ml/delay_model in the governance catalog: team, steward, contact and on-call."""
    catalog = load_catalog()
    dataset, team = catalog.dataset(MODEL_KEY.to_user_string()), catalog.owner_of(MODEL_KEY.to_user_string())
    return {"team": dataset.owner, "steward": dataset.steward, "contact": team.contact, "on_call": team.on_call}


@dg.asset(
    key=MODEL_KEY,
    group_name="ml",
    description="Gradient-boosted classifier of arrival delay over 15 minutes, trained on every labelled "
    "flight in `marts.flight_features` with the most recent days held out. Each materialization is an MLflow "
    "run (parameters, metrics, training and holdout datasets with their versions, the model with its signature, "
    "evaluation plots, a model card) and a new registered version; the version becomes `champion` only when it "
    f"passes the `{GATE_CHECK}` gate (policy: platform_assets/ml/lifecycle.yml). A version that does not pass is "
    "recorded with its comparison and the run goes on: the champion keeps serving.",
    deps=[dg.AssetKey(["marts", "flight_features"])],
    op_tags=WAREHOUSE_OP_TAGS,
    kinds={"scikitlearn", "mlflow"},
    check_specs=[
        dg.AssetCheckSpec(
            "training_set_schema", asset=MODEL_KEY, blocking=True,
            description="Blocking: the training frame conforms to its pandera schema (types, ranges, both "
            "classes, at least two days). On failure no model is trained, registered or promoted; failure cases "
            "in metadata.",
        ),
        dg.AssetCheckSpec(
            # Not blocking, WARN when it fails: not promoting a version is a decision of the gate, not wrong data.
            # The alias moves in the step only on a pass, so nothing downstream needs stopping: predictions keep
            # being scored by the champion, and a failed gate fails no run and alerts no one.
            GATE_CHECK, asset=MODEL_KEY, blocking=False,
            description="Promotion gate: the new version and the current champion are scored on the "
            "same recent holdout; the version must reach the absolute floors and may not fall behind the champion "
            "beyond the tolerances, overall and per carrier and origin (lifecycle.yml). Only then does the "
            f"`{CHAMPION}` alias move to it. A first version is judged on the floors alone. The comparison table "
            "is in the metadata. A version that fails is registered but not promoted: the check fails as WARN, "
            "blocks nothing and the run succeeds; the champion, if any, keeps serving.",
        ),
    ],
    output_required=False,
)
@tracked(inputs=[table_dataset(FEATURES_TABLE, version_from="feature_dataset_version")], outputs=[model_dataset()])
def delay_model(
    context: dg.AssetExecutionContext, config: TrainingConfig, warehouse: WarehouseResource, mlflow: MlflowResource
):
    import mlflow as mlflow_client  # noqa: PLC0415
    from mlflow.models import infer_signature  # noqa: PLC0415

    from platform_assets.ml.schemas import failures_markdown, schema_failures, training_set_schema  # noqa: PLC0415

    try:
        hyperparameters = hyperparameters_with(config.hyperparameters)
    except ValueError as error:
        raise dg.Failure(f"run config of ml/delay_model: {error}") from error
    policy = load_policy()
    labelled = f"{LABEL} IS NOT NULL"
    with warehouse.open(read_only=True) as store:
        frame = store.read(
            # Ordered, so that the same features always train the same model.
            f"SELECT flight_date, {', '.join(FEATURES)}, {LABEL} FROM {FEATURES_TABLE} WHERE {labelled} "
            "ORDER BY flight_id"
        )
        feature_version = store.fingerprint(FEATURES_TABLE, labelled)
        failures = schema_failures(training_set_schema, frame)
        if failures is None:
            split = split_by_time(frame)
            # The versions of exactly the rows that trained and judged the model, as the platform computes them.
            training_version, holdout_version = (
                store.fingerprint(FEATURES_TABLE, f"{labelled} AND flight_date {side} DATE '{split.holdout_start}'")
                for side in ("<", ">=")
            )
    personal = personal_data(FEATURES_TABLE.replace(".", "/"))  # the catalog's pii columns of the features
    yield dg.AssetCheckResult(
        check_name="training_set_schema", passed=failures is None,
        metadata={"rows": len(frame), "feature_dataset_version": feature_version, "failure_cases": dg.MetadataValue.md(
            failures_markdown(failures, personal=personal) if failures is not None else "None.")},
    )
    if failures is not None:
        context.log.error(f"training set fails its schema ({len(failures)} failure cases): no model trained")
        return

    seed = load_settings().seed
    started = time.monotonic()
    pipeline = build_pipeline(seed, hyperparameters)
    pipeline.fit(as_model_input(split.train), split.train[LABEL].astype(int))
    holdout_x = as_model_input(split.holdout)
    labels = split.holdout[LABEL].to_numpy(dtype=int)
    scores = pipeline.predict_proba(holdout_x)[:, 1]
    metrics = evaluate(labels, scores)
    training_seconds = time.monotonic() - started

    experiment_id = mlflow.configure()
    started = time.monotonic()
    client = mlflow_client.MlflowClient()
    name = mlflow.registered_model_name
    champion = champion_version(client, name)
    champion_scores = None
    if champion is not None:
        try:
            champion_model = mlflow_client.sklearn.load_model(f"models:/{name}/{champion.version}")
        except Exception as error:
            raise dg.Failure(f"cannot load champion version {champion.version} of '{name}' from "
                             f"{mlflow.tracking_uri} to judge the new version against it: {error}") from error
        champion_scores = champion_model.predict_proba(holdout_x)[:, 1]
    decision = judge(policy.gate, split.holdout, scores, champion_scores, champion and str(champion.version))
    gate_seconds = time.monotonic() - started
    curves = {"this version": scores} | ({f"champion v{champion.version}": champion_scores} if champion else {})
    plot = evaluation_png(labels, curves)
    # What ties the version to its data and its run: tags of the MLflow run and of the version, and metadata.
    record = {"dagster_run_id": context.run.run_id, "feature_dataset_version": feature_version,
              "training_dataset_version": training_version, "holdout_dataset_version": holdout_version,
              "holdout_start": str(split.holdout_start), "gate": "passed" if decision.passed else "failed"}
    tags = {**record, GATE_DECISION_TAG: decision.summary()[:MAX_TAG_CHARACTERS]}

    with mlflow_client.start_run(experiment_id=experiment_id, run_name=f"dagster {context.run.run_id[:8]}") as run:
        mlflow_client.log_params({**hyperparameters, "seed": seed, "holdout_start": split.holdout_start,
                                  "train_rows": len(split.train), "holdout_rows": len(split.holdout),
                                  "features": ",".join(FEATURES)})
        mlflow_client.log_metrics({f"holdout_{metric}": value for metric, value in metrics.items()})
        if champion is not None:
            mlflow_client.log_metrics({f"champion_holdout_{metric}": value
                                       for metric, value in evaluate(labels, champion_scores).items()})
        for frame_used, digest, role in ((split.train, training_version, "training"),
                                         (split.holdout, holdout_version, "evaluation")):
            mlflow_client.log_input(pandas_dataset(frame_used, name=FEATURES_TABLE, digest=digest, targets=LABEL),
                                    context=role)
        mlflow_client.set_tags(tags)
        log_artifacts({
            "evaluation.png": plot,
            "gate.md": f"{decision.summary()}\n\n{decision.markdown()}\n",
            PROFILE_ARTIFACT: json.dumps(reference_profile(split.train, split.holdout_start, scores, metrics,
                                                           policy.drift)),
        })
        logged = mlflow_client.sklearn.log_model(
            pipeline,
            name="model",
            signature=infer_signature(holdout_x.head(100), scores[:100]),  # names and types only
            input_example=masked_frame(holdout_x.head(5), personal),
            registered_model_name=name,
            pip_requirements=["scikit-learn", "pandas", "numpy"],
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
        )
    version = str(logged.registered_model_version)
    for tag, value in {**tags, "mlflow_run_id": run.info.run_id}.items():
        client.set_model_version_tag(name, version, tag, value)
    release = policy.release
    # With a champion serving, a passing version first goes on trial (shadow, then canary if configured); it
    # serves once its live days show it is not worse (platform_assets/ml/live.py). A first version serves at once.
    on_trial = decision.passed and champion is not None and (
        release.shadow_days > 0 or release.sign_off.required or bool(release.canary.shares))
    promoted = decision.passed and not on_trial
    champion_now = str(version) if promoted else (champion and str(champion.version))
    serving = f"version {champion_now}" if champion_now else NOTHING_SERVES
    if on_trial:
        serving += (f" (version {version} in shadow: scored beside it, serves no flight until {release.shadow_days} "
                    "labelled live days show it is not worse)")
    card = build_card(
        model=name, version=version, created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        dagster_run_id=context.run.run_id, mlflow_run_id=run.info.run_id, owner=model_owner(), table=FEATURES_TABLE,
        feature_dataset_version=feature_version, training=data_window(split.train, training_version),
        holdout=data_window(split.holdout, holdout_version), hyperparameters=hyperparameters, seed=seed,
        features=FEATURES, metrics=metrics, segments=segment_metrics(policy.gate, split.holdout, scores),
        decision=decision, promoted=promoted, serving=serving, known_limits=policy.model_card.known_limits,
        sign_off_required=release.sign_off.required,
    )
    card_text = card_markdown(card)
    log_artifacts({CARD_JSON: json.dumps(card, indent=2) + "\n", CARD_MARKDOWN: card_text}, run_id=run.info.run_id)
    client.set_model_version_tag(name, version, "model_card", f"runs:/{run.info.run_id}/{CARD_MARKDOWN}")
    # The alias moves only on a passing gate, before the check reports it.
    history = load_settings().mlflow_dir / HISTORY_FILE
    if on_trial:
        move = start_trial(client, name, version, SHADOW, f"gate, dagster run {context.run.run_id}",
                           decision.summary(), history)
        context.log.info(move.line())
    elif promoted:
        move = promote(client, name, version, f"gate, dagster run {context.run.run_id}", decision.summary(), history)
        context.log.info(move.line())
    else:
        context.log.warning(f"version {version} is not promoted ({decision.summary()}); serving: {serving}")
    run_url = mlflow.run_url(experiment_id, run.info.run_id)
    yield dg.AssetCheckResult(
        check_name=GATE_CHECK, passed=decision.passed, severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "decision": decision.summary(),
            "challenger_version": version,
            "champion_before": str(champion.version) if champion else "none",
            "champion_after": champion_now or "none",
            "release": "shadow" if on_trial else ("serves" if promoted else "not released"),
            "serving": serving,
            "comparison": dg.MetadataValue.md(decision.markdown()),
            "policy": str(POLICY_PATH.relative_to(POLICY_PATH.parents[2])),
            "mlflow_run": dg.MetadataValue.url(run_url),
        },
    )
    yield dg.MaterializeResult(
        metadata={
            "model_version": version,
            "promoted_to_champion": promoted,
            "in_shadow": on_trial,
            "champion_version": champion_now or "none",
            "serving": serving,
            "gate_decision": decision.summary(),
            "mlflow_run": dg.MetadataValue.url(run_url),
            **record,
            "train_rows": len(split.train),
            "training_seconds": round(training_seconds, 2),
            "gate_seconds": round(gate_seconds, 2),
            **{f"holdout_{metric}": value for metric, value in metrics.items()},
            "evaluation": dg.MetadataValue.md(markdown_image(plot, "ROC, precision-recall and calibration")),
            "model_card": dg.MetadataValue.md(card_text),
        }
    )


def table_rows(store, relation: str) -> int | None:
    """The rows of `relation` ("schema.table"), or None when it does not exist yet (on every target)."""
    schema, table = relation.split(".")
    exists = store.read("SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = $1 AND "
                        "table_name = $2", [schema, table])["n"][0]
    return int(store.read(f"SELECT count(*) AS n FROM {relation}")["n"][0]) if exists else None


def skipped_for_no_champion(context: dg.AssetExecutionContext, warehouse: WarehouseResource, reason: str,
                            first_day: dt.date, last_day: dt.date) -> Iterator:
    """With no champion there is nothing to score with: a state to report, not an error. The days' rows are left
    as they are and the step materializes with the reason, so the run (and a backfill, which counts a requested
    partition that did not materialize as failed) succeeds and the asset says why it holds no predictions. The
    schema check, which Dagster requires with every materialization, passes on the empty frame and says so."""
    context.log.warning(f"predictions for {first_day}..{last_day} skipped: {reason}")
    with warehouse.open(read_only=True) as store:
        rows = table_rows(store, PREDICTIONS_TABLE)
    yield from per_day(context, [dg.AssetCheckResult(check_name="predictions_schema", passed=True, metadata={
        "rows": 0, "outcome": f"nothing scored, nothing published: {reason}"})])
    yield dg.MaterializeResult(metadata={
        "skipped": reason,
        "model_version": "none",
        "rows_scored_this_run": 0,
        "dagster/row_count": rows or 0,
    })


@dg.asset(
    key=["ml", "flight_delay_predictions"],
    group_name="ml",
    description="Probability that each scheduled flight of the day arrives more than 15 minutes late, "
    f"scored before departure by the `{CHAMPION}` model (or, for a canary's share of flights, by the `{CANARY}` "
    f"challenger); every row records the model version that scored it. Table `{PREDICTIONS_TABLE}` holds only "
    f"the served scores; `{SCORES_TABLE}` holds every version's, with its role (champion, shadow, canary) and "
    "whether it was served. While no version has passed the promotion gate nothing is scored: the "
    "materialization says why (metadata `skipped`) and the days' rows stay as they are.",
    deps=[dg.AssetKey(["marts", "flight_features"]), dg.AssetKey(["ml", "delay_model"])],
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    op_tags=WAREHOUSE_OP_TAGS,
    kinds={"scikitlearn", "duckdb"},
    check_specs=[daily_check_spec(dg.AssetCheckSpec(
        "predictions_schema", asset=dg.AssetKey(["ml", "flight_delay_predictions"]), blocking=True,
        description="Blocking write-audit-publish gate: the scored frame conforms to its pandera schema (one row "
        "per flight, probabilities in [0, 1], model version present) before it replaces the run's days in "
        f"{PREDICTIONS_TABLE}. On failure the previous predictions stay; failure cases in metadata. Judges the "
        "run's days together: each day of a run has the run's result.",
    ))],
    output_required=False,
)
@tracked(inputs=[table_dataset(FEATURES_TABLE), model_dataset()],
         outputs=[table_dataset(PREDICTIONS_TABLE), table_dataset(SCORES_TABLE)])
def flight_delay_predictions(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource
):
    import mlflow as mlflow_client  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    from platform_assets.ml.schemas import failures_markdown, predictions_schema, schema_failures  # noqa: PLC0415

    first_day, last_day = partition_dates(context)
    mlflow.configure()
    name = mlflow.registered_model_name
    client = mlflow_client.MlflowClient()
    champion = champion_version(client, name)
    if champion is None:
        yield from skipped_for_no_champion(context, warehouse, why_no_champion(client, name), first_day, last_day)
        return
    canary, shadow = alias_version(client, name, CANARY), alias_version(client, name, SHADOW)
    challenger, role = (canary, CANARY) if canary is not None else (shadow, SHADOW)
    share = float(canary.tags.get(CANARY_SHARE_TAG, 0)) if canary is not None else 0.0
    scorers = [(champion, CHAMPION)] + ([(challenger, role)] if challenger is not None else [])
    with warehouse.open() as store:
        features = store.read(
            f"SELECT flight_id, flight_date, data_date, carrier, origin, dest, {', '.join(FEATURES)} "
            f"FROM {FEATURES_TABLE} WHERE data_date BETWEEN $1 AND $2", [first_day, last_day])
        canary_flights = in_canary(features["flight_id"], share) if share else np.zeros(len(features), dtype=bool)
        scored_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        frames = []
        for version, scorer_role in scorers:
            model = mlflow_client.sklearn.load_model(f"models:/{name}/{version.version}")
            frame = pd.DataFrame({
                "flight_id": features["flight_id"],
                "flight_date": features["flight_date"],
                "data_date": features["data_date"],
                "delay_probability": model.predict_proba(as_model_input(features))[:, 1] if len(features) else [],
            })
            frame["predicted_delayed"] = frame["delay_probability"] >= 0.5
            frame["model_name"] = name
            frame["model_version"] = str(version.version)
            frame["scored_at"] = scored_at
            frame["dagster_run_id"] = context.run.run_id
            frame["role"] = scorer_role
            frame["canary_share"] = share
            # The champion serves every flight but the canary's; a shadow serves none.
            frame["served"] = ~canary_flights if scorer_role == CHAMPION else (
                canary_flights if scorer_role == CANARY else np.zeros(len(frame), dtype=bool))
            frames.append(frame)
        every_score = pd.concat(frames, ignore_index=True)
        scored = every_score[every_score["served"]].drop(columns=["role", "canary_share", "served"])
        scored = scored.sort_values("flight_id", kind="stable").reset_index(drop=True)
        failures = schema_failures(predictions_schema, scored)
        yield from per_day(context, [dg.AssetCheckResult(
            check_name="predictions_schema", passed=failures is None,
            metadata={"rows": len(scored), "outcome": "published" if failures is None else "NOT published",
                      "failure_cases": dg.MetadataValue.md(
                          failures_markdown(failures, personal=personal_data(PREDICTIONS_TABLE.replace(".", "/")))
                          if failures is not None else "None.")},
        )])
        if failures is not None:
            return
        # Every version's scores with their role (what live evaluation reads); consumers read only the served rows.
        store.replace_days(SCORES_TABLE, every_score, first_day, last_day)
        total = store.replace_days(PREDICTIONS_TABLE, scored, first_day, last_day)
    trial = {}
    if challenger is not None:
        trial = {"challenger_version": str(challenger.version), "challenger_role": role,
                 "rows_served_by_challenger": int(canary_flights.sum()), "canary_share": share,
                 "scores_table": SCORES_TABLE}
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": total,
            "rows_scored_this_run": len(scored),
            "model_version": str(champion.version),
            "mean_delay_probability": float(scored["delay_probability"].mean()) if len(scored) else 0.0,
            **trial,
        }
    )
