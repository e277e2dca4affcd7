"""Provenance from the OpenLineage events the platform records in `<data>/lineage/events.jsonl`: which runs,
input versions and landing files produced a version of a dataset, and which model version scored a
prediction. Reads the events only (the data folder is PLATFORM_DATA_DIR, default ./data).

A run's input is traced to the run that produced it: the one whose output has the input's version when the
event names one (a landing file's sha256, a registered model version), else the latest run of the same
Dagster run that produced it, else the latest one that completed before the reading run started."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

EVENTS = Path("lineage") / "events.jsonl"
SHOWN_FILES = 3  # per run in the text rendering; --json lists them all


class LineageError(ValueError):
    """The events cannot be read, or do not know the dataset or version asked for."""


def events_path() -> Path:
    return Path(os.environ.get("PLATFORM_DATA_DIR", "data")).resolve() / EVENTS


def load_events(path: Path) -> list[dict]:
    if not path.exists():
        raise LineageError(f"{path}: no lineage recorded yet (materialize something first)")
    events = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
            event["run"]["runId"], event["job"]["name"], event["eventType"]  # noqa: B018  (required fields)
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise LineageError(f"{path}, line {number}: not an OpenLineage run event ({error})") from None
        events.append(event)
    return events


@dataclass(frozen=True)
class Dataset:
    namespace: str
    name: str
    version: str | None = None

    @property
    def identity(self) -> tuple[str, str]:
        return self.namespace, self.name


@dataclass
class Run:
    """A completed run: a materialization of one asset (the job)."""

    run_id: str
    job: str
    started: str
    completed: str
    dagster_run: str | None
    dagster_job: str | None
    window: str | None
    inputs: list[Dataset] = field(default_factory=list)
    outputs: list[Dataset] = field(default_factory=list)


def completed_runs(events: list[dict]) -> list[Run]:
    """The runs that completed, oldest first."""
    started = {e["run"]["runId"]: e["eventTime"] for e in events if e["eventType"] == "START"}
    runs = []
    for event in events:
        if event["eventType"] != "COMPLETE":
            continue
        facets = event["run"].get("facets") or {}
        parent = facets.get("parent") or {}
        nominal = facets.get("nominalTime") or {}
        runs.append(Run(
            run_id=event["run"]["runId"], job=event["job"]["name"],
            started=started.get(event["run"]["runId"], event["eventTime"]), completed=event["eventTime"],
            dagster_run=(parent.get("run") or {}).get("runId"), dagster_job=(parent.get("job") or {}).get("name"),
            window=_window(nominal), inputs=[_dataset(d) for d in event.get("inputs") or []],
            outputs=[_dataset(d) for d in event.get("outputs") or []]))
    return sorted(runs, key=lambda run: _moment(run.completed))


def trace(events: list[dict], dataset: str, version: str | None = None) -> dict:
    """The provenance tree of DATASET (an asset key such as `marts/flights`, a table `marts.flights`, a full
    dataset name, a registered model or a file path) at VERSION (a dataset version, an OpenLineage run id or
    a Dagster run id; the latest when omitted)."""
    runs = completed_runs(events)
    run, output = _root(runs, dataset, version)
    return _node(output, run, runs, set())


def _root(runs: list[Run], dataset: str, version: str | None) -> tuple[Run, Dataset]:
    by_job = [(run, _primary(run)) for run in runs if run.job == dataset]
    by_name = [(run, output) for run in runs for output in run.outputs if _names(output.name, dataset)]
    candidates = by_job or by_name
    if not candidates:
        known = sorted({run.job for run in runs})
        raise LineageError(f"no completed run produced '{dataset}'; jobs with lineage: {', '.join(known)}")
    names = sorted({output.name for _, output in candidates})
    if not by_job and len(names) > 1:
        raise LineageError(f"'{dataset}' is ambiguous: {', '.join(names)}")
    if version is not None:
        candidates = [(run, output) for run, output in candidates
                      if version in (output.version, run.run_id, run.dagster_run)]
        if not candidates:
            raise LineageError(f"no completed run produced '{dataset}' at version or run '{version}'")
    return candidates[-1]


def _node(dataset: Dataset, producer: Run | None, runs: list[Run], traced: set[str]) -> dict:
    node = {"dataset": dataset.name, "namespace": dataset.namespace, "version": dataset.version,
            "produced_by": None, "inputs": []}
    if producer is None:
        node["source"] = "file delivered to the landing zone" if dataset.namespace == "file" \
            else "no recorded run produced it"
        return node
    if dataset.version is None:  # the reader did not know it; the producer did
        node["version"] = next((output.version for output in producer.outputs
                                if output.identity == dataset.identity), None)
    node["produced_by"] = {"job": producer.job, "run_id": producer.run_id, "dagster_run_id": producer.dagster_run,
                           "dagster_job": producer.dagster_job, "data_window": producer.window,
                           "started": producer.started, "completed": producer.completed}
    if producer.run_id in traced:
        node["traced_above"] = True
        return node
    traced.add(producer.run_id)
    node["inputs"] = [_node(source, _producer_of(source, producer, runs), runs, traced) for source in producer.inputs]
    return node


def _producer_of(dataset: Dataset, reader: Run, runs: list[Run]) -> Run | None:
    producers = [run for run in runs if run.run_id != reader.run_id
                 and _moment(run.completed) <= _moment(reader.completed)
                 and any(output.identity == dataset.identity for output in run.outputs)]
    if dataset.version:
        same_version = [run for run in producers if any(
            output.identity == dataset.identity and output.version == dataset.version for output in run.outputs)]
        if same_version:
            return same_version[-1]
    same_dagster_run = [run for run in producers if run.dagster_run and run.dagster_run == reader.dagster_run]
    if same_dagster_run:
        return same_dagster_run[-1]
    before = [run for run in producers if _moment(run.completed) <= _moment(reader.started)]
    return before[-1] if before else None


def render(node: dict, depth: int = 0) -> str:
    """The tree as indented text: short run ids and checksums, landing files summarized per run."""
    pad = "   " * depth
    version = node["version"] or ""
    if version.startswith("sha256:"):
        version = version[:19] + "…"
    lines = [f"{pad}{'<- ' if depth else ''}{node['dataset']}" + (f" @ {version}" if version else "")]
    detail = pad + ("   " if depth else "")
    producer = node["produced_by"]
    if producer is None:
        lines[-1] += "  (landing file)" if node["namespace"] == "file" else f"  ({node['source']})"
        return "\n".join(lines)
    window = f" · data {producer['data_window']}" if producer["data_window"] else ""
    lines.append(f"{detail}by {producer['job']} · Dagster run {(producer['dagster_run_id'] or '?')[:8]}{window}"
                 f" · {producer['completed'][:19].replace('T', ' ')} UTC")
    if node.get("traced_above"):
        lines.append(f"{detail}(inputs traced above)")
        return "\n".join(lines)
    files = [child for child in node["inputs"] if child["namespace"] == "file" and child["produced_by"] is None]
    for child in node["inputs"]:
        if child not in files:
            lines.append(render(child, depth + 1))
    shown = files if len(files) <= SHOWN_FILES + 1 else files[:SHOWN_FILES]
    lines += [render(child, depth + 1) for child in shown]
    if len(shown) < len(files):
        lines.append(f"{detail}   ... and {len(files) - len(shown)} more landing files (--json lists them all)")
    return "\n".join(lines)


def _primary(run: Run) -> Dataset:
    """The output a job is known by: the versioned one (a mart's published table, not its audit table)."""
    versioned = [output for output in run.outputs if output.version]
    return (versioned or run.outputs)[-1]


def _names(name: str, asked: str) -> bool:
    """`warehouse.marts.flights` answers to itself, `marts.flights`, `flights`; a file path to itself."""
    return name == asked or name.endswith("." + asked)


def _dataset(dataset: dict) -> Dataset:
    version = ((dataset.get("facets") or {}).get("version") or {}).get("datasetVersion")
    return Dataset(dataset["namespace"], dataset["name"], version)


def _window(nominal: dict) -> str | None:
    """The data dates of a daily partition window, inclusive."""
    start, end = nominal.get("nominalStartTime"), nominal.get("nominalEndTime")
    if not start:
        return None
    last = (_moment(end) - dt.timedelta(days=1)).date().isoformat() if end else start[:10]
    return f"{start[:10]}..{last}"


def _moment(timestamp: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(timestamp)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
