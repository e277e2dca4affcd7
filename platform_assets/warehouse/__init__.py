"""The warehouse raw tables are published to, behind one interface (base.Warehouse) with one implementation per
target, chosen once from the settings (resources.build_resources): `DuckDBWarehouse` (embedded: the DuckDB file,
each batch written in place inside one transaction) and `PostgresWarehouse` (team: each batch staged and audited in
a scratch DuckDB, published into PostgreSQL in one server transaction). docs/team.md says why and what it costs."""

from platform_assets.warehouse.base import PublishedRows, RawBatch, Warehouse, days_predicate
from platform_assets.warehouse.duckdb_file import DuckDBWarehouse, PublishedInDuckDB, ensure_raw_table
from platform_assets.warehouse.postgres import (
    PostgresWarehouse, UnsupportedColumnType, WarehouseUnreachable, postgres_type,
)

__all__ = ["DuckDBWarehouse", "PostgresWarehouse", "PublishedInDuckDB", "PublishedRows", "RawBatch",
           "UnsupportedColumnType", "Warehouse", "WarehouseUnreachable", "days_predicate", "ensure_raw_table",
           "postgres_type"]
