"""The governed query entry point: a principal of the catalog, authenticated by its token (governance.identity),
reads the warehouse only in the form its role's policy allows.

DuckDB has no GRANT, so every query runs in a fresh in-memory database that holds nothing but the role's form
of the datasets the query names: the allowed columns, masked per PII category, the rows of its row filter.
That database never sees the warehouse: a separate connection reads it and hands over masked Arrow batches.
External access (files, ATTACH, extensions, replacement scans) is switched off and the configuration locked
before the user's SQL runs. What is not in that database cannot be reached. Every read, allowed or denied, appends a
record to <data>/governance/audit.jsonl.
"""

from __future__ import annotations

import datetime as dt
import functools
import hmac
import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from governance.audit import append_audit_record
from governance.catalog import Catalog, CatalogError, load_catalog
from governance.identity import IdentityError, Principal, authenticate, catalog_digest
from governance.paths import governance_dir, warehouse_path
from governance.policy import DatasetDecision, decide, masking_sql

SANDBOX_SCHEMAS = ("marts", "ml")  # where published datasets live; the sandbox recreates only these
STREAM_BATCH_ROWS = 100_000


class AccessDenied(PermissionError):
    """The policy does not let the role read what the query asks for; the audit log has the record."""


@dataclass
class QueryReferences:
    """What a SELECT names, from DuckDB's own parse tree."""

    tables: list[tuple[str, str]] = field(default_factory=list)  # (schema or '', table)
    names: set[str] = field(default_factory=set)  # identifiers used as columns, CTEs and aliases
    relations: set[str] = field(default_factory=set)  # table names and aliases
    bare: set[str] = field(default_factory=set)  # unqualified column references
    wide: bool = False  # reads columns it does not name (*, COLUMNS(), NATURAL joins, DESCRIBE, a row as a value)


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple]
    datasets: dict[str, list[str]]  # dataset -> the columns the role's copy held
    seconds: float


def _locked_memory_database() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(":memory:")
    connection.execute("SET enable_external_access = false")
    connection.execute("SET lock_configuration = true")
    return connection


def query_references(sql: str) -> QueryReferences:
    """Parse (never bind or run) a single SELECT and list what it names; raises AccessDenied otherwise."""
    with _locked_memory_database() as parser:
        try:
            statements = parser.extract_statements(sql)
        except duckdb.Error as error:
            raise AccessDenied(f"the query does not parse: {_first_line(error)}") from None
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            kinds = ", ".join(s.type.name for s in statements) or "nothing"
            raise AccessDenied(f"only a single SELECT statement can be governed, got {kinds}")
        tree = json.loads(parser.execute("SELECT json_serialize_sql($sql)", {"sql": sql}).fetchall()[0][0])
    if tree.get("error"):
        raise AccessDenied(f"the query cannot be analysed: {tree.get('error_message')}")
    references = QueryReferences()
    _walk(tree["statements"], references)
    references.wide |= bool(references.bare & references.relations)  # `SELECT b FROM bookings b`: a row as a value
    return references


def _walk(node, references: QueryReferences) -> None:
    if isinstance(node, list):
        for child in node:
            _walk(child, references)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "BASE_TABLE":
        references.tables.append((node.get("schema_name") or "", node["table_name"]))
        references.relations.add(node["table_name"])
        if node.get("alias"):
            references.names.add(node["alias"])
            references.relations.add(node["alias"])
    elif kind == "COLUMN_REF":
        references.names.update(node["column_names"])
        if len(node["column_names"]) == 1:
            references.bare.add(node["column_names"][0])
    elif kind in ("STAR", "SHOW_REF") or node.get("join_type") == "NATURAL" or node.get("ref_type") == "NATURAL":
        references.wide = True
    references.names.update(node.get("using_columns") or [])
    for item in (node.get("cte_map") or {}).get("map", []):
        references.names.add(item["key"])
    for value in node.values():
        if isinstance(value, dict | list):
            _walk(value, references)


