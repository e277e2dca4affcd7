"""The governance catalog as code: typed models over the YAML files in governance/catalog/.

This package never imports Dagster; platform_assets reads it to put owners and tags on assets.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

CATALOG_DIR = Path(__file__).with_name("catalog")


class CatalogError(ValueError):
    """The catalog is invalid or does not know a dataset; the message names the file and key."""


class Team(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str
    contact: str
    on_call: str


class Dataset(BaseModel):
    model_config = ConfigDict(extra="forbid")
    owner: str
    domain: str
    classification: Literal["public", "internal", "confidential", "restricted"]


class Catalog(BaseModel):
    teams: dict[str, Team]
    datasets: dict[str, Dataset]

    def dataset(self, key: str) -> Dataset:
        """Look a dataset up by asset key ('marts/flight_features') or by table name ('flight_features')."""
        if key in self.datasets:
            return self.datasets[key]
        matches = [name for name in self.datasets if name.rsplit("/", 1)[-1] == key]
        if len(matches) == 1:
            return self.datasets[matches[0]]
        if matches:
            raise CatalogError(f"dataset '{key}' is ambiguous: {', '.join(matches)}")
        raise CatalogError(f"dataset '{key}' is not in the catalog ({CATALOG_DIR / 'datasets.yml'})")

    def owner_of(self, key: str) -> Team:
        return self.teams[self.dataset(key).owner]


def _read(path: Path) -> dict:
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise CatalogError(f"{path}: cannot be read: {error}") from error
    if not isinstance(content, dict):
        raise CatalogError(f"{path}: must be a mapping of names to entries")
    return content


def _parse(path: Path, model: type[BaseModel]) -> dict:
    entries = {}
    for key, entry in _read(path).items():
        try:
            entries[str(key)] = model.model_validate(entry)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in error.errors())
            raise CatalogError(f"{path.name}: '{key}': {problems}") from None
    return entries


@cache
def load_catalog(directory: Path = CATALOG_DIR) -> Catalog:
    teams = _parse(directory / "teams.yml", Team)
    datasets = _parse(directory / "datasets.yml", Dataset)
    for key, dataset in datasets.items():
        if dataset.owner not in teams:
            raise CatalogError(f"datasets.yml: '{key}': owner '{dataset.owner}' is not a team in teams.yml")
    return Catalog(teams=teams, datasets=datasets)


def completeness_problems(catalog: Catalog, asset_keys: set[str]) -> list[str]:
    """Every asset needs exactly one catalog entry and every entry an asset."""
    problems = [f"asset '{key}' has no entry in datasets.yml" for key in sorted(asset_keys - catalog.datasets.keys())]
    problems += [
        f"datasets.yml entry '{key}' matches no asset" for key in sorted(catalog.datasets.keys() - asset_keys)
    ]
    return problems
