"""Drift measures of the serving model, as pure logic on synthetic windows."""

import datetime as dt

import numpy as np
import pandas as pd

from platform_assets.ml.drift import days_markdown, drift_rows, features_markdown, measure_day, reference_profile
from platform_assets.ml.model import CATEGORICAL_FEATURES, FEATURES, NUMERIC_FEATURES
from platform_assets.ml.policy import load_policy

POLICY = load_policy().drift
HOLDOUT_START = dt.date(2013, 1, 20)


def flights(days: list[dt.date], per_day: int = 300, shift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = len(days) * per_day
    frame = pd.DataFrame({feature: rng.normal(10 + shift, 3, rows) for feature in NUMERIC_FEATURES})
    for feature in CATEGORICAL_FEATURES:
        frame[feature] = rng.choice(["A", "B", "C"], rows)
    frame["month"] = 1
    dates = pd.to_datetime(np.repeat(days, per_day))
    frame["flight_date"] = frame["data_date"] = dates
    frame["delay_probability"] = np.clip(rng.beta(2, 6, rows) + shift / 40, 0, 1)
    frame["is_arr_delayed_15"] = rng.random(rows) < frame["delay_probability"]
    return frame


def days_from(first: dt.date, count: int) -> list[dt.date]:
    return [first + dt.timedelta(days=offset) for offset in range(count)]


def profile() -> dict:
    train = flights(days_from(dt.date(2013, 1, 1), 19), seed=1)
    holdout = flights(days_from(HOLDOUT_START, 5), seed=2)
    return reference_profile(train, HOLDOUT_START, holdout["delay_probability"].to_numpy(),
                             {"roc_auc": 0.70}, POLICY.psi_bins)


def test_a_profile_covers_every_feature_and_the_holdout_scores():
    stored = profile()
    assert set(stored["features"]) == set(FEATURES)
    assert stored["holdout_start"] == "2013-01-20" and len(stored["scores"]["shares"]) == 10


def test_a_window_like_the_reference_is_within_bounds():
    window = flights(days_from(dt.date(2013, 1, 22), 7), seed=3)
    drift = measure_day(profile(), window, dt.date(2013, 1, 28), "3", POLICY)
    assert drift.judged and not drift.significant and drift.verdict == "within bounds"
    assert max(drift.feature_psi.values()) < 0.1 and drift.prediction_psi < 0.1
    assert "month" not in drift.feature_psi  # ignored by the policy


def test_shifted_features_and_scores_are_significant_with_their_reasons():
    window = flights(days_from(dt.date(2013, 7, 1), 7), shift=6, seed=4)
    drift = measure_day(profile(), window, dt.date(2013, 7, 7), "3", POLICY)
    assert drift.significant
    assert len(drift.drifted_features) == len(NUMERIC_FEATURES) - 1  # all but the ignored month
    assert any("features with PSI" in reason for reason in drift.reasons)
    assert any(reason.startswith("prediction PSI") for reason in drift.reasons)
    assert "| significant |" in features_markdown(drift) and "significant:" in days_markdown([drift])


def test_a_window_shorter_than_policy_is_reported_but_not_judged():
    window = flights(days_from(dt.date(2013, 7, 1), 2), shift=6, seed=5)
    drift = measure_day(profile(), window, dt.date(2013, 7, 2), "3", POLICY)
    assert drift.drifted_features and not drift.judged and not drift.significant
    assert drift.verdict.startswith("not judged")


def test_days_the_model_trained_on_are_its_reference_not_drift():
    # Shifted, but before the holdout: the version trained on these days, so they are not judged.
    window = flights(days_from(dt.date(2013, 1, 12), 7), shift=6, seed=6)
    drift = measure_day(profile(), window, dt.date(2013, 1, 18), "3", POLICY)
    assert not drift.judged and not drift.significant and drift.window_rows == 0
    assert np.isnan(drift.prediction_psi) and np.isnan(drift.performance)
    # Straddling the holdout start: only the new days count, and three of them are not a week.
    straddling = flights(days_from(dt.date(2013, 1, 15), 7), shift=6, seed=6)
    drift = measure_day(profile(), straddling, dt.date(2013, 1, 21), "3", POLICY)
    assert drift.window_days == 2 and drift.window_rows == 600 and not drift.judged


def test_a_performance_drop_is_significant_on_its_own():
    window = flights(days_from(dt.date(2013, 1, 22), 7), seed=7)
    window["is_arr_delayed_15"] = np.random.default_rng(8).random(len(window)) < 0.3  # scores now know nothing
    drift = measure_day(profile(), window, dt.date(2013, 1, 28), "3", POLICY)
    assert drift.significant and drift.reasons == (
        f"roc_auc {drift.performance:.3f}, {0.70 - drift.performance:.3f} worse than the holdout's 0.700",)
    rows = drift_rows(drift)
    assert {row["measure"] for row in rows} == {"feature_psi", "prediction_psi", "performance"}
    assert all(row["significant"] for row in rows)
