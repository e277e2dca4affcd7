"""What each dataset costs to build: the verdict on one materialization (its budget in the catalog, its trend),
and `governance cost`, the datasets by cost with their trend, read from the warehouse's ops.asset_costs table
(written by every materialization: platform_assets/cost/accounting.py, docs/cost.md).

Pure functions, and one reader of the table per target (the embedded DuckDB file, or the team's PostgreSQL at
PLATFORM_WAREHOUSE_URL when PLATFORM_TARGET=team), chosen once in `read_costs`."""

from __future__ import annotations

import datetime as dt
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from governance.catalog import Budget, Catalog

COST_TABLE = "ops.asset_costs"
# One row per materialization; types both warehouses know.
COST_COLUMNS = {
    "run_id": "TEXT", "step": "TEXT", "dataset": "TEXT", "first_day": "DATE", "last_day": "DATE",
    "days": "INTEGER", "recorded_at": "TIMESTAMP", "wall_seconds": "DOUBLE PRECISION",
    "cpu_seconds": "DOUBLE PRECISION", "own_seconds": "DOUBLE PRECISION", "peak_memory_bytes": "BIGINT",
    "rows_in": "BIGINT", "rows_out": "BIGINT", "table_bytes": "BIGINT", "bytes_written": "BIGINT",
    "spill_bytes": "BIGINT", "alert": "TEXT",
}
TREND_WINDOW = 10  # previous materializations of the same span the median is taken over
TREND_MINIMUM = 3  # fewer than this: no trend yet
TREND_FACTOR = 2.0  # a materialization over this many times its trailing median is an alert
TREND_FLOOR_SECONDS = 1.0  # ...when it is also at least this much slower: a 0.1 s step taking 0.3 s is noise
MB = 2**20


class CostStoreError(RuntimeError):
    """The cost table cannot be read; the message names the warehouse and what to do."""


def trailing_median(previous: Sequence[float]) -> float | None:
    """The median of the last TREND_WINDOW values (newest first), or None with fewer than TREND_MINIMUM."""
    window = [value for value in previous[:TREND_WINDOW] if value is not None]
    return statistics.median(window) if len(window) >= TREND_MINIMUM else None


def cost_verdict(wall_seconds: float, cpu_seconds: float, peak_memory_bytes: int | None, days: int | None,
                 budget: Budget | None, previous_seconds: Sequence[float]) -> str | None:
    """Why this materialization's cost is an alert, or None: over the dataset's budget (per day of data it
    covers), or over TREND_FACTOR times the trailing median wall time of its previous materializations of the
    same number of days (newest first) and at least TREND_FLOOR_SECONDS more."""
    span = max(days or 1, 1)
    reasons = []
    if budget is not None:
        if budget.seconds_per_day is not None and wall_seconds / span > budget.seconds_per_day:
            reasons.append(f"{wall_seconds / span:.1f} s per day, budget {budget.seconds_per_day:g} s")
        if budget.cpu_seconds_per_day is not None and cpu_seconds / span > budget.cpu_seconds_per_day:
            reasons.append(f"{cpu_seconds / span:.1f} CPU s per day, budget {budget.cpu_seconds_per_day:g} s")
        if budget.peak_memory_mb is not None and peak_memory_bytes is not None \
                and peak_memory_bytes / MB > budget.peak_memory_mb:
            reasons.append(f"peak memory {peak_memory_bytes / MB:.0f} MB, budget {budget.peak_memory_mb:g} MB")
    median = trailing_median(previous_seconds)
    if median is not None and wall_seconds > TREND_FACTOR * median and wall_seconds - median >= TREND_FLOOR_SECONDS:
        reasons.append(f"{wall_seconds:.1f} s, {wall_seconds / median:.1f}x the median {median:.1f} s of its last "
                       f"{min(len(previous_seconds), TREND_WINDOW)} materializations of {span} day(s)")
    return "; ".join(reasons) or None


