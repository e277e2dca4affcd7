"""Breaking changes of published datasets: the catalog's columns are the contract consumers rely on; the
warehouse (information_schema) and the dbt manifest say what is really there. Pure functions."""

from __future__ import annotations

import re
from dataclasses import dataclass

from governance.catalog import Catalog

# Types a column may widen to without breaking a reader (anything else that changes is incompatible).
_INTEGERS = ["TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"]
_WIDENINGS = {
    **{small: set(_INTEGERS[i + 1:]) | {"DOUBLE"} for i, small in enumerate(_INTEGERS)},
    "FLOAT": {"DOUBLE"},
    "DATE": {"TIMESTAMP"},
}
_ALIASES = {"INT": "INTEGER", "INT4": "INTEGER", "INT8": "BIGINT", "LONG": "BIGINT", "INT2": "SMALLINT",
            "SHORT": "SMALLINT", "INT1": "TINYINT", "REAL": "FLOAT", "FLOAT4": "FLOAT", "FLOAT8": "DOUBLE",
            "TEXT": "VARCHAR", "STRING": "VARCHAR", "BOOL": "BOOLEAN", "DATETIME": "TIMESTAMP"}


@dataclass(frozen=True)
class SchemaChange:
    dataset: str
    column: str
    change: str  # removed | renamed | type_changed
    detail: str
    source: str  # where the actual schema came from: warehouse | dbt manifest | consumers.yml

    def describe(self) -> str:
        return f"{self.dataset}.{self.column} {self.change}{f' ({self.detail})' if self.detail else ''} [{self.source}]"


def normalized_type(kind: str) -> str:
    kind = re.sub(r"\s+", " ", kind.strip().upper())
    return _ALIASES.get(kind, kind)


def is_compatible(old: str, new: str) -> bool:
    """A reader of `old` still works on `new`: equal or widened (bigger integers, integers to DOUBLE, FLOAT to
    DOUBLE, DATE to TIMESTAMP)."""
    old, new = normalized_type(old), normalized_type(new)
    return old == new or new in _WIDENINGS.get(old, set())


def schema_changes(key: str, contract: dict[str, str | None], actual: dict[str, str | None],
                   source: str) -> list[SchemaChange]:
    """Contract columns missing from `actual` (a missing column with exactly one same-typed newcomer is taken as
    renamed) and columns whose type changed incompatibly. A None type is unknown and never compared."""
    removed = [c for c in contract if c not in actual]
    added = [c for c in actual if c not in contract]

    def newcomers(column: str) -> set[str]:
        return {new for new in added if contract[column] is None or actual[new] is None
                or normalized_type(actual[new]) == normalized_type(contract[column])}

    changes = []
    for column in removed:
        mine = newcomers(column)
        others = set().union(*(newcomers(other) for other in removed if other != column))
        if len(mine) == 1 and not mine & others:
            changes.append(SchemaChange(key, column, "renamed", f"to {mine.pop()}?", source))
        else:
            changes.append(SchemaChange(key, column, "removed", "", source))
    for column, kind in contract.items():
        new = actual.get(column)
        if column in actual and kind is not None and new is not None and not is_compatible(kind, new):
            changes.append(SchemaChange(key, column, "type_changed", f"{normalized_type(kind)} -> {normalized_type(new)}", source))
    return changes


def contract_of(catalog: Catalog, key: str) -> dict[str, str | None]:
    return {name: column.type for name, column in catalog.datasets[key].columns.items()}


def consumer_contract_changes(catalog: Catalog) -> list[SchemaChange]:
    """A consumer reading a column the contract no longer lists is broken by the contract itself."""
    return [
        SchemaChange(key, column, "removed", f"{name} reads it", "consumers.yml")
        for name, consumer in catalog.consumers.items()
        for key, columns in consumer.depends_on.items() if key in catalog.datasets
        for column in columns if column not in catalog.datasets[key].columns
    ]


def affected_consumers(catalog: Catalog, change: SchemaChange) -> list[str]:
    return [name for name, consumer in catalog.consumers.items()
            if change.column in consumer.depends_on.get(change.dataset, [])]


def approval_for(catalog: Catalog, change: SchemaChange):
    kinds = {change.change} | ({"removed", "renamed"} if change.change in ("removed", "renamed") else set())
    return next((a for a in catalog.approvals
                 if a.dataset == change.dataset and a.column == change.column and a.change in kinds), None)
