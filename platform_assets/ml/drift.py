"""Drift of the serving model, per day: its features against a reference its training data provides (by default its
most recent training days, as many as the window has: a window should look like them unless something changed,
while all its training rows span other seasons), its scores against the scores it gave its holdout, its
performance against its holdout metric once arrivals are known. Only flights the model did not train on count: its
own training days are its reference, not drift. Pure logic; the thresholds are calibrated by backtest.py."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from platform_assets.checks.stability import ReferenceBins, psi_band, reference_bins, stability_index
from platform_assets.ml.model import FEATURES, LABEL, LOWER_IS_BETTER, evaluate
from platform_assets.ml.policy import DriftPolicy

if TYPE_CHECKING:  # imported where used: loading the code location must not import numpy or pandas
    import numpy as np
    import pandas as pd

PROFILE_ARTIFACT = "reference_profile.json"
SCORE = "delay_probability"
# The feature references a profile holds: all training rows, or the most recent training days.
REFERENCES = {"training": "features", "recent": "recent_features"}


def _days(frame: pd.DataFrame) -> list[str]:
    import pandas as pd  # noqa: PLC0415

    days = pd.to_datetime(frame["flight_date"]).dt.date
    return [str(days.min()), str(days.max())] if len(frame) else []


def reference_profile(
    train: pd.DataFrame, holdout_start: dt.date, holdout_scores: np.ndarray, holdout_metrics: dict[str, float],
    policy: DriftPolicy,
) -> dict:
    """What a model version is compared with once it serves; stored with the version (JSON-ready).
    Features: all training rows, and the last `policy.window_days` training days (the recent reference).
    Scores come from the holdout, not the training rows: those are out of sample, as served scores are."""
    import pandas as pd  # noqa: PLC0415

    bins = policy.psi_bins
    days = pd.to_datetime(train["flight_date"])
    recent = train[days >= days.drop_duplicates().nlargest(policy.window_days).min()] if len(train) else train
    return {
        "features": {feature: reference_bins(train[feature], bins).to_dict() for feature in FEATURES},
        "recent_features": {feature: reference_bins(recent[feature], bins).to_dict() for feature in FEATURES},
        "training_days": _days(train),
        "recent_days": _days(recent),
        "scores": reference_bins(holdout_scores, bins).to_dict(),
        "holdout_start": holdout_start.isoformat(),
        "holdout_metrics": holdout_metrics,
        "training_rows": len(train),
        "recent_rows": len(recent),
    }


def feature_reference(profile: dict, reference: str) -> tuple[dict, str]:
    """The feature bins of `reference` in the profile, and a phrase naming them. A profile stored before recent
    references existed has only its training rows: those are used, and the phrase says so."""
    if reference == "recent" and REFERENCES["recent"] in profile:
        first, last = profile["recent_days"]
        return profile["recent_features"], f"the training days {first}..{last}"
    named = "the training rows" + (" (no recent reference in this version's profile)" if reference == "recent" else "")
    return profile["features"], named


@dataclass(frozen=True)
class DayDrift:
    day: dt.date
    model_version: str
    window_days: int
    window_rows: int
    judged: bool
    reference: str
    feature_psi_threshold: float
    feature_psi: dict[str, float]
    prediction_psi: float
    performance_metric: str
    performance: float
    reference_performance: float
    reasons: tuple[str, ...]

    @property
    def significant(self) -> bool:
        return self.judged and bool(self.reasons)

    @property
    def drifted_features(self) -> list[str]:
        return [feature for feature, psi in self.feature_psi.items() if psi >= self.feature_psi_threshold]

    @property
    def verdict(self) -> str:
        if not self.judged:
            return f"not judged ({self.window_days} day(s) the version did not train on)"
        return "significant: " + "; ".join(self.reasons) if self.reasons else "within bounds"


def measure_day(profile: dict, window: pd.DataFrame, day: dt.date, model_version: str, policy: DriftPolicy) -> DayDrift:
    """`window`: the scored flights of the `policy.window_days` days ending on `day` (features, `flight_date`,
    `data_date`, the score and the label where known). Judged when all those days are new to the version."""
    import numpy as np  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    unseen = window[window["flight_date"] >= pd.Timestamp(profile["holdout_start"])]
    bins, reference = feature_reference(profile, policy.reference)
    features = [feature for feature in policy.monitored_features if feature in bins]
    feature_psi = {feature: stability_index(ReferenceBins.from_dict(bins[feature]), unseen[feature])
                   for feature in features}
    prediction_psi = (stability_index(ReferenceBins.from_dict(profile["scores"]), unseen[SCORE])
                      if len(unseen) >= policy.min_scored_rows else float("nan"))
    metric = policy.performance.metric
    known = unseen[unseen[LABEL].notna()]
    labels = known[LABEL].to_numpy(dtype=int)
    performance = (evaluate(labels, known[SCORE].to_numpy(dtype=float))[metric]
                   if len(known) >= policy.min_scored_rows and len(np.unique(labels)) == 2 else float("nan"))
    reference_value = float(profile["holdout_metrics"][metric])
    worse_by = performance - reference_value if metric in LOWER_IS_BETTER else reference_value - performance
    drifted = [feature for feature, psi in feature_psi.items() if psi >= policy.feature_psi]
    reasons = []
    if len(drifted) >= policy.significant_features:
        reasons.append(f"{len(drifted)} features with PSI >= {policy.feature_psi:g} against {reference}")
    if policy.prediction_psi is not None and prediction_psi >= policy.prediction_psi:
        reasons.append(f"prediction PSI {prediction_psi:.2f}")
    if worse_by > policy.performance.max_drop:
        reasons.append(f"{metric} {performance:.3f}, {worse_by:.3f} worse than the holdout's {reference_value:.3f}")
    window_days = unseen["data_date"].nunique()
    return DayDrift(day, model_version, window_days, len(unseen), window_days >= policy.window_days, reference,
                    policy.feature_psi, feature_psi, prediction_psi, metric, performance, reference_value,
                    tuple(reasons))


def drift_rows(drift: DayDrift) -> list[dict]:
    """The day's measures in long form, for the drift table."""
    common = {"data_date": drift.day, "model_version": drift.model_version, "window_rows": drift.window_rows,
              "judged": drift.judged, "significant": drift.significant}
    rows = [{**common, "measure": "feature_psi", "name": feature, "value": psi, "reference": 0.0, "band": psi_band(psi)}
            for feature, psi in drift.feature_psi.items()]
    rows.append({**common, "measure": "prediction_psi", "name": SCORE, "value": drift.prediction_psi,
                 "reference": 0.0, "band": psi_band(drift.prediction_psi)})
    rows.append({**common, "measure": "performance", "name": drift.performance_metric, "value": drift.performance,
                 "reference": drift.reference_performance, "band": ""})
    return rows


