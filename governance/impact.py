"""What breaks, and whom to tell, when a dataset (or one of its columns) changes or fails. Pure functions."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from governance.catalog import Catalog, CatalogError, load_catalog
from governance.graph import AssetNode, downstream, load_asset_graph


@dataclass(frozen=True)
class AffectedConsumer:
    name: str
    kind: str
    criticality: str
    owner: str
    contact: str
    via: str  # the dataset it reads: the changed one itself, or a downstream one
    columns: list[str]


@dataclass(frozen=True)
class Notify:
    team: str
    contact: str
    on_call: str
    because: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Impact:
    dataset: str
    column: str | None
    owner: Notify
    downstream: list[dict]  # [{"dataset", "owner"}], nearest first
    consumers: list[AffectedConsumer]
    notify: list[Notify]  # every team to tell, the dataset's own owner first

    def as_dict(self) -> dict:
        return asdict(self)


def impact(catalog: Catalog, graph: dict[str, AssetNode], key: str, column: str | None = None) -> Impact:
    """Every downstream asset and consumer of `key`. With `column`, direct consumers count only when they
    read that column; there is no column-level lineage here, so everything downstream is kept (conservative)."""
    key = catalog.dataset_key(key)
    dataset = catalog.datasets[key]
    if column is not None and dataset.columns and column not in dataset.columns:
        raise CatalogError(f"'{column}' is not a column of {key} in datasets.yml")
    below = [k for k in downstream(graph, key) if k in catalog.datasets]
    consumers = []
    for name, consumer in catalog.consumers.items():
        for read, columns in consumer.depends_on.items():
            direct = read == key and (column is None or column in columns)
            if direct or read in below:
                consumers.append(AffectedConsumer(name, consumer.kind, consumer.criticality, consumer.owner,
                                                  consumer.contact, read, columns if direct else []))
                break
    reasons: dict[str, list[str]] = {dataset.owner: [f"owns {key}"]}
    for below_key in below:
        reasons.setdefault(catalog.datasets[below_key].owner, []).append(f"owns {below_key} (downstream)")
    for consumer in consumers:
        reasons.setdefault(consumer.owner, []).append(f"runs {consumer.name} ({consumer.criticality}), reads {consumer.via}")
    notify = [_notify(catalog, team, because) for team, because in reasons.items()]
    return Impact(
        dataset=key, column=column, owner=notify[0],
        downstream=[{"dataset": k, "owner": f"team:{catalog.datasets[k].owner}"} for k in below],
        consumers=consumers, notify=notify,
    )


def _notify(catalog: Catalog, team_name: str, because: list[str]) -> Notify:
    team = catalog.teams[team_name]
    return Notify(f"team:{team_name}", team.contact, team.on_call, because)


def impact_of(key: str, column: str | None = None) -> Impact:
    """impact() over the repository's catalog and asset graph: what alerting calls when `key` fails."""
    return impact(load_catalog(), load_asset_graph(), key, column)
