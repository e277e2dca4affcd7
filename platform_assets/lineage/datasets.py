"""Physical dataset identities, named the way other tools name them so that lineage joins across tools:

- a warehouse table as dbt's OpenLineage integration (dbt-ol) names DuckDB tables: namespace
  `duckdb://<path of the DuckDB file>` and name `<database>.<schema>.<table>`, the database being the file's
  stem as dbt-duckdb reports it (`warehouse.raw.flights`); on the team target as OpenLineage names PostgreSQL
  tables: namespace `postgres://<host>:<port>`, name `<database>.<schema>.<table>`;
- a landing file as the client's `LocalFileSystem` naming does: namespace `file`, name its absolute path;
- a registered MLflow model: namespace `mlflow://<tracking store>`, name the registered model, the registered
  version as its dataset version (`models:/flight_delay_classifier/3` is name + version).

Assets declare datasets logically (`table_dataset("raw.flights")`); where they live is resolved when the
event is built, from the step's resources (the settings when a step has none).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

# openlineage is imported in the functions that use it: loading the code location must not import it (0.2 s).
TABLE, FILE, MODEL = "TABLE", "FILE", "MODEL"


@dataclass(frozen=True)
class DatasetRef:
    """A dataset an asset reads or writes. Its version is either known (`version`) or read from the
    materialization's metadata (`version_from`, e.g. `published_version`) when the run completes."""

    kind: str  # TABLE, FILE or MODEL (the OpenLineage datasetType)
    name: str  # "<schema>.<table>", an absolute path, or a registered model name ("" = the step's MLflow one)
    version: str | None = None
    version_from: str | None = None


def table_dataset(relation: str, version_from: str | None = None) -> DatasetRef:
    """A warehouse table, `<schema>.<table>`."""
    return DatasetRef(TABLE, relation, version_from=version_from)


def file_dataset(path: str | Path, sha256: str | None = None) -> DatasetRef:
    """A landing file; its content version is its sha256."""
    return DatasetRef(FILE, str(Path(path).resolve()), version=f"sha256:{sha256}" if sha256 else None)


def model_dataset(name: str = "", version_from: str | None = "model_version") -> DatasetRef:
    """A registered MLflow model; by default the one the step's `mlflow` resource registers and loads."""
    return DatasetRef(MODEL, name, version_from=version_from)


@dataclass(frozen=True)
class Locations:
    """Where the platform's datasets live: the warehouse (a DuckDB file, or a PostgreSQL URL on the team target)
    and the MLflow tracking store."""

    warehouse_path: Path
    mlflow_tracking_uri: str
    registered_model: str
    warehouse_url: str | None = None  # postgresql://user@host:port/database on the team target

    @property
    def sql_dialect(self) -> str:
        """The warehouse's SQL dialect, as sqlglot and OpenLineage's SQL job facet name it."""
        return "postgres" if self.warehouse_url else "duckdb"

    @property
    def warehouse_database(self) -> str:
        """The warehouse's database name as the dbt adapter reports it."""
        if self.warehouse_url:
            return urlparse(self.warehouse_url).path.lstrip("/")
        return self.warehouse_path.stem

    def identity(self, ref: DatasetRef) -> tuple[str, str]:
        """(namespace, name) of a dataset."""
        from openlineage.client.naming.dataset import LocalFileSystem  # noqa: PLC0415

        if ref.kind == TABLE:
            namespace = (postgres_namespace(self.warehouse_url) if self.warehouse_url
                         else warehouse_namespace(self.warehouse_path))
            return namespace, f"{self.warehouse_database}.{ref.name}"
        if ref.kind == FILE:
            naming = LocalFileSystem(path=ref.name)
            return naming.get_namespace(), naming.get_name()
        return mlflow_namespace(self.mlflow_tracking_uri), ref.name or self.registered_model


def warehouse_namespace(warehouse_path: Path) -> str:
    """dbt-ol's namespace for a dbt-duckdb target: `duckdb://` + the profile's `path`."""
    return f"duckdb://{warehouse_path}"


def postgres_namespace(url: str) -> str:
    """OpenLineage's namespace for PostgreSQL: `postgres://<host>:<port>` (no user, password or database)."""
    parsed = urlparse(url)
    return f"postgres://{parsed.hostname}:{parsed.port or 5432}"


def mlflow_namespace(tracking_uri: str) -> str:
    """`mlflow://<host:port>` for a tracking server or a PostgreSQL store (and its database), `mlflow://<path>` for a
    local store (sqlite or files)."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme in ("http", "https"):
        return f"mlflow://{parsed.netloc}"
    if parsed.scheme.startswith("postgresql"):  # a database store (team target): its server and database, no login
        return f"mlflow://{parsed.hostname}:{parsed.port or 5432}{parsed.path}"
    path = parsed.path if parsed.scheme else tracking_uri
    return "mlflow:///" + path.lstrip("/")
