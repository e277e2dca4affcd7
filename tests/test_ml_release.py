"""The release rules after the offline gate, as pure logic: canary shares, trial steps, the error budget."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from platform_assets.ml.gate import judge
from platform_assets.ml.policy import ReleasePolicy, load_policy
from platform_assets.ml.release import budget_breach, in_canary, trial_step

DAYS = [dt.date(2013, 7, 5) + dt.timedelta(days=n) for n in range(3)]


def _decision(passed: bool):
    rng = np.random.default_rng(0)
    risk = rng.random(3000)
    frame = pd.DataFrame({"carrier": "UA", "origin": "EWR", "is_arr_delayed_15": rng.random(3000) < risk})
    good = np.clip(risk + rng.normal(0, 0.05, 3000), 0, 1)
    noise = rng.random(3000)
    return judge(load_policy().gate, frame, good if passed else noise, good, "1")


def test_the_canary_share_is_deterministic_nested_and_close_to_its_setting():
    ids = [f"2013-07-0{day}_{carrier}{number}_{origin}" for day in range(1, 8) for carrier in ("UA", "B6", "EV")
           for number in range(100, 600) for origin in ("EWR", "JFK")]
    tenth, quarter = in_canary(ids, 0.1), in_canary(ids, 0.25)
    assert (in_canary(ids, 0.1) == tenth).all()  # the same flights every time
    assert not (tenth & ~quarter).any()  # raising the share keeps every flight the canary served
    assert tenth.mean() == pytest.approx(0.1, abs=0.01) and quarter.mean() == pytest.approx(0.25, abs=0.01)


def test_a_shadow_waits_for_its_days_then_serves_or_is_retired():
    policy = ReleasePolicy(shadow_days=3)
    assert trial_step(policy, "shadow", None, DAYS[:2], None, approved=False).action == "wait"
    assert trial_step(policy, "shadow", None, DAYS, _decision(True), approved=False).action == "promote"
    retired = trial_step(policy, "shadow", None, DAYS, _decision(False), approved=True)
    assert retired.action == "retire" and "worse than the champion live" in retired.reason


def test_sign_off_holds_a_good_shadow_and_canary_steps_rise_to_promotion():
    held = ReleasePolicy.model_validate({"shadow_days": 3, "sign_off": {"required": True}})
    assert trial_step(held, "shadow", None, DAYS, _decision(True), approved=False).action == "await_sign_off"
    assert trial_step(held, "shadow", None, DAYS, _decision(True), approved=True).action == "promote"
    canary = ReleasePolicy.model_validate({"shadow_days": 3, "canary": {"shares": [0.1, 0.5], "days_per_step": 2}})
    steps = [trial_step(canary, "shadow", None, DAYS, _decision(True), True),
             trial_step(canary, "canary", 0.1, DAYS[:2], _decision(True), True),
             trial_step(canary, "canary", 0.5, DAYS[:2], _decision(True), True)]
    assert [(step.action, step.share) for step in steps] == [("canary", 0.1), ("canary", 0.5), ("promote", None)]
    assert trial_step(canary, "canary", 0.1, DAYS[:1], None, True).action == "wait"
    with pytest.raises(ValueError, match="shares must rise"):
        ReleasePolicy.model_validate({"canary": {"shares": [0.5, 0.1]}})


def test_the_error_budget_is_spent_only_by_days_in_a_row():
    policy = ReleasePolicy.model_validate({"rollback": {"metric": "roc_auc", "error_budget": 0.05, "days": 2}})
    daily = pd.Series([0.70, 0.60, 0.69, 0.61], index=[dt.date(2013, 7, day) for day in (1, 2, 3, 4)])
    assert budget_breach(policy, daily, 0.70, "holdout") is None  # bad days, but never two in a row
    breach = budget_breach(policy, pd.concat([daily, pd.Series([0.62], index=[dt.date(2013, 7, 5)])]), 0.70,
                           "holdout")
    assert breach is not None and list(breach.days) == ["2013-07-04", "2013-07-05"]
    assert breach.limit == pytest.approx(0.65) and "2 labelled days in a row" in breach.reason("4")
    lower = ReleasePolicy.model_validate({"rollback": {"metric": "log_loss", "error_budget": 0.05, "days": 1}})
    assert budget_breach(lower, pd.Series([0.50], index=[dt.date(2013, 7, 1)]), 0.40, "holdout") is not None
