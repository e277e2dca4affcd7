"""The governance catalog as code: typed models over the YAML files in governance/catalog/.

    teams.yml       teams: members, contact, on-call
    taxonomy.yml    classification levels (ordered), domains, PII categories
    datasets.yml    one entry per Dagster asset / dbt model: owner, steward, classification, columns, SLA, lifecycle
    consumers.yml   dashboards, services and models that read published datasets, and the columns they use
    access.yml      masking per PII category and the roles' access policies
    approvals.yml   approved breaking changes of published datasets

This package never imports Dagster; platform_assets reads it to put owners and tags on assets.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

from governance.paths import CATALOG_DIR

# libyaml's parser when PyYAML has it (its wheels do): the same documents, read about 8 times faster, and every
# code location load reads the catalog.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Access = Literal["full", "masked", "row_filtered", "denied"]
ColumnAccess = Literal["full", "masked", "denied"]


class CatalogError(ValueError):
    """The catalog is invalid or does not know a dataset; the message names the file and key."""


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Member(_Entry):
    name: str
    email: str
    role: str | None = None  # the access role (access.yml) the member reads governed data with; none: no access
    attributes: dict[str, str] = {}  # what the role's row filter compares with (carrier: UA)


class Team(_Entry):
    description: str
    members: list[Member] = Field(min_length=1)
    contact: str
    on_call: str


class Level(_Entry):
    name: str
    description: str


class Domain(_Entry):
    description: str
    owner: str


class PiiCategory(_Entry):
    description: str
    classification: str  # the lowest classification a column of this category may have


class Taxonomy(_Entry):
    classifications: list[Level] = Field(min_length=1)  # from least to most sensitive
    domains: dict[str, Domain]
    pii_categories: dict[str, PiiCategory]


class FreshnessSla(_Entry):
    """How old the newest materialization may get before the platform warns, then fails."""

    warn_after_hours: PositiveInt
    fail_after_hours: PositiveInt

    @model_validator(mode="after")
    def _ordered(self) -> FreshnessSla:
        if self.fail_after_hours < self.warn_after_hours:
            raise ValueError("fail_after_hours must be at least warn_after_hours")
        return self

    @property
    def warn_after(self) -> dt.timedelta:
        return dt.timedelta(hours=self.warn_after_hours)

    @property
    def fail_after(self) -> dt.timedelta:
        return dt.timedelta(hours=self.fail_after_hours)


class Budget(_Entry):
    """What one materialization of a dataset may cost (docs/cost.md): wall and CPU seconds per day of data it
    covers (a materialization without partitions counts as one day), and peak memory. Each is optional; one
    over its limit is an alert to the owner."""

    seconds_per_day: float | None = Field(None, gt=0)
    cpu_seconds_per_day: float | None = Field(None, gt=0)
    peak_memory_mb: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _something_limited(self) -> Budget:
        if self.seconds_per_day is None and self.cpu_seconds_per_day is None and self.peak_memory_mb is None:
            raise ValueError("a budget limits seconds_per_day, cpu_seconds_per_day or peak_memory_mb")
        return self


class Lifecycle(_Entry):
    status: Literal["active", "deprecated"] = "active"
    sunset: dt.date | None = None
    replacement: str | None = None

    @model_validator(mode="after")
    def _deprecation_is_complete(self) -> Lifecycle:
        if self.status == "deprecated" and (self.sunset is None or self.replacement is None):
            raise ValueError("a deprecated dataset needs a sunset date and a replacement")
        if self.status == "active" and (self.sunset or self.replacement):
            raise ValueError("sunset and replacement belong to deprecated datasets only")
        return self


OtherRows = Literal["all_rows"] | list[str]


class Column(_Entry):
    type: str | None = None  # DuckDB type; required for published datasets (their contract)
    classification: str
    pii: str | None = None
    description: str | None = None
    # When the value depends on other rows than its own: every row ('all_rows') or the rows that share this
    # row's values of the listed columns. A row filter on a column not listed leaves some of those rows out,
    # so its readers could recover them: computed_over (a window, an aggregate, a join to other rows) is
    # denied to them, sequence_over (an identifier numbered over those rows) reaches them as a keyed hash.
    computed_over: OtherRows | None = None
    sequence_over: OtherRows | None = None

    @model_validator(mode="after")
    def _other_rows_named_once(self) -> Column:
        if self.computed_over is not None and self.sequence_over is not None:
            raise ValueError("a column is computed_over or sequence_over other rows, not both")
        if self.other_rows == []:
            raise ValueError("name the columns the rows share, or write all_rows")
        return self

    @property
    def other_rows(self) -> OtherRows | None:
        """The rows its value depends on besides its own (see computed_over), or None."""
        return self.computed_over if self.computed_over is not None else self.sequence_over

    def crosses_row_filter(self, filter_column: str) -> bool:
        """Its value depends on rows that a filter on `filter_column` leaves out."""
        return self.other_rows is not None and (self.other_rows == "all_rows" or filter_column not in self.other_rows)


class Dataset(_Entry):
    owner: str
    steward: str
    domain: str
    description: str
    classification: str
    published: bool = False  # consumers read it: full column contract, access policies, breaking-change review
    columns: dict[str, Column] = {}
    freshness_sla: FreshnessSla | None = None
    lifecycle: Lifecycle = Lifecycle()
    budget: Budget | None = None  # what a materialization may cost (governance/cost.py); none: only the trend

    @property
    def pii_categories(self) -> list[str]:
        return sorted({column.pii for column in self.columns.values() if column.pii})


class Consumer(_Entry):
    kind: Literal["dashboard", "service", "ml_model", "report", "notebook"]
    description: str
    owner: str
    contact: str
    criticality: Literal["low", "medium", "high", "critical"]
    role: str  # the access role it reads with
    attributes: dict[str, str] = {}  # what the role's row filter compares with (carrier: UA)
    asset: str | None = None  # the Dagster asset that implements it, when it is one
    depends_on: dict[str, list[str]] = Field(min_length=1)  # dataset -> columns it reads


class MaskingRule(_Entry):
    rule: Literal["redact", "hash", "keep_last", "year"]
    keep: PositiveInt | None = None  # keep_last: how many trailing characters stay readable

    @model_validator(mode="after")
    def _keep_only_for_keep_last(self) -> MaskingRule:
        if (self.rule == "keep_last") != (self.keep is not None):
            raise ValueError("'keep' is required by keep_last and only by it")
        return self


class RowFilter(_Entry):
    """Rows where `column` equals the reader's attribute `attribute` (for example their carrier)."""

    column: str
    attribute: str


