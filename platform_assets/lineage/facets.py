"""Facets, built with the openlineage-python classes from what the platform already knows: the governance
catalog (ownership, classification, per-column PII), Dagster's materialization metadata (schema, row count,
published version) and the quality checks of the run. Pure functions; the catalog is read, never written."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from governance.catalog import Catalog, CatalogError

# openlineage is imported in the functions that use it: loading the code location must not import it (0.2 s).

# Materialization metadata holding the rows this run wrote, most specific first; the table's total last.
ROWS_WRITTEN_KEYS = ("rows_loaded_this_run", "rows_in_run_range", "rows_scored_this_run", "dagster/row_count")


@dataclass(frozen=True)
class CheckOutcome:
    """A quality check evaluated in the run: a Dagster asset check or a dbt test."""

    name: str
    passed: bool
    severity: str  # "error" blocks, "warn" reports
    column: str | None = None
    assertion: str | None = None  # the kind of test (not_null, unique, ...); the check name otherwise
    description: str | None = None  # what it checks
    observed: str | None = None  # what it found, in short
    blocking: bool = False  # a failure keeps the asset from being materialized


def datasource(namespace: str) -> dict:
    from openlineage.client.facet_v2 import datasource_dataset  # noqa: PLC0415

    return {"dataSource": datasource_dataset.DatasourceDatasetFacet(name=namespace, uri=namespace)}


def dataset_type(kind: str) -> dict:
    from openlineage.client.facet_v2 import dataset_type_dataset  # noqa: PLC0415

    return {"datasetType": dataset_type_dataset.DatasetTypeDatasetFacet(datasetType=kind)}


def version(value: str | None) -> dict:
    from openlineage.client.facet_v2 import dataset_version_dataset  # noqa: PLC0415

    return {"version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=value)} if value else {}


def schema(columns: Iterable[tuple[str, str | None, str | None]]) -> dict:
    """From (name, type, description) triples; nothing when the columns are unknown."""
    from openlineage.client.facet_v2 import schema_dataset  # noqa: PLC0415

    fields = [schema_dataset.SchemaDatasetFacetFields(name=name, type=kind, description=description,
                                                      ordinal_position=position)
              for position, (name, kind, description) in enumerate(columns, start=1)]
    return {"schema": schema_dataset.SchemaDatasetFacet(fields=fields)} if fields else {}


def documentation(description: str | None) -> dict:
    from openlineage.client.facet_v2 import documentation_dataset  # noqa: PLC0415

    return {"documentation": documentation_dataset.DocumentationDatasetFacet(description=description)} \
        if description else {}


def rows_written(metadata: Mapping[str, Any]) -> dict:
    """outputStatistics from the materialization metadata (an output facet)."""
    from openlineage.client.facet_v2 import output_statistics_output_dataset  # noqa: PLC0415

    rows = next((metadata[key] for key in ROWS_WRITTEN_KEYS if isinstance(metadata.get(key), int)), None)
    if rows is None:
        return {}
    return {"outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=rows)}


def assertions(checks: Iterable[CheckOutcome]) -> dict:
    from openlineage.client.facet_v2 import data_quality_assertions_dataset  # noqa: PLC0415

    found = [
        data_quality_assertions_dataset.Assertion(
            assertion=check.assertion or check.name, success=check.passed, column=check.column,
            severity=check.severity, name=check.name, description=check.description, actual=check.observed)
        for check in checks
    ]
    return {"dataQualityAssertions": data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(
        assertions=found)} if found else {}


def column_lineage(sources: Mapping[str, list[tuple[str, str, str, bool]]]) -> dict:
    """From {output column: [(input namespace, input name, input column, identity?)]}. An identity input is
    copied as is; any other contributes through an expression (both DIRECT: the value derives from it)."""
    from openlineage.client.facet_v2 import column_lineage_dataset  # noqa: PLC0415

    fields = {
        column: column_lineage_dataset.Fields(inputFields=[
            column_lineage_dataset.InputField(
                namespace=namespace, name=name, field=field,
                transformations=[column_lineage_dataset.Transformation(
                    type="DIRECT", subtype="IDENTITY" if identity else "TRANSFORMATION")])
            for namespace, name, field, identity in inputs
        ])
        for column, inputs in sources.items() if inputs
    }
    return {"columnLineage": column_lineage_dataset.ColumnLineageDatasetFacet(fields=fields)} if fields else {}


def catalog_facets(catalog: Catalog, key: str) -> tuple[dict, dict]:
    """(dataset facets, job facets) from the governance catalog: ownership (team, contact, on-call), tags
    (domain, classification, per-column classification and PII when the catalog has them), its description.
    A dataset the catalog does not know gets none (the code location refuses to load such an asset anyway)."""
    from openlineage.client.facet_v2 import ownership_dataset, ownership_job, tags_dataset  # noqa: PLC0415

    try:
        dataset = catalog.dataset(key)
    except CatalogError:
        return {}, {}
    team = catalog.teams.get(dataset.owner)
    owners = [(f"team:{dataset.owner}", "OWNER")]
    owners += [(f"mailto:{address}", role) for role, address in
               (("CONTACT", getattr(team, "contact", None)), ("ON_CALL", getattr(team, "on_call", None)))
               if address]
    tags = [tags_dataset.TagsDatasetFacetFields(key=name, value=str(value), source="CATALOG")
            for name, value in (("domain", getattr(dataset, "domain", None)),
                                ("classification", getattr(dataset, "classification", None))) if value]
    tags += [tags_dataset.TagsDatasetFacetFields(key=name, value=value, source="CATALOG", field=column)
             for column, name, value in column_labels(dataset)]
    dataset_facets = {
        "ownership": ownership_dataset.OwnershipDatasetFacet(
            owners=[ownership_dataset.Owner(name=name, type=kind) for name, kind in owners]),
        "tags": tags_dataset.TagsDatasetFacet(tags=tags),
        **documentation(getattr(dataset, "description", None)),
    }
    job_facets = {"ownership": ownership_job.OwnershipJobFacet(
        owners=[ownership_job.Owner(name=name, type=kind) for name, kind in owners])}
    return dataset_facets, job_facets


def column_labels(dataset: Any) -> list[tuple[str, str, str]]:
    """(column, "classification" | "pii", value) for each labelled column of a catalog entry. Read by
    attribute or key, so that it follows the catalog's column model as that grows."""
    columns = getattr(dataset, "columns", None) or {}
    entries = columns.items() if isinstance(columns, Mapping) else ((getattr(c, "name", None), c) for c in columns)
    labels = []
    for column, entry in entries:
        for attribute, tag in (("classification", "classification"), ("pii", "pii"), ("pii_category", "pii")):
            value = entry.get(attribute) if isinstance(entry, Mapping) else getattr(entry, attribute, None)
            if column and value not in (None, False, ""):
                labels.append((str(column), tag, str(value).lower() if isinstance(value, bool) else str(value)))
    return labels


