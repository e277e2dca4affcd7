"""The governed query entry point: a principal of the catalog, authenticated by its token (governance.identity),
reads the warehouse only in the form its role's policy allows.

DuckDB has no GRANT, so every query runs in a fresh in-memory database that holds nothing but the role's form
of the datasets the query names: the allowed columns, masked per PII category, the rows of its row filter.
That database never sees the warehouse: a separate connection reads it and hands over masked Arrow batches.
External access (files, ATTACH, extensions, replacement scans) is switched off and the configuration locked
before the user's SQL runs. What is not in that database cannot be reached. Each query runs within its role's
limits (access.yml): a watchdog interrupts both connections at the time limit, each database has the memory
limit, and both spill to a private temporary folder removed after the query. Every call, allowed, denied or
failed, appends exactly one record to the hash-chained <data>/governance/audit.jsonl (governance.audit); an
engine error is reported by its kind, its text only when it is proven free of values (see _engine_failure).
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from governance.audit import AuditUnavailable, append_audit_record
from governance.catalog import Catalog, CatalogError, Limits, load_catalog
from governance.identity import IdentityError, Principal, authenticate
from governance.paths import governance_dir, warehouse_path
from governance.policy import DatasetDecision, decide, masking_sql

SANDBOX_SCHEMAS = ("marts", "ml")  # where published datasets live; the sandbox recreates only these
STREAM_BATCH_ROWS = 100_000


class AccessDenied(PermissionError):
    """The policy does not let the role read what the query asks for; the audit log has the record (deny)."""


class QueryFailed(AccessDenied):
    """The query was not answered because of an error (it does not parse, the engine failed, an internal error),
    not because of the policy; the audit log has the record (decision: error)."""


def folded(name: str) -> str:
    """An identifier as DuckDB compares it: ASCII letters case-insensitively, every other character as it is."""
    return name.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


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
        except duckdb.Error as error:  # the parser's text is about the query itself: no stored value is read
            raise QueryFailed(f"the query does not parse: {_first_line(error)}") from None
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            kinds = ", ".join(s.type.name for s in statements) or "nothing"
            raise AccessDenied(f"only a single SELECT statement can be governed, got {kinds}")
        try:
            tree = json.loads(parser.execute("SELECT json_serialize_sql($sql)", {"sql": sql}).fetchall()[0][0])
            if tree.get("error"):
                raise QueryFailed(f"the query cannot be analysed: {tree.get('error_message')}")
            references = QueryReferences()
            _walk(tree["statements"], references)
        except RecursionError:
            raise QueryFailed("the query is nested too deeply to be analysed (a few hundred levels at most)") from None
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
    if kind == "BASE_TABLE":  # every name folded as DuckDB compares them: `FROM Bookings` is marts.bookings
        table = folded(node["table_name"])
        references.tables.append((folded(node.get("schema_name") or ""), table))
        references.relations.add(table)
        if node.get("alias"):
            references.names.add(folded(node["alias"]))
            references.relations.add(folded(node["alias"]))
    elif kind == "COLUMN_REF":
        references.names.update(map(folded, node["column_names"]))
        if len(node["column_names"]) == 1:
            references.bare.add(folded(node["column_names"][0]))
    elif kind in ("STAR", "SHOW_REF") or node.get("join_type") == "NATURAL" or node.get("ref_type") == "NATURAL":
        references.wide = True
    references.names.update(map(folded, node.get("using_columns") or []))
    for item in (node.get("cte_map") or {}).get("map", []):
        references.names.add(folded(item["key"]))
    for value in node.values():
        if isinstance(value, dict | list):
            _walk(value, references)


def resolve_datasets(catalog: Catalog, references: QueryReferences) -> list[str]:
    """Catalog datasets the query names. A name that is not a dataset (a CTE, a system table) is left to the
    sandbox, which does not have it unless it is a dataset the role was given."""
    datasets = {folded(key): key for key in catalog.datasets}  # names as DuckDB resolves them
    keys = []
    for schema, table in references.tables:
        candidates = ([f"{schema}/{table}"] if schema else
                      [f"{s}/{table}" for s in SANDBOX_SCHEMAS] + [k for k in datasets if k.endswith(f"/{table}")])
        if not schema and table in references.names:  # a CTE or alias of that name shadows the table
            continue
        key = next((datasets[candidate] for candidate in candidates if candidate in datasets), None)
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


class _Watchdog:
    """Interrupts every connection of a query when its time limit is up (DuckDB's connection.interrupt())."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.fired = threading.Event()
        self._connections: list[duckdb.DuckDBPyConnection] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            self.fired.set()
            for connection in self._connections:
                connection.interrupt()

    def watch(self, connection: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self.fired.is_set():
                raise _TimeUp
            self._connections.append(connection)
        return connection

    def forget(self) -> None:
        """Before the connections close: a late timer must not touch a closed connection."""
        with self._lock:
            self._connections.clear()

    def check(self) -> None:
        if self.fired.is_set():
            raise _TimeUp

    def cancel(self) -> None:
        self._timer.cancel()
        self.forget()


class _TimeUp(Exception):
    """The watchdog fired: the query is past its time limit."""


@dataclass
class Sandbox:
    """The locked database the user's SQL runs in, and the source connection that feeds it."""

    database: duckdb.DuckDBPyConnection
    source: duckdb.DuckDBPyConnection
    held: dict[str, list[str]]
    temporary: Path | None = None  # the private spill folder of both databases, removed on close

    def close(self) -> None:
        try:
            self.database.close()
            self.source.close()
        finally:
            if self.temporary:
                shutil.rmtree(self.temporary, ignore_errors=True)


def spill_root(data_dir: Path | None = None) -> Path:
    """Where each query's private temporary folder is made: <data>/governance/tmp, readable by its owner only."""
    root = governance_dir(data_dir) / "tmp"
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    return root


def _limited_connection(limits: Limits, temporary: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory database with the role's memory limit that spills into `temporary`, inside the query's
    private folder: never DuckDB's default `.tmp` under the working directory, where another user could read the
    unmasked source's spill files. The caller locks the configuration after its own settings."""
    temporary.mkdir(mode=0o700)
    connection = duckdb.connect(":memory:")
    try:
        connection.execute(f"SET memory_limit = '{limits.memory_bytes}B'")
        connection.execute("SET temp_directory = '{}'".format(str(temporary).replace("'", "''")))
    except BaseException:
        connection.close()
        raise
    return connection


def _sandbox(catalog: Catalog, role: str, keys: list[str], references: QueryReferences,
             attributes: dict[str, str], data_dir: Path | None, stream: bool = True, *, audience: str = "",
             limits: Limits | None = None, watchdog: _Watchdog | None = None, empty: bool = False) -> Sandbox:
    """A locked in-memory database holding the role's form of each dataset the query names, and nothing else.
    A separate source connection reads the warehouse and hands over only masked, filtered Arrow batches: streamed
    through a view (a LIMIT reads a few batches), or copied into a table when the query scans a dataset twice.
    Both databases get the role's memory limit and a private temporary folder before their configuration is
    locked; `empty` gives the same datasets without a row (to replay an error on no data at all)."""
    warehouse = warehouse_path(data_dir)
    if not warehouse.exists():
        raise QueryFailed(f"no warehouse at {warehouse}: materialize the platform first")
    limits = limits or catalog.access.limits_of(role)
    temporary = Path(tempfile.mkdtemp(prefix="query-", dir=spill_root(data_dir)))  # mode 0700
    try:
        database = _limited_connection(limits, temporary / "sandbox")
        try:
            sandbox = Sandbox(database, _limited_connection(limits, temporary / "source"), {}, temporary)
        except BaseException:
            database.close()
            raise
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    watch = watchdog.watch if watchdog else (lambda connection: connection)
    try:
        watch(sandbox.database)
        watch(sandbox.source)
        try:
            sandbox.source.execute("ATTACH $path AS warehouse (READ_ONLY)", {"path": str(warehouse)})
        except duckdb.IOException as error:
            raise QueryFailed(f"the warehouse {warehouse} cannot be opened for reading (is a run writing it?): "
                              f"{_first_line(error)}") from None
        sandbox.source.execute("SET enable_external_access = false")  # it reads the attached warehouse only
        sandbox.source.execute("SET lock_configuration = true")
        database = sandbox.database
        for schema in SANDBOX_SCHEMAS:
            database.execute(f'CREATE SCHEMA "{schema}"')
        decisions = [_decision(catalog, role, key, _warehouse_columns(sandbox.source, key), attributes)
                     for key in keys]
        _refuse_denied_names(decisions, references)
        for decision in decisions:
            readable = decision.readable_columns
            columns = readable if references.wide else [c for c in readable if folded(c) in references.names]
            columns = columns or readable[:1]  # count(*) and friends need a column, not its values
            select = _masked_select(decision, columns)
            parameters = ({"masking_key": masking_key(data_dir, audience)}
                          if "$masking_key" in select else {})
            if decision.row_filter:
                parameters["row_filter_value"] = attributes[decision.row_filter.attribute]
            if empty:
                select += " LIMIT 0"
            batches = watch(sandbox.source.cursor()).sql(select, params=parameters).to_arrow_reader(STREAM_BATCH_ROWS)
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
    denied = {(decision.dataset, name, column.reason) for decision in decisions
              for name, column in decision.columns.items()
              if column.access == "denied" and folded(name) in references.names}
    readable = {folded(name) for decision in decisions for name in decision.readable_columns}
    denied = {(key, name, reason) for key, name, reason in denied if folded(name) not in readable}
    if denied:
        role = decisions[0].role
        raise AccessDenied(f"role '{role}' may not read " + "; ".join(
            f"{key} column {name} ({reason})" for key, name, reason in sorted(denied)))


def governed_query(sql: str, *, token: str | None, data_dir: Path | None = None) -> QueryResult:
    """Run one SELECT over the published datasets as the principal `token` was issued to (governance.identity), in
    the form its role's policy allows, within the role's limits. The role and its attributes come from the
    repository's catalog, never from the caller. Exactly one audit record is appended whatever happens; nothing is
    answered when it cannot be written. Raises AccessDenied (a policy denial) or QueryFailed (an error), one line
    that never quotes a stored value or the token."""
    record = _record(sql)
    try:
        catalog = load_catalog()
        record["catalog"] = catalog.digest
        principal, token_id = authenticate(catalog, token, data_dir)
    except BaseException as error:
        decision, reason = _outcome(error)
        _audit({**record, "decision": decision, "reason": reason}, data_dir)
        if not isinstance(error, Exception):
            raise
        raise (AccessDenied if decision == "deny" else QueryFailed)(reason) from None
    return query_as(catalog, principal, sql, data_dir=data_dir, record={**record, "token_id": token_id})


def query_as(catalog: Catalog, principal: Principal, sql: str, *, data_dir: Path | None = None,
             record: dict | None = None) -> QueryResult:
    """The governed read of an authenticated principal, audited once (governed_query authenticates; tests call this
    with a catalog or a principal of their own)."""
    role, attributes = principal.role, principal.attributes
    record = {**(record or _record(sql)), "principal": principal.name,
              "role": role if isinstance(role, str) and role.isprintable() and len(role) <= 200 else None}
    started = time.perf_counter()
    watchdog = None
    try:
        record["catalog"] = record["catalog"] or catalog.digest
        _check_request(role, sql)
        _check_attributes(attributes)
        record["attributes"] = attributes
        if role not in catalog.access.roles:
            raise AccessDenied(f"unknown role '{role}': denied by default (roles: {', '.join(catalog.access.roles)})")
        limits = catalog.access.limits_of(role)
        watchdog = _Watchdog(limits.query_seconds)
        references = query_references(sql)
        keys = resolve_datasets(catalog, references)
        record["datasets"] = keys
        columns, rows, held = _answer(catalog, role, keys, references, attributes, data_dir, sql, limits, watchdog,
                                      principal.audience)
        record["columns"] = held
    except BaseException as error:
        if watchdog:
            watchdog.cancel()
        decision, reason = _outcome(error)
        _audit({**record, "decision": decision, "reason": reason,
                "seconds": round(time.perf_counter() - started, 3)}, data_dir)
        if not isinstance(error, Exception):
            raise  # KeyboardInterrupt, SystemExit: audited, then on their way
        raise (AccessDenied if decision == "deny" else QueryFailed)(reason) from None
    watchdog.cancel()
    seconds = time.perf_counter() - started
    _audit({**record, "decision": "allow", "rows": len(rows), "seconds": round(seconds, 3)}, data_dir)
    return QueryResult(columns, rows, held, seconds)


def audit_unanswered(sql, reason: str, *, decision: str = "error", data_dir: Path | None = None) -> None:
    """The audit record of a governed call that failed before it reached governed_query (the command line could
    not be read, the token file not either): the same record, once. Raises QueryFailed if it cannot be written."""
    record = _record(sql)
    _audit({**record, "decision": decision, "reason": " ".join(reason.split())}, data_dir)


def _record(sql) -> dict:
    """What the call asked, kept only in forms that serialize safely; who asked is added once established."""
    return {"at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"), "principal": None, "token_id": None,
            "role": None, "attributes": {}, "catalog": None, "sql": sql if isinstance(sql, str) else None,
            "datasets": [], "columns": {}}


def _audit(record: dict, data_dir: Path | None) -> None:
    try:
        append_audit_record(record, data_dir)
    except AuditUnavailable as error:
        raise QueryFailed(str(error)) from None


def _check_request(role, sql) -> None:
    if not isinstance(sql, str):
        raise QueryFailed("the query must be text")
    try:
        sql.encode("utf-8")
    except UnicodeEncodeError as error:  # a byte the command line could not decode arrives as a lone surrogate
        raise QueryFailed(f"the query is not valid UTF-8 text (character {error.start + 1} is not)") from None
    if not isinstance(role, str) or not role.isprintable() or len(role) > 200:
        raise AccessDenied("the role must be a short printable name: denied")


def _outcome(error: BaseException) -> tuple[str, str]:
    """(decision, reason) of a call that was not answered; the reason is one line and quotes no stored value."""
    if isinstance(error, QueryFailed):
        decision, reason = "error", str(error)
    elif isinstance(error, AccessDenied | IdentityError):
        decision, reason = "deny", str(error)
    elif isinstance(error, CatalogError):
        decision, reason = "error", f"the catalog cannot be used: {error}"
    elif isinstance(error, Exception):
        decision, reason = "error", f"internal error ({type(error).__name__}): the query was not answered"
    else:
        decision, reason = "error", f"interrupted ({type(error).__name__}): the query was not answered"
    return decision, " ".join(reason.split())


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


class _OutOfMemory(Exception):
    """A database of the query reached the role's memory limit."""


class _EngineFailure(Exception):
    """DuckDB failed on the query (or, `preparing`, on the role's copy of a dataset): the text is not trusted."""

    def __init__(self, error: duckdb.Error, preparing: bool = False):
        super().__init__(type(error).__name__)
        self.error, self.preparing = error, preparing


def _answer(catalog, role, keys, references, attributes, data_dir, sql, limits: Limits, watchdog: _Watchdog,
            audience: str):
    def run(stream: bool, empty: bool = False):
        return _run(catalog, role, keys, references, attributes, data_dir, sql, stream, audience=audience,
                    limits=limits, watchdog=watchdog, empty=empty)

    try:
        try:
            return run(stream=True)
        except _ScannedTwice:
            return run(stream=False)
    except _TimeUp:
        raise AccessDenied(f"stopped at the time limit of role '{role}': {limits.query_seconds:g} s "
                           "(access.yml limits.query_seconds)") from None
    except _OutOfMemory:
        raise AccessDenied(f"stopped at the memory limit of role '{role}': {limits.memory} "
                           "(access.yml limits.memory)") from None
    except _EngineFailure as failure:
        raise _engine_failure(failure, lambda: run(stream=False, empty=True)) from None


def _engine_failure(failure: _EngineFailure, replay) -> AccessDenied:
    """What the caller and the audit log learn of an engine error. Its text can quote the value it failed on (a
    failed cast echoes the string), so the text is shown only when it is proven free of values: the same query
    fails the same way on the same datasets holding no row at all, and that run's text is the one shown.
    Otherwise only the error's kind. The sandbox's walls (file system access disabled) are a denial; any other
    engine error is an error."""
    error = failure.error
    text = None
    if not failure.preparing:
        try:
            replay()
        except _EngineFailure as again:
            if type(again.error) is type(error) and not again.preparing:
                text = _first_line(again.error)
        except Exception:  # noqa: BLE001,S110  (the replay proves nothing: keep to the kind)
            pass
    denial = isinstance(error, duckdb.PermissionException)
    if text:
        where = "refused in the role's sandbox" if denial else "the query failed in the role's sandbox"
        return (AccessDenied if denial else QueryFailed)(f"{where}: {text}")
    step = "preparing the role's copy of the data" if failure.preparing else "the query failed in the role's sandbox"
    return (AccessDenied if denial else QueryFailed)(
        f"{step}: {_kind(error)} (its message is withheld: it depends on the data and may quote a value)")


def _kind(error: duckdb.Error) -> str:
    """The error's kind as DuckDB names it ('Conversion Error'): fixed by the error type, never by the data."""
    match = re.match(r"([A-Za-z][A-Za-z ]{0,40} Error):", str(error))
    return match[1] if match else type(error).__name__


def _classified(error: duckdb.Error, watchdog: _Watchdog | None, preparing: bool = False) -> Exception:
    if watchdog and watchdog.fired.is_set():
        return _TimeUp()
    if isinstance(error, duckdb.OutOfMemoryException) or "Out of Memory Error" in str(error):
        return _OutOfMemory()
    return _EngineFailure(error, preparing)


def _run(catalog, role, keys, references, attributes, data_dir, sql, stream, *, audience="", limits=None,
         watchdog=None, empty=False):
    try:
        sandbox = _sandbox(catalog, role, keys, references, attributes, data_dir, stream, audience=audience,
                           limits=limits, watchdog=watchdog, empty=empty)
    except duckdb.Error as error:  # reading the role's copy (our own SQL over stored values) failed
        raise _classified(error, watchdog, preparing=True) from None
    try:
        if watchdog:
            watchdog.check()
        cursor = sandbox.database.execute(sql)
        columns = [d[0] for d in cursor.description] if cursor.description else []
        return columns, cursor.fetchall(), sandbox.held
    except duckdb.Error as error:
        if stream and "already been consumed" in str(error):
            raise _ScannedTwice from None
        raise _classified(error, watchdog) from None
    finally:
        if watchdog:
            watchdog.forget()
        sandbox.close()


def _first_line(error: Exception) -> str:
    return str(error).strip().split("\n")[0]
