"""pandera schemas of the frames the Python assets produce: the training set and the predictions."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

ORIGINS = ["EWR", "JFK", "LGA"]
_share = pa.Check.in_range(0, 1)

training_set_schema = pa.DataFrameSchema(
    {
        "flight_date": pa.Column("datetime64[us]", nullable=False, coerce=True),
        "carrier": pa.Column(str, nullable=False),
        "origin": pa.Column(str, pa.Check.isin(ORIGINS), nullable=False),
        "dest": pa.Column(str, nullable=False),
        "sched_dep_hour": pa.Column(float, pa.Check.in_range(0, 23), nullable=False, coerce=True),
        "day_of_week": pa.Column(float, pa.Check.in_range(1, 7), nullable=False, coerce=True),
        "month": pa.Column(float, pa.Check.in_range(1, 12), nullable=False, coerce=True),
        "distance": pa.Column(float, pa.Check.gt(0), nullable=False, coerce=True),
        "plane_age_years": pa.Column(float, pa.Check.in_range(0, 80), nullable=True, coerce=True),
        "route_trailing_delayed_share": pa.Column(float, _share, nullable=True, coerce=True),
        "carrier_trailing_delayed_share": pa.Column(float, _share, nullable=True, coerce=True),
        "is_arr_delayed_15": pa.Column(bool, nullable=False, coerce=True),
    },
    checks=[
        pa.Check(lambda frame: frame["is_arr_delayed_15"].nunique() == 2, name="both_classes_present"),
        pa.Check(lambda frame: frame["flight_date"].nunique() >= 2, name="at_least_two_days"),
    ],
    strict=False,
    name="training_set",
)

predictions_schema = pa.DataFrameSchema(
    {
        "flight_id": pa.Column(str, nullable=False, unique=True),
        "delay_probability": pa.Column(float, pa.Check.in_range(0, 1), nullable=False),
        "predicted_delayed": pa.Column(bool, nullable=False),
        "model_version": pa.Column(str, nullable=False),
    },
    strict=False,
    name="predictions",
)


def schema_failures(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> pd.DataFrame | None:
    """All failure cases of `frame` against `schema` (lazy validation), or None when it conforms."""
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        return errors.failure_cases
    return None


def failures_markdown(failures: pd.DataFrame, limit: int = 20, personal=None) -> str:
    """The failure cases as a table; a personal column's failing value masked (`personal`: governance.masking's
    PersonalData of the frame's dataset)."""
    shown = failures[["column", "check", "failure_case", "index"]].head(limit).copy()
    if personal is not None:
        shown["failure_case"] = [personal.show(str(column), value)
                                 for column, value in zip(shown["column"], shown["failure_case"], strict=True)]
    shown = shown.astype(str)
    lines = ["| column | check | failure case | row |", "|---|---|---|---|"]
    lines += [f"| {r.column} | {r.check} | {r.failure_case} | {r.index} |" for r in shown.itertuples()]
    return "\n".join(lines) + (f"\n\n({len(failures):,} failure cases in all)" if len(failures) > limit else "")
