"""One asset materialization = one OpenLineage run: a START event, then COMPLETE, FAIL, or ABORT when
interrupted or skipped. The job is the asset key in the platform's job namespace; the run's parent is the
Dagster run. Outputs carry what Dagster recorded for the materialization (schema, rows written, published
version) and what the catalog says (owners, classification, PII), plus the checks evaluated with it.

`lineage_run` is the one mechanism: raw ingestion uses it per source, `tracked` wraps an asset function in
it, and the dbt step fills runs from dbt's artifacts (`platform_assets.lineage.dbt`)."""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import logging
import os
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from governance.catalog import Catalog, load_catalog
from platform_assets.lineage import facets
from platform_assets.lineage.datasets import TABLE, DatasetRef, Locations
from platform_assets.lineage.emitter import LineageEmitter
from platform_assets.settings import load_settings

if TYPE_CHECKING:  # imported where used: loading the code location must not import openlineage
    from openlineage.client.event_v2 import InputDataset, OutputDataset, RunEvent, RunState

DEFAULT_JOB_NAMESPACE = "flight-platform"
PRODUCER = f"urn:flight-data-platform:lineage:{importlib.metadata.version('flight-data-platform')}"

log = logging.getLogger(__name__)


def job_namespace() -> str:
    """`OPENLINEAGE_NAMESPACE`, as for the other OpenLineage integrations."""
    return os.environ.get("OPENLINEAGE_NAMESPACE") or DEFAULT_JOB_NAMESPACE


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


@dataclass(frozen=True)
class Step:
    """What every run of one Dagster step shares: the Dagster run, the partition window, where datasets
    live, the catalog, and where events go."""

    dagster_run_id: str
    dagster_job: str
    window: tuple[dt.datetime, dt.datetime] | None
    locations: Locations
    catalog: Catalog
    emitter: LineageEmitter

    @classmethod
    def of(cls, context: dg.AssetExecutionContext) -> Step:
        settings = load_settings()
        warehouse, mlflow = (getattr(context.resources, name, None) for name in ("warehouse", "mlflow"))
        window = None
        if context.assets_def.partitions_def is not None:
            time_window = context.partition_time_window
            window = (time_window.start, time_window.end)
        return cls(
            dagster_run_id=context.run.run_id,
            dagster_job=context.run.job_name,
            window=window,
            locations=Locations(
                # a DuckDB warehouse resource's file; the team target's (PostgreSQL) has a URL instead
                warehouse_path=Path(getattr(warehouse, "path", None) or settings.warehouse_path).resolve(),
                mlflow_tracking_uri=getattr(mlflow, "tracking_uri", settings.mlflow_tracking_uri),
                registered_model=getattr(mlflow, "registered_model_name", ""),
                warehouse_url=settings.warehouse_url if settings.target == "team" else None,
            ),
            catalog=load_catalog(),
            emitter=LineageEmitter(settings.lineage_dir),
        )

    def emit(self, event: RunEvent) -> None:
        """Never raises: lineage must not fail a materialization."""
        try:
            self.emitter.emit(event)
        except Exception:
            log.warning("OpenLineage event for %s not recorded", event.job.name, exc_info=True)


def _new_run_id() -> str:
    from openlineage.client.uuid import generate_new_uuid  # noqa: PLC0415

    return str(generate_new_uuid())


