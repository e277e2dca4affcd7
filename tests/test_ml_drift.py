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
                             {"roc_auc": 0.70}, POLICY)


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
    # Every watched numeric feature; the ignored ones (the month, the weather, the trailing statistics) are not measured.
    assert sorted(drift.drifted_features) == sorted(set(NUMERIC_FEATURES) & set(POLICY.monitored_features))
    assert set(drift.feature_psi) == set(POLICY.monitored_features) and "temp_f" not in drift.feature_psi
    assert drift.reasons == ("6 features with PSI >= 0.25 against the training days 2013-01-13..2013-01-19",)
    # The prediction rule is off in lifecycle.yml (the backtest); switched on, the moved scores are a reason too.
    scores = measure_day(profile(), window, dt.date(2013, 7, 7), "3", POLICY.model_copy(update={"prediction_psi": 0.25}))
    assert scores.reasons[1].startswith("prediction PSI")
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


def test_the_recent_reference_is_the_last_training_days_and_the_window_is_judged_against_it():
    # Training: three weeks, the last of them shifted; a window like that last week drifts from all the training
    # rows but not from the recent reference.
    train = pd.concat([flights(days_from(dt.date(2013, 1, 1), 12), seed=1),
                       flights(days_from(dt.date(2013, 1, 13), 7), shift=6, seed=2)])
    holdout = flights(days_from(HOLDOUT_START, 5), seed=3)
    stored = reference_profile(train, HOLDOUT_START, holdout["delay_probability"].to_numpy(), {"roc_auc": 0.70},
                               POLICY)
    assert stored["recent_days"] == ["2013-01-13", "2013-01-19"] and stored["recent_rows"] == 7 * 300
    window = flights(days_from(dt.date(2013, 1, 22), 7), shift=6, seed=4)
    recent = measure_day(stored, window, dt.date(2013, 1, 28), "3", POLICY.model_copy(update={"reference": "recent"}))
    everything = measure_day(stored, window, dt.date(2013, 1, 28), "3",
                             POLICY.model_copy(update={"reference": "training"}))
    assert recent.reference == "the training days 2013-01-13..2013-01-19" and not recent.drifted_features
    assert everything.reference == "the training rows" and len(everything.drifted_features) >= 5
    # A profile stored before recent references existed falls back to its training rows, and says so.
    old = {key: value for key, value in stored.items() if key not in ("recent_features", "recent_days")}
    fallback = measure_day(old, window, dt.date(2013, 1, 28), "3", POLICY.model_copy(update={"reference": "recent"}))
    assert fallback.reference.startswith("the training rows (no recent reference")
    assert fallback.feature_psi == everything.feature_psi


def test_backtest_cuts_are_month_starts_that_bring_new_training_days():
    from platform_assets.ml.backtest import training_cuts

    days = days_from(dt.date(2013, 1, 1), 10) + days_from(dt.date(2013, 6, 28), 10)
    assert training_cuts(days) == [dt.date(2013, 2, 1), dt.date(2013, 7, 1)]
    assert training_cuts(days_from(dt.date(2013, 1, 30), 40)) == [dt.date(2013, 2, 1), dt.date(2013, 3, 1)]


def test_backtest_counts_false_alarms_on_quiet_days_and_detections_on_drops():
    from platform_assets.ml.backtest import FEATURE_SETS, Setting, choose, score_settings

    psi = {f"psi_{feature}": 0.0 for feature in FEATURE_SETS["all"]}
    # Four quiet days (one with two drifted weather features), two drops (one with a moved score distribution).
    days = pd.DataFrame([
        {**psi, "reference": "recent", "prediction_psi": 0.02, "drop": False},
        {**psi, "reference": "recent", "prediction_psi": 0.02, "drop": False},
        {**psi, "reference": "recent", "prediction_psi": 0.02, "drop": False},
        {**psi, "psi_temp_f": 0.6, "psi_pressure_mb": 0.3, "reference": "recent", "prediction_psi": 0.02,
         "drop": False},
        {**psi, "psi_carrier": 0.3, "reference": "recent", "prediction_psi": 0.3, "drop": True},
        {**psi, "reference": "recent", "prediction_psi": 0.12, "drop": True},
    ])
    grid = [Setting("recent", "all", 0.25, 2, None), Setting("recent", "flight and plane", 0.25, 1, 0.25),
            Setting("recent", "flight and plane", 0.25, 1, 0.1)]
    table = score_settings(days, grid)
    assert [(row["false_alarms"], row["days_without_drop"], row["detected"], row["days_with_drop"]) for row in table] \
        == [(1, 4, 0, 2), (0, 4, 1, 2), (0, 4, 2, 2)]
    assert table[0]["false_alarm_rate"] == 0.25 and table[2]["detection_rate"] == 1.0
    assert choose(table) is table[2]
    assert choose(table[:1]) is None  # nothing within the false-alarm budget
