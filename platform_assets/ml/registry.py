"""The aliases of the registered model: `champion` (who serves), `shadow` and `canary` (the challenger on trial);
how they move (the gate starts a shadow, live results promote or retire it, a person or the live error budget rolls
back), and the record of every move: tags on the model versions and a log under <data>/mlflow/."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from pathlib import Path

CHAMPION = "champion"
SHADOW = "shadow"  # scores every flight, serves none
CANARY = "canary"  # scores every flight, serves a share of them (tag CANARY_SHARE_TAG)
CANARY_SHARE_TAG = "canary_share"
HISTORY_FILE = "champion_history.jsonl"
PREVIOUS_CHAMPION_TAG = "previous_champion"
GATE_DECISION_TAG = "gate_decision"  # the gate's one-line summary, on every version


class RegistryError(RuntimeError):
    """The registry cannot do what was asked; the message says why and what to do."""


@dataclass(frozen=True)
class ChampionMove:
    model: str
    action: str  # promoted | rolled_back | shadow | canary | retired | approved
    from_version: str | None
    to_version: str
    by: str
    reason: str
    at: str
    evidence: dict | None = None  # what the decision rested on (live comparison, days, expected level)

    def line(self) -> str:
        if self.action == "approved":
            return f"version {self.to_version} of {self.model} signed off by {self.by}"
        if self.action in ("shadow", "canary", "retired"):
            return f"{self.action} of {self.model}: version {self.to_version} ({self.by}: {self.reason})"
        verb = "promoted" if self.action == "promoted" else "rolled back"
        return (f"champion of {self.model}: version {self.from_version or '(none)'} -> {self.to_version} "
                f"({verb} by {self.by}: {self.reason})")


def champion_version(client, name: str):
    """The model version the alias points to, or None when nothing serves yet."""
    return alias_version(client, name, CHAMPION)


def challenger_version(client, name: str):
    """The version on trial (alias `canary` or `shadow`), or None."""
    return alias_version(client, name, CANARY) or alias_version(client, name, SHADOW)


def alias_version(client, name: str, alias: str):
    """The model version `alias` points to, or None when it points nowhere."""
    from mlflow.exceptions import MlflowException  # noqa: PLC0415

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if "RESOURCE_DOES_NOT_EXIST" in str(error.error_code) or "not found" in str(error).lower():
            return None
        raise


def why_no_champion(client, name: str) -> str | None:
    """Why nothing serves (the newest version's gate decision, or no version at all), or None when a champion
    serves. What predictions and drift report instead of scoring."""
    if champion_version(client, name) is not None:
        return None
    versions = client.search_model_versions(f"name = '{name}'")
    if not versions:
        return (f"no model serves: model '{name}' has no registered version yet (materialize ml/delay_model; a "
                "version serves once it passes the promotion gate)")
    newest = max(versions, key=lambda version: int(version.version))
    decision = newest.tags.get(GATE_DECISION_TAG) or f"gate {newest.tags.get('gate', 'not recorded')}"
    return (f"no model serves: no version of '{name}' has passed the promotion gate yet ({len(versions)} "
            f"registered; the newest, version {newest.version}: {decision})")


def log_move(history: Path, move: ChampionMove) -> ChampionMove:
    history.parent.mkdir(parents=True, exist_ok=True)
    with history.open("a") as log:
        log.write(json.dumps(asdict(move), default=str) + "\n")
    return move


def _record(client, history: Path, move: ChampionMove) -> ChampionMove:
    client.set_registered_model_alias(move.model, CHAMPION, move.to_version)
    for alias in (SHADOW, CANARY):  # a version that serves is no longer on trial
        trial = alias_version(client, move.model, alias)
        if trial is not None and str(trial.version) == str(move.to_version):
            client.delete_registered_model_alias(move.model, alias)
    return log_move(history, move)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def start_trial(client, name: str, version: str, alias: str, by: str, reason: str, history: Path,
                share: float | None = None, evidence: dict | None = None) -> ChampionMove:
    """Put `version` on trial as `shadow` or `canary` (with its share of flights); a trial it replaces ends."""
    for other in (SHADOW, CANARY):
        if other != alias and alias_version(client, name, other) is not None:
            client.delete_registered_model_alias(name, other)
    client.set_registered_model_alias(name, alias, str(version))
    client.set_model_version_tag(name, str(version), "release_stage", alias)
    if share is not None:
        client.set_model_version_tag(name, str(version), CANARY_SHARE_TAG, str(share))
        reason = f"{reason} (share {share:g})"
    return log_move(history, ChampionMove(name, alias, None, str(version), by, reason, _now(), evidence))


def retire_trial(client, name: str, version: str, by: str, reason: str, history: Path,
                 evidence: dict | None = None) -> ChampionMove:
    """End the trial of `version` without serving it: its live results were worse than the champion's."""
    for alias in (SHADOW, CANARY):
        trial = alias_version(client, name, alias)
        if trial is not None and str(trial.version) == str(version):
            client.delete_registered_model_alias(name, alias)
    for key, value in {"release_stage": "retired", "retired_at": _now(), "retire_reason": reason}.items():
        client.set_model_version_tag(name, str(version), key, value[:5000])
    return log_move(history, ChampionMove(name, "retired", None, str(version), by, reason, _now(), evidence))


def promote(client, name: str, version: str, by: str, reason: str, history: Path,
            evidence: dict | None = None) -> ChampionMove:
    """Make `version` the champion, remembering on it which version it replaces (what a rollback restores)."""
    previous = champion_version(client, name)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if previous is not None:
        client.set_model_version_tag(name, version, PREVIOUS_CHAMPION_TAG, str(previous.version))
    for key, value in {"promoted_at": now, "promoted_by": by, "promotion_reason": reason}.items():
        client.set_model_version_tag(name, version, key, value[:5000])
    client.set_model_version_tag(name, version, "release_stage", CHAMPION)
    return _record(client, history, ChampionMove(name, "promoted", previous and str(previous.version), str(version),
                                                 by, reason, now, evidence))


def rollback(client, name: str, by: str, reason: str, history: Path, evidence: dict | None = None) -> ChampionMove:
    """Move the champion back to the version it replaced; tag both versions with who, when and why."""
    if not reason.strip():
        raise RegistryError("a rollback needs a reason (--reason)")
    current = champion_version(client, name)
    if current is None:
        raise RegistryError(f"model '{name}' has no '{CHAMPION}' version: nothing to roll back")
    previous = current.tags.get(PREVIOUS_CHAMPION_TAG)
    if not previous:
        raise RegistryError(
            f"version {current.version} of '{name}' is the first champion: no earlier version to restore")
    try:
        client.get_model_version(name, previous)
    except Exception as error:
        raise RegistryError(f"previous champion version {previous} of '{name}' is gone ({error})") from error
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    for key, value in {"rolled_back_at": now, "rolled_back_by": by, "rollback_reason": reason}.items():
        client.set_model_version_tag(name, str(current.version), key, value[:5000])
    for key, value in {"restored_at": now, "restored_by": by, "restore_reason": reason}.items():
        client.set_model_version_tag(name, previous, key, value[:5000])
    client.set_model_version_tag(name, str(current.version), "release_stage", "rolled_back")
    return _record(client, history, ChampionMove(name, "rolled_back", str(current.version), previous, by, reason, now,
                                                 evidence))
