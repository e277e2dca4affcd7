"""The model cards of the data folder, by the catalog dataset that registers their model: each version's
`model_card.json` in the MLflow artifact store (<data>/mlflow/artifacts/<run>/artifacts/), tied to a dataset by the
OpenLineage events the platform writes, in which the asset's job (named after its asset) outputs the registered
model. Files only: no MLflow, no Dagster."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from governance.catalog import Catalog
from governance.check_status import _events

CARD_JSON = "model_card.json"
CARD_MARKDOWN = "model_card.md"


@dataclass(frozen=True)
class ModelCard:
    model: str
    version: str
    created_at: str
    gate: str  # the gate decision's line
    promoted: bool
    serving_after: str
    markdown: Path  # model_card.md beside the JSON
    text: str  # its content ("" when it cannot be read)

    @property
    def sort_key(self) -> tuple:
        return (int(self.version) if self.version.isdigit() else 0, self.version)


def registered_models(catalog: Catalog, lineage_dir: Path) -> dict[str, set[str]]:
    """{registered model name: catalog keys whose job outputs it} from the lineage events."""
    models: dict[str, set[str]] = {}
    for event in _events(lineage_dir):
        job = (event.get("job") or {}).get("name")
        if job not in catalog.datasets:
            continue
        for output in event.get("outputs") or []:
            if str(output.get("namespace", "")).startswith("mlflow:") and output.get("name"):
                models.setdefault(output["name"], set()).add(job)
    return models


def read_cards(artifacts_dir: Path) -> list[ModelCard]:
    """Every readable card under the artifact store; an unreadable one is left out (the report is no validator)."""
    cards = []
    for path in sorted(artifacts_dir.glob(f"*/artifacts/{CARD_JSON}")) if artifacts_dir.is_dir() else []:
        try:
            card = json.loads(path.read_text(encoding="utf-8"))
            gate = card.get("gate") or {}
            markdown = path.with_name(CARD_MARKDOWN)
            text = markdown.read_text(encoding="utf-8", errors="replace") if markdown.is_file() else ""
            cards.append(ModelCard(model=str(card["model"]), version=str(card["version"]),
                                   created_at=str(card.get("created_at", "")), gate=str(gate.get("decision", "")),
                                   promoted=bool(gate.get("promoted")), serving_after=str(gate.get("serving_after", "")),
                                   markdown=markdown, text=text))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return cards


def cards_by_dataset(catalog: Catalog, lineage_dir: Path, artifacts_dir: Path) -> dict[str, list[ModelCard]]:
    """{catalog key: its model's cards, newest version first}."""
    models = registered_models(catalog, lineage_dir)
    by_dataset: dict[str, list[ModelCard]] = {}
    for card in read_cards(artifacts_dir):
        for key in models.get(card.model, ()):
            by_dataset.setdefault(key, []).append(card)
    return {key: sorted(cards, key=lambda card: card.sort_key, reverse=True) for key, cards in by_dataset.items()}
