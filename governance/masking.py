"""Personal data outside the warehouse: values the platform writes anywhere but the warehouse (check metadata,
alerts, log messages, lineage facets, MLflow, error messages) pass through `PersonalData.show` first.

Which columns are personal is the catalog's `pii:` on the dataset's columns; how each category is masked is
access.yml's `masking:`, the rule the governed query applies in SQL (governance.policy: `masking_sql` and its
Python form `masked_value`). Hashes are keyed for one audience, "operations" (the platform's own stores, read
by whoever operates it): a key derived from the data folder's masking secret, different from every governed
reader's. Fail closed: no usable secret redacts what would be hashed; a dataset the catalog does not know
has every column treated as personal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from governance.access import AccessDenied, masking_key
from governance.catalog import Catalog, CatalogError, MaskingRule, load_catalog
from governance.policy import REDACTED, masked_value

# Not a governed reader (those are JSON lists of role and attributes): its tokens join with no reader's.
OPERATIONS_AUDIENCE = "audience:operations"


def operations_key(folder: Path | None = None) -> str | None:
    """The hash key of the operations audience; None (hashes become redactions) without a usable secret."""
    try:
        return masking_key(folder, OPERATIONS_AUDIENCE)
    except (AccessDenied, OSError):
        return None


@dataclass(frozen=True)
class PersonalData:
    """The personal columns of one dataset and how a value of each is shown outside the warehouse."""

    dataset: str
    rules: dict[str, MaskingRule | None] = field(default_factory=dict)  # personal column -> its rule (None: redact)
    unknown: bool = False  # not in the catalog: every column is treated as personal
    folder: Path | None = None  # the data folder whose secret keys the hashes (default: PLATFORM_DATA_DIR)

    @cached_property
    def key(self) -> str | None:
        """Read (or created) only when a hash is shown."""
        return operations_key(self.folder)

    @property
    def holds_personal_data(self) -> bool:
        return self.unknown or bool(self.rules)

    def is_personal(self, column: str) -> bool:
        return self.unknown or column in self.rules

    @property
    def columns(self) -> set[str]:
        return set(self.rules)

    def show(self, column: str, value):
        """`value` of `column` as it may be written outside the warehouse: masked when the column is personal,
        as it is otherwise."""
        if not self.is_personal(column):
            return value
        rule = self.rules.get(column)
        return masked_value(rule, value, self.key if rule is not None and rule.rule == "hash" else None)

    def mentions_personal(self, sql: str) -> bool:
        """Whether an SQL expression of the dataset's columns (a row_date, say) reads a personal column."""
        words = {word.strip('"').lower() for word in _identifiers(sql)}
        return self.unknown or bool(words & {column.lower() for column in self.rules})


def _identifiers(sql: str) -> list[str]:
    return re.findall(r'"[^"]+"|[A-Za-z_][A-Za-z0-9_]*', sql)


def personal_data(dataset: str, folder: Path | None = None, catalog: Catalog | None = None) -> PersonalData:
    """The catalog's personal columns of `dataset` (an asset key such as raw/bookings) with their masking rules,
    keyed for the operations audience of the data folder."""
    catalog = catalog or load_catalog()
    try:
        entry = catalog.dataset(dataset)
    except (CatalogError, KeyError):
        return PersonalData(dataset, unknown=True, folder=folder)
    rules = {name: catalog.access.masking.get(column.pii) for name, column in entry.columns.items() if column.pii}
    return PersonalData(dataset, rules, folder=folder)


def mask_category(category: str, value, folder: Path | None = None, catalog: Catalog | None = None):
    """A value known only by its PII category (taxonomy.yml), masked by that category's rule."""
    catalog = catalog or load_catalog()
    rule = catalog.access.masking.get(category)
    return masked_value(rule, value, operations_key(folder) if rule and rule.rule == "hash" else None)


__all__ = ["OPERATIONS_AUDIENCE", "REDACTED", "PersonalData", "mask_category", "operations_key", "personal_data"]