def job_type(integration: str, kind: str) -> dict:
    from openlineage.client.facet_v2 import job_type_job  # noqa: PLC0415

    return {"jobType": job_type_job.JobTypeJobFacet(processingType="BATCH", integration=integration, jobType=kind)}


def job_documentation(description: str | None) -> dict:
    from openlineage.client.facet_v2 import documentation_job  # noqa: PLC0415

    return {"documentation": documentation_job.DocumentationJobFacet(description=description)} \
        if description else {}


def sql(query: str | None, dialect: str = "duckdb") -> dict:
    from openlineage.client.facet_v2 import sql_job  # noqa: PLC0415

    return {"sql": sql_job.SQLJobFacet(query=query, dialect=dialect)} if query else {}


def parent(namespace: str, job_name: str, run_id: str) -> dict:
    """The Dagster run that materialized the asset."""
    from openlineage.client.facet_v2 import parent_run  # noqa: PLC0415

    return {"parent": parent_run.ParentRunFacet(run=parent_run.Run(runId=run_id),
                                                job=parent_run.Job(namespace=namespace, name=job_name))}


def processing_engine(name: str, engine_version: str, adapter_version: str) -> dict:
    from openlineage.client.facet_v2 import processing_engine_run  # noqa: PLC0415

    return {"processing_engine": processing_engine_run.ProcessingEngineRunFacet(
        version=engine_version, name=name, openlineageAdapterVersion=adapter_version)}


def nominal_time(window: tuple[dt.datetime, dt.datetime] | None) -> dict:
    """The partition window (data dates) the run materialized."""
    from openlineage.client.facet_v2 import nominal_time_run  # noqa: PLC0415

    if window is None:
        return {}
    start, end = (moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") for moment in window)
    return {"nominalTime": nominal_time_run.NominalTimeRunFacet(nominalStartTime=start, nominalEndTime=end)}


def error(message: str, stack_trace: str | None = None) -> dict:
    from openlineage.client.facet_v2 import error_message_run  # noqa: PLC0415

    return {"errorMessage": error_message_run.ErrorMessageRunFacet(
        message=message, programmingLanguage="python", stackTrace=stack_trace)}