@dataclass
class LineageRun:
    """The run of one asset (job = the asset key). Fill it, then `start` and `finish`."""

    step: Step
    key: str
    inputs: list[DatasetRef]
    outputs: list[DatasetRef]
    description: str | None = None
    engine: tuple[str, str] = ("Dagster", dg.__version__)
    integration: str = "DAGSTER"
    job_kind: str = "ASSET"
    query: str | None = None
    run_id: str = field(default_factory=_new_run_id)
    metadata: dict[str, Any] = field(default_factory=dict)  # of the materialization, once it happened
    materialized: bool = False
    checks: list[facets.CheckOutcome] = field(default_factory=list)
    check_specs: dict[str, dg.AssetCheckSpec] = field(default_factory=dict)
    # {output relation: {output column: [(input namespace, input name, input column, identity?)]}}
    column_sources: dict[str, dict[str, list[tuple[str, str, str, bool]]]] = field(default_factory=dict)

    def start(self, at: str | None = None) -> None:
        from openlineage.client.event_v2 import InputDataset, OutputDataset, RunState  # noqa: PLC0415

        self.step.emit(self._event(RunState.START, at, self._datasets(InputDataset, self.inputs),
                                   self._datasets(OutputDataset, self.outputs)))

    def finish(self, at: str | None = None, error: str | None = None, stack_trace: str | None = None,
               aborted: bool = False) -> None:
        """COMPLETE when the asset materialized, else FAIL (ABORT if `aborted`) with the reason."""
        from openlineage.client.event_v2 import InputDataset, OutputDataset, RunState  # noqa: PLC0415

        if self.materialized and error is None and not aborted:
            self.step.emit(self._event(RunState.COMPLETE, at, self._completed_inputs(), self._completed_outputs()))
            return
        message = error or self._not_materialized_reason()
        self.step.emit(self._event(RunState.ABORT if aborted else RunState.FAIL, at,
                                   self._datasets(InputDataset, self.inputs),
                                   self._datasets(OutputDataset, self.outputs),
                                   facets.error(message, stack_trace)))

    def _event(self, state: RunState, at: str | None, inputs: list, outputs: list, run_facets: dict | None = None):
        from openlineage.client import constants as client_constants  # noqa: PLC0415
        from openlineage.client.event_v2 import Job, Run, RunEvent  # noqa: PLC0415
        from openlineage.client.facet_v2 import set_producer  # noqa: PLC0415

        set_producer(PRODUCER)
        _, catalog_job_facets = facets.catalog_facets(self.step.catalog, self.key)
        job_facets = {**facets.job_type(self.integration, self.job_kind), **catalog_job_facets,
                      **facets.job_documentation(self.description),
                      **facets.sql(self.query, self.step.locations.sql_dialect)}
        name, engine_version = self.engine
        all_run_facets = {
            **facets.parent(job_namespace(), self.step.dagster_job, self.step.dagster_run_id),
            **facets.processing_engine(name, engine_version, client_constants.__version__),
            **facets.nominal_time(self.step.window),
            **(run_facets or {}),
        }
        return RunEvent(eventType=state, eventTime=at or now(), producer=PRODUCER,
                        run=Run(runId=self.run_id, facets=all_run_facets),
                        job=Job(namespace=job_namespace(), name=self.key, facets=job_facets),
                        inputs=inputs, outputs=outputs)

    def _datasets(self, kind: type, refs: list[DatasetRef], extra: Callable[[DatasetRef], dict] | None = None):
        """Outputs say where they live and what they are; inputs only their version (their producer's
        events describe them, and a run can read hundreds of landing files)."""
        from openlineage.client.event_v2 import OutputDataset  # noqa: PLC0415

        datasets = []
        for ref in refs:
            namespace, name = self.step.locations.identity(ref)
            dataset_facets = {**facets.datasource(namespace), **facets.dataset_type(ref.kind)} \
                if kind is OutputDataset else {}
            dataset_facets.update(extra(ref) if extra else {})
            datasets.append(kind(namespace=namespace, name=name, facets=dataset_facets))
        return datasets

    def _version(self, ref: DatasetRef) -> str | None:
        value = ref.version or (self.metadata.get(ref.version_from) if ref.version_from else None)
        return None if value is None else str(value)

    def _completed_inputs(self) -> list[InputDataset]:
        from openlineage.client.event_v2 import InputDataset  # noqa: PLC0415

        return self._datasets(InputDataset, self.inputs, lambda ref: facets.version(self._version(ref)))

    def _completed_outputs(self) -> list[OutputDataset]:
        from openlineage.client.event_v2 import OutputDataset  # noqa: PLC0415

        catalog_dataset_facets, _ = facets.catalog_facets(self.step.catalog, self.key)
        columns = _columns(self.metadata.get("dagster/column_schema"))

        def described(ref: DatasetRef) -> dict:
            return {
                **catalog_dataset_facets,
                **({} if "documentation" in catalog_dataset_facets else facets.documentation(self.description)),
                **(facets.schema(columns) if ref.kind == TABLE else {}),
                **facets.version(self._version(ref)),
                **facets.column_lineage(self.column_sources.get(ref.name, {})),
                **facets.assertions(self.checks),
            }

        outputs = self._datasets(OutputDataset, self.outputs, described)
        statistics = facets.rows_written(self.metadata)
        for ref, output in zip(self.outputs, outputs, strict=True):
            if ref.kind == TABLE and statistics:
                output.outputFacets = dict(statistics)
        return outputs

    def _not_materialized_reason(self) -> str:
        failed = [check for check in self.checks if not check.passed and check.blocking]
        if not failed:
            return f"{self.key} was not materialized"
        reasons = [check.name + (f" ({check.observed})" if check.observed else "") for check in failed]
        return f"{self.key} was not materialized: blocking check failed: " + "; ".join(reasons)

    def observe(self, events: Iterable) -> Iterator:
        """Pass the asset function's events through, noting the materialization and the checks."""
        for event in events:
            if isinstance(event, (dg.MaterializeResult, dg.Output, dg.AssetMaterialization)) and \
                    _key_of(event) in (None, self.key):
                self.materialized = True
                self.metadata.update({name: _plain(value) for name, value in (event.metadata or {}).items()})
            elif isinstance(event, dg.AssetCheckResult) and _key_of(event) in (None, self.key):
                self.checks.append(check_outcome(event, self.check_specs.get(event.check_name)))
            yield event


