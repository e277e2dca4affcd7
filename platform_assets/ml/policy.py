"""The lifecycle policy (lifecycle.yml): the promotion gate, the release path (shadow, canary, sign-off, automatic
rollback), the drift thresholds and what every model card says, typed and validated."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from platform_assets.ml.model import CATEGORICAL_FEATURES, FEATURES, HIGHER_IS_BETTER, LOWER_IS_BETTER

POLICY_PATH = Path(__file__).with_name("lifecycle.yml")
METRICS = HIGHER_IS_BETTER | LOWER_IS_BETTER


class PolicyError(ValueError):
    """The policy file is invalid; the message names the file and the key."""


def _known(values, known, what: str):
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(unknown)}; known: {', '.join(known)}")
    return values


def _known_metrics(values: dict[str, float]) -> dict[str, float]:
    return _known(values, sorted(METRICS), "metric")


class Tolerances(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    overall: dict[str, float] = {}
    segment: dict[str, float] = {}

    @field_validator("overall", "segment")
    @classmethod
    def _metrics(cls, values: dict[str, float]) -> dict[str, float]:
        return _known_metrics(values)


class GatePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    floors: dict[str, float]
    tolerances: Tolerances
    segments: list[str]
    min_segment_rows: int = Field(ge=1)

    @field_validator("floors")
    @classmethod
    def _metrics(cls, values: dict[str, float]) -> dict[str, float]:
        return _known_metrics(values)

    @field_validator("segments")
    @classmethod
    def _known_segments(cls, segments: list[str]) -> list[str]:
        return _known(segments, CATEGORICAL_FEATURES, "segment")


class PerformanceDrift(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    metric: str
    max_drop: float = Field(ge=0)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        _known_metrics({metric: 0.0})
        return metric


class DriftPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    window_days: int = Field(ge=1)
    psi_bins: int = Field(ge=2)
    reference: Literal["recent", "training"] = "recent"  # drift.REFERENCES
    ignored_features: list[str] = []
    feature_psi: float = Field(default=0.25, gt=0)
    significant_features: int = Field(ge=1)
    prediction_psi: float | None = Field(gt=0)  # None: the scores' distribution alone is no reason
    performance: PerformanceDrift
    min_scored_rows: int = Field(ge=1)

    @field_validator("ignored_features")
    @classmethod
    def _known_features(cls, features: list[str]) -> list[str]:
        return _known(features, FEATURES, "feature")

    @property
    def monitored_features(self) -> list[str]:
        return [feature for feature in FEATURES if feature not in self.ignored_features]


class ModelCardPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    known_limits: list[str] = []  # what every version's card says it cannot be trusted for


class SignOffPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    required: bool = False  # a challenger needs a member of the owning team's approval before it serves any flight
    approvals: str = "approvals.yml"  # the reviewed file of approvals, relative to the policy file


class CanaryPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    shares: list[float] = []  # the challenger's share of flights, step by step; empty: no canary (shadow, then serve)
    days_per_step: int = Field(default=2, ge=1)  # labelled days at one share before judging it

    @field_validator("shares")
    @classmethod
    def _rising_shares(cls, shares: list[float]) -> list[float]:
        if any(not 0 < share < 1 for share in shares) or shares != sorted(set(shares)):
            raise ValueError(f"shares must rise strictly, each between 0 and 1 (exclusive), got {shares}")
        return shares


class RollbackPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    metric: str = "roc_auc"
    error_budget: float = Field(default=0.05, ge=0)  # how far below its expected level a champion may fall
    days: int = Field(default=3, ge=1)  # labelled days in a row beyond the budget before the alias moves back

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        _known_metrics({metric: 0.0})
        return metric


class ReleasePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    shadow_days: int = Field(default=3, ge=0)  # labelled live days in shadow before promotion; 0: no shadow
    sign_off: SignOffPolicy = SignOffPolicy()
    canary: CanaryPolicy = CanaryPolicy()
    rollback: RollbackPolicy = RollbackPolicy()


class LifecyclePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    gate: GatePolicy
    drift: DriftPolicy
    release: ReleasePolicy = ReleasePolicy()
    model_card: ModelCardPolicy = ModelCardPolicy()
    source: str = str(POLICY_PATH)  # the file it was read from (sign-off approvals are found beside it)

    @property
    def approvals_path(self) -> Path:
        return Path(self.source).with_name(self.release.sign_off.approvals)


def parse_policy(content: object, source: str = str(POLICY_PATH)) -> LifecyclePolicy:
    if isinstance(content, dict) and "source" in content:
        raise PolicyError(f"{source}: source: not a setting (the policy records the file it was read from)")
    try:
        return LifecyclePolicy.model_validate({**content, "source": source} if isinstance(content, dict) else content)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise PolicyError(f"{source}: {where}: {first['msg']}") from error


def load_policy(path: Path | None = None) -> LifecyclePolicy:
    """The policy of `path`, by default the one the settings name (PLATFORM_LIFECYCLE_POLICY, or the shipped
    lifecycle.yml)."""
    if path is None:
        from platform_assets.settings import load_settings  # noqa: PLC0415

        path = load_settings().lifecycle_policy or POLICY_PATH
    return _load_policy(Path(path))


@cache
def _load_policy(path: Path) -> LifecyclePolicy:
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise PolicyError(f"{path}: cannot be read: {error}") from error
    return parse_policy(content, str(path))
