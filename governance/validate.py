"""`governance validate`: the catalog is the one source of truth and nothing breaks a consumer unannounced.

Problems fail validation; notes explain what was compared and what was approved."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from governance.catalog import Catalog, completeness_problems
from governance.contracts import (
    SchemaChange, affected_consumers, approval_for, consumer_contract_changes, contract_of, schema_changes,
)
from governance.dbt_exposures import exposures_yaml
from governance.graph import CONSUMERS, AssetNode, dbt_model_key, dbt_models
from governance.policy import decide


@dataclass
class Validation:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def validate(catalog: Catalog, graph: dict[str, AssetNode], manifest: dict | None, warehouse: Path,
             exposures: Path, today: dt.date | None = None) -> Validation:
    result = Validation()
    consumers = {key: node for key, node in graph.items() if node.group == CONSUMERS}
    graph = {key: node for key, node in graph.items() if key not in consumers}
    result.problems += completeness_problems(catalog, set(graph))
    result.problems += _consumer_asset_problems(catalog, consumers) if consumers else []
    result.problems += _graph_attributes_problems(catalog, graph)
    changes = consumer_contract_changes(catalog)
    if manifest is None:
        result.notes.append("no dbt manifest: dbt models and their columns not compared (make dbt_project/target/manifest.json)")
    else:
        models = dbt_models(manifest)
        result.problems += [f"dbt model '{key}' has no entry in datasets.yml" for key in sorted(set(models) - set(catalog.datasets))]
        result.problems += [f"dbt model '{key}' is not in the asset graph snapshot" for key in sorted(set(models) - set(graph))]
        for key in _published(catalog):
            if key in models:
                documented = dict.fromkeys(models[key])
                changes += schema_changes(key, contract_of(catalog, key), documented, "dbt manifest")
                result.problems += _unclassified(key, documented, catalog, "documented in dbt")
        result.problems += _exposure_problems(catalog, exposures)
        _row_filter_crossing_review(catalog, manifest, result)
    schemas = warehouse_schemas(warehouse, _published(catalog))
    if isinstance(schemas, str):
        result.notes.append(schemas)
    else:
        for key, actual in schemas.items():
            changes += schema_changes(key, contract_of(catalog, key), actual, "warehouse")
            result.problems += _unclassified(key, actual, catalog, "in the warehouse")
        result.notes.append(f"published schemas compared with the warehouse {warehouse}")
    _review_breaking_changes(catalog, changes, result)
    result.problems += _consumer_access_problems(catalog)
    result.problems += _lifecycle_problems(catalog, today or dt.date.today(), result.notes)
    return result


def _published(catalog: Catalog) -> list[str]:
    return [key for key, dataset in catalog.datasets.items() if dataset.published]


def warehouse_schemas(warehouse: Path, keys: list[str]) -> dict[str, dict[str, str]] | str:
    """{dataset: {column: type}} of the published tables, or why the warehouse could not be read."""
    if not warehouse.exists():
        return f"no warehouse at {warehouse}: published schemas not compared with it"
    try:
        with duckdb.connect(str(warehouse), read_only=True) as connection:
            rows = connection.execute(
                "SELECT table_schema || '/' || table_name, column_name, data_type FROM information_schema.columns "
                "ORDER BY table_schema, table_name, ordinal_position").fetchall()
    except duckdb.Error as error:
        return f"warehouse {warehouse} not readable now ({str(error).splitlines()[0]}): published schemas not compared"
    schemas: dict[str, dict[str, str]] = {}
    for key, column, kind in rows:
        if key in keys:
            schemas.setdefault(key, {})[column] = kind
    return schemas


def _unclassified(key: str, actual: dict, catalog: Catalog, where: str) -> list[str]:
    return [f"{key}.{column} is {where} but not in datasets.yml: unclassified, so no role can read it; classify it"
            for column in actual if column not in catalog.datasets[key].columns]


def _review_breaking_changes(catalog: Catalog, changes: list[SchemaChange], result: Validation) -> None:
    seen = set()
    for change in changes:
        if (change.dataset, change.column, change.change) in seen:
            continue
        seen.add((change.dataset, change.column, change.change))
        consumers = affected_consumers(catalog, change)
        approval = approval_for(catalog, change)
        if not consumers:
            result.notes.append(f"schema change without consumers: {change.describe()}; update the contract in datasets.yml")
        elif approval is not None:
            result.notes.append(f"approved breaking change: {change.describe()}, approved by {approval.approved_by} "
                                f"on {approval.approved_on}: {approval.reason}")
        else:
            who = "; ".join(
                f"{name} (owner team:{catalog.consumers[name].owner}, {catalog.consumers[name].contact}, "
                f"on call {catalog.teams[catalog.consumers[name].owner].on_call})" for name in consumers)
            result.problems.append(f"BREAKING: {change.describe()} breaks {who}; restore the column or record the "
                                   "consumers' agreement in approvals.yml")


def _graph_attributes_problems(catalog: Catalog, graph: dict[str, AssetNode]) -> list[str]:
    """The Dagster assets carry the catalog's owner and tags (as the reviewed graph snapshot shows)."""
    problems = []
    for key, node in graph.items():
        dataset = catalog.datasets.get(key)
        if dataset is None:
            continue
        if f"team:{dataset.owner}" not in node.owners:
            problems.append(f"asset '{key}' has owners {list(node.owners)} in the graph snapshot, the catalog says "
                            f"team:{dataset.owner}: regenerate the snapshot (UPDATE_SNAPSHOTS=1)")
        for tag in ("domain", "classification"):
            if node.tags.get(tag) != getattr(dataset, tag):
                problems.append(f"asset '{key}' has tag {tag}={node.tags.get(tag)!r} in the graph snapshot, the "
                                f"catalog says {getattr(dataset, tag)!r}: regenerate the snapshot (UPDATE_SNAPSHOTS=1)")
    return problems


