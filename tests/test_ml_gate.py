"""The promotion gate and the lifecycle policy, as pure logic on synthetic holdouts."""

import numpy as np
import pandas as pd
import pytest
import yaml

from platform_assets.ml.gate import judge
from platform_assets.ml.policy import POLICY_PATH, GatePolicy, PolicyError, Tolerances, load_policy, parse_policy

POLICY = GatePolicy(
    floors={"roc_auc": 0.6, "rows": 1000},
    tolerances={"overall": {"roc_auc": 0.01, "log_loss": 0.01}, "segment": {"roc_auc": 0.05}},
    segments=["carrier", "origin"],
    min_segment_rows=300,
)


def holdout(rows: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """A holdout and a 'true risk' per flight: informative scores are the risk plus noise."""
    rng = np.random.default_rng(seed)
    risk = rng.random(rows)
    frame = pd.DataFrame({
        "carrier": rng.choice(["UA", "B6", "EV", "WN", "HA"], rows, p=[0.4, 0.3, 0.17, 0.12, 0.01]),
        "origin": rng.choice(["EWR", "JFK", "LGA"], rows),
        "is_arr_delayed_15": rng.random(rows) < 0.05 + 0.8 * risk,
    })
    return frame, risk


def scores(risk: np.ndarray, noise: float, seed: int = 1) -> np.ndarray:
    return np.clip(0.05 + 0.8 * risk + np.random.default_rng(seed).normal(0, noise, len(risk)), 0.001, 0.999)


def test_a_first_model_is_judged_on_the_floors_alone():
    frame, risk = holdout()
    decision = judge(POLICY, frame, scores(risk, 0.05))
    assert decision.passed and decision.champion_version is None
    assert [(c.metric, c.champion) for c in decision.comparisons] == [("roc_auc", None), ("rows", None)]
    assert "no champion yet" in decision.summary()


def test_a_first_model_below_a_floor_is_refused():
    frame, _ = holdout()
    decision = judge(POLICY, frame, np.random.default_rng(3).random(len(frame)))  # scores that know nothing
    assert not decision.passed
    assert [c.metric for c in decision.failures] == ["roc_auc"]
    assert "| overall | roc_auc |" in decision.markdown() and "**FAIL**" in decision.markdown()


def test_too_small_a_holdout_cannot_promote():
    frame, risk = holdout(rows=600)
    decision = judge(POLICY, frame, scores(risk, 0.05))
    assert [c.metric for c in decision.failures] == ["rows"]


def test_a_challenger_worse_than_the_champion_beyond_tolerance_is_blocked():
    frame, risk = holdout()
    champion, challenger = scores(risk, 0.05), scores(risk, 0.4, seed=2)
    decision = judge(POLICY, frame, challenger, champion, champion_version="4")
    assert not decision.passed
    failed = {(c.scope, c.metric) for c in decision.failures}
    assert ("overall", "roc_auc") in failed and ("overall", "log_loss") in failed
    assert "champion version 4" in decision.summary()
    # the same challenger, judged alone, would have passed the floors
    assert judge(POLICY, frame, challenger).passed


def test_a_challenger_as_good_as_the_champion_passes_and_a_better_one_too():
    frame, risk = holdout()
    champion = scores(risk, 0.3)
    assert judge(POLICY, frame, champion.copy(), champion, "1").passed
    better = judge(POLICY, frame, scores(risk, 0.05), champion, "1")
    assert better.passed
    assert all(c.challenger >= c.champion for c in better.comparisons if c.metric == "roc_auc" and c.champion)


def test_a_regression_in_one_segment_blocks_even_when_overall_is_within_tolerance():
    frame, risk = holdout()
    champion = scores(risk, 0.05)
    challenger = champion.copy()
    southwest = (frame["carrier"] == "WN").to_numpy()
    challenger[southwest] = np.random.default_rng(5).permutation(challenger[southwest])  # useless on one carrier
    loose = POLICY.model_copy(update={"tolerances": Tolerances(overall={"roc_auc": 0.2}, segment={"roc_auc": 0.05})})
    decision = judge(loose, frame, challenger, champion, "1")
    assert [(c.scope, c.metric) for c in decision.failures] == [("carrier=WN", "roc_auc")]
    assert any(segment.startswith("carrier=HA") for segment in decision.unjudged_segments)  # too few flights


def test_lower_is_better_metrics_are_limited_from_above():
    frame, risk = holdout()
    champion = scores(risk, 0.05)
    overconfident = 1 / (1 + np.exp(-30 * (champion - 0.4)))  # the same ranking, far worse log loss
    decision = judge(POLICY.model_copy(update={"segments": []}), frame, overconfident, champion, "1")
    failing = decision.failures
    assert [c.metric for c in failing] == ["log_loss"] and failing[0].rule.startswith("<= ")


def test_the_shipped_policy_loads_and_bad_policies_name_file_and_key(tmp_path):
    policy = load_policy()
    assert policy.gate.floors["roc_auc"] > 0.5 and policy.gate.segments == ["carrier", "origin"]
    assert "month" not in policy.drift.monitored_features
    content = yaml.safe_load(POLICY_PATH.read_text())
    content["gate"]["tolerances"]["overall"]["auc"] = 0.01
    with pytest.raises(PolicyError, match=r"lifecycle.yml: gate.tolerances.overall: .*unknown metric auc"):
        parse_policy(content)
    broken = tmp_path / "lifecycle.yml"
    broken.write_text("gate: [unclosed")
    with pytest.raises(PolicyError, match="cannot be read"):
        load_policy(broken)


def test_segment_metrics_are_the_gates_segments_of_one_version():
    from platform_assets.ml.gate import segment_metrics

    frame, risk = holdout()
    ours = scores(risk, 0.05)
    metrics = segment_metrics(POLICY, frame, ours)
    decision = judge(POLICY, frame, ours, scores(risk, 0.05, seed=2), "1")
    judged = {c.scope for c in decision.comparisons if c.scope != "overall"}
    assert {scope for scope, values in metrics.items() if values is not None} == judged
    assert metrics["carrier=HA"] is None and "carrier=HA (" in decision.markdown()  # too few flights
    roc = next(c for c in decision.comparisons if c.scope == "carrier=UA" and c.metric == "roc_auc")
    assert metrics["carrier=UA"]["roc_auc"] == roc.challenger


def test_a_model_card_is_valid_json_with_every_section():
    import json

    from platform_assets.ml.card import build_card, card_markdown, data_window
    from platform_assets.ml.gate import segment_metrics
    from platform_assets.ml.model import evaluate

    frame, risk = holdout()
    frame["flight_date"] = pd.Timestamp("2013-01-20") + pd.to_timedelta(np.arange(len(frame)) % 5, unit="D")
    ours = scores(risk, 0.4)
    decision = judge(POLICY, frame, ours, scores(risk, 0.01, seed=2), "4")  # a better champion: not passed
    card = build_card(
        model="m", version="5", created_at="2026-11-27T00:00:00+00:00", dagster_run_id="d", mlflow_run_id="r",
        owner={"team": "ml-platform", "steward": "s@example.com", "contact": "c", "on_call": "o"}, table="t",
        feature_dataset_version="v", training=data_window(frame, "a"), holdout=data_window(frame, "b"),
        hyperparameters={"max_iter": 200}, seed=7, features=["carrier"],
        metrics=evaluate(frame["is_arr_delayed_15"].to_numpy(dtype=int), ours),
        segments=segment_metrics(POLICY, frame, ours), decision=decision, promoted=False, serving="version 4",
        known_limits=["a limit from the policy"])
    json.dumps(card, allow_nan=False)  # segments of one class have no ROC AUC: null, not NaN
    assert card["training_data"]["holdout"] == {"digest": "b", "first_day": "2013-01-20", "last_day": "2013-01-24",
                                                "days": 5, "rows": 3000}
    assert card["gate"]["passed"] is False and card["gate"]["champion_before"] == "4"
    assert card["gate"]["decision"].startswith("failed against champion version 4")
    assert card["metrics"]["by_segment"]["carrier=HA"] is None
    assert card["known_limits"][-1] == "a limit from the policy"
    assert any("carrier=HA" in limit for limit in card["known_limits"])
    assert card["sign_off"] == {"required": False, "status": "none yet", "by": None, "at": None}
    text = card_markdown(card)
    assert "# Model card: m version 5" in text and "| carrier=HA | not measured |" in text
    assert "Not promoted; serving after the decision: version 4." in text


@pytest.mark.parametrize("labels, probabilities", [
    (np.random.default_rng(7).integers(0, 2, 5000), np.random.default_rng(8).random(5000)),
    (np.random.default_rng(7).integers(0, 2, 5000), np.round(np.random.default_rng(8).random(5000), 1)),  # ties
    ([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5]),  # one threshold
    ([0, 1], [0.9, 0.1]),
    ([0, 1, 1, 0, 1], [0.0, 1.0, 0.0, 1.0, 0.5]),  # certain and wrong: log loss clipped at eps, as scikit-learn
    ([0, 0, 0], [0.1, 0.7, 0.3]),  # one class: no rank metrics
    ([1, 1], [0.9, 0.2]),
])
def test_the_metrics_are_scikit_learns(labels, probabilities):
    from sklearn.metrics import accuracy_score, average_precision_score, brier_score_loss, log_loss, roc_auc_score

    from platform_assets.ml.model import evaluate

    labels, probabilities = np.asarray(labels), np.asarray(probabilities, dtype=float)
    metrics = evaluate(labels, probabilities)
    assert metrics["brier_score"] == pytest.approx(brier_score_loss(labels, probabilities, pos_label=1), rel=1e-12)
    assert metrics["log_loss"] == pytest.approx(log_loss(labels, probabilities, labels=[0, 1]), rel=1e-12)
    assert metrics["accuracy"] == accuracy_score(labels, probabilities >= 0.5)
    if len(set(labels.tolist())) < 2:
        assert np.isnan(metrics["roc_auc"]) and np.isnan(metrics["average_precision"])
    else:
        assert metrics["roc_auc"] == pytest.approx(roc_auc_score(labels, probabilities), rel=1e-12)
        assert metrics["average_precision"] == pytest.approx(average_precision_score(labels, probabilities), rel=1e-12)


def test_a_logged_dataset_has_the_schema_mlflow_infers():
    from mlflow.types.utils import _infer_schema

    from platform_assets.ml.assets import pandas_dataset

    frame = pd.DataFrame({  # the training set's kinds of columns, with and without nulls
        "flight_date": pd.to_datetime(["2013-01-01", "2013-01-02", None]),
        "carrier": pd.array(["UA", "B6", "UA"], dtype="string"), "origin": ["EWR", None, "JFK"],
        "hour": np.array([5, 6, 7], dtype="int32"), "age": pd.array([3, None, 5], dtype="Int32"),
        "temp": [1.5, np.nan, 2.0], "distance": [1.0, 2.0, 3.0], "delayed": [True, False, True]})
    dataset = pandas_dataset(frame, name="marts.flight_features", digest="d", targets="delayed")
    assert dataset.schema == _infer_schema(frame)
    assert dataset.to_dict()["schema"] and dataset.profile == {"num_rows": 3, "num_elements": 24}


def test_metrics_refuse_what_they_cannot_judge():
    from platform_assets.ml.model import evaluate

    for labels, probabilities in (([0, 1], [0.2, float("nan")]), ([0, 2], [0.2, 0.3]), ([0, 1], [0.2])):
        with pytest.raises(ValueError):
            evaluate(np.asarray(labels), np.asarray(probabilities))
