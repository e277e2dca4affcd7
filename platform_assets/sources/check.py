"""Is every source ready to run? The onboarding steps of a source, checked in the order the README's "Add a
source" lists them, before any run. Each step is ok or a to-do line saying exactly what to do.

    python -m platform_assets.sources check [SOURCE ...]
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from governance.paths import ASSET_GRAPH, CATALOG_DIR, DBT_MANIFEST
from platform_assets.settings import DBT_PROJECT_DIR, Settings
from platform_assets.sources.dbt_contract import DBT_CONTRACTS, contracts_macro
from platform_assets.sources.definitions import SOURCES_FILE, SourceDefinition, load_sources
from platform_assets.sources.landing import delivered_manifests

STAGING_DIR = DBT_PROJECT_DIR / "models" / "staging"


@dataclass(frozen=True)
class Step:
    done: bool
    what: str  # the step, done or to do


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(DBT_PROJECT_DIR.parent))
    except ValueError:
        return str(path)


def _dbt_source_tables() -> set[str]:
    """Tables of the dbt source `raw`, from every YAML file under the dbt models."""
    tables = set()
    for path in sorted((DBT_PROJECT_DIR / "models").rglob("*.yml")):
        document = yaml.safe_load(path.read_text()) or {}
        for source in document.get("sources") or []:
            if source.get("name") == "raw":
                tables.update(table.get("name") for table in source.get("tables") or [])
    return tables


def _staging_models(name: str) -> list[str]:
    """Staging models that read the source: `stg_<name>__<entity>.sql` files selecting from source('raw', name)."""
    reads = re.compile(r"source\(\s*['\"]raw['\"]\s*,\s*['\"]" + re.escape(name) + r"['\"]\s*\)")
    return sorted(path.stem for path in STAGING_DIR.glob("*.sql") if reads.search(path.read_text()))


def _catalog_keys() -> set[str]:
    return set((yaml.safe_load((CATALOG_DIR / "datasets.yml").read_text()) or {}).keys())


def source_steps(source: SourceDefinition, sources: dict[str, SourceDefinition], settings: Settings) -> list[Step]:
    """The onboarding steps of one source, in order."""
    name = source.name
    models = _staging_models(name)
    model_keys = [f"staging/{model}" for model in models]
    graph = json.loads(ASSET_GRAPH.read_text()) if ASSET_GRAPH.exists() else {}
    manifest = json.loads(DBT_MANIFEST.read_text()) if DBT_MANIFEST.exists() else {}
    parsed_sources = {node.get("name") for node in manifest.get("sources", {}).values()}
    parsed_models = {node.get("name") for node in manifest.get("nodes", {}).values()}
    catalog = _catalog_keys()
    manifests = delivered_manifests(settings.landing_dir, name)[0]
    return [
        Step(True, f"{_relative(SOURCES_FILE)}: '{name}' loads ({source.format}, {source.cadence}, "
                   f"{len(source.columns)} columns)"),
        Step(name in _dbt_source_tables(),
             f"{_relative(STAGING_DIR / '_sources.yml')}: table '{name}' under the dbt source 'raw'"),
        Step(bool(models), f"{_relative(STAGING_DIR)}/stg_{name}__<entity>.sql selecting from source('raw', "
                           f"'{name}'), documented in {_relative(STAGING_DIR / '_staging.yml')}"
                           + (f" (found {', '.join(models)})" if models else "")),
        Step(DBT_CONTRACTS.exists() and DBT_CONTRACTS.read_text() == contracts_macro(sources),
             f"{_relative(DBT_CONTRACTS)} generated from sources.yml: python -m platform_assets.sources.dbt_contract"),
        Step(f"raw/{name}" in catalog and all(key in catalog for key in model_keys),
             f"{_relative(CATALOG_DIR / 'datasets.yml')}: entries "
             + ", ".join([f"'raw/{name}'", *(f"'{key}'" for key in model_keys)])
             + " (owner team, steward, domain, description, classification, freshness_sla)"),
        Step(bool(manifest) and name in parsed_sources and all(model in parsed_models for model in models),
             f"{_relative(DBT_MANIFEST)} parsed with the source and its model: make dbt_project/target/manifest.json"),
        Step(f"raw/{name}" in graph and all(key in graph for key in model_keys),
             f"{_relative(ASSET_GRAPH)} has raw/{name} and its model: UPDATE_SNAPSHOTS=1 python -m pytest "
             "tests/test_definitions.py, then review the diff"),
        Step(bool(manifests), f"a first delivery in {settings.landing_dir / name}/ with its manifest in "
                              f"{settings.landing_dir / name}/_manifests/ (the README's delivery contract)"),
    ]


def check(names: list[str], settings: Settings) -> tuple[list[str], bool]:
    """Lines to print, and whether every step of every named source (default: all) is done."""
    sources = load_sources()
    unknown = [name for name in names if name not in sources]
    if unknown:
        return [f"no source {', '.join(map(repr, unknown))} in {SOURCES_FILE}; known: {', '.join(sources)}"], False
    lines, ready = [], True
    for name in names or list(sources):
        steps = source_steps(sources[name], sources, settings)
        todo = [step for step in steps if not step.done]
        ready = ready and not todo
        lines.append(f"{name}: {'ready' if not todo else f'{len(todo)} step(s) to do'}")
        lines += [f"  {'ok  ' if step.done else 'todo'}  {step.what}" for step in steps]
    return lines, ready
