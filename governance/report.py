"""`governance report`: one self-contained HTML page for data owners (inline CSS and SVG, nothing fetched)."""

from __future__ import annotations

import datetime as dt
from html import escape

from governance.catalog import Catalog
from governance.check_status import summary
from governance.cost import DatasetCost
from governance.graph import AssetNode, depths
from governance.model_cards import ModelCard
from governance.policy import access_matrix

COLORS = {"public": "#d8f0d8", "internal": "#dce8f8", "confidential": "#fbe8c8", "restricted": "#f8d0d0"}
STATUS_COLORS = {"passed": "#2e7d32", "unknown": "#9e9e9e"}  # anything else is a failure
CELL_CLASSES = {"full": "full", "denied": "denied"}
CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222;max-width:1500px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:18px 0 6px}table{border-collapse:collapse;margin:6px 0 12px}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}th{background:#f4f4f4}
.muted{color:#666}.tag{display:inline-block;padding:0 6px;border-radius:8px;font-size:12px;margin-right:3px}
.full{background:#e3f4e3}.denied{background:#f6dede;color:#8a1f1f}.masked{background:#fff1cc}
.failed{color:#b71c1c;font-weight:600}.passed{color:#2e7d32}.unknown{color:#757575}
section.dataset{border:1px solid #e4e4e4;border-radius:6px;padding:4px 14px;margin:12px 0}
svg text{font:12px system-ui,sans-serif}svg a:hover rect{stroke:#000;stroke-width:1.5}
details pre{white-space:pre-wrap;background:#fafafa;border:1px solid #eee;padding:6px 10px;font-size:12px}
"""


def render_report(catalog: Catalog, graph: dict[str, AssetNode], checks: dict[str, dict],
                  generated_at: dt.datetime | None = None, costs: dict[str, DatasetCost] | None = None,
                  model_cards: dict[str, list[ModelCard]] | None = None) -> str:
    generated_at = generated_at or dt.datetime.now(dt.UTC)
    keys = sorted(catalog.datasets, key=lambda k: (depths(graph).get(k, 0), k))
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>Data governance report</title>", f"<style>{CSS}</style></head><body>",
        "<h1>Data governance report</h1>",
        f'<p class="muted">Generated {escape(generated_at.strftime("%Y-%m-%d %H:%M UTC"))} from the catalog in '
        f"{escape(str(catalog.directory))}: {len(catalog.datasets)} datasets, {len(catalog.consumers)} consumers, "
        f"{len(catalog.access.roles)} roles. Check status comes from the OpenLineage events under the data folder; "
        "<em>unknown</em> means no event reported it.</p>",
        "<h2>Lineage</h2>", f'<div style="overflow-x:auto">{lineage_svg(catalog, graph, checks)}</div>', _legend(),
        "<h2>Datasets</h2>", _overview(catalog, keys, checks, costs or {}),
        "<h2>Consumers</h2>", _consumers(catalog),
        "<h2>Teams</h2>", _teams(catalog),
        "<h2>Dataset details and access</h2>",
        *(_dataset_section(catalog, key, checks.get(key), (model_cards or {}).get(key, [])) for key in keys),
        "</body></html>",
    ]
    return "\n".join(parts)


def _anchor(key: str) -> str:
    return "ds-" + key.replace("/", "-")


def lineage_svg(catalog: Catalog, graph: dict[str, AssetNode], checks: dict[str, dict]) -> str:
    """Assets left to right by depth, consumers in the last column; edges from each input to its reader."""
    width, height, gap_x, gap_y = 280, 24, 320, 34
    depth = depths(graph)
    columns: dict[int, list[str]] = {}
    for key in sorted(graph):
        columns.setdefault(depth[key], []).append(key)
    consumer_column = max(columns, default=-1) + 1
    columns[consumer_column] = [f"consumer:{name}" for name in catalog.consumers]
    position = {key: (20 + column * gap_x, 20 + row * gap_y)
                for column, members in columns.items() for row, key in enumerate(members)}
    edges = [(dep, node.key) for node in graph.values() for dep in node.deps if dep in position]
    edges += [(key, f"consumer:{name}") for name, consumer in catalog.consumers.items()
              for key in consumer.depends_on if key in position]
    total_width = 40 + (consumer_column + 1) * gap_x
    total_height = 40 + max(len(members) for members in columns.values()) * gap_y
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_width}" height="{total_height}" '
           f'viewBox="0 0 {total_width} {total_height}" role="img" aria-label="lineage of every dataset">']
    for source, target in edges:
        (x1, y1), (x2, y2) = position[source], position[target]
        x1, y1, y2 = x1 + width, y1 + height / 2, y2 + height / 2
        dashed = ' stroke-dasharray="4 3"' if target.startswith("consumer:") else ""
        out.append(f'<path d="M{x1},{y1} C{x1 + 30},{y1} {x2 - 30},{y2} {x2},{y2}" fill="none" '
                   f'stroke="#9aa5b1"{dashed}/>')
    for key, (x, y) in position.items():
        if key.startswith("consumer:"):
            name = key.split(":", 1)[1]
            consumer = catalog.consumers[name]
            out.append(f'<g><rect x="{x}" y="{y}" width="{width}" height="{height}" rx="12" fill="#ede7f6" '
                       f'stroke="#7e57c2"/><text x="{x + 10}" y="{y + 16}">{escape(name)} '
                       f'({escape(consumer.kind)})</text></g>')
            continue
        dataset = catalog.datasets.get(key)
        fill = COLORS.get(dataset.classification, "#eee") if dataset else "#eee"
        state = summary(checks.get(key))
        dot = STATUS_COLORS.get(state, "#c62828")
        out.append(f'<a href="#{_anchor(key)}"><rect x="{x}" y="{y}" width="{width}" height="{height}" rx="4" '
                   f'fill="{fill}" stroke="#888"><title>{escape(key)}: {escape(state)}</title></rect>'
                   f'<circle cx="{x + 10}" cy="{y + height / 2}" r="4" fill="{dot}"/>'
                   f'<text x="{x + 20}" y="{y + 16}">{escape(key)}</text></a>')
    out.append("</svg>")
    return "\n".join(out)


def _legend() -> str:
    swatches = "".join(f'<span class="tag" style="background:{color}">{name}</span>' for name, color in COLORS.items())
    return (f'<p class="muted">Fill: classification {swatches}. Dot: latest checks (green passed, red failed, '
            "grey unknown). Purple: consumers (dashed: what they read).</p>")


def _row(cells: list[str], header: bool = False) -> str:
    tag = "th" if header else "td"
    return "<tr>" + "".join(f"<{tag}>{cell}</{tag}>" for cell in cells) + "</tr>"


def _cost_cell(cost: DatasetCost | None) -> str:
    """The latest materialization's wall time, its trend and any cost alert (governance cost has the rest)."""
    if cost is None:
        return '<span class="unknown">unknown</span>'
    trend = f", {cost.trend:.2f}x its median" if cost.trend is not None else ""
    alert = f'<br><span class="failed">{escape(cost.alert)}</span>' if cost.alert else ""
    return f"{cost.wall_seconds:.1f} s{escape(trend)}{alert}"


def _overview(catalog: Catalog, keys: list[str], checks: dict[str, dict], costs: dict[str, DatasetCost]) -> str:
    rows = [_row(["dataset", "owner", "on call", "steward", "classification", "PII", "lifecycle", "freshness SLA",
                  "consumers", "latest checks", "cost (latest)"], header=True)]
    for key in keys:
        dataset = catalog.datasets[key]
        team = catalog.teams[dataset.owner]
        sla = dataset.freshness_sla
        state = summary(checks.get(key))
        lifecycle = dataset.lifecycle
        rows.append(_row([
            f'<a href="#{_anchor(key)}">{escape(key)}</a>' + (" <em>published</em>" if dataset.published else ""),
            f"team:{escape(dataset.owner)}", escape(team.on_call), escape(dataset.steward),
            f'<span class="tag" style="background:{COLORS.get(dataset.classification, "#eee")}">'
            f"{escape(dataset.classification)}</span>",
            escape(", ".join(dataset.pii_categories)) or "-",
            escape(lifecycle.status + (f", sunset {lifecycle.sunset}, use {lifecycle.replacement}"
                                       if lifecycle.status == "deprecated" else "")),
            f"warn {sla.warn_after_hours} h, fail {sla.fail_after_hours} h" if sla else "-",
            escape(", ".join(catalog.consumers_of(key))) or "-",
            f'<span class="{_status_class(state)}">{escape(state)}</span>',
            _cost_cell(costs.get(key)),
        ]))
    return "<table>" + "".join(rows) + "</table>"


def _status_class(state: str) -> str:
    return "failed" if state.startswith("failed") else state


def _consumers(catalog: Catalog) -> str:
    rows = [_row(["consumer", "kind", "owner", "contact", "criticality", "role", "reads"], header=True)]
    for name, consumer in catalog.consumers.items():
        reads = "<br>".join(f"{escape(key)}: {escape(', '.join(columns))}" for key, columns in consumer.depends_on.items())
        rows.append(_row([escape(name), escape(consumer.kind), f"team:{escape(consumer.owner)}", escape(consumer.contact),
                          escape(consumer.criticality), escape(consumer.role), reads]))
    return "<table>" + "".join(rows) + "</table>"


def _teams(catalog: Catalog) -> str:
    rows = [_row(["team", "contact", "on call", "members"], header=True)]
    for name, team in catalog.teams.items():
        members = ", ".join(f"{escape(m.name)} &lt;{escape(m.email)}&gt;" for m in team.members)
        rows.append(_row([f"team:{escape(name)}", escape(team.contact), escape(team.on_call), members]))
    return "<table>" + "".join(rows) + "</table>"


def _dataset_section(catalog: Catalog, key: str, checks: dict | None, cards: list[ModelCard] = ()) -> str:
    dataset = catalog.datasets[key]
    team = catalog.teams[dataset.owner]
    parts = [f'<section class="dataset" id="{_anchor(key)}"><h3>{escape(key)}</h3>',
             f"<p>{escape(dataset.description)}</p>",
             f'<p class="muted">Owner team:{escape(dataset.owner)} ({escape(team.contact)}, on call '
             f"{escape(team.on_call)}), steward {escape(dataset.steward)}, domain {escape(dataset.domain)}, "
             f"classification {escape(dataset.classification)}.</p>"]
    if checks:
        items = "".join(_check_item(name, result) for name, result in sorted(checks.items()))
        parts.append(f"<p>Latest checks:</p><ul>{items}</ul>")
    else:
        parts.append('<p>Latest checks: <span class="unknown">unknown</span> (no lineage event reported them).</p>')
    if cards:
        parts.append(_model_cards(cards))
    if dataset.published:
        parts.append(_access_table(catalog, key))
    elif dataset.columns:
        parts.append("<p>Personal data: " + escape(", ".join(f"{name} ({column.pii})" for name, column
                                                              in dataset.columns.items() if column.pii)) +
                     ". Not published: no role reads it through governance.</p>")
    else:
        parts.append("<p class='muted'>Not published: no role reads it through governance.</p>")
    parts.append("</section>")
    return "\n".join(parts)


def _card_anchor(card: ModelCard) -> str:
    return f"card-{card.model}-{card.version}"


def _model_cards(cards: list[ModelCard]) -> str:
    """Every version's model card, newest first: a linked line with its gate decision, then the card itself (the
    page stays self-contained; the file's path is shown, not fetched)."""
    items = "".join(
        f'<li><a href="#{escape(_card_anchor(card))}">{escape(card.model)} version {escape(card.version)}</a> '
        f'<span class="muted">{escape(card.created_at)}</span>: '
        f'{"promoted" if card.promoted else "not promoted"} ({escape(card.gate)}); serving after: '
        f"{escape(card.serving_after)}</li>" for card in cards)
    bodies = "".join(
        f'<details id="{escape(_card_anchor(card))}"><summary>Model card of version {escape(card.version)} '
        f'<span class="muted">{escape(str(card.markdown))}</span></summary>'
        f"<pre>{escape(card.text or 'model_card.md is missing beside model_card.json')}</pre></details>"
        for card in cards)
    return f"<p>Model cards ({len(cards)}, from the MLflow artifact store):</p><ul>{items}</ul>{bodies}"


def _check_item(name: str, result: dict) -> str:
    state = "passed" if result["success"] else "failed"
    severity = f" ({result['severity']})" if result.get("severity") else ""
    return (f'<li class="{state}">{escape(name)}: {state}{escape(severity)} '
            f'<span class="muted">{escape(str(result.get("at") or ""))}</span></li>')


def _access_table(catalog: Catalog, key: str) -> str:
    matrix = access_matrix(catalog, key)
    roles = list(matrix["roles"])
    dataset = catalog.datasets[key]
    rows = [_row(["column", "type", "classification", "PII", *map(escape, roles)], header=True)]
    rows.append(_row(["<em>rows</em>", "", "", "", *(
        escape(matrix["roles"][r]["row_filter"] or ("all" if matrix["roles"][r]["dataset"].startswith("allowed")
                                                   else "denied")) for r in roles)]))
    for name in matrix["columns"]:
        column = dataset.columns[name]
        cells = []
        for role in roles:
            label = matrix["roles"][role]["columns"][name]
            cells.append(f'<span class="{CELL_CLASSES.get(label.split(":")[0], "masked")}">{escape(label)}</span>')
        rows.append(_row([escape(name), escape(column.type or ""), escape(column.classification),
                          escape(column.pii or ""), *cells]))
    return "<p>Access (role × column):</p><table>" + "".join(rows) + "</table>"
