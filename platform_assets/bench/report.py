"""Pure helpers of the benchmark: which tables each layer has, where each side keeps them, how the row counts
compare, and the summary table. No I/O here."""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass

LAYERS = ("raw", "cleaned", "features", "ml")
PREDICTIONS = "ml.flight_delay_predictions"


@dataclass(frozen=True)
class Table:
    """One table both sides build. `name` is the asset key (`<folder>/<table>`); the platform's consumers read
    it at `platform_relation`, the baseline writes it at `baseline_relation`."""

    name: str
    layer: str
    platform_relation: str
    baseline_relation: str


def benchmark_tables(manifest: dict, sources: list[str], published_schema: str) -> list[Table]:
    """Raw tables of the sources, every dbt model (its layer from the model's `meta.layer`; marts are read
    where the platform publishes them, while the baseline keeps dbt's schema), and the predictions."""
    tables = [Table(f"raw/{name}", "raw", f"raw.{name}", f"raw.{name}") for name in sources]
    for node in manifest["nodes"].values():
        if node["resource_type"] != "model":
            continue
        folder, alias = node["fqn"][1], node["alias"] or node["name"]
        built = f"{node['schema']}.{alias}"
        published = f"{published_schema}.{alias}" if folder == published_schema else built
        tables.append(Table(f"{folder}/{node['name']}", node["config"]["meta"]["layer"], published, built))
    tables.append(Table("ml/flight_delay_predictions", "ml", PREDICTIONS, PREDICTIONS))
    return sorted(tables, key=lambda t: (LAYERS.index(t.layer), t.name))


def models_in_build_order(manifest: dict) -> list[dict]:
    """The dbt models, each after every model it selects from."""
    models = {uid: node for uid, node in manifest["nodes"].items() if node["resource_type"] == "model"}
    ordered: list[str] = []
    visiting: set[str] = set()

    def visit(uid: str) -> None:
        if uid in ordered:
            return
        if uid in visiting:
            raise ValueError(f"dbt models depend on each other in a cycle through {uid}")
        visiting.add(uid)
        for parent in models[uid]["depends_on"]["nodes"]:
            if parent in models:
                visit(parent)
        visiting.discard(uid)
        ordered.append(uid)

    for uid in sorted(models):
        visit(uid)
    return [models[uid] for uid in ordered]


def compare_row_counts(tables: list[Table], platform: dict[str, int | None], baseline: dict[str, int | None]) -> dict:
    """Equal when every table exists on both sides with the same number of rows."""
    mismatches = [
        {"table": t.name, "platform": platform.get(t.name), "baseline": baseline.get(t.name)}
        for t in tables
        if platform.get(t.name) is None or platform.get(t.name) != baseline.get(t.name)
    ]
    return {"row_counts_match": not mismatches, "mismatches": mismatches}


def rows_per_layer(tables: list[Table], counts: dict[str, int | None]) -> dict[str, int]:
    return {layer: sum(counts.get(t.name) or 0 for t in tables if t.layer == layer) for layer in LAYERS}


def per_second(rows: int, seconds: float | None) -> float | None:
    return round(rows / seconds) if seconds else None


def ratio(platform_seconds: float, baseline_seconds: float) -> float:
    return round(platform_seconds / baseline_seconds, 2)


def median_seconds(samples: list[float]) -> float:
    return round(statistics.median(samples), 2)


def parse_scales(text: str) -> list[float]:
    """`"1 5 20"` (spaces or commas) to scale factors; each must be positive."""
    scales = [float(part) for part in text.replace(",", " ").split()]
    if not scales or any(scale <= 0 for scale in scales):
        raise ValueError(f"SCALES must be positive numbers, e.g. '1 5 20', got {text!r}")
    return scales


def parse_targets(text: str) -> list[str]:
    """`"embedded,team"` (or `"team"`: the team target is always measured with the embedded one beside it)."""
    names = [part for part in text.replace(",", " ").split() if part]
    unknown = [name for name in names if name not in ("embedded", "team")]
    if not names or unknown:
        raise ValueError(f"BENCH_TARGETS must be embedded or embedded,team, got {text!r}")
    return ["embedded", *(["team"] if "team" in names else [])]


def bench_period(start: str, end: str, days: str | None, last_data_day: dt.date) -> tuple[dt.date, dt.date]:
    """[start, end], or the first `days` days from start; the day after it must still be data (the
    incremental measurement delivers it)."""
    first = dt.date.fromisoformat(start)
    last = first + dt.timedelta(days=int(days) - 1) if days else dt.date.fromisoformat(end)
    if last < first:
        raise ValueError(f"the benchmark period {first}..{last} is empty")
    if last >= last_data_day:
        raise ValueError(f"the benchmark period must end before {last_data_day}: the day after it is delivered "
                         "as the incremental day")
    return first, last


