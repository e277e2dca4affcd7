"""Declarative source definitions, loaded from sources.yml."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

SOURCES_FILE = Path(__file__).with_name("sources.yml")
# libyaml's parser when PyYAML has it (its wheels do): the same documents, read about 8 times faster, and every
# code location load reads this file.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
FORMATS = ("csv", "jsonl", "parquet")
LINEAGE_COLUMNS = {
    "_data_date": "DATE",
    "_source_file": "VARCHAR",
    "_file_sha256": "VARCHAR",
    "_row_number": "BIGINT",
    "_batch_id": "VARCHAR",
    "_ingested_at": "TIMESTAMP",
}
LINEAGE_DESCRIPTIONS = {
    "_data_date": "Delivery date of the landing file the row came from (the daily partition).",
    "_source_file": "Landing file the row was read from.",
    "_file_sha256": "sha256 of that file, as listed in the delivery manifest.",
    "_row_number": "Row number within the file (1 = first data row).",
    "_batch_id": "Ingestion batch: Dagster run id, source and date range.",
    "_ingested_at": "When the row was loaded into the warehouse.",
}


SOURCE_FIELDS = {"description", "system", "format", "cadence", "allow_empty", "row_date", "key", "columns"}
CADENCES = ("daily", "irregular", "snapshot")
COLUMN_RULES = {"type", "description", "nullable", "accepted", "range", "pattern", "formats", "references",
                "quarantined", "warn_because"}


class SourceDefinitionError(ValueError):
    """A source definition in sources.yml is not usable."""


@dataclass(frozen=True)
class ColumnContract:
    """What a delivered column promises. `warn_because` says why the real data may break it (then its
    violations are reported by a WARN check instead of blocking publication)."""

    type: str
    description: str | None = None
    nullable: bool = True
    accepted: tuple[str, ...] | None = None
    range: tuple[float, float] | None = None
    pattern: str | None = None  # regular expression every non-null value must match in full
    formats: tuple[str, ...] | None = None  # strptime formats a DATE/TIMESTAMP column may arrive in
    references: str | None = None  # "<source>.<column>" that every non-null value must exist in
    quarantined: bool = False  # staging -> marts quarantines the rows breaking it, one by one
    warn_because: str | None = None


@dataclass(frozen=True)
class SourceDefinition:
    name: str
    description: str
    system: str
    format: str
    columns: dict[str, ColumnContract]
    key: tuple[str, ...] = ()
    key_warn_because: str | None = None
    cadence: str = "daily"  # daily | irregular | snapshot (see sources.yml)
    allow_empty: bool = False  # a delivery with no data rows is published instead of refused
    row_date: str | None = None

    @property
    def snapshot(self) -> bool:
        """A reference table delivered whole, used until a newer one arrives (not partitioned by day)."""
        return self.cadence == "snapshot"

    @property
    def raw_columns(self) -> dict[str, str]:
        """Column types of the raw table: text formats land as delivered (VARCHAR), Parquet keeps its types."""
        if self.format == "parquet":
            delivered = {column: contract.type for column, contract in self.columns.items()}
        else:
            delivered = {column: "VARCHAR" for column in self.columns}
        return {**delivered, **LINEAGE_COLUMNS}

    @property
    def column_descriptions(self) -> dict[str, str]:
        described = {column: contract.description for column, contract in self.columns.items() if contract.description}
        return {**described, **LINEAGE_DESCRIPTIONS}


def _column_contract(where: str, column: str, entry) -> ColumnContract:
    if isinstance(entry, str):
        return ColumnContract(type=entry.upper())
    if not isinstance(entry, dict) or "type" not in entry:
        raise SourceDefinitionError(f"{where}: column '{column}' needs a type (a string or a mapping with type)")
    unknown = set(entry) - COLUMN_RULES
    if unknown:
        raise SourceDefinitionError(f"{where}: column '{column}' has unknown rules {', '.join(sorted(unknown))}; "
                                    f"known: {', '.join(sorted(COLUMN_RULES))}")
    bounds = entry.get("range")
    if bounds is not None and (len(bounds) != 2 or bounds[0] > bounds[1]):
        raise SourceDefinitionError(f"{where}: column '{column}': range must be [min, max]")
    return ColumnContract(
        type=str(entry["type"]).upper(),
        description=" ".join(str(entry["description"]).split()) if entry.get("description") else None,
        nullable=bool(entry.get("nullable", True)),
        accepted=tuple(str(v) for v in entry["accepted"]) if "accepted" in entry else None,
        range=(float(bounds[0]), float(bounds[1])) if bounds is not None else None,
        pattern=entry.get("pattern"),
        formats=tuple(entry["formats"]) if "formats" in entry else None,
        references=entry.get("references"),
        quarantined=bool(entry.get("quarantined", False)),
        warn_because=" ".join(entry["warn_because"].split()) if entry.get("warn_because") else None,
    )


def load_sources(path: Path = SOURCES_FILE) -> dict[str, SourceDefinition]:
    try:
        entries = yaml.load(path.read_text(), Loader=SAFE_LOADER) or {}  # noqa: S506 (a safe loader)
    except yaml.YAMLError as error:
        raise SourceDefinitionError(f"{path.name}: not valid YAML: {error}") from None
    if not isinstance(entries, dict):
        raise SourceDefinitionError(f"{path.name}: must map source names to their definitions")
    sources = {}
    for name, entry in entries.items():
        where = f"{path.name}: source '{name}'"
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise SourceDefinitionError(f"{where}: a source name is lowercase letters, digits and '_' "
                                        "(it names a folder, a table and an asset)")
        if not isinstance(entry, dict):
            raise SourceDefinitionError(f"{where} must be a mapping")
        missing = {"description", "system", "format", "columns"} - entry.keys()
        if missing:
            raise SourceDefinitionError(f"{where} is missing {', '.join(sorted(missing))}")
        if unknown := set(entry) - SOURCE_FIELDS:
            raise SourceDefinitionError(f"{where} has unknown fields {', '.join(sorted(map(str, unknown)))}; "
                                        f"known: {', '.join(sorted(SOURCE_FIELDS))}")
        if entry["format"] not in FORMATS:
            raise SourceDefinitionError(f"{where}: format '{entry['format']}' is not one of {', '.join(FORMATS)}")
        cadence = entry.get("cadence", "daily")
        if cadence not in CADENCES:
            raise SourceDefinitionError(f"{where}: cadence '{cadence}' is not one of {', '.join(CADENCES)}")
        if not entry["columns"] or not isinstance(entry["columns"], dict):
            raise SourceDefinitionError(f"{where} declares no columns")
        columns = {str(c): _column_contract(where, str(c), e) for c, e in entry["columns"].items()}
        key = tuple(entry.get("key", {}).get("columns", ())) if isinstance(entry.get("key"), dict) else ()
        if set(key) - columns.keys():
            raise SourceDefinitionError(f"{where}: key columns {sorted(set(key) - columns.keys())} are not declared")
        sources[name] = SourceDefinition(
            name=name,
            description=" ".join(entry["description"].split()),
            system=entry["system"],
            format=entry["format"],
            columns=columns,
            key=key,
            key_warn_because=" ".join(((entry.get("key") or {}).get("warn_because") or "").split()) or None,
            cadence=cadence,
            allow_empty=bool(entry.get("allow_empty", False)),
            row_date=entry.get("row_date"),
        )
    for source in sources.values():
        for column, contract in source.columns.items():
            target = (contract.references or ".").split(".")
            if contract.references and (target[0] not in sources or target[1] not in sources[target[0]].columns):
                raise SourceDefinitionError(f"{path.name}: source '{source.name}': column '{column}' references "
                                            f"'{contract.references}', which is not a declared source column")
    return sources


SOURCES = load_sources()


CSV_OPTIONS = "header = true, all_varchar = true, delim = ',', quote = '\"', strict_mode = true"
LANDING_FILE_COLUMN = "_landing_file"  # the file each row was read from, in `reader_sql`


def reader_sql(source: SourceDefinition) -> str:
    """One DuckDB read of any number of the source's landing files (a list bound as $paths): the declared
    columns (text formats as delivered, Parquet cast to the contract types), the file each row came from
    and the row's position in the read (`ordinality`, in file order)."""
    if source.format == "parquet":
        columns = [f'CAST("{column}" AS {contract.type}) AS "{column}"' for column, contract in source.columns.items()]
    else:
        columns = [f'"{column}"' for column in source.columns]
    options = f"filename = '{LANDING_FILE_COLUMN}'"
    if source.format == "csv":
        function = f"read_csv($paths, {CSV_OPTIONS}, {options})"
    elif source.format == "jsonl":
        declared = ", ".join(f"'{column}': 'VARCHAR'" for column in source.columns)
        function = f"read_json($paths, format = 'newline_delimited', columns = {{{declared}}}, {options})"
    else:
        function = f"read_parquet($paths, {options})"
    return f"SELECT {', '.join(columns)}, {LANDING_FILE_COLUMN}, ordinality FROM {function} WITH ORDINALITY"
