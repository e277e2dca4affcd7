"""Row-level rules derived from a source's contract, and their evaluation against a batch of rows.

Pure SQL building (`contract_rules`) plus one edge (`evaluate_rules`) that runs them on a DuckDB relation.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from platform_assets.sources.definitions import ColumnContract, SourceDefinition

EXAMPLES = 5


@dataclass(frozen=True)
class Rule:
    name: str  # e.g. "flights.carrier references airlines.carrier"
    column: str
    kind: str  # type | not_null | accepted | range | pattern | references | row_date | key
    violation: str  # SQL predicate over one row: true when the row breaks the rule
    warn_because: str | None  # set: the real data breaks it, report only
    reference_table: str | None = None  # raw table the rule reads; skipped until it exists


def _quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _castable(column: str, contract: ColumnContract) -> str:
    if contract.formats:
        parses = ", ".join(f"try_strptime({column}, {_literal(f)})" for f in contract.formats)
        return f"coalesce({parses}) IS NOT NULL"
    return f"TRY_CAST({column} AS {contract.type}) IS NOT NULL"


def column_rules(source: SourceDefinition, name: str, contract: ColumnContract, text_format: bool) -> list[Rule]:
    column = _quoted(name)
    label = f"{source.name}.{name}"
    rules = []
    if text_format and contract.type != "VARCHAR":
        rules.append(Rule(f"{label} is a {contract.type}", name, "type",
                          f"{column} IS NOT NULL AND NOT ({_castable(column, contract)})", contract.warn_because))
    if not contract.nullable:
        rules.append(Rule(f"{label} is present", name, "not_null", f"{column} IS NULL", contract.warn_because))
    if contract.accepted:
        values = ", ".join(_literal(v) for v in contract.accepted)
        rules.append(Rule(f"{label} in ({', '.join(contract.accepted)})", name, "accepted",
                          f"{column} IS NOT NULL AND {column}::VARCHAR NOT IN ({values})", contract.warn_because))
    if contract.range:
        low, high = contract.range
        rules.append(Rule(f"{label} between {low:g} and {high:g}", name, "range",
                          f"TRY_CAST({column} AS DOUBLE) NOT BETWEEN {low} AND {high}", contract.warn_because))
    if contract.pattern:
        rules.append(Rule(f"{label} matches {contract.pattern}", name, "pattern",
                          f"{column} IS NOT NULL AND NOT regexp_full_match({column}::VARCHAR, {_literal(contract.pattern)})",
                          contract.warn_because))
    if contract.references:
        target, target_column = contract.references.split(".")
        rules.append(Rule(
            f"{label} references {contract.references}", name, "references",
            f"{column} IS NOT NULL AND {column}::VARCHAR NOT IN "
            f"(SELECT {_quoted(target_column)}::VARCHAR FROM raw.{target} WHERE {_quoted(target_column)} IS NOT NULL)",
            contract.warn_because,
            reference_table=target,
        ))
    return rules


def contract_rules(source: SourceDefinition) -> list[Rule]:
    """Every row-level expectation of the contract, in declaration order."""
    text_format = source.format != "parquet"
    rules = [rule for name, contract in source.columns.items()
             for rule in column_rules(source, name, contract, text_format)]
    if source.row_date:
        rules.append(Rule(f"{source.name} rows are not dated after their delivery", "_data_date", "row_date",
                          f"TRY_CAST(({source.row_date}) AS DATE) > _data_date", None))
    return rules


@dataclass(frozen=True)
class Violation:
    rule: Rule
    rows: int
    examples: list


def _reference_available(connection: duckdb.DuckDBPyConnection, rule: Rule) -> bool:
    if rule.reference_table is None:
        return True
    return bool(connection.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'raw' AND table_name = $t",
        {"t": rule.reference_table}).fetchall()[0][0])


def evaluate_rules(connection: duckdb.DuckDBPyConnection, relation: str, rules: list[Rule]) -> list[Violation]:
    """Count each rule's violations in one scan of `relation`, with examples of the failing values."""
    rules = [rule for rule in rules if _reference_available(connection, rule)]
    if not rules:
        return []
    counts = connection.execute(
        "SELECT " + ", ".join(f"count(*) FILTER (WHERE {rule.violation})" for rule in rules) + f" FROM {relation}"
    ).fetchall()[0]
    violations = []
    for rule, rows in zip(rules, counts, strict=True):
        if rows:
            examples = connection.execute(
                f"SELECT DISTINCT {_quoted(rule.column)}::VARCHAR, _source_file, _row_number FROM {relation} "
                f"WHERE {rule.violation} ORDER BY 2, 3 LIMIT {EXAMPLES}"
            ).fetchall()
            violations.append(Violation(rule, rows, [f"{v!r} ({f.rsplit('/', 1)[-1]} row {n})" for v, f, n in examples]))
    return violations


def duplicate_keys(connection: duckdb.DuckDBPyConnection, relation: str, source: SourceDefinition) -> Violation | None:
    """Rows beyond the first per key within each day's delivery."""
    if not source.key:
        return None
    key = ", ".join(_quoted(c) for c in source.key)
    rows, examples = connection.execute(
        f"SELECT coalesce(sum(n - 1), 0), list(k || ' on ' || _data_date ORDER BY n DESC)[1:{EXAMPLES}] FROM "
        f"(SELECT _data_date, ({key})::VARCHAR AS k, count(*) AS n FROM {relation} "
        f"WHERE {' AND '.join(f'{_quoted(c)} IS NOT NULL' for c in source.key)} GROUP BY ALL HAVING count(*) > 1)"
    ).fetchall()[0]
    if not rows:
        return None
    rule = Rule(f"{source.name} key ({', '.join(source.key)}) is unique", source.key[0], "key", "", source.key_warn_because)
    return Violation(rule, int(rows), list(examples or []))


def violations_markdown(violations: list[Violation]) -> str:
    if not violations:
        return "No violations."
    lines = ["| rule | rows | examples |", "|---|---:|---|"]
    lines += [f"| {v.rule.name} | {v.rows:,} | {'; '.join(map(str, v.examples)).replace('|', '/')} |" for v in violations]
    return "\n".join(lines)
