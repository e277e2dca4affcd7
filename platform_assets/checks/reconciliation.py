"""Nothing is lost between landing and consumers: per delivery day, every raw booking row is published,
quarantined with a reason, or counted as a removed duplicate."""

import dagster as dg

from platform_assets.resources import WAREHOUSE_OP_TAGS, WarehouseResource

BOOKINGS_BALANCE_SQL = """
WITH delivered AS (SELECT _data_date AS day, count(*) AS input_rows FROM raw.bookings GROUP BY 1),
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


@dg.asset_check(
    asset=dg.AssetKey(["marts", "bookings"]),
    name="bookings_reconciliation",
    blocking=True,
    op_tags=WAREHOUSE_OP_TAGS,
    additional_deps=[dg.AssetKey(["marts", "bookings_quarantine"]), dg.AssetKey(["raw", "bookings"])],
    description="Blocking: for every delivery day, raw booking rows = published bookings + quarantined "
    "bookings + retried-export duplicates removed in staging. The numbers are in the metadata.",
)
def bookings_reconciliation(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.open(read_only=True) as store:
        days = [(day, *map(int, counts)) for day, *counts in store.read(BOOKINGS_BALANCE_SQL).itertuples(index=False)]
    unbalanced = [d for d in days if d[1] != d[2] + d[3] + d[4]]
    totals = [sum(d[i] for d in days) for i in range(1, 5)]
    shown = unbalanced or days[-10:]
    table = ["| day | input | published | quarantined | duplicates removed |", "|---|---:|---:|---:|---:|"]
    table += [f"| {d[0]} | {d[1]:,} | {d[2]:,} | {d[3]:,} | {d[4]:,} |" for d in shown]
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
