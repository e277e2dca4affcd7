"""The release path after the offline gate, as pure logic: which flights a canary serves, live metrics of each
scoring version per labelled day, when a challenger on trial moves on (canary step, promotion) or is retired, and
when the champion has spent its error budget and must be rolled back."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from platform_assets.ml.gate import GateDecision, judge, segments_of
from platform_assets.ml.model import LABEL, LOWER_IS_BETTER, evaluate
from platform_assets.ml.policy import GatePolicy, ReleasePolicy

if TYPE_CHECKING:  # imported where used: loading the code location must not import numpy or pandas
    import numpy as np
    import pandas as pd

SCORE = "delay_probability"
LIVE_COLUMNS = ["data_date", "model_version", "role", "canary_share", "scope", "metric", "value"]
LIVE_METRICS = ("roc_auc", "average_precision", "log_loss", "brier_score", "accuracy", "rows")


def canary_fraction(flight_id: str) -> float:
    """Where a flight falls in [0, 1): a hash of its id, the same in every run, on every machine."""
    return int.from_bytes(hashlib.sha256(flight_id.encode()).digest()[:8], "big") / 2**64


def in_canary(flight_ids, share: float) -> np.ndarray:
    """Which flights the canary serves at `share`; raising the share keeps every flight it already served."""
    import numpy as np  # noqa: PLC0415

    return np.array([canary_fraction(str(flight_id)) < share for flight_id in flight_ids], dtype=bool)


def live_metrics(policy: GatePolicy, scored: pd.DataFrame) -> pd.DataFrame:
    """Per labelled day, scoring version and role: the gate's metrics overall and per judged segment.
    `scored` has data_date, model_version, role, canary_share, the segment columns, the label and the score."""
    import numpy as np  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    rows = []
    for (day, version, role, share), flights in scored.groupby(
            ["data_date", "model_version", "role", "canary_share"], sort=True):
        flights = flights.reset_index(drop=True)
        labels, scores = flights[LABEL].to_numpy(dtype=int), flights[SCORE].to_numpy(dtype=float)
        scopes = [("overall", np.arange(len(flights)))] + [
            (segment.scope, segment.rows) for segment in segments_of(policy, flights) if segment.judged]
        for scope, positions in scopes:
            metrics = evaluate(labels[positions], scores[positions])
            rows += [{"data_date": day, "model_version": str(version), "role": role, "canary_share": float(share),
                      "scope": scope, "metric": metric, "value": metrics[metric]} for metric in LIVE_METRICS]
    return pd.DataFrame(rows, columns=LIVE_COLUMNS)


def side_by_side(scored: pd.DataFrame, challenger: str) -> pd.DataFrame:
    """The flights both the challenger and the champion of the day scored: one row per flight with the label, the
    segment columns and both scores (`challenger`, `champion`)."""
    theirs = scored[scored["role"] == "champion"]
    ours = scored[(scored["model_version"] == challenger) & scored["role"].isin(["shadow", "canary"])]
    both = ours.merge(theirs[["flight_id", SCORE, "model_version"]], on="flight_id", suffixes=("", "_champion"))
    return both.rename(columns={SCORE: "challenger", f"{SCORE}_champion": "champion"}).reset_index(drop=True)


def judge_live(policy: GatePolicy, both: pd.DataFrame, champion_version: str | None) -> GateDecision:
    """The gate's judgement on live flights: floors, and the tolerances against the champion overall and by
    segment, both versions scored on the same labelled flights."""
    return judge(policy, both, both["challenger"].to_numpy(dtype=float), both["champion"].to_numpy(dtype=float),
                 champion_version)


@dataclass(frozen=True)
class TrialStep:
    """What happens to the challenger on trial now."""

    action: str  # wait | await_sign_off | canary | promote | retire
    reason: str
    share: float | None = None  # the canary share it moves to
    evidence: dict = field(default_factory=dict)


def trial_step(policy: ReleasePolicy, stage: str, share: float | None, days: list[dt.date],
               decision: GateDecision | None, approved: bool) -> TrialStep:
    """The next step of a challenger in `stage` (shadow or canary at `share`), given the labelled live `days` of
    this stage and the gate's judgement on their flights (None while there are too few days to judge)."""
    needed = policy.shadow_days if stage == "shadow" else policy.canary.days_per_step
    evidence = {"stage": stage, "share": share, "days": [str(day) for day in days], "days_needed": needed}
    if len(days) < needed or decision is None:
        return TrialStep("wait", f"{len(days)} of {needed} labelled {stage} days", evidence=evidence)
    evidence |= {"decision": decision.summary(), "comparisons": [
        {"scope": c.scope, "metric": c.metric, "challenger": c.challenger, "champion": c.champion, "rule": c.rule,
         "passed": c.passed} for c in decision.comparisons]}
    where = f"{stage}{f' at share {share:g}' if share else ''}, {len(days)} live days {days[0]}..{days[-1]}"
    if not decision.passed:
        return TrialStep("retire", f"worse than the champion live ({where}): {decision.summary()}", evidence=evidence)
    if policy.sign_off.required and not approved:
        return TrialStep("await_sign_off", f"not worse live ({where}); waiting for sign-off by a member of the owning "
                         "team (python -m platform_assets.ml approve VERSION --by NAME)", evidence=evidence)
    shares = policy.canary.shares
    if stage == "shadow" and shares:
        return TrialStep("canary", f"not worse live ({where}): canary", share=shares[0], evidence=evidence)
    following = [step for step in shares if step > (share or 0)] if stage == "canary" else []
    if following:
        return TrialStep("canary", f"not worse live ({where}): canary raised", share=following[0], evidence=evidence)
    return TrialStep("promote", f"not worse live ({where}): {decision.summary()}", evidence=evidence)


@dataclass(frozen=True)
class Breach:
    """The champion's live metric beyond its error budget on the last `days` labelled days in a row."""

    metric: str
    expected: float
    expected_from: str
    limit: float
    days: dict[str, float]

    def reason(self, version: str) -> str:
        values = ", ".join(f"{day} {value:.4f}" for day, value in self.days.items())
        return (f"champion version {version} live {self.metric} beyond the error budget on {len(self.days)} labelled "
                f"days in a row ({values}; limit {self.limit:.4f} = expected {self.expected:.4f} from "
                f"{self.expected_from} {'+' if self.metric in LOWER_IS_BETTER else '-'} budget)")


def budget_breach(policy: ReleasePolicy, daily: pd.Series, expected: float, expected_from: str) -> Breach | None:
    """`daily`: the champion's live metric per labelled day it served (index: day). A breach when each of its last
    `rollback.days` days is beyond the expected level by more than the error budget."""
    import pandas as pd  # noqa: PLC0415

    rule = policy.rollback
    lower = rule.metric in LOWER_IS_BETTER
    limit = expected + rule.error_budget if lower else expected - rule.error_budget
    recent = daily.dropna().sort_index().tail(rule.days)
    if len(recent) < rule.days:
        return None
    beyond = recent > limit if lower else recent < limit
    if not beyond.all():
        return None
    return Breach(rule.metric, expected, expected_from, limit, {str(pd.Timestamp(day).date()): float(value)
                                                                for day, value in recent.items()})
