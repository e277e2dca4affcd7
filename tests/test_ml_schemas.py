import numpy as np
import pandas as pd
import pytest

from platform_assets.ml.model import split_by_time
from platform_assets.ml.schemas import failures_markdown, predictions_schema, schema_failures, training_set_schema


def training_frame(rows: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "flight_date": pd.to_datetime("2013-01-01") + pd.to_timedelta(np.arange(rows) % 10, unit="D"),
        "carrier": "UA", "origin": rng.choice(["EWR", "JFK", "LGA"], rows), "dest": "ORD",
        "sched_dep_hour": rng.integers(5, 23, rows), "day_of_week": rng.integers(1, 8, rows),
        "month": 1, "distance": 719.0, "plane_age_years": rng.choice([np.nan, 4.0], rows),
        "route_trailing_delayed_share": rng.random(rows), "carrier_trailing_delayed_share": rng.random(rows),
        "is_arr_delayed_15": np.arange(rows) % 3 == 0,
    })


def test_a_conforming_training_set_passes():
    assert schema_failures(training_set_schema, training_frame()) is None


@pytest.mark.parametrize("column,value,check", [
    ("origin", "BOS", "isin"),
    ("route_trailing_delayed_share", 1.7, "in_range"),
    ("sched_dep_hour", 25, "in_range"),
    ("carrier", None, "not_nullable"),
])
def test_training_set_failures_name_column_check_and_row(column, value, check):
    frame = training_frame()
    frame.loc[7, column] = value
    failures = schema_failures(training_set_schema, frame)
    row = failures[failures["column"] == column].iloc[0]
    assert check in row["check"] and row["index"] == 7
    assert f"| {column} |" in failures_markdown(failures)


def test_a_training_set_with_one_class_fails():
    frame = training_frame()
    frame["is_arr_delayed_15"] = False
    failures = schema_failures(training_set_schema, frame)
    assert "both_classes_present" in set(failures["check"])


def test_predictions_must_be_one_row_per_flight_with_probabilities():
    scored = pd.DataFrame({"flight_id": ["a", "b", "b"], "delay_probability": [0.1, 1.2, 0.3],
                           "predicted_delayed": [False, True, False], "model_version": ["1", "1", "1"]})
    checks = set(schema_failures(predictions_schema, scored)["check"])
    assert {"field_uniqueness", "in_range(0, 1)"} <= checks


def test_the_holdout_is_the_most_recent_days():
    split = split_by_time(training_frame())
    assert split.train["flight_date"].max() < split.holdout["flight_date"].min()
    assert split.holdout["flight_date"].nunique() == 2  # a fifth of ten days
