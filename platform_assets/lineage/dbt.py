"""The dbt step's lineage: one run per dbt model of the build, read from dbt's own artifacts the way dbt's
OpenLineage integration reads them (the manifest for inputs, outputs, compiled SQL and tests; run_results
for status and timing), joined with what the step recorded in Dagster for the model (rows, column types,
published version). A mart's outputs are the audit table dbt wrote and the published table consumers read.
Column lineage comes from the compiled SQL (sqlglot, with the warehouse's columns to expand `*`)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from sqlglot import exp, parse_one
from sqlglot.errors import SqlglotError
from sqlglot.lineage import Node, lineage
from sqlglot.optimizer.qualify import qualify

from platform_assets.lineage.datasets import table_dataset
from platform_assets.lineage.facets import CheckOutcome
from platform_assets.lineage.runs import LineageRun, Step, now
from platform_assets.warehouse import Warehouse

log = logging.getLogger(__name__)
COLUMN_LINEAGE_CACHE = "column_lineage_cache.json"
# the run range's dates in the compiled SQL: the same model over another range has the same column lineage
_DATE_LITERAL = re.compile(r"'\d{4}-\d{2}-\d{2}'")


def emit_dbt_lineage(context: dg.AssetExecutionContext, invocation, events: Iterable, warehouse,
                     asset_key_of: Callable[[Mapping[str, Any]], dg.AssetKey]) -> None:
    """START and COMPLETE, FAIL (error, or built but not published) or ABORT (skipped by dbt) for every model
    of the invocation. `events` are the step's events as it yields them; never raises."""
    try:
        manifest = invocation.get_artifact("manifest.json")
        results = invocation.get_artifact("run_results.json")
        with warehouse.open(read_only=True) as store:
            columns = warehouse_columns(store)
        recorded = {context.asset_key_for_output(event.output_name).to_user_string(): event.metadata
                    for event in events if isinstance(event, dg.Output)}
        step = Step.of(context)
        for run, started, finished, error, aborted in model_runs(
                step, manifest, results, recorded, columns, asset_key_of, context.assets_def.specs_by_key):
            run.start(at=started)
            run.finish(at=finished, error=error, aborted=aborted)
    except Exception:
        context.log.warning("OpenLineage: the dbt models' lineage was not recorded", exc_info=True)


def model_runs(step: Step, manifest: Mapping, results: Mapping, recorded: Mapping[str, Mapping],
               columns: Mapping[str, Mapping[str, str]], asset_key_of: Callable, specs: Mapping):
    """(run, started, finished, error, aborted) per model result, in the order dbt ran them."""
    tests = tests_by_model(manifest, results)
    dbt_version = results.get("metadata", {}).get("dbt_version", "unknown")
    published_at = now()
    database = step.locations.warehouse_database
    sqlglot_schema = {database: _nested(columns)}
    cache = ColumnLineageCache(step.emitter.directory / COLUMN_LINEAGE_CACHE, sqlglot_schema,
                               step.locations.sql_dialect)
    for result in results["results"]:
        unique_id = result["unique_id"]
        if not unique_id.startswith("model."):
            continue
        node = manifest["nodes"][unique_id]
        key = asset_key_of(node)
        spec = specs.get(key)
        relation = _relation(node)
        published = str(spec.metadata.get("dagster/table_name", relation)) if spec else relation
        outputs = [table_dataset(relation, version_from="published_version" if published == relation else None)]
        if published != relation:
            outputs.append(table_dataset(published, version_from="published_version"))
        run = LineageRun(
            step, key.to_user_string(), inputs=[table_dataset(parent) for parent in _parents(manifest, unique_id)],
            outputs=outputs, description=node.get("description") or (spec.description if spec else None),
            engine=("dbt", dbt_version), integration="DBT", job_kind="MODEL", query=node.get("compiled_code"),
            checks=tests.get(unique_id, []))
        metadata = recorded.get(key.to_user_string())
        if metadata is not None:
            run.materialized = True
            run.metadata.update({name: getattr(value, "value", value) for name, value in metadata.items()})
        run.column_sources = _column_sources(step, node, relation, published, cache, columns)
        started, finished = _timing(result)
        status = result["status"]
        if status == "success":
            if published != relation:
                finished = published_at
            error = None if run.materialized else (
                f"built and tested in {relation} but not published to {published}: the run's dbt build did not "
                "pass as a whole, so the previous version stays")
            yield run, started, finished, error, False
        elif status == "skipped":
            yield run, started, finished, "skipped by dbt: an upstream model or blocking test failed", True
        else:
            yield run, started, finished, result.get("message") or f"dbt status {status}", False
    cache.save()


def tests_by_model(manifest: Mapping, results: Mapping) -> dict[str, list[CheckOutcome]]:
    """The dbt tests evaluated in the invocation, per model they test (skipped tests were not evaluated)."""
    tests = defaultdict(list)
    for result in results["results"]:
        if not result["unique_id"].startswith("test.") or result["status"] == "skipped":
            continue
        node = manifest["nodes"][result["unique_id"]]
        metadata = node.get("test_metadata") or {}
        severity = str(node.get("config", {}).get("severity", "error")).lower()
        passed = result["status"] == "pass"
        outcome = CheckOutcome(
            name=node["name"], passed=passed, severity=severity,
            column=node.get("column_name") or metadata.get("kwargs", {}).get("column_name"),
            assertion=metadata.get("name") or "singular", description=node.get("description") or None,
            observed=None if passed else result.get("message"), blocking=severity == "error")
        attached = node.get("attached_node")
        models = [attached] if attached else [parent for parent in node.get("depends_on", {}).get("nodes", [])
                                              if parent.startswith("model.")]
        for model in models:
            tests[model].append(outcome)
    return tests


