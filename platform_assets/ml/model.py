"""The delay classifier: features in, probability of arriving more than 15 minutes late out. Pure logic."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: loading the code location must not import numpy, pandas or scikit-learn
    import numpy as np
    import pandas as pd
    from sklearn.pipeline import Pipeline

CATEGORICAL_FEATURES = ["carrier", "origin", "dest"]
NUMERIC_FEATURES = [
    "sched_dep_hour", "day_of_week", "month", "distance", "plane_age_years", "plane_seats", "has_known_plane",
    "temp_f", "wind_speed_mph", "visibility_mi", "precip_in", "humidity_pct", "pressure_mb",
    "route_trailing_flights", "route_trailing_mean_arr_delay", "route_trailing_delayed_share",
    "carrier_trailing_flights", "carrier_trailing_mean_arr_delay", "carrier_trailing_delayed_share",
]
FEATURES = CATEGORICAL_FEATURES + NUMERIC_FEATURES
LABEL = "is_arr_delayed_15"
HYPERPARAMETERS = {"max_iter": 200, "learning_rate": 0.08, "max_leaf_nodes": 31, "l2_regularization": 1.0}
# Directions of the metrics `evaluate` returns (positive_rate describes the data, not the model).
HIGHER_IS_BETTER = frozenset({"roc_auc", "average_precision", "accuracy", "rows"})
LOWER_IS_BETTER = frozenset({"brier_score", "log_loss"})


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    holdout: pd.DataFrame
    holdout_start: dt.date


def split_by_time(frame: pd.DataFrame, holdout_days: int = 14) -> Split:
    """The most recent days are the holdout (at most a fifth of the days), everything before trains."""
    import pandas as pd  # noqa: PLC0415

    days = sorted(frame["flight_date"].unique())
    if len(days) < 2:
        raise ValueError(f"training needs at least two days of labelled features, got {len(days)}")
    holdout_days = max(1, min(holdout_days, len(days) // 5))
    holdout_start = days[-holdout_days]
    recent = frame["flight_date"] >= holdout_start
    return Split(train=frame[~recent], holdout=frame[recent], holdout_start=pd.Timestamp(holdout_start).date())


def as_model_input(frame: pd.DataFrame) -> pd.DataFrame:
    """The model's input schema: categories as strings, everything else as float."""
    import pandas as pd  # noqa: PLC0415

    data = {column: frame[column].astype(object).where(frame[column].notna(), None).astype(str)
            for column in CATEGORICAL_FEATURES}
    data.update({column: frame[column].astype("float64") for column in NUMERIC_FEATURES})
    return pd.DataFrame(data)


def hyperparameters_with(overrides: dict[str, float]) -> dict[str, float]:
    """The default hyperparameters with some replaced (integers stay integers); unknown names are an error."""
    unknown = sorted(set(overrides) - set(HYPERPARAMETERS))
    if unknown:
        raise ValueError(f"unknown hyperparameter {', '.join(unknown)}; known: {', '.join(HYPERPARAMETERS)}")
    return {name: type(default)(overrides.get(name, default)) for name, default in HYPERPARAMETERS.items()}


def build_pipeline(seed: int, hyperparameters: dict[str, float] = HYPERPARAMETERS) -> Pipeline:
    # scikit-learn is imported here, not at module level: loading the code location must stay fast.
    import numpy as np  # noqa: PLC0415
    from sklearn.compose import ColumnTransformer  # noqa: PLC0415
    from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: PLC0415
    from sklearn.pipeline import Pipeline  # noqa: PLC0415
    from sklearn.preprocessing import OrdinalEncoder  # noqa: PLC0415

    encoder = ColumnTransformer(
        [("categories", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                                       encoded_missing_value=np.nan), CATEGORICAL_FEATURES)],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    categorical_mask = [True] * len(CATEGORICAL_FEATURES) + [False] * len(NUMERIC_FEATURES)
    classifier = HistGradientBoostingClassifier(
        categorical_features=categorical_mask, random_state=seed, **hyperparameters
    )
    return Pipeline([("encode", encoder), ("classify", classifier)])


def evaluate(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """The model's metrics of 0/1 `labels` against `probabilities` of 1: scikit-learn's definitions, computed in
    NumPy as scikit-learn computes them (log loss with probabilities clipped to the float's eps; the rank metrics
    from one sort, tied scores as one threshold), since live quality evaluates every day's versions and segments
    and scikit-learn's argument validation costs 30 times the arithmetic (docs/benchmark.md; tests/test_ml_gate.py
    compares the two)."""
    import numpy as np  # noqa: PLC0415

    labels = np.asarray(labels, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    if labels.shape != probabilities.shape or labels.ndim != 1:
        raise ValueError(f"{len(labels)} labels against probabilities of shape {probabilities.shape}")
    if not np.isin(labels, (0, 1)).all() or not np.isfinite(probabilities).all():
        raise ValueError("labels must be 0 or 1 and probabilities finite")
    both_classes = len(np.unique(labels)) == 2
    positive = labels == 1
    eps = np.finfo(probabilities.dtype).eps
    roc_auc, average_precision = _rank_metrics(labels, probabilities) if both_classes else (float("nan"),) * 2
    return {
        "roc_auc": roc_auc,
        "average_precision": average_precision,
        "brier_score": float(np.mean((positive - probabilities) ** 2)),
        "log_loss": float(-np.mean(np.log(np.clip(np.where(positive, probabilities, 1 - probabilities),
                                                  eps, 1 - eps)))),
        "accuracy": float(np.mean(positive == (probabilities >= 0.5))),
        "positive_rate": float(labels.mean()),
        "rows": float(len(labels)),
    }


def _rank_metrics(labels: np.ndarray, probabilities: np.ndarray) -> tuple[float, float]:
    """ROC AUC and average precision of labels with both classes: each distinct score, from the highest, is a
    threshold; the ROC curve's area by the trapezoidal rule, the precision at each threshold weighted by the
    recall it adds."""
    import numpy as np  # noqa: PLC0415

    order = np.argsort(probabilities, kind="stable")[::-1]
    scores, positive = probabilities[order], labels[order] == 1
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # the last flight of each threshold
    true_pos = np.cumsum(positive)[last]
    false_pos = (last + 1) - true_pos
    roc_auc = np.trapezoid(np.r_[0, true_pos] / true_pos[-1], np.r_[0, false_pos] / false_pos[-1])
    average_precision = np.sum(np.diff(np.r_[0, true_pos]) / true_pos[-1] * (true_pos / (last + 1)))
    return float(roc_auc), float(average_precision)
