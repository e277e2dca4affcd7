"""Distribution checks on the features: the latest days against the weeks before them."""

import datetime as dt

import dagster as dg
import pandas as pd

from platform_assets.checks.stability import PSI_SIGNIFICANT, population_stability_index
from platform_assets.resources import WAREHOUSE_OP_TAGS, WarehouseResource

NULL_SHARE_SHIFT = 0.2
CURRENT_DAYS, REFERENCE_DAYS = 7, 28
MONITORED = ["sched_dep_hour", "distance", "plane_age_years", "temp_f", "wind_speed_mph", "visibility_mi",
             "route_trailing_mean_arr_delay", "route_trailing_delayed_share", "carrier_trailing_mean_arr_delay"]


@dg.asset_check(
    asset=dg.AssetKey(["marts", "flight_features"]),
    name="feature_distribution",
    op_tags=WAREHOUSE_OP_TAGS,
    description=f"WARN: the latest {CURRENT_DAYS} days of each monitored feature against the {REFERENCE_DAYS} "
    f"days before them: population stability index above {PSI_SIGNIFICANT}, or a null share that moved by more "
    f"than {NULL_SHARE_SHIFT}. Seasonal weather shifts in the real data legitimately trip it, hence WARN.",
)
def feature_distribution(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.open(read_only=True) as store:
        latest = store.read("SELECT max(data_date) AS latest FROM marts.flight_features")["latest"][0]
        latest = None if pd.isna(latest) else latest.date()
        frame = store.read(
            f"SELECT data_date > $1 AS is_current, {', '.join(MONITORED)} FROM marts.flight_features "
            "WHERE data_date > $2", [latest - dt.timedelta(days=CURRENT_DAYS),
                                     latest - dt.timedelta(days=CURRENT_DAYS + REFERENCE_DAYS)],
        ) if latest else None
    current, reference = (frame[frame.is_current], frame[~frame.is_current]) if frame is not None else ([], [])
    if len(reference) == 0:
        return dg.AssetCheckResult(passed=True, severity=dg.AssetCheckSeverity.WARN,
                                   metadata={"note": "no reference window yet"})
    rows, shifted = [], []
    for feature in MONITORED:
        psi = population_stability_index(reference[feature].to_numpy(float), current[feature].to_numpy(float))
        null_shift = abs(current[feature].isna().mean() - reference[feature].isna().mean())
        if psi > PSI_SIGNIFICANT or null_shift > NULL_SHARE_SHIFT:
            shifted.append(feature)
        rows.append(f"| {feature} | {psi:.3f} | {null_shift:.3f} |")
    table = "\n".join(["| feature | PSI | null share shift |", "|---|---:|---:|", *rows])
    return dg.AssetCheckResult(
        passed=not shifted, severity=dg.AssetCheckSeverity.WARN,
        metadata={"current_window_end": str(latest), "shifted_features": ", ".join(shifted) or "none",
                  "distribution": dg.MetadataValue.md(table)},
    )