def step_overlap(timeline: list[dict]) -> dict:
    """Which steps of a timeline (entries with `step`, `start`, `end` in seconds) ran at the same time: the most
    at once, how long two or more ran together, and every pair that overlapped with for how long (longest
    first). A step that ends when another starts did not overlap it; skipped and unfinished steps are left out."""
    spans = sorted((entry["start"], entry["end"], entry["step"]) for entry in timeline
                   if entry.get("start") is not None and entry.get("end") is not None)
    # Ends before starts at the same instant: touching steps are one after another, not at once.
    edges = sorted([(start, 1) for start, _, _ in spans] + [(end, -1) for _, end, _ in spans])
    running = most = 0
    together = 0.0
    since = None
    for instant, change in edges:
        if running >= 2 and since is not None:
            together += instant - since
        running += change
        most = max(most, running)
        since = instant
    pairs = []
    for index, (start, end, step) in enumerate(spans):
        for other_start, other_end, other in spans[index + 1:]:
            if other_start >= end:
                break  # sorted by start: no later step overlaps this one
            seconds = min(end, other_end) - other_start
            if seconds > 0:
                pairs.append({"steps": [step, other], "seconds": round(seconds, 2)})
    return {"steps": len(spans), "max_concurrent_steps": most, "seconds_with_two_or_more": round(together, 2),
            "overlapping_pairs": sorted(pairs, key=lambda pair: -pair["seconds"])}


def _cell(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


SUMMARY_COLUMNS = [
    ("scale", "scale"), ("platform_seconds", "platform s"), ("baseline_seconds", "baseline s"), ("ratio", "ratio"),
    ("platform_peak_rss_mb", "platform peak MB"), ("baseline_peak_rss_mb", "baseline peak MB"),
    ("incremental_day_seconds", "new day s"), ("baseline_new_day_seconds", "baseline new day s"),
    ("new_day_ratio", "new day ratio"), ("new_day_launched_seconds", "new day launched s"),
    ("new_day_launched_ratio", "launched ratio"), ("row_counts_match", "rows match"),
    ("platform_cpu_seconds", "platform CPU s"), ("baseline_cpu_seconds", "baseline CPU s"),
]


def summary_table(results: list[dict]) -> str:
    """A Markdown table of the per-scale results (also what the README shows)."""
    header = "| " + " | ".join(title for _, title in SUMMARY_COLUMNS) + " |"
    rule = "|" + "|".join("---:" for _ in SUMMARY_COLUMNS) + "|"
    rows = ["| " + " | ".join(_cell(result.get(key), 2 if key.endswith("ratio") else 1) for key, _ in SUMMARY_COLUMNS)
            + " |" for result in results]
    return "\n".join([header, rule, *rows])


TEAM_COLUMNS = [
    ("scale", "scale"), ("embedded s", "embedded s"), ("team s", "team s"), ("ratio", "team/embedded"),
    ("embedded MB", "embedded peak MB"), ("team MB", "team peak MB"), ("servers MB", "of it servers MB"),
    ("steps at once", "steps at once e/t"), ("ok", "team ok"),
]


def team_table(results: list[dict]) -> str:
    """A Markdown table of team against embedded per scale: wall time, peak memory (team: the run's processes and
    the servers' together, at the peak of their sum; of it the servers' share at their own peak), the most steps
    running at once on each, and whether the team runs succeeded with the baseline's row counts."""
    header = "| " + " | ".join(title for _, title in TEAM_COLUMNS) + " |"
    rule = "|" + "|".join("---:" for _ in TEAM_COLUMNS) + "|"
    rows = []
    for result in results:
        if "team" not in result:
            continue
        embedded, team, comparison = result["team"]["embedded"], result["team"]["team"], result["team"]["comparison"]
        servers = sum(group["peak_pss_mb"] for name, group in team["peak_by_group_mb"].items() if name != "run")
        at_once = comparison["max_concurrent_steps"]
        cells = [result["scale"], embedded["seconds"], team["seconds"], comparison["seconds_ratio"],
                 embedded["peak_rss_mb"], team["peak_rss_mb"], servers, f"{at_once['embedded']}/{at_once['team']}",
                 team["success"] and team["row_counts_match"]]
        rows.append("| " + " | ".join(_cell(cell, 2 if key == "ratio" else 1) for (key, _), cell in
                                      zip(TEAM_COLUMNS, cells)) + " |")
    return "\n".join([header, rule, *rows])