def _number(value: float, digits: int = 3) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"


def days_markdown(days: list[DayDrift], limit: int = 31) -> str:
    threshold = days[-1].feature_psi_threshold if days else 0.25
    lines = [f"| day | model | window rows | features PSI >= {threshold:g} | top feature | prediction PSI | "
             "performance (holdout) | verdict |", "|---|---|---:|---:|---|---:|---|---|"]
    for drift in days[-limit:]:
        measured = {feature: psi for feature, psi in drift.feature_psi.items() if psi == psi}
        top = max(measured, key=measured.get) if measured else None
        lines.append(
            f"| {drift.day} | {drift.model_version} | {drift.window_rows:,} | {len(drift.drifted_features)} | "
            f"{f'{top} {measured[top]:.2f}' if top else 'n/a'} | {_number(drift.prediction_psi, 2)} | "
            f"{drift.performance_metric} {_number(drift.performance)} ({_number(drift.reference_performance)}) | "
            f"{drift.verdict} |")
    if len(days) > limit:
        lines.append(f"\n(the last {limit} of {len(days)} days; all of them in the drift table)")
    return "\n".join(lines)


def features_markdown(drift: DayDrift) -> str:
    import numpy as np  # noqa: PLC0415

    lines = [f"PSI of each feature, the {drift.window_days} new day(s) ending {drift.day} against {drift.reference} "
             f"of version {drift.model_version}:", "", "| feature | PSI | band |", "|---|---:|---|"]
    ranked = sorted(drift.feature_psi.items(), key=lambda item: -np.nan_to_num(item[1], nan=-1.0))
    lines += [f"| {feature} | {_number(psi)} | {psi_band(psi)} |" for feature, psi in ranked]
    return "\n".join(lines)
