"""The drift backtest: which drift setting rings when the model's quality drops, and stays quiet when it does not.

It replays the published 2013 flights as the platform serves them: a version is trained, as `ml/delay_model` trains
it, at the first of every month (on every labelled flight before that day, the most recent held out), then scores
every later day; each later day whose whole window is new to the version is judged by `drift.measure_day`, once per
feature reference. A day has a *performance drop* when the window's ROC AUC (flights with a known arrival) is below
the version's holdout ROC AUC by more than `performance.max_drop` (lifecycle.yml): what the performance rule of the
check sees once arrivals are known. For every setting of the label-free rules (feature reference, the PSI a
feature needs to count, how many features, prediction PSI) it counts false alarms on days without a drop and
detections on days with one. Older versions keep serving the later months: staleness is the shift the backtest
relies on, nothing is injected.

`python -m platform_assets.ml backtest [--start DAY] [--end DAY] [--out DIR]` writes drift_backtest.md and
drift_backtest.json (default: <data>/ml/); `--rescore FILE` scores the judged days of an earlier run's JSON again
without training. Pure logic but for `run`, `rescore` and `write`, which read the features or a JSON and write.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from platform_assets.ml.drift import REFERENCES, measure_day, reference_profile
from platform_assets.ml.model import (
    CATEGORICAL_FEATURES, FEATURES, HYPERPARAMETERS, LABEL, as_model_input, build_pipeline, evaluate, split_by_time,
)
from platform_assets.ml.policy import DriftPolicy

FEATURES_TABLE = "marts.flight_features"
MAX_FALSE_ALARMS = 0.05  # the chosen setting rings on at most this share of days without a drop
# The features a setting watches (the month never: a calendar position, constant within a window). Weather and the
# trailing delay statistics describe the week's conditions, which differ from any other week's by design.
FEATURE_SETS = {
    "all": [feature for feature in FEATURES if feature != "month"],
    "flight and plane": [*CATEGORICAL_FEATURES, "sched_dep_hour", "day_of_week", "distance", "plane_age_years",
                         "plane_seats", "has_known_plane"],
}
GRID = {
    "reference": tuple(REFERENCES),
    "monitored": tuple(FEATURE_SETS),
    "feature_psi": (0.1, 0.25, 0.5),
    "features": (1, 2, 3, 5),
    "prediction_psi": (0.1, 0.25, None),  # None: prediction drift not used
}


@dataclass(frozen=True)
class Setting:
    """One setting of the label-free rules (the performance rule is the drop itself, so it is no part of them)."""

    reference: str
    monitored: str  # a name in FEATURE_SETS
    feature_psi: float
    features: int
    prediction_psi: float | None

    def label(self) -> str:
        scores = f"prediction PSI >= {self.prediction_psi:g}" if self.prediction_psi else "no prediction rule"
        return (f"{self.reference}, {self.monitored}: {self.features}+ features with PSI >= {self.feature_psi:g}, "
                f"{scores}")

    @classmethod
    def of_policy(cls, policy: DriftPolicy) -> Setting | None:
        """The grid's setting the policy uses, or None when its monitored features are no set of the grid."""
        monitored = next((name for name, features in FEATURE_SETS.items()
                          if sorted(features) == sorted(policy.monitored_features)), None)
        return monitored and cls(policy.reference, monitored, policy.feature_psi, policy.significant_features,
                                 policy.prediction_psi)


# lifecycle.yml before the backtest: 5 of all features at PSI 0.25 against all training rows, or scores at 0.25.
UNCALIBRATED = Setting("training", "all", 0.25, 5, 0.25)


def settings_grid() -> list[Setting]:
    return [Setting(*values) for values in itertools.product(*GRID.values())]


