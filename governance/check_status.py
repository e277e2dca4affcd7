"""The latest result of every asset check, read from the OpenLineage events the platform writes as JSON lines
under <data>/lineage/ (their dataQualityAssertions facets). Tables are matched by name (`warehouse.marts.flights`
is marts/flights); other outputs by the job, which is named after its asset. A dataset without events has
status unknown."""

from __future__ import annotations

import json
from pathlib import Path

from governance.catalog import Catalog


def latest_check_status(catalog: Catalog, lineage_dir: Path) -> dict[str, dict[str, dict]]:
    """{dataset key: {check name: {"success": bool, "severity": str | None, "at": eventTime}}}, newest wins."""
    status: dict[str, dict[str, dict]] = {}
    events = sorted(_events(lineage_dir), key=lambda event: event.get("eventTime", ""))
    for event in events:
        job = (event.get("job") or {}).get("name")
        for dataset in [*event.get("inputs", []), *event.get("outputs", [])]:
            key = _dataset_key(catalog, dataset.get("name", ""))
            if key is None and dataset in event.get("outputs", []) and job in catalog.datasets:
                key = job  # an output that is no table (the registered model): the job is named after its asset
            if key is None:
                continue
            for facets in (dataset.get("facets"), dataset.get("inputFacets"), dataset.get("outputFacets")):
                for assertion in ((facets or {}).get("dataQualityAssertions") or {}).get("assertions", []):
                    name = assertion.get("name") or assertion.get("assertion")
                    if assertion.get("column") and not assertion.get("name"):
                        name = f"{name}({assertion['column']})"
                    status.setdefault(key, {})[name] = {"success": bool(assertion.get("success")),
                                                        "severity": assertion.get("severity"),
                                                        "at": event.get("eventTime")}
    return status


def _events(lineage_dir: Path):
    if not lineage_dir.is_dir():
        return
    for path in sorted(lineage_dir.rglob("*.jsonl")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                yield event


def _dataset_key(catalog: Catalog, name: str) -> str | None:
    """OpenLineage names a warehouse table `database.schema.table` (as dbt does); the catalog key is schema/table."""
    parts = name.split(".")
    key = "/".join(parts[-2:]) if len(parts) >= 2 else name
    return key if key in catalog.datasets else None


def summary(checks: dict[str, dict] | None) -> str:
    """'passed', 'failed: a, b' or 'unknown' (no events for the dataset)."""
    if not checks:
        return "unknown"
    failed = sorted(name for name, result in checks.items() if not result["success"])
    return f"failed: {', '.join(failed)}" if failed else "passed"
