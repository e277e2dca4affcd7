"""Drift of the serving model, per day: its features against its training rows, its scores against the scores it
gave its holdout, its performance against its holdout metric once arrivals are known. Only flights the model did
not train on count: its own training days are its reference, not drift. Pure logic."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from platform_assets.checks.stability import PSI_SIGNIFICANT, ReferenceBins, psi_band, reference_bins, stability_index
from platform_assets.ml.model import FEATURES, LABEL, LOWER_IS_BETTER, evaluate
from platform_assets.ml.policy import DriftPolicy

PROFILE_ARTIFACT = "reference_profile.json"
SCORE = "delay_probability"


def reference_profile(
    train: pd.DataFrame, holdout_start: dt.date, holdout_scores: np.ndarray, holdout_metrics: dict[str, float],
    bins: int,
) -> dict:
    """What a model version is compared with once it serves; stored with the version (JSON-ready).
    Scores come from the holdout, not the training rows: those are out of sample, as served scores are."""
    return {
        "features": {feature: reference_bins(train[feature], bins).to_dict() for feature in FEATURES},
        "scores": reference_bins(holdout_scores, bins).to_dict(),
        "holdout_start": holdout_start.isoformat(),
        "holdout_metrics": holdout_metrics,
        "training_rows": len(train),
    }


@dataclass(frozen=True)
class DayDrift:
    day: dt.date
    model_version: str
    window_days: int
    window_rows: int
    judged: bool
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
        return [feature for feature, psi in self.feature_psi.items() if psi >= PSI_SIGNIFICANT]

    @property
    def verdict(self) -> str:
        if not self.judged:
            return f"not judged ({self.window_days} day(s) the version did not train on)"
        return "significant: " + "; ".join(self.reasons) if self.reasons else "within bounds"


def measure_day(profile: dict, window: pd.DataFrame, day: dt.date, model_version: str, policy: DriftPolicy) -> DayDrift:
    """`window`: the scored flights of the `policy.window_days` days ending on `day` (features, `flight_date`,
    `data_date`, the score and the label where known). Judged when all those days are new to the version."""
    unseen = window[window["flight_date"] >= pd.Timestamp(profile["holdout_start"])]
    features = [feature for feature in policy.monitored_features if feature in profile["features"]]
    feature_psi = {feature: stability_index(ReferenceBins.from_dict(profile["features"][feature]), unseen[feature])
                   for feature in features}
    prediction_psi = (stability_index(ReferenceBins.from_dict(profile["scores"]), unseen[SCORE])
                      if len(unseen) >= policy.min_scored_rows else float("nan"))
    metric = policy.performance.metric
    known = unseen[unseen[LABEL].notna()]
    labels = known[LABEL].to_numpy(dtype=int)
    performance = (evaluate(labels, known[SCORE].to_numpy(dtype=float))[metric]
                   if len(known) >= policy.min_scored_rows and len(np.unique(labels)) == 2 else float("nan"))
    reference = float(profile["holdout_metrics"][metric])
    worse_by = performance - reference if metric in LOWER_IS_BETTER else reference - performance
    drifted = [feature for feature, psi in feature_psi.items() if psi >= PSI_SIGNIFICANT]
    reasons = []
    if len(drifted) >= policy.significant_features:
        reasons.append(f"{len(drifted)} features with PSI >= {PSI_SIGNIFICANT}")
    if prediction_psi >= policy.prediction_psi:
        reasons.append(f"prediction PSI {prediction_psi:.2f}")
    if worse_by > policy.performance.max_drop:
        reasons.append(f"{metric} {performance:.3f}, {worse_by:.3f} worse than the holdout's {reference:.3f}")
    window_days = unseen["data_date"].nunique()
    return DayDrift(day, model_version, window_days, len(unseen), window_days >= policy.window_days, feature_psi,
                    prediction_psi, metric, performance, reference, tuple(reasons))


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
    lines = ["| day | model | window rows | features PSI >= 0.25 | top feature | prediction PSI | "
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
    lines = [f"PSI of each feature, the {drift.window_days} new day(s) ending {drift.day} against the training "
             f"rows of version {drift.model_version}:", "", "| feature | PSI | band |", "|---|---:|---|"]
    ranked = sorted(drift.feature_psi.items(), key=lambda item: -np.nan_to_num(item[1], nan=-1.0))
    lines += [f"| {feature} | {_number(psi)} | {psi_band(psi)} |" for feature, psi in ranked]
    return "\n".join(lines)
