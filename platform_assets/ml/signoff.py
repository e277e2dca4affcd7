"""Human sign-off of a model version before it serves (lifecycle.yml: release.sign_off): by a member of the team
that owns the model in the governance catalog, recorded on the version (`approve`) or in the reviewed approvals
file beside the policy."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import yaml

from governance.catalog import Member, load_catalog

MODEL_DATASET = "ml/delay_model"
APPROVED_BY_TAG = "approved_by"
APPROVED_AT_TAG = "approved_at"


class SignOffError(ValueError):
    """A sign-off that cannot count; the message names who or which entry, and what to do."""


def owning_member(name: str, dataset: str = MODEL_DATASET) -> Member:
    """The member of the team owning `dataset` called `name` (their name or e-mail, any case)."""
    catalog = load_catalog()
    team_name = catalog.dataset(dataset).owner
    team = catalog.owner_of(dataset)
    wanted = name.strip().casefold()
    for member in team.members:
        if wanted and wanted in (member.name.casefold(), member.email.casefold()):
            return member
    members = ", ".join(member.email for member in team.members)
    raise SignOffError(f"'{name}' is not a member of team {team_name}, which owns {dataset} "
                       f"(governance/catalog/teams.yml): only its members may sign off ({members})")


def file_approvals(path: Path, model: str) -> dict[str, dict]:
    """The reviewed file's approvals of `model`, by version. An entry by someone outside the owning team, or
    without a version, is an error naming the entry: a sign-off is never assumed."""
    if not path.exists():
        return {}
    try:
        entries = yaml.safe_load(path.read_text()) or []
    except yaml.YAMLError as error:
        raise SignOffError(f"{path}: cannot be read: {error}") from error
    if not isinstance(entries, list):
        raise SignOffError(f"{path}: expected a list of approvals")
    approvals = {}
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or not entry.get("version") or not entry.get("by"):
            raise SignOffError(f"{path}: approval {number} needs model, version and by")
        if entry.get("model", model) != model:
            continue
        try:
            member = owning_member(str(entry["by"]))
        except SignOffError as error:
            raise SignOffError(f"{path}: approval {number}: {error}") from error
        approvals[str(entry["version"])] = {"by": member.email, "at": str(entry.get("on", "")), "source": str(path)}
    return approvals


def approval_of(version, approvals_path: Path, model: str) -> dict | None:
    """Who approved this MLflow model version and when (its tags, else the reviewed file), or None."""
    if version.tags.get(APPROVED_BY_TAG):
        return {"by": version.tags[APPROVED_BY_TAG], "at": version.tags.get(APPROVED_AT_TAG, ""),
                "source": "python -m platform_assets.ml approve"}
    return file_approvals(approvals_path, model).get(str(version.version))


def approve(client, model: str, version: str, by: str) -> dict:
    """Record a member's approval on the version (tags); refuses anyone outside the owning team."""
    member = owning_member(by)
    client.get_model_version(model, version)  # the version must exist
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    client.set_model_version_tag(model, version, APPROVED_BY_TAG, member.email)
    client.set_model_version_tag(model, version, APPROVED_AT_TAG, now)
    return {"by": member.email, "at": now, "source": "python -m platform_assets.ml approve"}
