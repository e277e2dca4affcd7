"""The model card of one registered version: what trained it, how it scores overall and by segment, what the gate
decided, what it cannot be trusted for, who owns it and who signed it off. Pure logic: a JSON document and its
markdown rendering (both logged to the version's MLflow run, the markdown also shown in Dagster)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from platform_assets.ml.gate import GateDecision

if TYPE_CHECKING:  # imported where used: loading the code location must not import pandas
    import pandas as pd

CARD_JSON = "model_card.json"
CARD_MARKDOWN = "model_card.md"
NOT_LIVE_YET = "Not yet evaluated on live, labelled days: the metrics are the holdout's."
SHOWN_METRICS = ("roc_auc", "average_precision", "log_loss", "brier_score", "accuracy", "positive_rate", "rows")


def _plain(value: Any) -> Any:
    """JSON without NaN (a metric a segment of one class cannot have is null, not an invalid token)."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def data_window(frame: pd.DataFrame, digest: str) -> dict:
    """The rows of one role (training or holdout): digest, first and last flight day, days and rows."""
    import pandas as pd  # noqa: PLC0415

    days = pd.to_datetime(frame["flight_date"]).dt.date
    return {"digest": digest, "first_day": str(days.min()), "last_day": str(days.max()),
            "days": int(days.nunique()), "rows": len(frame)}


def build_card(
    *, model: str, version: str, created_at: str, dagster_run_id: str, mlflow_run_id: str, owner: dict,
    table: str, feature_dataset_version: str, training: dict, holdout: dict, hyperparameters: dict, seed: int,
    features: list[str], metrics: dict[str, float], segments: dict[str, dict | None], decision: GateDecision,
    promoted: bool, serving: str, known_limits: list[str], sign_off_required: bool = False,
) -> dict:
    unjudged = [scope for scope, values in segments.items() if values is None]
    limits = [
        f"Trained on {training['first_day']}..{training['last_day']} ({training['days']} days) and judged on "
        f"{holdout['first_day']}..{holdout['last_day']} ({holdout['rows']:,} flights): other periods are not "
        "measured.",
        *([f"Too few holdout flights (or one class) to measure: {', '.join(unjudged)}."] if unjudged else []),
        NOT_LIVE_YET,
        *known_limits,
    ]
    return _plain({
        "model": model, "version": version, "created_at": created_at,
        "dagster_run_id": dagster_run_id, "mlflow_run_id": mlflow_run_id,
        "owner": owner,
        "training_data": {"table": table, "feature_dataset_version": feature_dataset_version,
                          "training": training, "holdout": holdout},
        "training": {"hyperparameters": hyperparameters, "seed": seed, "features": features},
        "metrics": {"overall": {name: metrics[name] for name in SHOWN_METRICS if name in metrics},
                    "by_segment": {scope: values and {name: values[name] for name in SHOWN_METRICS}
                                   for scope, values in segments.items()}},
        "gate": {"passed": decision.passed, "decision": decision.summary(),
                 "champion_before": decision.champion_version, "promoted": promoted, "serving_after": serving,
                 "comparisons": [{"scope": c.scope, "metric": c.metric, "challenger": c.challenger,
                                  "champion": c.champion, "rule": c.rule, "passed": c.passed}
                                 for c in decision.comparisons]},
        "known_limits": limits,
        "sign_off": {"required": sign_off_required, "status": "none yet", "by": None, "at": None},
        "release": None,
    })


def with_release(card: dict, release: dict, sign_off: dict | None) -> dict:
    """The card once the version's trial (shadow, canary) was judged on live days: the live comparison, the
    outcome, and who signed it off."""
    card = {**card, "release": _plain(release)}
    if sign_off:
        card["sign_off"] = {**card["sign_off"], "status": "approved", "by": sign_off["by"], "at": sign_off["at"]}
    card["known_limits"] = [limit for limit in card["known_limits"] if limit != NOT_LIVE_YET]
    days = release.get("days") or []
    if days:
        card["known_limits"].insert(0, f"Judged live on {len(days)} labelled days ({days[0]}..{days[-1]}) in "
                                       f"{release.get('stage')}: later seasons are not measured.")
    return card


def _number(value: float | None, metric: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if metric == "rows" else f"{value:.4f}"


def card_markdown(card: dict) -> str:
    data, gate, owner = card["training_data"], card["gate"], card["owner"]
    lines = [
        f"# Model card: {card['model']} version {card['version']}",
        "",
        f"Registered {card['created_at']} by Dagster run `{card['dagster_run_id']}` (MLflow run "
        f"`{card['mlflow_run_id']}`). Owner: team {owner['team']}, steward {owner['steward']}, contact "
        f"{owner['contact']}, on call {owner['on_call']}. Sign-off: {card['sign_off']['status']}.",
        "",
        "## Training data",
        "",
        f"`{data['table']}`, labelled rows version `{data['feature_dataset_version']}`.",
        "",
        "| role | days | first day | last day | rows | digest |",
        "|---|---:|---|---|---:|---|",
        *(f"| {role} | {window['days']} | {window['first_day']} | {window['last_day']} | {window['rows']:,} | "
          f"`{window['digest']}` |" for role, window in (("training", data["training"]), ("holdout", data["holdout"]))),
        "",
        "## Metrics on the holdout",
        "",
        "| scope | " + " | ".join(SHOWN_METRICS) + " |",
        "|---|" + "---:|" * len(SHOWN_METRICS),
        "| overall | " + " | ".join(_number(card["metrics"]["overall"].get(m), m) for m in SHOWN_METRICS) + " |",
        *(f"| {scope} | " + (" | ".join(_number(values.get(m), m) for m in SHOWN_METRICS) if values
                             else "not measured" + " |" * (len(SHOWN_METRICS) - 1)) + " |"
          for scope, values in card["metrics"]["by_segment"].items()),
        "",
        "## Gate decision",
        "",
        f"{'Passed' if gate['passed'] else 'Not passed'}: {gate['decision']}. "
        f"{'Promoted to champion' if gate['promoted'] else 'Not promoted'}; serving after the decision: "
        f"{gate['serving_after']}.",
        "",
        *_release_lines(card.get("release")),
        "## Known limits",
        "",
        *(f"- {limit}" for limit in card["known_limits"]),
    ]
    return "\n".join(lines) + "\n"


def _release_lines(release: dict | None) -> list[str]:
    if not release:
        return []
    share = f" at share {release['share']:g}" if release.get("share") else ""
    days = ", ".join(release.get("days") or []) or "none"
    lines = ["## Shadow and canary results (live, labelled days)", "",
             f"{release['stage'].capitalize()}{share}, days {days}: **{release['outcome']}** ({release['reason']}).",
             "", "| scope | metric | challenger | champion | must be | verdict |", "|---|---|---:|---:|---|---|"]
    lines += [f"| {c['scope']} | {c['metric']} | {_number(c['challenger'], c['metric'])} | "
              f"{_number(c['champion'], c['metric'])} | {c['rule']} | {'pass' if c['passed'] else '**FAIL**'} |"
              for c in release.get("comparisons") or []]
    return [*lines, ""]