def resolve_datasets(catalog: Catalog, references: QueryReferences) -> list[str]:
    """Catalog datasets the query names. A name that is not a dataset (a CTE, a system table) is left to the
    sandbox, which does not have it unless it is a dataset the role was given."""
    keys = []
    for schema, table in references.tables:
        candidates = ([f"{schema}/{table}"] if schema else
                      [f"{s}/{table}" for s in SANDBOX_SCHEMAS] + [k for k in catalog.datasets if k.endswith(f"/{table}")])
        if not schema and table in references.names:  # a CTE or alias of that name shadows the table
            continue
        key = next((candidate for candidate in candidates if candidate in catalog.datasets), None)
        if key and key not in keys:
            keys.append(key)
    return keys


MASKING_SECRET = re.compile(r"[0-9a-f]{64}")


def masking_key(folder: Path | None = None, audience: str = "") -> str:
    """The key that hashes PII for one audience (a consumer, a team, the platform's own logs): derived from the data
    folder's secret, so two audiences' tokens of the same value differ and cannot be joined across them, while one
    audience's tokens stay stable. The secret is created once, atomically (a concurrent first use never sees it
    half-written), readable by its owner only; an empty, short, unreadable or group/world-readable secret refuses
    every masked read instead of weakening the mask."""
    if not audience:
        raise AccessDenied("masked values need an audience to key them for: refused")
    path = governance_dir(folder) / "masking_key"
    if not path.exists():
        _write_secret(path, replace=False)
    try:
        secret, mode = path.read_text().strip(), path.stat().st_mode
    except (OSError, UnicodeError) as error:
        raise AccessDenied(f"{path}: the masking secret cannot be read ({type(error).__name__}): masked reads are "
                           "refused") from None
    if mode & 0o077:
        raise AccessDenied(f"{path}: the masking secret is readable by others (mode {mode & 0o777:o}): masked reads "
                           f"are refused until `chmod 600 {path}` (and, as it may have been read, "
                           "`governance keys rotate`)")
    if not MASKING_SECRET.fullmatch(secret):
        raise AccessDenied(f"{path}: the masking secret is empty or malformed, so masked values cannot be keyed: "
                           "masked reads are refused. Restore the file from backup (or `governance keys rotate` to "
                           "start a new secret: every earlier token changes)")
    return hmac.new(bytes.fromhex(secret), audience.encode(), "sha256").hexdigest()


def rotate_masking_secret(folder: Path | None = None) -> Path:
    """Replace the masking secret by a new one (atomically: readers see the old or the new file, whole). The old
    secret is not kept: every hash token changes, and tokens handed out before cannot be linked to later ones."""
    path = governance_dir(folder) / "masking_key"
    _write_secret(path, replace=True)
    return path


def _write_secret(path: Path, replace: bool) -> None:
    """Write 32 random bytes (hex) to a private temporary file (exclusive create, mode 600), then move it into place:
    replacing the old secret, or only if there is none (the first writer wins, every other process reads the
    winner's complete file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".masking_key.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32))
            file.flush()
            os.fsync(file.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass  # another process created it first: use theirs
    finally:
        temporary.unlink(missing_ok=True)


def _warehouse_columns(connection: duckdb.DuckDBPyConnection, key: str) -> list[str]:
    schema, table = key.split("/")
    return [row[0] for row in connection.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_catalog = 'warehouse' "
        "AND table_schema = $schema AND table_name = $table ORDER BY ordinal_position",
        {"schema": schema, "table": table}).fetchall()]


def _masked_select(decision: DatasetDecision, columns: list[str]) -> str:
    """The role's form of a dataset: the given columns, masked where the policy says, rows of its row filter."""
    schema, table = decision.dataset.split("/")
    expressions = []
    for name in columns:
        quoted = f'"{name}"'
        column = decision.columns[name]
        expressions.append(f"{masking_sql(column.masking, quoted) if column.access == 'masked' else quoted} AS {quoted}")
    where = f' WHERE "{decision.row_filter.column}" = $row_filter_value' if decision.row_filter else ""
    return f'SELECT {", ".join(expressions)} FROM warehouse."{schema}"."{table}"{where}'


@dataclass
class Sandbox:
    """The locked database the user's SQL runs in, and the source connection that feeds it."""

    database: duckdb.DuckDBPyConnection
    source: duckdb.DuckDBPyConnection
    held: dict[str, list[str]]

    def close(self) -> None:
        self.database.close()
        self.source.close()