def _consumer_asset_problems(catalog: Catalog, nodes: dict[str, AssetNode]) -> list[str]:
    """The graph snapshot's consumer assets are consumers.yml's (those the platform does not run), each
    downstream of exactly the datasets it reads."""
    expected = {f"{CONSUMERS}/{name}": consumer for name, consumer in catalog.consumers.items() if consumer.asset is None}
    problems = [f"consumer '{key}' is in consumers.yml but not in the asset graph snapshot" for key in sorted(set(expected) - set(nodes))]
    problems += [f"asset '{key}' is in the asset graph snapshot but not in consumers.yml" for key in sorted(set(nodes) - set(expected))]
    problems += [f"consumer '{key}' reads {sorted(expected[key].depends_on)} in consumers.yml, its asset depends on "
                 f"{sorted(nodes[key].deps)} in the graph snapshot" for key in sorted(set(nodes) & set(expected))
                 if sorted(expected[key].depends_on) != sorted(nodes[key].deps)]
    return [f"{problem}: regenerate the snapshot (UPDATE_SNAPSHOTS=1)" for problem in problems]


def _exposure_problems(catalog: Catalog, exposures: Path) -> list[str]:
    expected = exposures_yaml(catalog)
    actual = exposures.read_text() if exposures.exists() else ""
    if actual != expected:
        return [f"{exposures} does not match consumers.yml: regenerate it with python -m governance.dbt_exposures"]
    return []


def _consumer_access_problems(catalog: Catalog) -> list[str]:
    problems = []
    for name, consumer in catalog.consumers.items():
        for key, columns in consumer.depends_on.items():
            decision = decide(catalog, consumer.role, key)
            if not decision.allowed:
                problems.append(f"consumers.yml: '{name}' reads {key} as role {consumer.role}, which "
                                f"may not read it ({decision.reason})")
                continue
            denied = [c for c in columns if c in decision.columns and decision.columns[c].access == "denied"]
            if denied:
                problems.append(f"consumers.yml: '{name}' reads {key} column(s) {', '.join(denied)} as role "
                                f"{consumer.role}, which is denied them")
    return problems


def _lifecycle_problems(catalog: Catalog, today: dt.date, notes: list[str]) -> list[str]:
    problems = []
    for key, dataset in catalog.datasets.items():
        lifecycle = dataset.lifecycle
        if lifecycle.status != "deprecated":
            continue
        readers = [name for name, consumer in catalog.consumers.items() if key in consumer.depends_on]
        message = (f"{key} is deprecated (sunset {lifecycle.sunset}, use {lifecycle.replacement}) and still read by "
                   f"{', '.join(readers)}")
        if readers and lifecycle.sunset <= today:
            problems.append(message + ": past its sunset date")
        elif readers:
            notes.append(message)
    return problems


COMMENTS = re.compile(r"\{#.*?#\}|--[^\n]*", re.DOTALL)
WINDOW_OR_AGGREGATE = re.compile(
    r"\bover\s*(?:\(|[a-z_]\w*)|\bgroup\s+by\b|\bqualify\b|\b(?:count|sum|avg|min|max|median|string_agg|"
    r"array_agg|list|arg_max|arg_min|row_number|rank|dense_rank|percent_rank|ntile|lag|lead|first_value|"
    r"last_value)\s*\(", re.IGNORECASE)


def window_or_aggregate(sql: str) -> str | None:
    """The first window function or aggregate in a model's SQL (comments skipped), or None."""
    found = WINDOW_OR_AGGREGATE.search(COMMENTS.sub(" ", sql))
    return " ".join(found.group(0).split()) if found else None


def _row_filter_crossing_review(catalog: Catalog, manifest: dict, result: Validation) -> None:
    """A published dataset read row-filtered whose dbt SQL (the model's own and the macros it calls) computes
    over several rows must declare which columns do (computed_over, sequence_over): otherwise a filtered reader
    could subtract its own rows from a total. The check sees only that SQL, not aggregates upstream or counters
    embedded in delivered values, so which columns are declared stays the owner's responsibility."""
    macros = manifest.get("macros", {})
    for node in manifest["nodes"].values():
        key = dbt_model_key(node) if node["resource_type"] == "model" else None
        dataset = catalog.datasets.get(key)
        if dataset is None or not dataset.published:
            continue
        filtered = sorted(name for name, role in catalog.access.roles.items()
                          if getattr(role.datasets.get(key), "access", None) == "row_filtered")
        sql = "\n".join([node.get("raw_code", ""), *(macros.get(m, {}).get("macro_sql", "")
                                                     for m in node.get("depends_on", {}).get("macros", []))])
        construct = window_or_aggregate(sql)
        if not filtered or construct is None:
            continue
        declared = [name for name, column in dataset.columns.items() if column.other_rows is not None]
        if not declared:
            result.problems.append(
                f"{key} is computed with '{construct}' and role(s) {', '.join(filtered)} read it row_filtered, but "
                "datasets.yml declares none of its columns computed_over or sequence_over other rows: declare the "
                "columns whose values depend on rows outside a row filter (docs/governance.md)")
        else:
            result.notes.append(
                f"{key} is computed with '{construct}' and read row_filtered; {len(declared)} column(s) declared "
                "over other rows (that the declaration is complete is the owner's to check)")
