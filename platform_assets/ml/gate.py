"""The promotion gate: a challenger against the champion on the same holdout, overall and by segment. Pure logic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from platform_assets.ml.model import LABEL, LOWER_IS_BETTER, evaluate
from platform_assets.ml.policy import GatePolicy

if TYPE_CHECKING:  # imported where used: loading the code location must not import numpy or pandas
    import numpy as np
    import pandas as pd


@dataclass(frozen=True)
class Comparison:
    """One judged line: a metric of one scope (overall or a segment) against its floor or the champion."""

    scope: str
    metric: str
    challenger: float
    champion: float | None
    limit: float
    rule: str
    passed: bool


@dataclass(frozen=True)
class GateDecision:
    champion_version: str | None
    comparisons: tuple[Comparison, ...]
    unjudged_segments: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return all(comparison.passed for comparison in self.comparisons)

    @property
    def failures(self) -> list[Comparison]:
        return [comparison for comparison in self.comparisons if not comparison.passed]

    def summary(self) -> str:
        against = (f"champion version {self.champion_version}" if self.champion_version
                   else "the floors only (no champion yet)")
        if self.passed:
            return f"passed against {against}"
        failed = ", ".join(f"{c.scope} {c.metric} {_format(c.metric, c.challenger)} (must be {c.rule})"
                           for c in self.failures)
        return f"failed against {against}: {failed}"

    def markdown(self) -> str:
        lines = ["| scope | metric | challenger | champion | change | must be | verdict |",
                 "|---|---|---:|---:|---:|---|---|"]
        for c in self.comparisons:
            champion = "" if c.champion is None else _format(c.metric, c.champion)
            change = "" if c.champion is None else f"{c.challenger - c.champion:+.4f}"
            lines.append(f"| {c.scope} | {c.metric} | {_format(c.metric, c.challenger)} | {champion} | {change} | "
                         f"{c.rule} | {'pass' if c.passed else '**FAIL**'} |")
        if self.unjudged_segments:
            lines.append(f"\nNot judged (too few holdout flights or one class): {', '.join(self.unjudged_segments)}")
        return "\n".join(lines)


def _format(metric: str, value: float) -> str:
    return f"{value:,.0f}" if metric == "rows" else f"{value:.4f}"


def _within(metric: str, value: float, limit: float) -> bool:
    return value <= limit if metric in LOWER_IS_BETTER else value >= limit


def _floor(metric: str, value: float, floor: float) -> Comparison:
    sign = "<=" if metric in LOWER_IS_BETTER else ">="
    return Comparison("overall", metric, value, None, floor, f"{sign} {_format(metric, floor)} (floor)",
                      _within(metric, value, floor))


def _against_champion(scope: str, metric: str, challenger: float, champion: float, tolerance: float) -> Comparison:
    lower = metric in LOWER_IS_BETTER
    limit = champion + tolerance if lower else champion - tolerance
    rule = f"{'<=' if lower else '>='} {_format(metric, limit)} (champion {'+' if lower else '-'} {tolerance:g})"
    return Comparison(scope, metric, challenger, champion, limit, rule, _within(metric, challenger, limit))


def judge(
    policy: GatePolicy,
    holdout: pd.DataFrame,
    challenger_scores: np.ndarray,
    champion_scores: np.ndarray | None = None,
    champion_version: str | None = None,
) -> GateDecision:
    """Floors on the challenger's holdout metrics; with a champion, each tolerated regression overall and in
    every segment with enough flights of both classes, both models scored on the same rows."""
    labels = holdout[LABEL].to_numpy(dtype=int)
    challenger = evaluate(labels, challenger_scores)
    comparisons = [_floor(metric, challenger[metric], floor) for metric, floor in policy.floors.items()]
    unjudged = []
    if champion_scores is not None:
        champion = evaluate(labels, champion_scores)
        comparisons += [_against_champion("overall", metric, challenger[metric], champion[metric], tolerance)
                        for metric, tolerance in policy.tolerances.overall.items()]
        for segment in segments_of(policy, holdout):
            if not segment.judged:
                unjudged.append(f"{segment.scope} ({len(segment.rows)})")
                continue
            ours = evaluate(labels[segment.rows], challenger_scores[segment.rows])
            theirs = evaluate(labels[segment.rows], champion_scores[segment.rows])
            comparisons += [_against_champion(segment.scope, metric, ours[metric], theirs[metric], tolerance)
                            for metric, tolerance in policy.tolerances.segment.items()]
    return GateDecision(champion_version, tuple(comparisons), tuple(unjudged))


@dataclass(frozen=True)
class Segment:
    scope: str  # column=value
    rows: np.ndarray  # positions in the holdout
    judged: bool  # enough flights of both classes to be judged (policy.min_segment_rows)


def segments_of(policy: GatePolicy, holdout: pd.DataFrame) -> list[Segment]:
    """The holdout's segments the gate looks at (each value of each policy segment column), in a stable order."""
    import numpy as np  # noqa: PLC0415

    labels = holdout[LABEL].to_numpy(dtype=int)
    return [Segment(f"{column}={value}", rows,
                    len(rows) >= policy.min_segment_rows and len(np.unique(labels[rows])) == 2)
            for column in policy.segments
            for value, rows in holdout.groupby(column, sort=True).indices.items()]


def segment_metrics(policy: GatePolicy, holdout: pd.DataFrame, scores: np.ndarray) -> dict[str, dict | None]:
    """One version's holdout metrics per segment the gate judges (None for those too small to judge)."""
    labels = holdout[LABEL].to_numpy(dtype=int)
    return {segment.scope: evaluate(labels[segment.rows], scores[segment.rows]) if segment.judged else None
            for segment in segments_of(policy, holdout)}