class Grant(_Entry):
    access: Access
    columns: dict[str, ColumnAccess] = {}

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value):
        return {"access": value} if isinstance(value, str) else value


MEMORY = re.compile(r"(\d+(?:\.\d+)?)\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)
MEMORY_UNITS = {"kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
                "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
MIN_MEMORY = 16 * 2**20  # below this DuckDB cannot hold even a small query's working set


class Limits(_Entry):
    """What one governed query may use: wall-clock seconds, and memory for each of its two databases (the
    sandbox and the source that reads the warehouse). Either may be left to the catalog-wide default."""

    query_seconds: float | None = Field(None, gt=0, le=3600)
    memory: str | None = None  # "1GB", "512MiB"

    @field_validator("memory")
    @classmethod
    def _memory_size(cls, value: str | None) -> str | None:
        if value is None:
            return None
        match = MEMORY.fullmatch(value.strip())
        if not match:
            raise ValueError(f"memory '{value}' must be a size such as 512MB or 1GB "
                             "(units KB MB GB TB KiB MiB GiB TiB)")
        if float(match[1]) * MEMORY_UNITS[match[2].lower()] < MIN_MEMORY:
            raise ValueError(f"memory '{value}' is below the 16MiB a query needs")
        return value.strip()

    @property
    def memory_bytes(self) -> int:
        match = MEMORY.fullmatch(self.memory)
        return int(float(match[1]) * MEMORY_UNITS[match[2].lower()])


class Role(_Entry):
    description: str
    clearance: str  # reads columns up to this classification (PII only when its category is cleared)
    pii_in_clear: list[str] = []
    row_filter: RowFilter | None = None
    datasets: dict[str, Grant] = {}
    limits: Limits = Limits()  # what the role leaves unset comes from the catalog-wide limits


class AccessPolicy(_Entry):
    masking: dict[str, MaskingRule]
    roles: dict[str, Role]
    limits: Limits  # the default of every role: required and complete, so no role is unlimited by omission

    @model_validator(mode="after")
    def _default_limits_complete(self) -> AccessPolicy:
        missing = [name for name in ("query_seconds", "memory") if getattr(self.limits, name) is None]
        if missing:
            raise ValueError(f"limits: {' and '.join(missing)} required (the default of every role)")
        return self

    def limits_of(self, role: str) -> Limits:
        """The role's limits, each one the role's own or else the catalog-wide default."""
        own = self.roles[role].limits
        return Limits(query_seconds=own.query_seconds or self.limits.query_seconds,
                      memory=own.memory or self.limits.memory)


class Approval(_Entry):
    dataset: str
    column: str
    change: Literal["removed", "renamed", "type_changed"]
    approved_by: str
    approved_on: dt.date
    reason: str


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True)

    directory: Path
    teams: dict[str, Team]
    taxonomy: Taxonomy
    datasets: dict[str, Dataset]
    consumers: dict[str, Consumer]
    access: AccessPolicy
    approvals: list[Approval]
    digest: str = ""  # sha256 of the YAML files as loaded: the policy in effect, recorded with every governed read

    def dataset_key(self, name: str) -> str:
        """The catalog key of a dataset named by asset key ('marts/flights'), relation ('marts.flights') or
        table name ('flights': the published dataset of that name, or the only dataset with it)."""
        if name in self.datasets:
            return name
        if name.replace(".", "/", 1) in self.datasets:
            return name.replace(".", "/", 1)
        matches = [key for key in self.datasets if key.rsplit("/", 1)[-1] == name]
        published = [key for key in matches if self.datasets[key].published]
        if len(matches) == 1 or len(published) == 1:  # a bare table name means the published one, if any
            return (published or matches)[0]
        if matches:
            raise CatalogError(f"dataset '{name}' is ambiguous: {', '.join(matches)}")
        raise CatalogError(f"dataset '{name}' is not in the catalog ({self.directory / 'datasets.yml'})")

    def dataset(self, key: str) -> Dataset:
        """Look a dataset up by asset key ('marts/flight_features') or by table name ('flight_features')."""
        return self.datasets[self.dataset_key(key)]

    def owner_of(self, key: str) -> Team:
        return self.teams[self.dataset(key).owner]

    def consumers_of(self, key: str) -> dict[str, Consumer]:
        """The consumers that read this dataset directly (see governance.impact for everything downstream)."""
        key = self.dataset_key(key)
        return {name: consumer for name, consumer in self.consumers.items() if key in consumer.depends_on}

    def level(self, classification: str) -> int:
        return [level.name for level in self.taxonomy.classifications].index(classification)


def _read(path: Path, kind: type = dict):
    try:
        content = yaml.load(path.read_text(), Loader=SAFE_LOADER)  # noqa: S506 (a safe loader)
    except (OSError, yaml.YAMLError) as error:
        raise CatalogError(f"{path}: cannot be read: {error}") from error
    content = kind() if content is None else content
    if not isinstance(content, kind):
        raise CatalogError(f"{path}: must be a {'mapping of names to entries' if kind is dict else 'list'}")
    return content


def _problems(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in error.errors())


def _parse(file: str, entries: dict, model: type[BaseModel], where: str = "") -> dict:
    parsed = {}
    for key, entry in entries.items():
        try:
            parsed[str(key)] = model.model_validate(entry)
        except ValidationError as error:
            raise CatalogError(f"{file}: '{where}{key}': {_problems(error)}") from None
    return parsed


def _parse_one(file: str, entry, model: type[BaseModel], where: str):
    try:
        return model.model_validate(entry)
    except ValidationError as error:
        raise CatalogError(f"{file}: {where}: {_problems(error)}") from None


def _digest(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*.yml")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return "sha256:" + digest.hexdigest()


@cache
def load_catalog(directory: Path = CATALOG_DIR) -> Catalog:
    directory = Path(directory)
    access = _read(directory / "access.yml")
    roles = _parse("access.yml", access.pop("roles", {}) or {}, Role, "roles.")
    if "limits" not in access:
        raise CatalogError("access.yml: limits: required: the time and memory every governed query may use "
                           "(query_seconds, memory), so that no role is unlimited by omission")
    limits = _parse_one("access.yml", access.pop("limits"), Limits, "limits")
    try:
        policy = AccessPolicy(
            masking=_parse("access.yml", access.pop("masking", {}) or {}, MaskingRule, "masking."), roles=roles,
            limits=limits)
    except ValidationError as error:
        raise CatalogError(f"access.yml: {_problems(error)}") from None
    catalog = Catalog(
        directory=directory,
        digest=_digest(directory),
        teams=_parse("teams.yml", _read(directory / "teams.yml"), Team),
        taxonomy=_parse_one("taxonomy.yml", _read(directory / "taxonomy.yml"), Taxonomy, "taxonomy"),
        datasets=_parse("datasets.yml", _read(directory / "datasets.yml"), Dataset),
        consumers=_parse("consumers.yml", _read(directory / "consumers.yml"), Consumer),
        access=policy,
        approvals=[_parse_one("approvals.yml", entry, Approval, f"entry {index}")
                   for index, entry in enumerate(_read(directory / "approvals.yml", list), 1)],
    )
    if access:
        raise CatalogError(f"access.yml: unknown section(s) {', '.join(map(str, access))}; "
                           "expected masking, limits, roles")
    problems = reference_problems(catalog)
    if problems:
        raise CatalogError("; ".join(problems))
    return catalog


def reference_problems(catalog: Catalog) -> list[str]:
    """Every name an entry uses must be defined: teams, levels, domains, PII categories, datasets, columns, roles."""
    levels = [level.name for level in catalog.taxonomy.classifications]
    categories = catalog.taxonomy.pii_categories
    problems = []

    def need(condition: bool, where: str, message: str) -> None:
        if not condition:
            problems.append(f"{where}: {message}")

    for name, domain in catalog.taxonomy.domains.items():
        need(domain.owner in catalog.teams, f"taxonomy.yml: domains.{name}", f"owner '{domain.owner}' is not a team")
    for name, category in categories.items():
        need(category.classification in levels, f"taxonomy.yml: pii_categories.{name}",
             f"classification '{category.classification}' is not one of {levels}")
    for key, dataset in catalog.datasets.items():
        where = f"datasets.yml: '{key}'"
        need(dataset.owner in catalog.teams, where, f"owner '{dataset.owner}' is not a team in teams.yml")
        team = catalog.teams.get(dataset.owner)
        need(team is None or dataset.steward in {m.email for m in team.members}, where,
             f"steward '{dataset.steward}' is not a member of team '{dataset.owner}'")
        need(dataset.domain in catalog.taxonomy.domains, where, f"domain '{dataset.domain}' is not in taxonomy.yml")
        need(dataset.classification in levels, where, f"classification '{dataset.classification}' is not one of {levels}")
        need(dataset.lifecycle.replacement in (None, *catalog.datasets), where,
             f"lifecycle.replacement '{dataset.lifecycle.replacement}' is not a dataset")
        need(not dataset.published or bool(dataset.columns), where, "a published dataset must list its columns")
        for name, column in dataset.columns.items():
            at = f"{where}: columns.{name}"
            if column.classification not in levels:
                problems.append(f"{at}: classification '{column.classification}' is not one of {levels}")
                continue
            need(not dataset.published or column.type is not None, at, "a published dataset's columns need a type")
            if dataset.classification in levels:
                need(levels.index(column.classification) <= levels.index(dataset.classification), at,
                     f"classified {column.classification}, above its dataset ({dataset.classification})")
            if isinstance(column.other_rows, list):
                need(set(column.other_rows) <= set(dataset.columns), at,
                     f"{'computed_over' if column.computed_over else 'sequence_over'} names "
                     f"{sorted(set(column.other_rows) - set(dataset.columns))}, not columns of {key}")
            if column.pii is not None:
                category = categories.get(column.pii)
                need(category is not None, at, f"pii category '{column.pii}' is not in taxonomy.yml")
                if category is not None and category.classification in levels:
                    need(levels.index(column.classification) >= levels.index(category.classification), at,
                         f"pii '{column.pii}' must be classified at least {category.classification}")
    for name, consumer in catalog.consumers.items():
        where = f"consumers.yml: '{name}'"
        need(consumer.owner in catalog.teams, where, f"owner '{consumer.owner}' is not a team in teams.yml")
        problems += _principal_problems(catalog, where, consumer.role, consumer.attributes)
        need(consumer.asset in (None, *catalog.datasets), where, f"asset '{consumer.asset}' is not a dataset")
        for key in consumer.depends_on:
            dataset = catalog.datasets.get(key)
            need(dataset is not None and dataset.published, f"{where}: depends_on", f"'{key}' is not a published dataset")
    members: dict[str, str] = {}
    for team_name, team in catalog.teams.items():
        for member in team.members:
            where = f"teams.yml: '{team_name}'.members.{member.email}"
            if member.role is None:
                need(not member.attributes, where, "attributes without a role")
                continue
            problems += _principal_problems(catalog, where, member.role, member.attributes)
            need(member.email not in members and member.email not in catalog.consumers, where,
                 f"principal '{member.email}' is defined twice (also {members.get(member.email, 'a consumer')}): "
                 "give it a role in one place")
            members[member.email] = f"team '{team_name}'"
    for category in catalog.access.masking:
        need(category in categories, f"access.yml: masking.{category}", "not a pii category in taxonomy.yml")
    used = {column.pii: key for key, dataset in catalog.datasets.items() for column in dataset.columns.values()
            if column.pii}
    for category, key in sorted(used.items()):
        need(category in catalog.access.masking, "access.yml: masking",
             f"no rule for pii category '{category}' (used by {key}): its values could be shown neither masked "
             "in governed reads nor in logs")
    for name, role in catalog.access.roles.items():
        problems += _role_problems(catalog, name, role, levels)
    for index, approval in enumerate(catalog.approvals, 1):
        need(approval.dataset in catalog.datasets, f"approvals.yml: entry {index}",
             f"dataset '{approval.dataset}' is not in the catalog")
    return problems


ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def _principal_problems(catalog: Catalog, where: str, role_name: str, attributes: dict[str, str]) -> list[str]:
    """A principal reads with a role of access.yml and has every attribute its row filter compares with."""
    role = catalog.access.roles.get(role_name)
    if role is None:
        return [f"{where}: role '{role_name}' is not in access.yml"]
    problems = [f"{where}: attribute '{name}' must be lowercase letters, digits and '_', with one short printable "
                "value" for name, value in attributes.items()
                if not ATTRIBUTE_NAME.fullmatch(name) or not value.isprintable() or not 0 < len(value) <= 200]
    if role.row_filter and role.row_filter.attribute not in attributes:
        problems.append(f"{where}: role '{role_name}' filters rows by the attribute '{role.row_filter.attribute}': "
                        "give it under attributes")
    return problems


def _role_problems(catalog: Catalog, name: str, role: Role, levels: list[str]) -> list[str]:
    where = f"access.yml: roles.{name}"
    problems = []
    if role.clearance not in levels:
        return [f"{where}: clearance '{role.clearance}' is not one of {levels}"]
    problems += [f"{where}: pii_in_clear '{c}' is not a pii category" for c in role.pii_in_clear
                 if c not in catalog.taxonomy.pii_categories]
    for key, grant in role.datasets.items():
        dataset = catalog.datasets.get(key)
        if dataset is None or not dataset.published:
            problems.append(f"{where}.datasets: '{key}' is not a published dataset")
            continue
        if grant.access == "row_filtered":
            if role.row_filter is None:
                problems.append(f"{where}.datasets.{key}: row_filtered needs the role's row_filter")
            elif role.row_filter.column not in dataset.columns:
                problems.append(f"{where}.datasets.{key}: row_filtered, but the dataset has no column "
                                f"'{role.row_filter.column}' to filter on")
            else:
                problems += [f"{where}.datasets.{key}.columns.{column_name}: full access to a column computed over "
                             f"rows outside the row filter on {role.row_filter.column}; deny it instead"
                             for column_name, access in grant.columns.items() if access == "full"
                             and column_name in dataset.columns
                             and dataset.columns[column_name].crosses_row_filter(role.row_filter.column)]
        for column_name, access in grant.columns.items():
            at = f"{where}.datasets.{key}.columns.{column_name}"
            column = dataset.columns.get(column_name)
            if column is None:
                problems.append(f"{at}: not a column of {key}")
            elif access == "masked" and column.pii is None:
                problems.append(f"{at}: only PII columns can be masked; deny it instead")
            elif access == "full" and column.classification in levels and (
                levels.index(column.classification) > levels.index(role.clearance)
                or (column.pii is not None and column.pii not in role.pii_in_clear)
            ):
                problems.append(f"{at}: full access beyond the role's clearance ({role.clearance}, pii in clear: "
                                f"{role.pii_in_clear or 'none'}); raise the clearance or mask it")
    return problems


def completeness_problems(catalog: Catalog, asset_keys: set[str]) -> list[str]:
    """Every asset needs exactly one catalog entry and every entry an asset."""
    problems = [f"asset '{key}' has no entry in datasets.yml" for key in sorted(asset_keys - catalog.datasets.keys())]
    problems += [
        f"datasets.yml entry '{key}' matches no asset" for key in sorted(catalog.datasets.keys() - asset_keys)
    ]
    return problems
