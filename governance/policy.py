"""Access decisions: what a role may read of a dataset, column by column. Pure functions over the catalog;
governance.access enforces them on the warehouse."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from governance.catalog import Catalog, Column, MaskingRule, RowFilter


# An identifier numbered over rows outside a reader's row filter keeps only its identity: a keyed hash is the one
# rule that hides the order and the gaps and still joins (the same value, the same token, in one reader's query).
SEQUENCE_MASKING = MaskingRule(rule="hash")


@dataclass(frozen=True)
class ColumnDecision:
    access: str  # full | masked | denied
    reason: str
    masking: MaskingRule | None = None
    crosses_row_filter: bool = False  # the value depends on rows outside the reader's row filter

    @property
    def label(self) -> str:
        label = f"masked ({self.masking.rule})" if self.access == "masked" else self.access
        return f"{label}: crosses row filter" if self.crosses_row_filter else label


@dataclass(frozen=True)
class DatasetDecision:
    role: str
    dataset: str
    allowed: bool
    reason: str
    row_filter: RowFilter | None = None
    columns: dict[str, ColumnDecision] | None = None

    @property
    def readable_columns(self) -> list[str]:
        return [name for name, decision in (self.columns or {}).items() if decision.access != "denied"]


def decide(catalog: Catalog, role_name: str, key: str, columns: Iterable[str] | None = None) -> DatasetDecision:
    """What `role_name` may read of dataset `key`. `columns` are the columns the table really has (default:
    the catalog's); a column the catalog does not classify is denied."""
    role = catalog.access.roles.get(role_name)
    if role is None:
        return DatasetDecision(role_name, key, False, f"unknown role '{role_name}': denied by default")
    dataset = catalog.datasets.get(key)
    if dataset is None or not dataset.published:
        return DatasetDecision(role_name, key, False, f"'{key}' is not a published dataset: no role reads it")
    grant = role.datasets.get(key)
    if grant is None or grant.access == "denied":
        why = "denied by its grant" if grant else "not granted"
        return DatasetDecision(role_name, key, False, f"role '{role_name}' may not read '{key}' ({why})")
    row_filter = role.row_filter if grant.access == "row_filtered" else None
    decisions = {
        name: _row_filter_decision(
            _column_decision(catalog, role_name, grant.access, grant.columns.get(name), dataset.columns.get(name)),
            dataset.columns.get(name), row_filter)
        for name in (dataset.columns if columns is None else columns)
    }
    return DatasetDecision(role_name, key, True, f"granted {grant.access}", row_filter, decisions)


def _column_decision(catalog: Catalog, role_name: str, access: str, override: str | None,
                     column: Column | None) -> ColumnDecision:
    if column is None:
        return ColumnDecision("denied", "unclassified: the catalog does not list this column")
    role = catalog.access.roles[role_name]
    masking = catalog.access.masking.get(column.pii) if column.pii else None

    def masked(why: str) -> ColumnDecision:
        if masking is None:
            return ColumnDecision("denied", f"{why}; no masking rule for it")
        return ColumnDecision("masked", why, masking)

    if override == "denied":
        return ColumnDecision("denied", "denied by the grant")
    if override == "masked":
        return masked("masked by the grant")
    if override == "full":
        return ColumnDecision("full", "full by the grant")
    if catalog.level(column.classification) > catalog.level(role.clearance):
        why = f"{column.classification}, above the role's clearance ({role.clearance})"
        return masked(why) if column.pii else ColumnDecision("denied", why)
    if column.pii and access == "masked":
        return masked("the grant masks personal data")
    if column.pii and column.pii not in role.pii_in_clear:
        return masked(f"pii '{column.pii}' not cleared for the role")
    return ColumnDecision("full", f"{column.classification}, within clearance")


def _row_filter_decision(decision: ColumnDecision, column: Column | None,
                         row_filter: RowFilter | None) -> ColumnDecision:
    """A row-filtered reader never gets a value computed from rows its filter leaves out (it could subtract its
    own rows from a total and recover the others'); an identifier numbered over such rows is hashed."""
    if decision.access == "denied" or row_filter is None or not column.crosses_row_filter(row_filter.column):
        return decision
    rows = ("all rows" if column.other_rows == "all_rows"
            else f"the rows sharing its {', '.join(column.other_rows)}")
    beyond = f"over {rows}, across the row filter on {row_filter.column}"
    if column.computed_over is not None:
        return ColumnDecision("denied", f"computed {beyond}", crosses_row_filter=True)
    return ColumnDecision("masked", f"numbered {beyond}: keyed hash", SEQUENCE_MASKING, crosses_row_filter=True)


REDACTED = "***"
HASH_CHARACTERS = 16


def masking_sql(rule: MaskingRule, column_sql: str, key_parameter: str = "$masking_key",
                dialect: str = "duckdb") -> str:
    """SQL that replaces a column's values by their masked form. NULL stays NULL. The hash is keyed with a
    secret bound as `key_parameter` (on PostgreSQL, an expression that looks the reader's key up), so a token
    cannot be recomputed from a guessed value; a NULL key hashes to NULL. `dialect` is duckdb (the governed
    query's sandbox) or postgres (the views of `governance apply`): the same rule, the same values.
    `masked_value` is the same rule in Python (tests/test_personal_data.py compares the two)."""
    if dialect not in ("duckdb", "postgres"):
        raise ValueError(f"unknown SQL dialect {dialect}")
    postgres = dialect == "postgres"
    text = f"CAST({column_sql} AS {'text' if postgres else 'VARCHAR'})"
    if rule.rule == "redact":
        return f"CASE WHEN {column_sql} IS NULL THEN NULL ELSE '***' END"
    if rule.rule == "hash":
        if postgres:
            return (f"substr(encode(sha256(convert_to({key_parameter} || {text}, 'UTF8')), 'hex'), 1, "
                    f"{HASH_CHARACTERS})")
        return f"substr(sha256({key_parameter} || {text}), 1, {HASH_CHARACTERS})"
    if rule.rule == "keep_last":
        return f"repeat('*', greatest(length({text}) - {rule.keep}, 0)) || right({text}, {rule.keep})"
    if rule.rule == "year":
        return f"CAST(EXTRACT(YEAR FROM {column_sql}) AS integer)" if postgres else f"year({column_sql})"
    raise ValueError(f"unknown masking rule {rule.rule}")


def masked_value(rule: MaskingRule | None, value, key: str | None):
    """`masking_sql` in Python, for values that leave the warehouse (check metadata, alerts, logs, lineage):
    the same masked form DuckDB gives for the same value and key. None stays None. Fails closed: no rule, or a
    hash without a key, redacts; a value `year` cannot read as a date (a malformed one as delivered) redacts."""
    if value is None:
        return None
    if rule is None or rule.rule == "redact" or (rule.rule == "hash" and not key):
        return REDACTED
    text = _as_varchar(value)
    if rule.rule == "hash":
        return hashlib.sha256((key + text).encode("utf-8")).hexdigest()[:HASH_CHARACTERS]
    if rule.rule == "keep_last":
        return "*" * max(len(text) - rule.keep, 0) + text[len(text) - min(rule.keep, len(text)):]
    if rule.rule == "year":
        year = _year(value)
        return REDACTED if year is None else year
    raise ValueError(f"unknown masking rule {rule.rule}")


def _as_varchar(value) -> str:
    """The text DuckDB's CAST(value AS VARCHAR) gives (dates ISO, booleans lowercase)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _year(value) -> int | None:
    if isinstance(value, dt.date):  # a datetime is a date too
        return value.year
    try:
        return dt.date.fromisoformat(str(value).strip()).year
    except ValueError:
        try:
            return dt.datetime.fromisoformat(str(value).strip()).year
        except ValueError:
            return None


def access_matrix(catalog: Catalog, key: str) -> dict:
    """Role x column of one dataset: {"roles": {role: {"dataset": reason, "row_filter": ..., "columns": {c: label},
    "crossing_row_filter": {c: why the row-filtered role gets c denied or hashed}}}}."""
    key = catalog.dataset_key(key)
    roles = {}
    for role_name in catalog.access.roles:
        decision = decide(catalog, role_name, key)
        roles[role_name] = {
            "dataset": "allowed: " + decision.reason if decision.allowed else "denied: " + decision.reason,
            "row_filter": (f"{decision.row_filter.column} = <{decision.row_filter.attribute}>"
                           if decision.row_filter else None),
            "columns": {name: c.label for name, c in (decision.columns or {}).items()} if decision.allowed
            else dict.fromkeys(catalog.datasets[key].columns, "denied"),
            "crossing_row_filter": {name: c.reason for name, c in (decision.columns or {}).items()
                                    if c.crosses_row_filter},
        }
    return {"dataset": key, "columns": list(catalog.datasets[key].columns), "roles": roles}
