"""Distribution checks on the features: each day's latest week against the four weeks before it."""

import datetime as dt
from typing import TYPE_CHECKING

import dagster as dg

from platform_assets.checks.daily import DailyResults, per_day, run_days
from platform_assets.checks.stability import PSI_SIGNIFICANT, population_stability_index
from platform_assets.partitions import daily_partitions
from platform_assets.resources import WAREHOUSE_OP_TAGS, WarehouseResource

if TYPE_CHECKING:  # numpy and pandas are imported where used: loading the code location must not import them
    import numpy as np
    import pandas as pd

CHECK = "feature_distribution"
NULL_SHARE_SHIFT = 0.2
CURRENT_DAYS, REFERENCE_DAYS = 7, 28
MONITORED = ["sched_dep_hour", "distance", "plane_age_years", "temp_f", "wind_speed_mph", "visibility_mi",
             "route_trailing_mean_arr_delay", "route_trailing_delayed_share", "carrier_trailing_mean_arr_delay"]


def window_result(frame: "pd.DataFrame", dates: "np.ndarray", day: dt.date) -> dg.AssetCheckResult:
    """The week ending on `day` against the four weeks before it; `frame` sorted by `dates` (its data dates)."""
    import numpy as np  # noqa: PLC0415

    bounds = np.searchsorted(dates, np.array([day - dt.timedelta(days=CURRENT_DAYS + REFERENCE_DAYS),
                                              day - dt.timedelta(days=CURRENT_DAYS), day], dtype="datetime64[D]"),
                             side="right")
    reference, current = frame.iloc[bounds[0]:bounds[1]], frame.iloc[bounds[1]:bounds[2]]
    if len(reference) == 0:
        return dg.AssetCheckResult(passed=True, severity=dg.AssetCheckSeverity.WARN,
                                   metadata={"current_window_end": str(day), "note": "no reference window yet"})
    rows, shifted = [], []
    for feature in MONITORED:
        psi = population_stability_index(reference[feature].to_numpy(float), current[feature].to_numpy(float))
        null_shift = abs(current[feature].isna().mean() - reference[feature].isna().mean()) if len(current) else 0.0
        if psi > PSI_SIGNIFICANT or null_shift > NULL_SHARE_SHIFT:
            shifted.append(feature)
        rows.append(f"| {feature} | {psi:.3f} | {null_shift:.3f} |")
    table = "\n".join(["| feature | PSI | null share shift |", "|---|---:|---:|", *rows])
    return dg.AssetCheckResult(
        passed=not shifted, severity=dg.AssetCheckSeverity.WARN,
        metadata={"current_window_end": str(day), "shifted_features": ", ".join(shifted) or "none",
                  "distribution": dg.MetadataValue.md(table)},
    )


@dg.asset_check(
    asset=dg.AssetKey(["marts", "flight_features"]),
    name=CHECK,
    op_tags=WAREHOUSE_OP_TAGS,
    partitions_def=daily_partitions,
    description=f"WARN: for each day, the {CURRENT_DAYS} days ending on it of each monitored feature against the "
    f"{REFERENCE_DAYS} days before them: population stability index above {PSI_SIGNIFICANT}, or a null share that "
    f"moved by more than {NULL_SHARE_SHIFT}. Seasonal weather shifts in the real data legitimately trip it, hence "
    "WARN. Run without a day, it judges the latest day.",
)
def feature_distribution(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
    import pandas as pd  # noqa: PLC0415

    days = [dt.date.fromisoformat(day) for day in run_days(context)]
    with warehouse.open(read_only=True) as store:
        if not days:
            latest = store.read("SELECT max(data_date) AS latest FROM marts.flight_features")["latest"][0]
            days = [] if pd.isna(latest) else [latest.date()]
        frame = store.read(
            f"SELECT data_date, {', '.join(MONITORED)} FROM marts.flight_features WHERE data_date > $1 AND "
            "data_date <= $2 ORDER BY data_date",
            [days[0] - dt.timedelta(days=CURRENT_DAYS + REFERENCE_DAYS), days[-1]]) if days else None
    if frame is None:
        yield dg.AssetCheckResult(passed=True, severity=dg.AssetCheckSeverity.WARN,
                                  metadata={"note": "no features yet"})
        return
    dates = frame["data_date"].to_numpy(dtype="datetime64[D]")
    results = {str(day): window_result(frame, dates, day) for day in days}
    yield from per_day(context, [DailyResults(CHECK, results) if run_days(context) else results[str(days[-1])]])
