"""The one place that assembles the platform's Definitions and applies global policy."""

import warnings

import dagster as dg

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from governance.catalog import completeness_problems, load_catalog  # noqa: E402
from platform_assets.checks.distribution import feature_distribution  # noqa: E402
from platform_assets.checks.reconciliation import bookings_reconciliation  # noqa: E402
from platform_assets.checks.schema_change import dbt_schema_changes  # noqa: E402
from platform_assets.ml.assets import delay_model, flight_delay_predictions  # noqa: E402
from platform_assets.ml.monitoring import flight_delay_drift  # noqa: E402
from platform_assets.ml.sensors import retrain_delay_model, retrain_on_drift  # noqa: E402
from platform_assets.resources import WAREHOUSE_STEP_LIMIT, build_resources  # noqa: E402
from platform_assets.sources.raw_assets import raw_assets  # noqa: E402
from platform_assets.transformations.dbt_assets import dbt_models  # noqa: E402

ALL_ASSETS = [raw_assets, dbt_models, delay_model, flight_delay_predictions, flight_delay_drift]

# The whole graph for a date range, as one run: raw ingestion, one dbt build, training, scoring.
materialize_all = dg.define_asset_job("materialize_all", selection=dg.AssetSelection.all())


def _require_catalog_entries(assets: list) -> None:
    """Every asset maps to exactly one catalog entry, and every entry to an asset (owners come from there)."""
    keys = {key.to_user_string() for asset in assets for key in asset.keys}
    problems = completeness_problems(load_catalog(), keys)
    if problems:
        raise dg.DagsterInvalidDefinitionError("governance catalog is incomplete: " + "; ".join(problems))


_require_catalog_entries(ALL_ASSETS)

defs = dg.Definitions(
    assets=ALL_ASSETS,
    asset_checks=[bookings_reconciliation, feature_distribution, dbt_schema_changes],
    jobs=[materialize_all, retrain_delay_model],
    sensors=[retrain_on_drift],
    resources=build_resources(),
    executor=dg.multiprocess_executor.configured({"tag_concurrency_limits": WAREHOUSE_STEP_LIMIT}),
)
