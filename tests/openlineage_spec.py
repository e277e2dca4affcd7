"""Validation of OpenLineage events against the official JSON Schemas in tests/openlineage-spec (core
OpenLineage.json and facets/*.json, vendored: see its SOURCE.md), resolved from a local registry: no network."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from functools import cache
from pathlib import Path

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_DIR = Path(__file__).resolve().parent / "openlineage-spec"
CORE_SCHEMA = "OpenLineage.json"
# Where each kind of facet sits in an event.
FACET_PLACES = (("run", "facets"), ("job", "facets"))
DATASET_FACET_PLACES = (("inputs", "facets"), ("inputs", "inputFacets"), ("outputs", "facets"),
                        ("outputs", "outputFacets"))


@cache
def spec() -> tuple[Registry, dict[str, dict], dict[str, dict]]:
    """The registry of every schema by its $id, the schemas by $id, and the facet schemas by file name."""
    if not (SPEC_DIR / CORE_SCHEMA).exists():
        raise FileNotFoundError(f"the OpenLineage spec is not at {SPEC_DIR}")
    by_id, by_file = {}, {}
    for path in [SPEC_DIR / CORE_SCHEMA, *sorted((SPEC_DIR / "facets").glob("*.json"))]:
        schema = json.loads(path.read_text())
        by_id[schema["$id"]] = schema
        by_file[path.name] = schema
    registry = Registry().with_resources(
        (schema_id, Resource.from_contents(schema, default_specification=DRAFT202012))
        for schema_id, schema in by_id.items())
    return registry, by_id, by_file


def facet_schema(schema_url: str) -> tuple[dict, str]:
    """The facet's schema file and the JSON pointer of its definition, by `_schemaURL`; by file name when this
    copy of the spec has another version of the file (see SOURCE.md)."""
    _, by_id, by_file = spec()
    document, _, pointer = schema_url.partition("#")
    if document in by_id:
        return by_id[document], pointer
    name = document.rsplit("/", 1)[-1]
    if name in by_file:
        return by_file[name], pointer
    raise LookupError(f"no schema for {schema_url}")


def validator(schema: dict) -> jsonschema.protocols.Validator:
    registry, _, _ = spec()
    return jsonschema.Draft202012Validator(schema, registry=registry,
                                           format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def event_problems(event: dict) -> list[str]:
    """Every way the event breaks the spec: the core RunEvent schema, each facet against the schema its
    `_schemaURL` names (and under the key that schema defines), the event time and the run id formats."""
    _, by_id, by_file = spec()
    core = by_file[CORE_SCHEMA]
    problems = [f"event: {error.message} at {list(error.absolute_path)}" for error in
                validator({"$ref": core["$id"] + "#/$defs/RunEvent"}).iter_errors(event)]
    try:
        dt.datetime.fromisoformat(event["eventTime"])
        uuid.UUID(event["run"]["runId"])
    except (KeyError, ValueError) as error:
        problems.append(f"event: eventTime or runId malformed: {error}")
    for where, name, facet in facets_of(event):
        try:
            document, pointer = facet_schema(facet["_schemaURL"])
        except (KeyError, LookupError) as error:
            problems.append(f"{where}.{name}: {error}")
            continue
        definition = {"$ref": document["$id"] + "#" + pointer}
        problems += [f"{where}.{name}: {error.message}" for error in validator(definition).iter_errors(facet)]
        if name not in document.get("properties", {}):
            problems.append(f"{where}.{name}: the schema {document['$id']} defines the facet as "
                            f"{sorted(document.get('properties', {}))}")
        problems += [f"{where}.{name} (as a facet map): {error.message}"
                     for error in validator(document).iter_errors({name: facet})]
    return problems


def facets_of(event: dict):
    """(where, facet name, facet) for every facet of the event."""
    for part, key in FACET_PLACES:
        for name, facet in (event.get(part, {}).get(key) or {}).items():
            yield f"{part}.{key}", name, facet
    for part, key in DATASET_FACET_PLACES:
        for index, dataset in enumerate(event.get(part) or []):
            for name, facet in (dataset.get(key) or {}).items():
                yield f"{part}[{index}].{key}", name, facet
