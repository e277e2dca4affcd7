"""The asset graph and the dbt project as governance sees them, without importing Dagster or dbt.

The graph is the reviewed snapshot tests/test_definitions.py keeps equal to the Definitions (keys, deps,
owners, tags, groups, checks); the dbt models and their documented columns come from dbt's manifest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from governance.catalog import CatalogError
from governance.paths import ASSET_GRAPH, DBT_MANIFEST


@dataclass(frozen=True)
class AssetNode:
    key: str
    group: str
    owners: tuple[str, ...]
    deps: tuple[str, ...]
    tags: dict
    checks: tuple[str, ...]


CONSUMERS = "consumers"  # the group of the consumers' assets (platform_assets/consumers.py), not datasets


def load_asset_graph(path: Path = ASSET_GRAPH, *, consumers: bool = False) -> dict[str, AssetNode]:
    """The datasets' assets; with `consumers`, also the assets of consumers.yml's consumers (group consumers)."""
    try:
        snapshot = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise CatalogError(f"{path}: the asset graph snapshot cannot be read ({error}); regenerate it with "
                           "UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_definitions.py") from None
    return {
        key: AssetNode(key, node.get("group", ""), tuple(node.get("owners", [])), tuple(node.get("deps", [])),
                       dict(node.get("tags", {})), tuple(node.get("checks", [])))
        for key, node in snapshot.items() if consumers or node.get("group") != CONSUMERS
    }


def downstream(graph: dict[str, AssetNode], key: str) -> list[str]:
    """Every asset that depends on `key`, directly or not, nearest first."""
    children: dict[str, list[str]] = {}
    for node in graph.values():
        for dep in node.deps:
            children.setdefault(dep, []).append(node.key)
    found, frontier = [], [key]
    while frontier:
        frontier = sorted({child for parent in frontier for child in children.get(parent, [])} - set(found) - {key})
        found += frontier
    return found


def depths(graph: dict[str, AssetNode]) -> dict[str, int]:
    """Longest path from a source to each asset: the column it takes in a left-to-right lineage picture."""
    depth: dict[str, int] = {}

    def visit(key: str, trail: tuple = ()) -> int:
        if key not in depth:
            parents = [dep for dep in graph[key].deps if dep in graph and dep not in trail]
            depth[key] = 1 + max((visit(dep, (*trail, key)) for dep in parents), default=-1)
        return depth[key]

    for key in graph:
        visit(key)
    return depth


def dbt_model_key(node: dict) -> str:
    """The asset key of a dbt model: `<folder>/<model>`, as platform_assets names them."""
    return f"{node['fqn'][1]}/{node['name']}"


def load_manifest(path: Path = DBT_MANIFEST) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise CatalogError(f"{path}: the dbt manifest cannot be read ({error}); "
                           "run `make dbt_project/target/manifest.json`") from None


def dbt_models(manifest: dict) -> dict[str, list[str]]:
    """Asset key -> the columns documented in the model's YAML, for every dbt model."""
    return {
        dbt_model_key(node): list(node.get("columns", {}))
        for node in manifest["nodes"].values() if node["resource_type"] == "model"
    }
