"""The one place that assembles the platform's Definitions and applies global policy."""

import functools
import operator
import warnings

import dagster as dg

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from governance.catalog import completeness_problems, load_catalog  # noqa: E402
from platform_assets.automation.alerts import owner_alert_sensor  # noqa: E402
from platform_assets.automation.landing import landing_zone_sensor  # noqa: E402
from platform_assets.checks.distribution import feature_distribution  # noqa: E402
from platform_assets.checks.reconciliation import bookings_reconciliation  # noqa: E402
from platform_assets.checks.schema_change import dbt_schema_changes  # noqa: E402
from platform_assets.consumers import consumer_specs  # noqa: E402
from platform_assets.cost.accounting import with_cost_accounting  # noqa: E402
from platform_assets.execution import platform_executor  # noqa: E402
from platform_assets.metadata import with_catalog_attributes  # noqa: E402
from platform_assets.ml.assets import delay_model, flight_delay_predictions  # noqa: E402
from platform_assets.ml.live import flight_delay_live_quality  # noqa: E402
from platform_assets.ml.monitoring import flight_delay_drift  # noqa: E402
from platform_assets.ml.sensors import retrain_delay_model, retrain_on_drift  # noqa: E402
from platform_assets.resources import build_resources  # noqa: E402
from platform_assets.settings import Settings, load_settings  # noqa: E402
from platform_assets.sources.definitions import SOURCES  # noqa: E402
from platform_assets.sources.raw_assets import RAW_ASSETS  # noqa: E402
from platform_assets.transformations.dbt_assets import dbt_models  # noqa: E402

# Deliveries start the raw layer (landing_zone_sensor); every partitioned asset below it follows on its own,
# partition by partition, once all its inputs for that day are there. Not limited to the latest partition
# (this data is 2013's), and a retrained model does not re-score history. A new reference snapshot applies
# to the days built after it (it does not rebuild history), and what reads an irregular source does not wait
# for days it delivers nothing; a snapshot must exist before what reads it is built.
def _raw_keys(cadences: tuple[str, ...]) -> list[dg.AssetKey]:
    return [dg.AssetKey(["raw", s.name]) for s in SOURCES.values() if s.cadence in cadences]


FOLLOW_UPSTREAM = (
    dg.AutomationCondition.eager()
    .without(dg.AutomationCondition.in_latest_time_window())
    .ignore(dg.AssetSelection.assets(delay_model, *_raw_keys(("snapshot", "irregular"))))
    & ~dg.AutomationCondition.any_deps_missing().ignore(dg.AssetSelection.assets(*_raw_keys(("irregular",))))
).with_label("follows its inputs, day by day")

# A day's partition of what reads only snapshots or irregular sources (the staging of a reference register)
# has no daily input to follow: it is built for each day a daily source delivers.
_DAY_DELIVERED = [dg.AutomationCondition.asset_matches(key, dg.AutomationCondition.newly_updated())
                  for key in _raw_keys(("daily",))]
FOLLOW_THE_DAY = (FOLLOW_UPSTREAM | (
    dg.AutomationCondition.missing() & functools.reduce(operator.or_, _DAY_DELIVERED)
    & ~dg.AutomationCondition.any_deps_missing() & ~dg.AutomationCondition.in_progress()
)).with_label("follows its inputs, and each day a daily source delivers") if _DAY_DELIVERED else FOLLOW_UPSTREAM


def _platform_policy(spec: dg.AssetSpec) -> dg.AssetSpec:
    """Applied to every asset once: the catalog's owners, tags, description, column classes and freshness
    SLA, and the automation of the layers below raw."""
    spec = with_catalog_attributes(spec)
    if spec.partitions_def is None or spec.group_name == "raw":
        return spec
    not_daily = set(_raw_keys(("snapshot", "irregular")))
    reads_no_daily_input = bool(spec.deps) and all(dep.asset_key in not_daily for dep in spec.deps)
    return spec.replace_attributes(automation_condition=FOLLOW_THE_DAY if reads_no_daily_input else FOLLOW_UPSTREAM)


# Dagster creates a default automation sensor that starts switched off; this one is on from the start, so
# `make dev` carries a replayed delivery through the graph without a click.
downstream_automation = dg.AutomationConditionSensorDefinition(
    "downstream_automation", target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=load_settings().automation_interval_seconds, emit_backfills=False,
    run_tags={"platform/trigger": "downstream_automation"},
    description="Evaluates every asset's automation condition: the layers below raw follow their inputs.",
)


# The whole graph for a date range, as one run: raw ingestion, one dbt build, training, scoring.
materialize_all = dg.define_asset_job("materialize_all", selection=dg.AssetSelection.all())


def _require_catalog_entries(assets: list) -> None:
    """Every asset maps to exactly one catalog entry, and every entry to an asset (owners come from there)."""
    keys = {key.to_user_string() for asset in assets for key in asset.keys}
    problems = completeness_problems(load_catalog(), keys)
    if problems:
        raise dg.DagsterInvalidDefinitionError("governance catalog is incomplete: " + "; ".join(problems))


ASSETS = [*RAW_ASSETS, dbt_models, delay_model, flight_delay_predictions, flight_delay_drift,
          flight_delay_live_quality]
_require_catalog_entries(ASSETS)
# Every asset's materializations carry their cost and are recorded in ops.asset_costs (platform_assets/cost).
# The consumers are not materialized: materialize_all and the automation leave them out.
ALL_ASSETS = [*(with_cost_accounting(assets) for assets in dg.map_asset_specs(_platform_policy, ASSETS)),
              *consumer_specs(load_catalog())]


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """The platform's definitions with resources bound to `settings` (default: the environment now). A process
    that runs several runs under different data folders (the tests) builds them per run."""
    settings = settings or load_settings()
    return dg.Definitions(
        assets=ALL_ASSETS,
        asset_checks=[bookings_reconciliation, feature_distribution, dbt_schema_changes],
        jobs=[materialize_all, retrain_delay_model],
        sensors=[landing_zone_sensor, downstream_automation, owner_alert_sensor, retrain_on_drift],
        resources=build_resources(settings),
        # embedded: steps one after another in the run's process (one DuckDB writer); team: steps as Celery tasks
        # on the workers, in parallel where the graph allows (platform_assets/execution.py).
        executor=platform_executor(settings),
    )


defs = build_definitions()