def training_cuts(days: list[dt.date]) -> list[dt.date]:
    """The first of every month after the first data day; a month that brings no new training day is skipped
    (its version would be the previous one again)."""
    if not days:
        return []
    cuts, first, last = [], days[0], days[-1]
    month = dt.date(first.year + first.month // 12, first.month % 12 + 1, 1)
    seen = 0
    while month <= last:
        before = sum(day < month for day in days)
        if before > seen and before >= 2:
            cuts.append(month)
            seen = before
        month = dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return cuts


def served_days(frame: pd.DataFrame, cut: dt.date, policy: DriftPolicy, seed: int) -> pd.DataFrame:
    """Train a version on the labelled flights before `cut`, score every flight from `cut` on, and judge every later
    day under each feature reference: one row per day and reference, the PSI of every monitored feature in
    columns `psi_<feature>`."""
    labelled = frame[frame[LABEL].notna() & (frame["flight_date"] < pd.Timestamp(cut))]
    split = split_by_time(labelled)
    pipeline = build_pipeline(seed, HYPERPARAMETERS)
    pipeline.fit(as_model_input(split.train), split.train[LABEL].astype(int))
    holdout_scores = pipeline.predict_proba(as_model_input(split.holdout))[:, 1]
    metrics = evaluate(split.holdout[LABEL].to_numpy(dtype=int), holdout_scores)
    profile = reference_profile(split.train, split.holdout_start, holdout_scores, metrics, policy)
    served = frame[frame["data_date"] >= pd.Timestamp(cut)].copy()
    if served.empty:
        return pd.DataFrame()
    served["delay_probability"] = pipeline.predict_proba(as_model_input(served))[:, 1]
    watch_all = policy.model_copy(update={"ignored_features": []})  # the grid chooses among the features
    by_day = {day.date(): rows for day, rows in served.groupby("data_date")}
    rows = []
    for day in sorted(by_day):
        window = pd.concat([by_day[earlier] for earlier in pd.date_range(
            day - dt.timedelta(days=policy.window_days - 1), day).date if earlier in by_day])
        for reference in REFERENCES:
            drift = measure_day(profile, window, day, str(cut), watch_all.model_copy(update={"reference": reference}))
            if not drift.judged:
                break
            rows.append({"trained_before": cut, "day": day, "age_days": (day - cut).days, "reference": reference,
                         "window_rows": drift.window_rows, "prediction_psi": drift.prediction_psi,
                         "performance": drift.performance, "holdout_performance": drift.reference_performance,
                         **{f"psi_{feature}": psi for feature, psi in drift.feature_psi.items()}})
    return pd.DataFrame(rows)


def with_drops(days: pd.DataFrame, policy: DriftPolicy) -> pd.DataFrame:
    """Days with a measured performance, each marked with whether it dropped beyond the policy's max_drop."""
    measured = days[days["performance"].notna()].copy()
    measured["drop"] = measured["holdout_performance"] - measured["performance"] > policy.performance.max_drop
    return measured


def alarms(days: pd.DataFrame, setting: Setting) -> pd.Series:
    """Whether the label-free rules of `setting` ring on each day (rows of its reference)."""
    psi = days[[f"psi_{feature}" for feature in FEATURE_SETS[setting.monitored]]]
    rings = (psi >= setting.feature_psi).sum(axis=1) >= setting.features
    if setting.prediction_psi is not None:
        rings |= days["prediction_psi"] >= setting.prediction_psi
    return rings


def score_settings(days: pd.DataFrame, grid: list[Setting]) -> list[dict]:
    """Per setting: days without a drop and the false alarms among them, days with one and the detections."""
    table = []
    for setting in grid:
        rows = days[days["reference"] == setting.reference]
        rings = alarms(rows, setting)
        quiet, dropped = rows[~rows["drop"]], rows[rows["drop"]]
        false_alarms, detected = int(rings[~rows["drop"]].sum()), int(rings[rows["drop"]].sum())
        table.append({
            "reference": setting.reference, "monitored": setting.monitored, "feature_psi": setting.feature_psi,
            "features": setting.features,
            "prediction_psi": setting.prediction_psi,
            "days_without_drop": len(quiet), "false_alarms": false_alarms,
            "false_alarm_rate": false_alarms / len(quiet) if len(quiet) else float("nan"),
            "days_with_drop": len(dropped), "detected": detected,
            "detection_rate": detected / len(dropped) if len(dropped) else float("nan"),
        })
    return table


def row_of(table: list[dict], setting: Setting | None) -> dict | None:
    return next((row for row in table if setting and all(row[name] == getattr(setting, name) for name in GRID)), None)


def choose(table: list[dict], max_false_alarms: float = MAX_FALSE_ALARMS) -> dict | None:
    """The setting that detects the most drops while ringing on at most `max_false_alarms` of the quiet days;
    ties go to fewer false alarms, then to the recent reference, more features watched, and the most sensitive
    feature rule (fewest features, then lowest PSI): it still catches a broken input when drops are not seen."""
    allowed = [row for row in table if row["false_alarm_rate"] <= max_false_alarms]
    if not allowed:
        return None
    return max(allowed, key=lambda row: (np.nan_to_num(row["detection_rate"]), -row["false_alarm_rate"],
                                         row["reference"] == "recent", row["monitored"] == "all",
                                         -row["features"], -row["feature_psi"], row["prediction_psi"] or 1.0))


def _rate(count: int, total: int) -> str:
    return f"{count}/{total} ({count / total:.0%})" if total else "0/0"


def _row_line(row: dict, mark: str = "") -> str:
    scores = f"{row['prediction_psi']:g}" if row["prediction_psi"] else "off"
    return (f"| {row['reference']} | {row['monitored']} | {row['feature_psi']:g} | {row['features']} | {scores} | "
            f"{_rate(row['false_alarms'], row['days_without_drop'])} | {_rate(row['detected'], row['days_with_drop'])} "
            f"| {mark} |")


def table_markdown(table: list[dict], chosen: dict | None, current: dict | None, limit: int | None = None) -> str:
    """The settings as a markdown table, best first (detection rate minus false-alarm rate, then fewer false
    alarms); the chosen, the current and the pre-backtest setting are marked, and shown even beyond `limit`."""
    before = row_of(table, UNCALIBRATED)
    header = ["| reference | monitored | feature PSI | features | prediction PSI | false alarms (days without drop) | "
              "detected (days with drop) | |", "|---|---|---:|---:|---:|---:|---:|---|"]
    ranked = sorted(table, key=lambda row: (np.nan_to_num(row["false_alarm_rate"]) - np.nan_to_num(row["detection_rate"]),
                                            row["false_alarm_rate"]))
    marks = (("chosen", chosen), ("lifecycle.yml", current), ("before the backtest", before))
    shown = ranked if limit is None else [row for index, row in enumerate(ranked)
                                          if index < limit or any(row is which for _, which in marks)]
    lines = [_row_line(row, ", ".join(mark for mark, which in marks if row is which)) for row in shown]
    return "\n".join(header + lines)


def summary(days: pd.DataFrame, cuts: list[dt.date], first: dt.date, last: dt.date, seconds: float) -> dict:
    one = days[days["reference"] == days["reference"].iloc[0]] if len(days) else days
    return {"first_day": str(first), "last_day": str(last), "versions": [str(cut) for cut in cuts],
            "judged_days": len(one), "days_with_drop": int(one["drop"].sum()) if len(one) else 0,
            "seconds": round(seconds, 1)}


def report_markdown(facts: dict, table: list[dict], chosen: dict | None, current: dict | None,
                    policy: DriftPolicy, best: int = 8) -> str:
    monitored = "; ".join(f"{name}: {', '.join(features)}" for name, features in FEATURE_SETS.items())
    lines = [
        f"# Drift backtest, {facts['first_day']}..{facts['last_day']}", "",
        f"{len(facts['versions'])} versions (trained before {', '.join(facts['versions'])}), each judging every later "
        f"day on its {policy.window_days}-day window: {facts['judged_days']} version-days, "
        f"{facts['days_with_drop']} with a performance drop ({policy.performance.metric} more than "
        f"{policy.performance.max_drop:g} below the version's holdout). "
        f"Chosen: {chosen and Setting(*(chosen[name] for name in GRID)).label() or 'none'} "
        f"(the most detections with at most {MAX_FALSE_ALARMS:.0%} false alarms).", "",
        f"## The {best} best settings, the chosen one and lifecycle.yml's", "",
        table_markdown(table, chosen, current, limit=best), "",
        "## Every setting", "",
        "An alarm: at least `features` of the monitored features with PSI >= `feature PSI` against the reference, "
        f"or the prediction PSI >= `prediction PSI`. Monitored: {monitored}. {facts['seconds']:.0f} s.", "",
        table_markdown(table, chosen, current),
    ]
    return "\n".join(lines) + "\n"


def backtest(frame: pd.DataFrame, policy: DriftPolicy, seed: int) -> tuple[pd.DataFrame, list[dt.date]]:
    """All judged version-days of `frame` (flight_date, data_date, the features, the label), with drops marked."""
    days = sorted(pd.to_datetime(frame[frame[LABEL].notna()]["flight_date"]).dt.date.unique())
    cuts = training_cuts(days)
    judged = [served for served in (served_days(frame, cut, policy, seed) for cut in cuts) if len(served)]
    return (with_drops(pd.concat(judged, ignore_index=True), policy) if judged else pd.DataFrame()), cuts


def read_features(store, first: dt.date | None, last: dt.date | None) -> pd.DataFrame:
    frame = store.read(
        f"SELECT flight_date, data_date, {', '.join(FEATURES)}, {LABEL} FROM {FEATURES_TABLE} "
        "WHERE data_date BETWEEN $1 AND $2 ORDER BY flight_id",
        [first or dt.date.min, last or dt.date.max])
    for column in ("flight_date", "data_date"):
        frame[column] = pd.to_datetime(frame[column])
    return frame


def write(days: pd.DataFrame, facts: dict, policy: DriftPolicy, out_dir: Path) -> dict:
    """Score every setting of the grid on the judged days, write drift_backtest.md and .json to `out_dir`."""
    table = score_settings(days, settings_grid())
    chosen = choose(table)
    current = row_of(table, Setting.of_policy(policy))
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = report_markdown(facts, table, chosen, current, policy)
    (out_dir / "drift_backtest.md").write_text(markdown)
    document = {**facts, "policy": policy.model_dump(), "max_false_alarms": MAX_FALSE_ALARMS, "chosen": chosen,
                "lifecycle_yml": current, "settings": table,
                "days": json.loads(days.to_json(orient="records", date_format="iso"))}
    (out_dir / "drift_backtest.json").write_text(json.dumps(document, indent=1, default=str) + "\n")
    return {**facts, "chosen": chosen, "current": current, "markdown": markdown}


def run(store, policy: DriftPolicy, seed: int, out_dir: Path, first: dt.date | None = None,
        last: dt.date | None = None) -> dict:
    """Backtest the features published in `store`, write drift_backtest.md and .json to `out_dir`."""
    started = time.monotonic()
    frame = read_features(store, first, last)
    if frame.empty:
        raise ValueError(f"no flights in {FEATURES_TABLE} between {first or 'the start'} and {last or 'the end'}: "
                         "materialize marts/flight_features first")
    days, cuts = backtest(frame, policy, seed)
    if days.empty:
        raise ValueError(f"{FEATURES_TABLE} has no day judged on a full {policy.window_days}-day window after a month "
                         "of training: the backtest needs more days")
    facts = summary(days, cuts, frame["data_date"].min().date(), frame["data_date"].max().date(),
                    time.monotonic() - started)
    return write(days, facts, policy, out_dir)


def rescore(previous: Path, policy: DriftPolicy, out_dir: Path) -> dict:
    """The judged days of an earlier backtest (its drift_backtest.json) scored again, without training: for a
    changed grid, selection rule or lifecycle.yml."""
    document = json.loads(previous.read_text())
    facts = {name: document[name] for name in ("first_day", "last_day", "versions", "judged_days", "days_with_drop",
                                               "seconds")}
    return write(pd.DataFrame(document["days"]), facts, policy, out_dir)
