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