def _sandbox(catalog: Catalog, role: str, keys: list[str], references: QueryReferences,
             attributes: dict[str, str], data_dir: Path | None, stream: bool = True, audience: str = "") -> Sandbox:
    """A locked in-memory database holding the role's form of each dataset the query names, and nothing else.
    A separate source connection reads the warehouse and hands over only masked, filtered Arrow batches: streamed
    through a view (a LIMIT reads a few batches), or copied into a table when the query scans a dataset twice."""
    warehouse = warehouse_path(data_dir)
    if not warehouse.exists():
        raise AccessDenied(f"no warehouse at {warehouse}: materialize the platform first")
    sandbox = Sandbox(duckdb.connect(":memory:"), duckdb.connect(":memory:"), {})
    try:
        try:
            sandbox.source.execute("ATTACH $path AS warehouse (READ_ONLY)", {"path": str(warehouse)})
        except duckdb.IOException as error:
            raise AccessDenied(f"the warehouse {warehouse} cannot be opened for reading (is a run writing it?): "
                               f"{_first_line(error)}") from None
        database = sandbox.database
        for schema in SANDBOX_SCHEMAS:
            database.execute(f'CREATE SCHEMA "{schema}"')
        decisions = [_decision(catalog, role, key, _warehouse_columns(sandbox.source, key), attributes)
                     for key in keys]
        _refuse_denied_names(decisions, references)
        for decision in decisions:
            readable = decision.readable_columns
            columns = readable if references.wide else [c for c in readable if c in references.names]
            columns = columns or readable[:1]  # count(*) and friends need a column, not its values
            select = _masked_select(decision, columns)
            parameters = ({"masking_key": masking_key(data_dir, audience)}
                          if "$masking_key" in select else {})
            if decision.row_filter:
                parameters["row_filter_value"] = attributes[decision.row_filter.attribute]
            batches = sandbox.source.cursor().sql(select, params=parameters).to_arrow_reader(STREAM_BATCH_ROWS)
            schema, table = decision.dataset.split("/")
            feed = f"governed_{schema}_{table}"
            database.register(feed, batches)
            if stream:
                database.execute(f'CREATE VIEW "{schema}"."{table}" AS SELECT * FROM "{feed}"')
            else:
                database.execute(f'CREATE TABLE "{schema}"."{table}" AS SELECT * FROM "{feed}"')
                database.unregister(feed)
            sandbox.held[decision.dataset] = columns
        database.execute(f"SET search_path = '{','.join(SANDBOX_SCHEMAS)}'")
        database.execute("SET enable_external_access = false")
        database.execute("SET lock_configuration = true")
    except BaseException:
        sandbox.close()
        raise
    return sandbox


def _decision(catalog: Catalog, role: str, key: str, columns: list[str], attributes: dict[str, str]) -> DatasetDecision:
    decision = decide(catalog, role, key, columns)
    if not decision.allowed:
        raise AccessDenied(decision.reason)
    if not columns:
        raise AccessDenied(f"'{key}' is in the catalog but not in the warehouse yet")
    if decision.row_filter and decision.row_filter.attribute not in attributes:
        raise AccessDenied(f"role '{role}' reads '{key}' filtered by the reader's '{decision.row_filter.attribute}': "
                           f"give it (--attribute {decision.row_filter.attribute}=VALUE)")
    return decision


def _refuse_denied_names(decisions: list[DatasetDecision], references: QueryReferences) -> None:
    """A query that names a column the role may not read is refused with the reason, rather than failing on a
    column that seems not to exist."""
    readable = {name for decision in decisions for name in decision.readable_columns}
    denied = {(decision.dataset, name, decision.columns[name].reason) for decision in decisions
              for name in references.names - readable if name in decision.columns}
    if denied:
        role = decisions[0].role
        raise AccessDenied(f"role '{role}' may not read " + "; ".join(
            f"{key} column {name} ({reason})" for key, name, reason in sorted(denied)))


