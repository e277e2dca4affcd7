"""Row-level rules derived from a source's contract, and their evaluation against a batch of rows.

Pure SQL building (`contract_rules`) plus one edge (`evaluate_rules`) that runs them on a DuckDB relation.
Every example names the offending value, the file and the row: a person can open the file at that row. A value
of a personal column (the catalog's `pii:` on raw/<source>) is shown masked by its category's rule
(governance.masking): examples end up in the event log, alerts and lineage, outside the governed route.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import duckdb

from governance.masking import REDACTED, PersonalData, personal_data
from platform_assets.sources.definitions import ColumnContract, SourceDefinition
from platform_assets.sources.read_errors import excerpt
from platform_assets.warehouse import PublishedInDuckDB, PublishedRows

EXAMPLES = 5
OCCURRENCES = 3  # deliveries of one key named in an example of the cross-day rule


@dataclass(frozen=True)
class Rule:
    name: str  # e.g. "flights.carrier references airlines.carrier"
    column: str
    kind: str  # type | not_null | accepted | range | pattern | references | row_date | key | key_across_days
    violation: str  # SQL predicate over one row: true when the row breaks the rule ('' for the key rules)
    warn_because: str | None  # set: the real data breaks it, report only
    reference_table: str | None = None  # raw table the rule reads; skipped until it exists
    shown: str | None = None  # SQL text showing a breaking row's offending value; default: the column's value
    key: tuple[str, ...] = ()  # the key rules' columns
    dataset: str = ""  # the catalog dataset whose rows it checks (raw/<source>): says which columns are personal


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
        row_date = f"TRY_CAST(({source.row_date}) AS DATE)"
        rules.append(Rule(f"{source.name} rows are not dated after their delivery", "_data_date", "row_date",
                          f"{row_date} > _data_date", None,
                          shown=f"'row dated ' || {row_date} || ', delivered ' || _data_date"))
    if source.key and not source.snapshot:  # a snapshot re-delivers every key every day
        rules.append(Rule(f"{source.name} key ({', '.join(source.key)}) is delivered for one day only",
                          source.key[0], "key_across_days", "", None, reference_table=source.name, key=source.key))
    return [replace(rule, dataset=raw_dataset(source)) for rule in rules]


def raw_dataset(source: SourceDefinition) -> str:
    return f"raw/{source.name}"


def _personal(rule: Rule, known: dict[str, PersonalData]) -> PersonalData:
    """The personal columns of the rule's dataset (one catalog lookup per dataset); a rule that names none is
    treated as reading personal data throughout."""
    if rule.dataset not in known:
        known[rule.dataset] = personal_data(rule.dataset) if rule.dataset else PersonalData("", unknown=True)
    return known[rule.dataset]


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


def _file_name(path: str | None) -> str:
    return (path or "?").rsplit("/", 1)[-1]


def _value(value, column: str | None = None, personal: PersonalData | None = None) -> str:
    """A value as an example shows it: masked when its column is personal."""
    if personal is not None and column is not None:
        value = personal.show(column, value)
    return "empty" if value is None else repr(excerpt(str(value)))


def evaluate_rules(connection: duckdb.DuckDBPyConnection, relation: str, rules: list[Rule],
                   personal: PersonalData | None = None, published: PublishedRows | None = None) -> list[Violation]:
    """Count each rule's violations in one scan of `relation`, with examples of the failing values (personal
    ones masked: `personal`, by default the catalog's columns of each rule's dataset); the cross-day key rule
    reads the published rows too (`keys_delivered_on_other_days`, through `published`: by default raw.<table> in
    the same connection). In rule order."""
    known: dict[str, PersonalData] = {}
    rules = [rule for rule in rules if _reference_available(connection, rule)]
    found: dict[Rule, Violation] = {}
    predicates = [rule for rule in rules if rule.violation]
    counts = connection.execute(
        "SELECT " + ", ".join(f"count(*) FILTER (WHERE {rule.violation})" for rule in predicates) + f" FROM {relation}"
    ).fetchall()[0] if predicates else []
    for rule, rows in zip(predicates, counts, strict=True):
        if rows:
            columns = personal or _personal(rule, known)
            shown = rule.shown or f"{_quoted(rule.column)}::VARCHAR"
            examples = connection.execute(
                f"SELECT {shown}, _source_file, _row_number FROM {relation} "
                f"WHERE {rule.violation} ORDER BY 2, 3 LIMIT {EXAMPLES}"
            ).fetchall()
            found[rule] = Violation(rule, rows, [
                f"{_shown_text(rule, v, columns)} ({_file_name(f)} row {n})" for v, f, n in examples])
    for rule in rules:
        if rule.kind == "key_across_days" and (violation := keys_delivered_on_other_days(
                connection, relation, rule, personal or _personal(rule, known), published)):
            found[rule] = violation
    return [found[rule] for rule in rules if rule in found]


def _shown_text(rule: Rule, value, personal: PersonalData) -> str:
    """What an example shows of the failing row: the column's value, or the rule's own text (`shown`), which is
    withheld when it reads a personal column."""
    if not rule.shown:
        return _value(value, rule.column, personal)
    return REDACTED if personal.mentions_personal(rule.shown) else str(value)


def _key_present(key: tuple[str, ...]) -> str:
    return " AND ".join(f"{_quoted(c)} IS NOT NULL" for c in key)


def _rows_of_repeated_keys(relation: str, key: tuple[str, ...], same_day: bool) -> str:
    """The rows of `relation` whose key may be delivered more than once (`same_day`: twice within a day, else on
    two days), as a relation to group by the key exactly. Found by the key's 64-bit hash: a fixed-width
    aggregate over every row instead of one over the keys' own values, which ran DuckDB out of memory under a
    1 GB limit on the 50 M distinct VARCHAR booking ids of a scale-20 history (intermittently). Keys that share
    a hash only add rows the exact grouping then drops; a repeated key is never missed."""
    hashed = f"hash({', '.join(['_data_date'] * same_day + [_quoted(c) for c in key])})"
    repeated = "count(*) > 1" if same_day else "min(_data_date) < max(_data_date)"
    return (f"(SELECT * FROM {relation} WHERE {_key_present(key)} AND {hashed} IN (SELECT key_hash FROM "
            f"(SELECT {hashed} AS key_hash, _data_date FROM {relation} WHERE {_key_present(key)}) "
            f"GROUP BY key_hash HAVING {repeated})) AS repeated")


def _key_equals(key: tuple[str, ...], values) -> tuple[str, dict]:
    """A filter on one key's values, and its parameters."""
    return (" AND ".join(f"{_quoted(c)} = $k{i}" for i, c in enumerate(key)),
            {f"k{i}": value for i, value in enumerate(values)})


