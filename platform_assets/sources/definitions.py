"""Declarative source definitions, loaded from sources.yml."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import yaml

SOURCES_FILE = Path(__file__).with_name("sources.yml")
FORMATS = ("csv", "jsonl", "parquet")
LINEAGE_COLUMNS = {
    "_data_date": "DATE",
    "_source_file": "VARCHAR",
    "_file_sha256": "VARCHAR",
    "_row_number": "BIGINT",
    "_batch_id": "VARCHAR",
    "_ingested_at": "TIMESTAMP",
}


class SourceDefinitionError(ValueError):
    """A source definition in sources.yml is not usable."""


@dataclass(frozen=True)
class SourceDefinition:
    name: str
    description: str
    system: str
    landing_path: str
    format: str
    columns: dict[str, str]  # column -> contract type

    @property
    def raw_columns(self) -> dict[str, str]:
        """Column types of the raw table: text formats land as delivered (VARCHAR), Parquet keeps its types."""
        if self.format == "parquet":
            delivered = dict(self.columns)
        else:
            delivered = {column: "VARCHAR" for column in self.columns}
        return {**delivered, **LINEAGE_COLUMNS}


def load_sources(path: Path = SOURCES_FILE) -> dict[str, SourceDefinition]:
    entries = yaml.safe_load(path.read_text()) or {}
    sources = {}
    for name, entry in entries.items():
        where = f"{path.name}: source '{name}'"
        if not isinstance(entry, dict):
            raise SourceDefinitionError(f"{where} must be a mapping")
        missing = {"description", "system", "landing_path", "format", "columns"} - entry.keys()
        if missing:
            raise SourceDefinitionError(f"{where} is missing {', '.join(sorted(missing))}")
        if entry["format"] not in FORMATS:
            raise SourceDefinitionError(f"{where}: format '{entry['format']}' is not one of {', '.join(FORMATS)}")
        if "{date}" not in entry["landing_path"]:
            raise SourceDefinitionError(f"{where}: landing_path must contain '{{date}}'")
        if not entry["columns"]:
            raise SourceDefinitionError(f"{where} declares no columns")
        sources[name] = SourceDefinition(
            name=name,
            description=" ".join(entry["description"].split()),
            system=entry["system"],
            landing_path=entry["landing_path"],
            format=entry["format"],
            columns={str(column): str(kind).upper() for column, kind in entry["columns"].items()},
        )
    return sources


SOURCES = load_sources()


def landing_file(landing_dir: Path, source: SourceDefinition, day: dt.date) -> Path:
    return landing_dir / source.landing_path.format(date=day.isoformat())
