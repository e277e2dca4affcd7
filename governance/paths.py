"""Where governance finds the catalog, the asset graph, the dbt manifest and the data folder.

governance never imports platform_assets, so it reads PLATFORM_DATA_DIR itself (same default: ./data)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CATALOG_DIR = Path(__file__).with_name("catalog")
# The reviewed snapshot of the Dagster asset graph (keys, deps, owners, tags, checks), kept equal to the
# Definitions by tests/test_definitions.py: governance reads the graph from it instead of importing Dagster.
ASSET_GRAPH = REPO_ROOT / "tests" / "snapshots" / "asset_graph.json"
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
DBT_MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"
DBT_EXPOSURES = DBT_PROJECT_DIR / "models" / "exposures.yml"


def data_dir() -> Path:
    return Path(os.environ.get("PLATFORM_DATA_DIR", REPO_ROOT / "data")).resolve()


def warehouse_path(folder: Path | None = None) -> Path:
    return (folder or data_dir()) / "warehouse" / "warehouse.duckdb"


def governance_dir(folder: Path | None = None) -> Path:
    return (folder or data_dir()) / "governance"


def lineage_dir(folder: Path | None = None) -> Path:
    return (folder or data_dir()) / "lineage"


def mlflow_artifacts_dir(folder: Path | None = None) -> Path:
    """The MLflow artifact store (the platform's settings put it there on every target)."""
    return (folder or data_dir()) / "mlflow" / "artifacts"
