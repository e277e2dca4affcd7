"""Nothing is lost between landing and consumers: per delivery day, every raw booking row is published,
quarantined with a reason, or counted as a removed duplicate. Judged day by day: each day of a run has its own
result (platform_assets/checks/daily.py)."""

import dagster as dg

from platform_assets.checks.daily import DailyResults, per_day, run_days
from platform_assets.partitions import daily_partitions
from platform_assets.resources import WAREHOUSE_OP_TAGS, WarehouseResource
from platform_assets.settings import DATA_END, DATA_START

CHECK = "bookings_reconciliation"
BOOKINGS_BALANCE_SQL = """
WITH delivered AS (SELECT _data_date AS day, count(*) AS input_rows FROM raw.bookings
                   WHERE _data_date BETWEEN CAST($1 AS DATE) AND CAST($2 AS DATE) GROUP BY 1),
duplicates AS (SELECT data_date AS day, count(*) AS duplicates_removed FROM staging.stg_bookings__bookings
               WHERE is_retry_duplicate GROUP BY 1),
published AS (SELECT data_date AS day, count(*) AS published_rows FROM marts.bookings GROUP BY 1),
quarantined AS (SELECT data_date AS day, count(*) AS quarantined_rows FROM marts.bookings_quarantine GROUP BY 1)
SELECT CAST(day AS VARCHAR(10)), input_rows, coalesce(published_rows, 0), coalesce(quarantined_rows, 0),
       coalesce(duplicates_removed, 0)
FROM delivered
LEFT JOIN published USING (day) LEFT JOIN quarantined USING (day) LEFT JOIN duplicates USING (day)
ORDER BY day
"""
HEADER = ["| day | input | published | quarantined | duplicates removed |", "|---|---:|---:|---:|---:|"]


def balance_result(days: list[tuple]) -> dg.AssetCheckResult:
    """The balance of `days` (day, input, published, quarantined, duplicates removed): passes when every day
    balances and there is at least one."""
    unbalanced = [d for d in days if d[1] != d[2] + d[3] + d[4]]
    totals = [sum(d[i] for d in days) for i in range(1, 5)]
    shown = unbalanced or days[-10:]
    table = HEADER + [f"| {d[0]} | {d[1]:,} | {d[2]:,} | {d[3]:,} | {d[4]:,} |" for d in shown]
    return dg.AssetCheckResult(
        passed=bool(days) and not unbalanced,
        metadata={
            "days_checked": len(days),
            "days_unbalanced": len(unbalanced),
            "input_rows": totals[0],
            "published_rows": totals[1],
            "quarantined_rows": totals[2],
            "duplicates_removed": totals[3],
            ("unbalanced_days" if unbalanced else "latest_days"): dg.MetadataValue.md("\n".join(table)),
        },
    )


@dg.asset_check(
    asset=dg.AssetKey(["marts", "bookings"]),
    name=CHECK,
    blocking=True,
    op_tags=WAREHOUSE_OP_TAGS,
    partitions_def=daily_partitions,
    additional_deps=[dg.AssetKey(["marts", "bookings_quarantine"]), dg.AssetKey(["raw", "bookings"])],
    description="Blocking: for every delivery day, raw booking rows = published bookings + quarantined "
    "bookings + retried-export duplicates removed in staging. Each day of a run is judged on its own (a day "
    "with no raw bookings fails). The numbers are in the metadata.",
)
def bookings_reconciliation(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
    days = run_days(context)
    with warehouse.open(read_only=True) as store:
        balances = [(day, *map(int, counts)) for day, *counts in store.read(
            BOOKINGS_BALANCE_SQL, [days[0] if days else DATA_START, days[-1] if days else DATA_END]
        ).itertuples(index=False)]
    if not days:  # a run without partitions: every delivered day
        yield balance_result(balances)
        return
    by_day = {balance[0]: balance for balance in balances}
    yield from per_day(context, [DailyResults(CHECK, {
        day: balance_result([by_day[day]] if day in by_day else []) for day in days})])