def warehouse_columns(store: Warehouse) -> dict[str, dict[str, str]]:
    """{"<schema>.<table>": {column: type}} of every table in the warehouse."""
    columns: dict[str, dict[str, str]] = defaultdict(dict)
    for schema, table, column, kind in store.read(
            "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_catalog = current_database() ORDER BY table_schema, table_name, ordinal_position"
    ).itertuples(index=False):
        columns[f"{schema}.{table}"][column] = kind
    return dict(columns)


def column_lineage(sql: str, schema: Mapping, dialect: str = "duckdb") -> dict[str, list[tuple[str, str, bool]]]:
    """{output column: [(input relation "<schema>.<table>", input column, identity?)]} of a SELECT. Identity:
    the value is copied through column references only. `schema` is {database: {schema: {table: {col: type}}}}.
    Empty when the SQL cannot be analysed."""
    try:
        expression = qualify(parse_one(sql, dialect=dialect), schema=schema, dialect=dialect,
                             validate_qualify_columns=False)
        nodes = lineage(None, expression, schema, dialect=dialect, copy=False)
    except SqlglotError as error:
        log.info("no column lineage: %s", error)
        return {}
    sources = {}
    for column, node in nodes.items():
        found: dict[tuple[str, str], bool] = {}
        _leaves(node, True, found)
        sources[column] = [(relation, field, identity) for (relation, field), identity in found.items()]
    return sources


class ColumnLineageCache:
    """column_lineage() results kept between runs (analysing every model's SQL costs about 2 s per dbt step),
    keyed by the SQL without its date literals and by the warehouse's columns."""

    def __init__(self, path: Path, schema: Mapping, dialect: str = "duckdb") -> None:
        self.path, self.schema, self.dialect = path, schema, dialect
        self.schema_digest = hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()
        try:
            self.stored = json.loads(path.read_text())
        except (OSError, ValueError):
            self.stored = {}
        self.entries = dict(self.stored)
        self.used: dict[str, dict] = {}

    def column_lineage(self, sql: str) -> dict[str, list[tuple[str, str, bool]]]:
        key = hashlib.sha256(f"{self.schema_digest}\n{_DATE_LITERAL.sub('?', sql)}".encode()).hexdigest()
        if key not in self.entries:
            self.entries[key] = column_lineage(sql, self.schema, self.dialect)
        self.used[key] = self.entries[key]
        return {column: [tuple(source) for source in sources] for column, sources in self.entries[key].items()}

    def save(self) -> None:
        """Keep what this invocation used: entries of older SQL or columns drop out."""
        if self.used != self.stored:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps(self.used))
            temporary.replace(self.path)


def _leaves(node: Node, identity: bool, found: dict[tuple[str, str], bool]) -> None:
    if isinstance(node.expression, exp.Table):
        relation = f"{node.expression.db}.{node.expression.name}"
        key = (relation, exp.to_column(node.name).name)
        found[key] = found.get(key, False) or identity
        return
    expression = node.expression.unalias() if isinstance(node.expression, exp.Alias) else node.expression
    for child in node.downstream:
        _leaves(child, identity and isinstance(expression, exp.Column), found)


def _column_sources(step: Step, node: Mapping, relation: str, published: str, cache: ColumnLineageCache,
                    columns: Mapping[str, Mapping[str, str]]) -> dict:
    identity = step.locations.identity
    sources = {}
    if node.get("compiled_code"):
        derived = cache.column_lineage(node["compiled_code"])
        sources[relation] = {column: [(*identity(table_dataset(source)), field, same)
                                      for source, field, same in inputs]
                             for column, inputs in derived.items()}
    if published != relation:  # published as a copy of the audited table
        audited = identity(table_dataset(relation))
        sources[published] = {column: [(*audited, column, True)] for column in columns.get(relation, {})}
    return sources


def _relation(node: Mapping) -> str:
    return f"{node['schema']}.{node.get('alias') or node.get('identifier') or node['name']}"


def _parents(manifest: Mapping, unique_id: str) -> list[str]:
    parents = []
    for parent in manifest["parent_map"].get(unique_id, []):
        if parent.startswith("model."):
            parents.append(_relation(manifest["nodes"][parent]))
        elif parent.startswith("source."):
            parents.append(_relation(manifest["sources"][parent]))
    return parents


def _timing(result: Mapping) -> tuple[str, str]:
    execute = next((t for t in result.get("timing", []) if t.get("name") == "execute"), None)
    if execute and execute.get("started_at") and execute.get("completed_at"):
        return execute["started_at"], execute["completed_at"]
    moment = now()
    return moment, moment


def _nested(columns: Mapping[str, Mapping[str, str]]) -> dict:
    nested: dict[str, dict] = defaultdict(dict)
    for relation, table_columns in columns.items():
        schema, table = relation.split(".", 1)
        nested[schema][table] = dict(table_columns)
    return dict(nested)