def check_outcome(result: dg.AssetCheckResult, spec: dg.AssetCheckSpec | None) -> facets.CheckOutcome:
    """A Dagster check result; what it found is its short text metadata (the refusal, the outcome)."""
    texts = ((name, _plain(value)) for name, value in result.metadata.items())
    observed = "; ".join(f"{name}: {text}" for name, text in texts
                         if isinstance(text, str) and 0 < len(text) <= 500 and "\n" not in text)
    column = _plain(result.metadata["column"]) if "column" in result.metadata else None
    return facets.CheckOutcome(
        name=result.check_name, passed=result.passed,
        severity="warn" if result.severity == dg.AssetCheckSeverity.WARN else "error",
        column=str(column) if column else None, description=spec.description if spec else None,
        observed=observed or None, blocking=bool(spec and spec.blocking))


@contextmanager
def lineage_run(context: dg.AssetExecutionContext, key: dg.AssetKey, inputs: Iterable[DatasetRef],
                outputs: Iterable[DatasetRef]) -> Iterator[LineageRun]:
    """START now; COMPLETE when the block materialized the asset (events passed through `observe`), else
    FAIL with the error or the failed blocking checks; ABORT when the step is interrupted."""
    spec = context.assets_def.specs_by_key.get(key)
    run = LineageRun(Step.of(context), key.to_user_string(), list(inputs), list(outputs),
                     description=spec.description if spec else None,
                     check_specs={check.name: check for check in context.assets_def.check_specs
                                  if check.asset_key == key})
    if spec is not None:
        run.metadata.update({name: _plain(value) for name, value in spec.metadata.items()})
    run.start()
    try:
        yield run
    except Exception as error:
        run.finish(error=_message(error), stack_trace=traceback.format_exc(limit=20))
        raise
    except BaseException:
        run.finish(error="interrupted", aborted=True)
        raise
    run.finish()


def tracked(inputs: Iterable[DatasetRef], outputs: Iterable[DatasetRef]) -> Callable:
    """Decorate an asset function (under `@dg.asset`) to record its materializations as lineage runs."""
    inputs, outputs = list(inputs), list(outputs)

    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def asset_function(context: dg.AssetExecutionContext, *args, **kwargs):
            with lineage_run(context, context.asset_key, inputs, outputs) as run:
                result = function(context, *args, **kwargs)
                events = result if isinstance(result, Iterator) else ([] if result is None else [result])
                yield from run.observe(events)

        return asset_function

    return decorate


def _message(error: BaseException) -> str:
    return (getattr(error, "description", None) or str(error) or type(error).__name__).strip()


def _key_of(event: Any) -> str | None:
    key = getattr(event, "asset_key", None)
    return key.to_user_string() if key is not None else None


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, dg.MetadataValue) else value


def _columns(schema: Any) -> list[tuple[str, str | None, str | None]]:
    if schema is None:
        return []
    return [(column.name, column.type, column.description) for column in schema.columns]