def _key_text(values, key: tuple[str, ...], personal: PersonalData) -> str:
    values = [personal.show(column, value) for column, value in zip(key, values, strict=True)]
    return _value(values[0]) if len(values) == 1 else "(" + ", ".join(excerpt(str(v), 40) for v in values) + ")"


def duplicate_keys(connection: duckdb.DuckDBPyConnection, relation: str, source: SourceDefinition,
                   personal: PersonalData | None = None) -> Violation | None:
    """Rows beyond the first per key within each day's delivery. The count is one aggregation of the key and
    the day; the file and rows of the few examples are looked up afterwards, within their day. Personal key
    columns are shown masked (`personal`, by default the catalog's columns of raw/<source>)."""
    if not source.key:
        return None
    key = ", ".join(_quoted(c) for c in source.key)
    rows, examples = connection.execute(
        f"SELECT coalesce(sum(n - 1), 0), list({{'day': _data_date, 'n': n, 'key': row({key})}} "
        f"ORDER BY n DESC, _data_date, row({key}))[1:{EXAMPLES}] FROM "
        f"(SELECT _data_date, {key}, count(*) AS n FROM {_rows_of_repeated_keys(relation, source.key, True)} "
        f"GROUP BY _data_date, {key} HAVING count(*) > 1)"
    ).fetchall()[0]
    if not rows:
        return None
    rule = Rule(f"{source.name} key ({', '.join(source.key)}) is unique", source.key[0], "key", "",
                source.key_warn_because, key=source.key, dataset=raw_dataset(source))
    personal = personal or personal_data(rule.dataset)
    return Violation(rule, int(rows), [_copies(connection, relation, source.key, example, personal)
                                       for example in examples])


def _copies(connection: duckdb.DuckDBPyConnection, relation: str, key: tuple[str, ...], example: dict,
            personal: PersonalData) -> str:
    """'<key> twice in <file> (rows <n> and <m>)': one key's copies within one day's delivery."""
    where, parameters = _key_equals(key, example["key"])
    path, first, last = connection.execute(
        f"SELECT any_value(_source_file), min(_row_number), max(_row_number) FROM {relation} "
        f"WHERE _data_date = $day AND {where}", {"day": example["day"], **parameters}).fetchall()[0]
    shown = _key_text(example["key"], key, personal)
    if example["n"] == 2:
        return f"{shown} twice in {_file_name(path)} (rows {first} and {last})"
    return f"{shown} {example['n']} times in {_file_name(path)} (first row {first}, last row {last})"


OFFENDING_KEYS = "contract_keys_on_other_days"
RUN_KEYS = "contract_run_keys"


