"""The model layer: train and register the delay classifier in MLflow, then score flights with the champion."""

import datetime as dt

import dagster as dg
import pandas as pd

from platform_assets.lineage import model_dataset, table_dataset, tracked
from platform_assets.metadata import table_version
from platform_assets.ml.schemas import failures_markdown, predictions_schema, schema_failures, training_set_schema
from platform_assets.ml.model import (
    FEATURES, HYPERPARAMETERS, LABEL, as_model_input, build_pipeline, evaluate, split_by_time,
)
from platform_assets.partitions import daily_partitions, partition_dates, single_run
from platform_assets.resources import WAREHOUSE_OP_TAGS, MlflowResource, WarehouseResource
from platform_assets.settings import load_settings

FEATURES_TABLE = "marts.flight_features"
PREDICTIONS_TABLE = "ml.flight_delay_predictions"
CHAMPION = "champion"
# A model that does not reach these on the holdout is registered but never serves.
PROMOTION_FLOORS = {"roc_auc": 0.60}
# The model is saved with skops; these are the types our own pipeline needs and that we trust on load.
SKOPS_TRUSTED_TYPES = [
    "functools.partial",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
]


@dg.asset(
    key=["ml", "delay_model"],
    group_name="ml",
    description="Gradient-boosted classifier of arrival delay over 15 minutes, trained on every labelled "
    "flight in `marts.flight_features` with the most recent days held out for evaluation. Each "
    "materialization is an MLflow run and a new registered model version; the version becomes `champion` "
    f"when its holdout metrics reach the promotion floors {PROMOTION_FLOORS}.",
    deps=[dg.AssetKey(["marts", "flight_features"])],
    op_tags=WAREHOUSE_OP_TAGS,
    kinds={"scikitlearn", "mlflow"},
    check_specs=[dg.AssetCheckSpec(
        "training_set_schema", asset=dg.AssetKey(["ml", "delay_model"]), blocking=True,
        description="Blocking: the training frame conforms to its pandera schema (types, ranges, both classes, "
        "at least two days). On failure no model is trained, registered or promoted; failure cases in metadata.",
    )],
    output_required=False,
)
@tracked(inputs=[table_dataset(FEATURES_TABLE, version_from="feature_dataset_version")], outputs=[model_dataset()])
def delay_model(context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource):
    import mlflow as mlflow_client  # noqa: PLC0415
    from mlflow.models import infer_signature  # noqa: PLC0415

    labelled = f"{LABEL} IS NOT NULL"
    with warehouse.connect(read_only=True) as connection:
        frame = connection.execute(
            # Ordered, so that the same features always train the same model.
            f"SELECT flight_date, {', '.join(FEATURES)}, {LABEL} FROM {FEATURES_TABLE} WHERE {labelled} "
            "ORDER BY flight_id"
        ).df()
        feature_version = table_version(connection, FEATURES_TABLE, labelled)
    failures = schema_failures(training_set_schema, frame)
    yield dg.AssetCheckResult(
        check_name="training_set_schema", passed=failures is None,
        metadata={"rows": len(frame), "feature_dataset_version": feature_version,
                  "failure_cases": dg.MetadataValue.md(failures_markdown(failures) if failures is not None else "None.")},
    )
    if failures is not None:
        context.log.error(f"training set fails its schema ({len(failures)} failure cases): no model trained")
        return
    split = split_by_time(frame)
    seed = load_settings().seed
    pipeline = build_pipeline(seed)
    train_x, holdout_x = as_model_input(split.train), as_model_input(split.holdout)
    pipeline.fit(train_x, split.train[LABEL].astype(int))
    probabilities = pipeline.predict_proba(holdout_x)[:, 1]
    metrics = evaluate(split.holdout[LABEL].to_numpy(), probabilities)
    meets_floors = all(metrics[name] >= floor for name, floor in PROMOTION_FLOORS.items())

    experiment_id = mlflow.configure()
    client = mlflow_client.MlflowClient()
    with mlflow_client.start_run(experiment_id=experiment_id, run_name=f"dagster {context.run_id[:8]}") as run:
        mlflow_client.log_params({**HYPERPARAMETERS, "seed": seed, "holdout_start": split.holdout_start,
                                  "train_rows": len(split.train), "features": ",".join(FEATURES)})
        mlflow_client.log_metrics({f"holdout_{name}": value for name, value in metrics.items()})
        mlflow_client.log_input(
            mlflow_client.data.from_pandas(split.train, name=FEATURES_TABLE, digest=feature_version),
            context="training",
        )
        mlflow_client.set_tags({"dagster_run_id": context.run_id, "feature_dataset_version": feature_version})
        logged = mlflow_client.sklearn.log_model(
            pipeline,
            name="model",
            signature=infer_signature(holdout_x.head(100), probabilities[:100]),
            input_example=holdout_x.head(5),
            registered_model_name=mlflow.registered_model_name,
            pip_requirements=["scikit-learn", "pandas", "numpy"],
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
        )
    version = str(logged.registered_model_version)
    for tag, value in {"dagster_run_id": context.run_id, "feature_dataset_version": feature_version,
                       "mlflow_run_id": run.info.run_id}.items():
        client.set_model_version_tag(mlflow.registered_model_name, version, tag, value)
    if meets_floors:
        client.set_registered_model_alias(mlflow.registered_model_name, CHAMPION, version)
    context.log.info(f"model version {version}: {metrics}; champion={'yes' if meets_floors else 'no'}")
    yield dg.MaterializeResult(
        metadata={
            "model_version": version,
            "promoted_to_champion": meets_floors,
            "mlflow_run": dg.MetadataValue.url(
                f"{mlflow.ui_url}/#/experiments/{experiment_id}/runs/{run.info.run_id}"),
            "feature_dataset_version": feature_version,
            "holdout_start": str(split.holdout_start),
            "train_rows": len(split.train),
            **{f"holdout_{name}": value for name, value in metrics.items()},
        }
    )