def governed_query(sql: str, *, token: str | None, data_dir: Path | None = None) -> QueryResult:
    """Run one SELECT over the published datasets as the principal `token` was issued to (governance.identity), in
    the form its role's policy allows. The role and its attributes come from the repository's catalog, never from
    the caller. Raises AccessDenied (after auditing the denial) when the token or the query is refused."""
    record = _record(sql)
    try:
        catalog = load_catalog()
        record["catalog"] = catalog_digest(catalog)
        principal, token_id = authenticate(catalog, token, data_dir)
    except (IdentityError, CatalogError) as error:
        append_audit_record({**record, "decision": "deny", "reason": str(error)}, data_dir)
        raise AccessDenied(str(error)) from None
    except Exception as error:  # noqa: BLE001  (audited; its text not echoed)
        reason = f"refused: the reader could not be established ({type(error).__name__})"
        append_audit_record({**record, "decision": "deny", "reason": reason}, data_dir)
        raise AccessDenied(reason) from None
    return query_as(catalog, principal, sql, data_dir=data_dir, record={**record, "token_id": token_id})


def _record(sql: str) -> dict:
    return {"at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"), "principal": None, "token_id": None,
            "role": None, "attributes": {}, "catalog": None, "sql": sql, "datasets": [], "columns": {}}


def query_as(catalog: Catalog, principal: Principal, sql: str, *, data_dir: Path | None = None,
             record: dict | None = None) -> QueryResult:
    """The governed read of an authenticated principal, audited once (governed_query authenticates; tests and the
    benchmark call this with a catalog of their own)."""
    role, attributes = principal.role, principal.attributes
    record = {**(record or _record(sql)), "principal": principal.name, "role": role, "attributes": attributes}
    record["catalog"] = record["catalog"] or catalog_digest(catalog)
    started = time.perf_counter()
    try:
        _check_attributes(attributes)
        if role not in catalog.access.roles:
            raise AccessDenied(f"unknown role '{role}': denied by default (roles: {', '.join(catalog.access.roles)})")
        references = query_references(sql)
        keys = resolve_datasets(catalog, references)
        record["datasets"] = keys
        read = functools.partial(_run, catalog, role, keys, references, attributes, data_dir, sql,
                                 audience=principal.audience)
        try:
            columns, rows, held = read(stream=True)
        except _ScannedTwice:
            columns, rows, held = read(stream=False)
        record["columns"] = held
    except (AccessDenied, CatalogError) as error:
        append_audit_record({**record, "decision": "deny", "reason": str(error)}, data_dir)
        raise AccessDenied(str(error)) from None
    except Exception as error:  # noqa: BLE001  (anything else is a denial too, audited, its text not echoed)
        reason = f"refused: the query could not be run safely ({type(error).__name__})"
        append_audit_record({**record, "decision": "deny", "reason": reason}, data_dir)
        raise AccessDenied(reason) from None
    seconds = time.perf_counter() - started
    append_audit_record({**record, "decision": "allow", "rows": len(rows), "seconds": round(seconds, 3)}, data_dir)
    return QueryResult(columns, rows, held, seconds)


ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def _check_attributes(attributes) -> None:
    """Reader attributes are names with one short printable text value each; anything else is refused without
    repeating the value (a row filter compares with it)."""
    if not isinstance(attributes, dict):
        raise AccessDenied("attributes must map names to text values")
    for name, value in attributes.items():
        if not isinstance(name, str) or not ATTRIBUTE_NAME.fullmatch(name):
            raise AccessDenied("an attribute name must be lowercase letters, digits and '_'")
        if not isinstance(value, str) or not value.isprintable() or len(value) > 200:
            raise AccessDenied(f"attribute '{name}' must be one short printable text value")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise AccessDenied(f"attribute '{name}' is not valid text") from None


class _ScannedTwice(Exception):
    """The query read a streamed dataset twice (a self-join, a CTE used twice): run it again on copies."""


def _run(catalog, role, keys, references, attributes, data_dir, sql, stream, audience):
    sandbox = _sandbox(catalog, role, keys, references, attributes, data_dir, stream, audience)
    try:
        cursor = sandbox.database.execute(sql)
        columns = [d[0] for d in cursor.description] if cursor.description else []
        return columns, cursor.fetchall(), sandbox.held
    except duckdb.Error as error:
        if stream and "already been consumed" in str(error):
            raise _ScannedTwice from None
        raise AccessDenied(f"refused or failed in the role's sandbox: {_first_line(error)}") from None
    finally:
        sandbox.close()


def _first_line(error: Exception) -> str:
    return str(error).strip().split("\n")[0]