def keys_delivered_on_other_days(connection: duckdb.DuckDBPyConnection, relation: str, rule: Rule,
                                 personal: PersonalData | None = None,
                                 published: PublishedRows | None = None) -> Violation | None:
    """Rows of `relation` (a run's staged rows) whose key was also delivered for another day: within the run
    (only a run of several days can hold those), or in raw.<rule.reference_table> for a day outside the
    run's, as `published` (by default that table in the same connection) finds them for the run's distinct keys."""
    published = published or PublishedInDuckDB(connection)
    key = ", ".join(_quoted(c) for c in rule.key)
    table = rule.reference_table
    first, last = connection.execute(f"SELECT min(_data_date), max(_data_date) FROM {relation}").fetchall()[0]
    if first is None:
        return None
    in_run = f"SELECT {key} FROM {_rows_of_repeated_keys(relation, rule.key, False)} GROUP BY {key} " \
        "HAVING min(_data_date) < max(_data_date)" if first < last else f"SELECT {key} FROM {relation} WHERE false"
    connection.execute(f"CREATE OR REPLACE TEMP TABLE {OFFENDING_KEYS} AS {in_run}")
    published_days = []
    if published.any_outside(table, first, last):
        published_days = _published_days_of_run_keys(connection, relation, published, table, rule.key, first, last)
    if published_days:
        connection.executemany(f"INSERT INTO {OFFENDING_KEYS} VALUES ({', '.join('?' * len(rule.key))})",
                               list({values for values, _ in published_days}))
    keys = connection.execute(f"SELECT DISTINCT {key} FROM {OFFENDING_KEYS} ORDER BY ALL").fetchall()
    violation = None
    if keys:
        matches = " AND ".join(f"run.{_quoted(c)} = offending.{_quoted(c)}" for c in rule.key)
        rows = connection.execute(
            f"SELECT count(*) FROM (SELECT {key} FROM {relation}) AS run "
            f"SEMI JOIN (SELECT DISTINCT {key} FROM {OFFENDING_KEYS}) AS offending ON {matches}").fetchall()[0][0]
        violation = Violation(rule, int(rows), [
            _deliveries_of_key(connection, relation, published, table, rule.key, values,
                               [day for other, day in published_days if other == values],
                               personal or _personal(rule, {}))
            for values in keys[:EXAMPLES]])
    connection.execute(f"DROP TABLE IF EXISTS {OFFENDING_KEYS}")
    connection.execute(f"DROP TABLE IF EXISTS {RUN_KEYS}")
    return violation


def _published_days_of_run_keys(connection: duckdb.DuckDBPyConnection, relation: str, published: PublishedRows,
                                table: str, key: tuple[str, ...], first, last) -> list[tuple[tuple, object]]:
    """(key values, day) of each published delivery, for a day outside the run's, of a key the run delivers."""
    columns = ", ".join(_quoted(c) for c in key)
    connection.execute(
        f"CREATE OR REPLACE TEMP TABLE {RUN_KEYS} AS SELECT DISTINCT {columns} FROM {relation} WHERE {_key_present(key)}")
    bounds = connection.execute(
        "SELECT " + ", ".join(f"min({_quoted(c)}), max({_quoted(c)})" for c in key) + f" FROM {RUN_KEYS}").fetchall()[0]
    return published.days_of_keys(table, key, RUN_KEYS, bounds, first, last)


def _deliveries_of_key(connection: duckdb.DuckDBPyConnection, relation: str, published: PublishedRows, table: str,
                       key: tuple[str, ...], values: tuple, published_days: list, personal: PersonalData) -> str:
    """'<key> in <file> row <n> and <file> row <n>': the deliveries of the key `values`, in the run and published,
    by day."""
    where, parameters = _key_equals(key, values)
    found = connection.execute(
        f"SELECT _data_date, any_value(_source_file), min(_row_number) FROM {relation} WHERE {where} GROUP BY 1",
        parameters).fetchall()
    if published_days:
        found += published.first_rows_of_key(table, key, values, published_days)
    deliveries = [f"{_file_name(path)} row {row}" for _, path, row in sorted(found)]
    named = deliveries[:OCCURRENCES]
    more = f" and {len(deliveries) - OCCURRENCES} more" if len(deliveries) > OCCURRENCES else ""
    listed = f"{', '.join(named[:-1])} and {named[-1]}" if len(named) > 1 else (named[0] if named else "?")
    return f"{_key_text(values, key, personal)} in {listed}{more}"


def violations_markdown(violations: list[Violation]) -> str:
    if not violations:
        return "No violations."
    lines = ["| rule | rows | examples |", "|---|---:|---|"]
    lines += [f"| {v.rule.name} | {v.rows:,} | {'; '.join(map(str, v.examples)).replace('|', '/')} |" for v in violations]
    return "\n".join(lines)