@dg.asset(
    key=["ml", "flight_delay_predictions"],
    group_name="ml",
    description="Probability that each scheduled flight of the day arrives more than 15 minutes late, "
    f"scored before departure by the `{CHAMPION}` model; every row records the model version that scored "
    f"it. Table `{PREDICTIONS_TABLE}`.",
    deps=[dg.AssetKey(["marts", "flight_features"]), dg.AssetKey(["ml", "delay_model"])],
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    op_tags=WAREHOUSE_OP_TAGS,
    kinds={"scikitlearn", "duckdb"},
    check_specs=[dg.AssetCheckSpec(
        "predictions_schema", asset=dg.AssetKey(["ml", "flight_delay_predictions"]), blocking=True,
        description="Blocking write-audit-publish gate: the scored frame conforms to its pandera schema (one row "
        "per flight, probabilities in [0, 1], model version present) before it replaces the run's days in "
        f"{PREDICTIONS_TABLE}. On failure the previous predictions stay; failure cases in metadata.",
    )],
    output_required=False,
)
@tracked(inputs=[table_dataset(FEATURES_TABLE), model_dataset()], outputs=[table_dataset(PREDICTIONS_TABLE)])
def flight_delay_predictions(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource
):
    import mlflow as mlflow_client  # noqa: PLC0415

    first_day, last_day = partition_dates(context)
    mlflow.configure()
    name = mlflow.registered_model_name
    try:
        champion = mlflow_client.MlflowClient().get_model_version_by_alias(name, CHAMPION)
    except mlflow_client.MlflowException as error:
        raise dg.Failure(
            f"no '{CHAMPION}' version of model '{name}' in {mlflow.tracking_uri}: materialize ml/delay_model "
            f"first; a version serves only once it reaches the floors {PROMOTION_FLOORS} ({error})"
        ) from error
    model = mlflow_client.sklearn.load_model(f"models:/{name}@{CHAMPION}")
    window = {"first": first_day, "last": last_day}
    with warehouse.connect() as connection:
        features = connection.execute(
            f"SELECT flight_id, flight_date, data_date, carrier, origin, dest, {', '.join(FEATURES)} "
            f"FROM {FEATURES_TABLE} WHERE data_date BETWEEN $first AND $last",
            window,
        ).df()
        scored = pd.DataFrame({
            "flight_id": features["flight_id"],
            "flight_date": features["flight_date"],
            "data_date": features["data_date"],
            "delay_probability": model.predict_proba(as_model_input(features))[:, 1] if len(features) else [],
        })
        scored["predicted_delayed"] = scored["delay_probability"] >= 0.5
        scored["model_name"] = name
        scored["model_version"] = str(champion.version)
        scored["scored_at"] = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        scored["dagster_run_id"] = context.run_id
        failures = schema_failures(predictions_schema, scored)
        yield dg.AssetCheckResult(
            check_name="predictions_schema", passed=failures is None,
            metadata={"rows": len(scored), "outcome": "published" if failures is None else "NOT published",
                      "failure_cases": dg.MetadataValue.md(
                          failures_markdown(failures) if failures is not None else "None.")},
        )
        if failures is not None:
            return
        connection.execute("CREATE SCHEMA IF NOT EXISTS ml")
        connection.execute(f"CREATE TABLE IF NOT EXISTS {PREDICTIONS_TABLE} AS SELECT * FROM scored LIMIT 0")
        connection.execute("BEGIN TRANSACTION")
        connection.execute(f"DELETE FROM {PREDICTIONS_TABLE} WHERE data_date BETWEEN $first AND $last", window)
        connection.execute(f"INSERT INTO {PREDICTIONS_TABLE} BY NAME SELECT * FROM scored")
        connection.execute("COMMIT")
        total = connection.execute(f"SELECT count(*) FROM {PREDICTIONS_TABLE}").fetchall()[0][0]
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": total,
            "rows_scored_this_run": len(scored),
            "model_version": champion.version,
            "mean_delay_probability": float(scored["delay_probability"].mean()) if len(scored) else 0.0,
        }
    )