@dataclass(frozen=True)
class DatasetCost:
    dataset: str
    owner: str
    materializations: int
    latest_at: dt.datetime
    latest_days: int | None
    wall_seconds: float
    cpu_seconds: float
    peak_memory_bytes: int | None
    bytes_written: int | None
    spill_bytes: int | None
    trend: float | None  # latest / trailing median of the same span
    recent_seconds: list[float]  # oldest first, the same span as the latest
    budget: Budget | None
    alert: str | None

    def as_dict(self) -> dict:
        return {"dataset": self.dataset, "owner": f"team:{self.owner}", "materializations": self.materializations,
                "latest_at": self.latest_at.isoformat(sep=" ", timespec="seconds"), "latest_days": self.latest_days,
                "wall_seconds": round(self.wall_seconds, 3), "cpu_seconds": round(self.cpu_seconds, 3),
                "peak_memory_mb": None if self.peak_memory_bytes is None else round(self.peak_memory_bytes / MB, 1),
                "bytes_written": self.bytes_written, "spill_bytes": self.spill_bytes,
                "trend": None if self.trend is None else round(self.trend, 2),
                "recent_seconds": [round(s, 2) for s in self.recent_seconds],
                "budget": self.budget.model_dump(exclude_none=True) if self.budget else None, "alert": self.alert}


def summarize(catalog: Catalog, rows: list[dict]) -> list[DatasetCost]:
    """One line per dataset with cost rows, most expensive latest materialization first (wall seconds)."""
    by_dataset: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: r["recorded_at"], reverse=True):
        by_dataset.setdefault(row["dataset"], []).append(row)
    costs = []
    for key, history in by_dataset.items():
        latest = history[0]
        same_span = [r for r in history if r["days"] == latest["days"]]
        median = trailing_median([r["wall_seconds"] for r in same_span[1:]])
        dataset = catalog.datasets.get(key)
        costs.append(DatasetCost(
            dataset=key, owner=dataset.owner if dataset else "?", materializations=len(history),
            latest_at=latest["recorded_at"], latest_days=latest["days"], wall_seconds=latest["wall_seconds"],
            cpu_seconds=latest["cpu_seconds"], peak_memory_bytes=latest["peak_memory_bytes"],
            bytes_written=latest["bytes_written"], spill_bytes=latest["spill_bytes"],
            trend=latest["wall_seconds"] / median if median else None,
            recent_seconds=[r["wall_seconds"] for r in reversed(same_span[:TREND_WINDOW])],
            budget=dataset.budget if dataset else None, alert=latest["alert"]))
    return sorted(costs, key=lambda c: c.wall_seconds, reverse=True)


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float]) -> str:
    if not values:
        return ""
    low, high = min(values), max(values)
    return "".join(SPARKS[int((v - low) / (high - low) * (len(SPARKS) - 1)) if high > low else 0] for v in values)


def _as_rows(columns: list[str], records: list[tuple]) -> list[dict]:
    return [dict(zip(columns, record, strict=True)) for record in records]


def read_costs(warehouse: Path, days: int | None = None) -> list[dict]:
    """The rows of ops.asset_costs (recorded in the last `days` days when given): from PostgreSQL when
    PLATFORM_TARGET=team (PLATFORM_WAREHOUSE_URL), else from the DuckDB warehouse file, read-only."""
    since = "" if days is None else f" WHERE recorded_at >= CURRENT_DATE - {int(days)}"
    sql = f"SELECT {', '.join(COST_COLUMNS)} FROM {COST_TABLE}{since}"
    if os.environ.get("PLATFORM_TARGET", "embedded") == "team":
        return _read_postgres(sql)
    import duckdb  # noqa: PLC0415

    if not warehouse.exists():
        raise CostStoreError(f"no warehouse at {warehouse}: nothing has been materialized in this data folder "
                             "(PLATFORM_DATA_DIR)")
    try:
        with duckdb.connect(str(warehouse), read_only=True) as connection:
            exists = connection.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'ops' "
                                        "AND table_name = 'asset_costs'").fetchall()[0][0]
            return _as_rows(list(COST_COLUMNS), connection.execute(sql).fetchall()) if exists else []
    except duckdb.Error as error:
        raise CostStoreError(f"warehouse {warehouse} cannot be read now ({str(error).splitlines()[0]}): try again "
                             "when the running step has finished") from None


def _read_postgres(sql: str) -> list[dict]:
    import psycopg2  # noqa: PLC0415

    from governance.postgres import ApplyError, warehouse_url  # noqa: PLC0415

    try:
        url = warehouse_url()
    except ApplyError as error:
        raise CostStoreError(str(error)) from None
    try:
        connection = psycopg2.connect(url)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (COST_TABLE,))
                if not cursor.fetchone()[0]:
                    return []
                cursor.execute(sql)
                return _as_rows(list(COST_COLUMNS), cursor.fetchall())
        finally:
            connection.close()
    except psycopg2.Error as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CostStoreError(f"cannot read {COST_TABLE} from the warehouse (PLATFORM_WAREHOUSE_URL): {reason}") from None
