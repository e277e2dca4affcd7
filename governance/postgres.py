"""The catalog's access policy compiled into PostgreSQL (the team target): `governance apply`.

From the catalog, apply computes the state the warehouse database should be in, reads the state it is in from
pg_catalog, and plans the statements that take one to the other (nothing when they agree). What it manages:

    gov_owner              NOLOGIN; owns the published tables and the `governance` schema. Never a reader's.
    gov_<role>             NOLOGIN group per catalog role; its logins are its members. CONNECT on the database,
                           USAGE on governed_<role>, SELECT on its views: nothing else.
    gov_<role>_views       NOLOGIN; owns the role's views and holds SELECT on exactly the base columns they read.
    "<principal>"          a LOGIN per principal (consumer, or team member with a role), member of its role's
                           group only; no password until `governance password` gives it one.
    governed_<role>.<t>    a security_barrier view per role and published dataset: the allowed columns, masked
                           per PII category (policy.masking_sql), the hash keyed for the login's audience.
    row-level security     ENABLE + FORCE on every published table; a policy per role reading it, for its views'
                           owner: all rows, or the rows whose filter column equals the login's attribute.
    governance.principals  login -> audience and attributes; governance.masking_keys audience -> HMAC key
                           (derived from <data>/governance/masking_key); readable by the views' owners only.

Views run with their owner's privileges, but `session_user` inside them stays the login that connected, so
row policies and key lookups key on the login. Anything else granted to PUBLIC or a managed role, anywhere in the
database, and any grant on the objects apply manages is revoked. Every role, schema, view and policy apply makes
carries a comment beginning "governance apply"; views and policies a digest of their definition, so a changed
definition is recreated. governance never imports platform_assets: the connection is PLATFORM_WAREHOUSE_URL."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from governance.access import masking_key
from governance.catalog import Catalog
from governance.identity import principals
from governance.policy import decide, masking_sql

URL_VARIABLE = "PLATFORM_WAREHOUSE_URL"
OWNER = "gov_owner"
META = "governance"  # the schema of the principals and masking keys tables
MANAGED = "governance apply"  # every comment apply writes starts with it
LOCK = 0x676F7661  # advisory lock: one apply at a time
MAX_IDENTIFIER = 63  # PostgreSQL truncates longer names silently: refused instead
ROLE_NAME = re.compile(r"[a-z][a-z0-9_]*")
ROLE_FLAGS = ("SUPERUSER", "CREATEDB", "CREATEROLE", "INHERIT", "LOGIN", "REPLICATION", "BYPASSRLS")
# The login's masking key and attributes, looked up by the login that connected (views keep session_user).
KEY_SQL = (f"(SELECT k.key FROM {META}.masking_keys k JOIN {META}.principals p ON p.audience = k.audience "
           "WHERE p.login = session_user)")
META_TABLES = {
    "principals": "login text PRIMARY KEY, audience text NOT NULL, attributes jsonb NOT NULL",
    "masking_keys": "audience text PRIMARY KEY, key text NOT NULL",
}
# Statements that carry key material stay out of the server's log.
QUIET = ("SET LOCAL log_statement = 'none'", "SET LOCAL log_min_duration_statement = -1",
         "SET LOCAL log_min_error_statement = 'panic'")


class ApplyError(RuntimeError):
    """The catalog cannot be compiled for this server, or the server refused the plan (nothing was changed)."""


def group(role: str) -> str:
    return f"gov_{role}"


def view_owner(role: str) -> str:
    return f"gov_{role}_views"


def view_schema(role: str) -> str:
    return f"governed_{role}"


def ident(*names: str) -> str:
    return ".".join('"' + name.replace('"', '""') + '"' for name in names)


def grantee_sql(name: str) -> str:
    return "PUBLIC" if name == "PUBLIC" else ident(name)


def literal(value: str) -> str:
    if "\0" in value:
        raise ApplyError("a value holds a NUL character: PostgreSQL text cannot")
    return "'" + value.replace("'", "''") + "'"


def digest(text: str) -> str:
    return f"{MANAGED} sha256:{hashlib.sha256(text.encode()).hexdigest()[:32]}"


@dataclass(frozen=True, order=True)
class Privilege:
    kind: str  # database | schema | table (tables and views) | column
    target: tuple[str, ...]  # (database,) | (schema,) | (schema, table) | (schema, table, column)
    grantee: str  # a role, or PUBLIC
    privilege: str  # CONNECT, TEMPORARY, USAGE, CREATE, SELECT, INSERT, ...

    @property
    def relation(self) -> tuple[str, str] | None:
        return self.target[:2] if self.kind in ("table", "column") else None

    def on(self) -> str:
        if self.kind == "database":
            return f"{self.privilege} ON DATABASE {ident(self.target[0])}"
        if self.kind == "schema":
            return f"{self.privilege} ON SCHEMA {ident(self.target[0])}"
        if self.kind == "table":
            return f"{self.privilege} ON TABLE {ident(*self.target)}"
        return f"{self.privilege} ({ident(self.target[2])}) ON TABLE {ident(*self.target[:2])}"


@dataclass(frozen=True)
class Step:
    sql: str
    shown: str | None = None  # what the plan prints instead of the SQL (it holds a masking key)

    @property
    def quiet(self) -> bool:
        return self.shown is not None

    def __str__(self) -> str:
        return self.shown or self.sql + ";"


@dataclass
class Plan:
    steps: list[Step]
    notes: list[str]

    def text(self) -> str:
        lines = [f"-- {note}" for note in self.notes]
        lines += [str(step) for step in self.steps] or ["-- no changes: the server matches the catalog"]
        return "\n".join(lines)


@dataclass
class Desired:
    """The state the catalog asks for."""

    roles: dict[str, tuple[bool, str]] = field(default_factory=dict)  # name -> (login, comment)
    members: set[tuple[str, str]] = field(default_factory=set)  # (group, member)
    settings: dict[str, dict[str, str]] = field(default_factory=dict)  # role -> {setting: value} in the database
    schemas: dict[str, str] = field(default_factory=dict)  # schema -> owner
    tables: dict[tuple[str, str], str] = field(default_factory=dict)  # published and meta tables -> owner
    secured: set[tuple[str, str]] = field(default_factory=set)  # tables with row-level security enabled and forced
    policies: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (schema, table, name) -> CREATE
    views: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # view -> (CREATE VIEW, owner)
    privileges: set[Privilege] = field(default_factory=set)
    principals: dict[str, tuple[str, str]] = field(default_factory=dict)  # login -> (audience, attributes JSON)
    keys: dict[str, str] = field(default_factory=dict)  # audience -> key
    notes: list[str] = field(default_factory=list)


@dataclass
class Actual:
    """The state the server is in, read from pg_catalog."""

    database: str
    roles: dict[str, dict]  # name -> {flag: bool, "comment": str | None}
    members: set[tuple[str, str]]
    settings: dict[str, dict[str, str]]
    schemas: dict[str, tuple[str, str | None]]  # name -> (owner, comment)
    relations: dict[tuple[str, str], dict]  # (schema, name) -> kind, owner, rls, force, comment, columns
    policies: dict[tuple[str, str, str], str | None]  # -> comment
    privileges: dict[Privilege, list[tuple[str, bool]]]  # -> [(grantor, grantable)]
    owners: dict[tuple, str]  # the owner of each database, schema and relation: (kind, *target) -> role
    principals: dict[str, tuple[str, str]] | None  # None: the table does not exist yet
    keys: dict[str, str] | None

    def managed(self, role: str) -> bool:
        comment = self.roles.get(role, {}).get("comment") or ""
        return comment.startswith(MANAGED)


# --- the desired state ---------------------------------------------------------------------------------------

def desired_state(catalog: Catalog, actual: Actual, data_dir: Path | None = None) -> Desired:
    want = Desired()
    database = actual.database
    want.roles[OWNER] = (False, f"{MANAGED}: owns the published tables; never grant it to a reader")
    for role in catalog.access.roles:
        if not ROLE_NAME.fullmatch(role) or len(view_owner(role).encode()) > MAX_IDENTIFIER:
            raise ApplyError(f"access.yml: roles.{role}: a role compiled into PostgreSQL needs a name of lowercase "
                             f"letters, digits and '_' of at most {MAX_IDENTIFIER - 10} characters")
        want.roles[group(role)] = (False, f"{MANAGED}: readers with role {role}")
        want.roles[view_owner(role)] = (False, f"{MANAGED}: owner of role {role}'s views")
        want.privileges.add(Privilege("database", (database,), group(role), "CONNECT"))
    want.schemas[META] = OWNER
    for table in META_TABLES:
        want.tables[(META, table)] = OWNER

    reads_keys: set[str] = set()
    reads_attributes: set[str] = set()
    for key, dataset in catalog.datasets.items():
        if not dataset.published:
            continue
        relation = tuple(key.split("/", 1))
        found = actual.relations.get(relation)
        if found is None or found["kind"] not in ("r", "p"):
            why = "not in the warehouse yet" if found is None else "not a table (row-level security needs one)"
            want.notes.append(f"{key}: {ident(*relation)} is {why}: nothing is granted on it")
            continue
        want.tables[relation] = OWNER
        want.secured.add(relation)
        want.privileges.add(Privilege("schema", (relation[0],), OWNER, "USAGE"))  # reaches what it owns
        want.policies[(*relation, OWNER)] = (f"CREATE POLICY {ident(OWNER)} ON {ident(*relation)} FOR ALL "
                                             f"TO {ident(OWNER)} USING (true) WITH CHECK (true)")
        for role in catalog.access.roles:
            decision = decide(catalog, role, key, found["columns"])
            if not decision.allowed or not decision.readable_columns:
                continue
            view = (view_schema(role), relation[1])
            if view in want.views:
                raise ApplyError(f"datasets.yml: two published datasets named '{relation[1]}' would share the view "
                                 f"{ident(*view)}: rename one")
            expressions = []
            for name in decision.readable_columns:
                column = decision.columns[name]
                if column.access == "masked":
                    expressions.append(f"{masking_sql(column.masking, ident(name), KEY_SQL, 'postgres')} "
                                       f"AS {ident(name)}")
                    if column.masking.rule == "hash":
                        reads_keys.add(role)
                else:
                    expressions.append(ident(name))
            want.views[view] = (f"CREATE VIEW {ident(*view)} WITH (security_barrier) AS SELECT "
                                f"{', '.join(expressions)} FROM {ident(*relation)}", view_owner(role))
            want.schemas[view[0]] = OWNER
            want.privileges |= {Privilege("schema", (relation[0],), view_owner(role), "USAGE"),
                                Privilege("schema", (view[0],), group(role), "USAGE"),
                                Privilege("table", view, group(role), "SELECT")}
            want.privileges |= {Privilege("column", (*relation, name), view_owner(role), "SELECT")
                                for name in decision.readable_columns}
            rows = "true"
            if decision.row_filter:
                reads_attributes.add(role)
                rows = (f"CAST({ident(decision.row_filter.column)} AS text) = (SELECT p.attributes ->> "
                        f"{literal(decision.row_filter.attribute)} FROM {META}.principals p "
                        "WHERE p.login = session_user)")
            want.policies[(*relation, group(role))] = (f"CREATE POLICY {ident(group(role))} ON {ident(*relation)} "
                                                       f"FOR SELECT TO {ident(view_owner(role))} USING ({rows})")
    for role in reads_keys | reads_attributes:
        want.privileges |= {Privilege("schema", (META,), view_owner(role), "USAGE"),
                            Privilege("table", (META, "principals"), view_owner(role), "SELECT")}
    for role in reads_keys:
        want.privileges.add(Privilege("table", (META, "masking_keys"), view_owner(role), "SELECT"))

    for principal in principals(catalog).values():
        name = principal.name
        if len(name.encode()) > MAX_IDENTIFIER or name.startswith(("pg_", "gov_")) or not name.isprintable():
            raise ApplyError(f"principal '{name}': a PostgreSQL login name has at most {MAX_IDENTIFIER} bytes, "
                             "printable, and does not start with pg_ or gov_")
        want.roles[name] = (True, f"{MANAGED}: {principal.kind} {name}, role {principal.role}")
        want.members.add((group(principal.role), name))
        seconds = catalog.access.limits_of(principal.role).query_seconds
        want.settings[name] = {"search_path": view_schema(principal.role), "log_statement": "all",
                               "statement_timeout": str(int(seconds * 1000))}
        want.principals[name] = (principal.audience, json.dumps(principal.attributes, sort_keys=True))
        if principal.role in reads_keys:
            want.keys[principal.audience] = masking_key(data_dir, principal.audience)
    return want


# --- the actual state ----------------------------------------------------------------------------------------

SYSTEM_SCHEMAS = "n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'"


def read_actual(cursor) -> Actual:
    cursor.execute("SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()")
    database, database_owner = cursor.fetchone()
    cursor.execute("SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolinherit, rolcanlogin, rolreplication, "
                   "rolbypassrls, shobj_description(oid, 'pg_authid') FROM pg_roles")
    roles = {row[0]: dict(zip(("SUPERUSER", "CREATEDB", "CREATEROLE", "INHERIT", "LOGIN", "REPLICATION",
                                "BYPASSRLS", "comment"), row[1:], strict=True)) for row in cursor.fetchall()}
    cursor.execute("SELECT g.rolname, m.rolname FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid "
                   "JOIN pg_roles m ON m.oid = a.member")
    members = set(cursor.fetchall())
    cursor.execute("SELECT r.rolname, s.setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
                   "JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = current_database()")
    settings = {role: dict(item.split("=", 1) for item in config) for role, config in cursor.fetchall()}
    cursor.execute(f"SELECT n.nspname, pg_get_userbyid(n.nspowner), obj_description(n.oid, 'pg_namespace') "
                   f"FROM pg_namespace n WHERE {SYSTEM_SCHEMAS}")
    schemas = {name: (owner, comment) for name, owner, comment in cursor.fetchall()}
    cursor.execute(f"SELECT n.nspname, c.relname, c.relkind, pg_get_userbyid(c.relowner), c.relrowsecurity, "
                   f"c.relforcerowsecurity, obj_description(c.oid, 'pg_class'), ARRAY(SELECT a.attname::text "
                   f"FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
                   f"ORDER BY a.attnum) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                   f"WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND {SYSTEM_SCHEMAS}")
    relations = {(schema, name): {"kind": kind, "owner": owner, "rls": rls, "force": force, "comment": comment,
                                  "columns": list(columns)}
                 for schema, name, kind, owner, rls, force, comment, columns in cursor.fetchall()}
    cursor.execute(f"SELECT n.nspname, c.relname, p.polname, obj_description(p.oid, 'pg_policy') FROM pg_policy p "
                   f"JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                   f"WHERE {SYSTEM_SCHEMAS}")
    policies = {(schema, table, name): comment for schema, table, name, comment in cursor.fetchall()}

    owners: dict[tuple, str] = {("database", database): database_owner}
    owners |= {("schema", name): owner for name, (owner, _) in schemas.items()}
    owners |= {("table", *relation): found["owner"] for relation, found in relations.items()}
    grantee = "CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END"
    owner_of = {"database": "d.datdba", "schema": "n.nspowner", "table": "c.relowner", "column": "c.relowner"}
    acl_queries = {
        "database": f"SELECT ARRAY[d.datname::text], {grantee}, a.privilege_type, pg_get_userbyid(a.grantor), "
                    f"a.is_grantable FROM pg_database d, "
                    f"aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a "
                    f"WHERE d.datname = current_database() AND a.grantee <> {owner_of['database']}",
        "schema": f"SELECT ARRAY[n.nspname::text], {grantee}, a.privilege_type, pg_get_userbyid(a.grantor), "
                  f"a.is_grantable FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', "
                  f"n.nspowner))) a WHERE {SYSTEM_SCHEMAS} AND a.grantee <> {owner_of['schema']}",
        "table": f"SELECT ARRAY[n.nspname::text, c.relname::text], {grantee}, a.privilege_type, "
                 f"pg_get_userbyid(a.grantor), a.is_grantable FROM pg_class c JOIN pg_namespace n "
                 f"ON n.oid = c.relnamespace, aclexplode(coalesce(c.relacl, acldefault(CAST(CASE c.relkind "
                 f"WHEN 'S' THEN 's' ELSE 'r' END AS \"char\"), c.relowner))) a "
                 f"WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') "
                 f"AND {SYSTEM_SCHEMAS} AND a.grantee <> {owner_of['table']}",
        "column": f"SELECT ARRAY[n.nspname::text, c.relname::text, t.attname::text], {grantee}, a.privilege_type, "
                  f"pg_get_userbyid(a.grantor), a.is_grantable FROM pg_attribute t JOIN pg_class c "
                  f"ON c.oid = t.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(t.attacl) a "
                  f"WHERE t.attacl IS NOT NULL AND NOT t.attisdropped AND {SYSTEM_SCHEMAS} "
                  f"AND a.grantee <> {owner_of['column']}",
    }
    privileges: dict[Privilege, list[tuple[str, bool]]] = {}
    for kind, query in acl_queries.items():
        cursor.execute(query)
        for target, role, privilege, grantor, grantable in cursor.fetchall():
            privileges.setdefault(Privilege(kind, tuple(target), role, privilege), []).append((grantor, grantable))

    known_principals = known_keys = None
    if (META, "principals") in relations:
        cursor.execute(f"SELECT login, audience, attributes::text FROM {META}.principals")
        known_principals = {login: (audience, json.dumps(json.loads(attributes), sort_keys=True))
                            for login, audience, attributes in cursor.fetchall()}
    if (META, "masking_keys") in relations:
        cursor.execute(f"SELECT audience, key FROM {META}.masking_keys")
        known_keys = dict(cursor.fetchall())
    return Actual(database, roles, members, settings, schemas, relations, policies, privileges, owners,
                  known_principals, known_keys)


# --- the plan ------------------------------------------------------------------------------------------------

def plan_changes(want: Desired, actual: Actual) -> Plan:
    """The statements that take the server from `actual` to `want`, in an order that runs in one transaction."""
    steps: list[Step] = []
    notes = list(want.notes)
    run = steps.append

    # roles: apply's own roles only; a role of the same name that apply did not make is refused, not taken over
    for name, (login, comment) in want.roles.items():
        found = actual.roles.get(name)
        flags = " ".join(flag if (flag == "INHERIT" or (flag == "LOGIN" and login)) else f"NO{flag}"
                         for flag in ROLE_FLAGS)
        if found is None:
            run(Step(f"CREATE ROLE {ident(name)} {flags}" + (" PASSWORD NULL" if login else "")))
            run(Step(f"COMMENT ON ROLE {ident(name)} IS {literal(comment)}"))
            continue
        if not actual.managed(name):
            raise ApplyError(f"a role '{name}' exists that governance apply did not create: rename the principal or "
                             "role in the catalog, or drop that role")
        if any(found[flag] != (flag == "INHERIT" or (flag == "LOGIN" and login)) for flag in ROLE_FLAGS):
            run(Step(f"ALTER ROLE {ident(name)} {flags}"))
        if found["comment"] != comment:
            run(Step(f"COMMENT ON ROLE {ident(name)} IS {literal(comment)}"))
    managed = {name for name in actual.roles if actual.managed(name)} | set(want.roles)
    dropped_roles = sorted(name for name in actual.roles if actual.managed(name) and name not in want.roles)

    # memberships: the desired ones only, for every role apply manages (the owner's other members are noted)
    for membership in sorted(actual.members - want.members):
        owner_role, member = membership
        if member in dropped_roles or owner_role in dropped_roles:
            continue
        if owner_role == OWNER and member not in managed:
            notes.append(f"role '{member}' is a member of {OWNER}: it reads and writes every row of every "
                         "published table; make sure it is the platform's writer and no reader")
        elif owner_role in managed or member in managed:
            run(Step(f"REVOKE {ident(owner_role)} FROM {ident(member)} CASCADE"))
    for owner_role, member in sorted(want.members - actual.members):
        run(Step(f"GRANT {ident(owner_role)} TO {ident(member)}"))

    # per-login settings in this database: the view schema first on the search path, the role's time limit as the
    # statement timeout, every statement logged (log_statement: only a superuser can change it)
    for role in sorted(managed - set(dropped_roles)):
        have, wanted = actual.settings.get(role, {}), want.settings.get(role, {})
        for setting in sorted(set(have) - set(wanted)):
            run(Step(f"ALTER ROLE {ident(role)} IN DATABASE {ident(actual.database)} RESET {setting}"))
        for setting, value in sorted(wanted.items()):
            if have.get(setting) != value:
                run(Step(f"ALTER ROLE {ident(role)} IN DATABASE {ident(actual.database)} SET {setting} = "
                         f"{literal(value)}"))

    # schemas
    dropped_schemas = sorted(name for name, (_, comment) in actual.schemas.items()
                             if (comment or "").startswith(MANAGED) and name not in want.schemas)
    for name, owner in sorted(want.schemas.items()):
        found = actual.schemas.get(name)
        if found is None:
            run(Step(f"CREATE SCHEMA {ident(name)} AUTHORIZATION {ident(owner)}"))
            run(Step(f"COMMENT ON SCHEMA {ident(name)} IS {literal(f'{MANAGED}: governed access')}"))
        elif not (found[1] or "").startswith(MANAGED):
            raise ApplyError(f"a schema '{name}' exists that governance apply did not create: rename or drop it")
        elif found[0] != owner:
            run(Step(f"ALTER SCHEMA {ident(name)} OWNER TO {ident(owner)}"))
    for name in dropped_schemas:
        run(Step(f"DROP SCHEMA {ident(name)} CASCADE"))

    # the tables: the meta tables, then the published tables' owner and row-level security
    for relation, owner in sorted(want.tables.items()):
        found = actual.relations.get(relation)
        if found is None and relation[0] == META:
            run(Step(f"CREATE TABLE {ident(*relation)} ({META_TABLES[relation[1]]})"))
            run(Step(f"ALTER TABLE {ident(*relation)} OWNER TO {ident(owner)}"))
            continue
        if found["owner"] != owner:
            run(Step(f"ALTER TABLE {ident(*relation)} OWNER TO {ident(owner)}"))
        if relation in want.secured and not found["rls"]:
            run(Step(f"ALTER TABLE {ident(*relation)} ENABLE ROW LEVEL SECURITY"))
        if relation in want.secured and not found["force"]:
            run(Step(f"ALTER TABLE {ident(*relation)} FORCE ROW LEVEL SECURITY"))

    # who is who: the principals' audiences and attributes (the masking keys come last, quietly)
    have_principals = actual.principals or {}
    for login in sorted(set(have_principals) - set(want.principals)):
        run(Step(f"DELETE FROM {META}.principals WHERE login = {literal(login)}"))
    for login, (audience, attributes) in sorted(want.principals.items()):
        if have_principals.get(login) != (audience, attributes):
            run(Step(f"INSERT INTO {META}.principals VALUES ({literal(login)}, {literal(audience)}, "
                     f"{literal(attributes)}) ON CONFLICT (login) DO UPDATE SET audience = EXCLUDED.audience, "
                     "attributes = EXCLUDED.attributes"))

    # policies on the tables apply secures (any other policy there is dropped) and every policy apply made
    for key in sorted(actual.policies):
        comment = actual.policies[key] or ""
        ours = key[:2] in want.secured or comment.startswith(MANAGED)
        if ours and (key not in want.policies or comment != digest(want.policies[key])) \
                and key[0] not in dropped_schemas:
            run(Step(f"DROP POLICY {ident(key[2])} ON {ident(*key[:2])}"))
    for key, create in sorted(want.policies.items()):
        if actual.policies.get(key, "") != digest(create):
            run(Step(create))
            run(Step(f"COMMENT ON POLICY {ident(key[2])} ON {ident(*key[:2])} IS {literal(digest(create))}"))

    # views: dropped when no longer wanted, recreated when their definition or owner changed
    recreated: set[tuple[str, str]] = set()
    for relation, found in sorted(actual.relations.items()):
        if relation[0] in dropped_schemas:
            continue
        in_governed = (actual.schemas[relation[0]][1] or "").startswith(MANAGED) and relation[0] != META
        if relation in want.views:
            if found["kind"] != "v":
                raise ApplyError(f"{ident(*relation)} exists and is not a view governance apply made: drop it")
            create, owner = want.views[relation]
            if found["comment"] != digest(create) or found["owner"] != owner:
                run(Step(f"DROP VIEW {ident(*relation)}"))
                recreated.add(relation)
        elif in_governed:
            run(Step(f"DROP {'VIEW' if found['kind'] == 'v' else 'TABLE'} {ident(*relation)}"))
            recreated.add(relation)
    for relation, (create, owner) in sorted(want.views.items()):
        if relation in recreated or relation not in actual.relations:
            run(Step(create))
            run(Step(f"ALTER VIEW {ident(*relation)} OWNER TO {ident(owner)}"))
            run(Step(f"COMMENT ON VIEW {ident(*relation)} IS {literal(digest(create))}"))

    # privileges: on what apply manages, only the desired ones; elsewhere, nothing for PUBLIC or apply's roles
    governed_relations = set(want.tables) | set(want.views)
    governed_schemas = set(want.schemas)

    def ours(privilege: Privilege) -> bool:
        if privilege.grantee in dropped_roles:
            return False  # DROP OWNED takes them
        if privilege.relation and (privilege.relation in recreated or privilege.target[0] in dropped_schemas):
            return False  # went with the dropped object
        if privilege.kind == "schema" and privilege.target[0] in dropped_schemas:
            return False
        return (privilege.grantee == "PUBLIC" or privilege.grantee in managed
                or privilege.relation in governed_relations
                or (privilege.kind == "schema" and privilege.target[0] in governed_schemas))

    changes: list[tuple[str, Privilege, str]] = []  # (verb, privilege, what follows the grantee)
    for privilege, grants in sorted(actual.privileges.items()):
        if not ours(privilege):
            continue
        owner = actual.owners.get((privilege.kind if privilege.kind != "column" else "table", *privilege.target[:2]))
        wanted = privilege in want.privileges
        for grantor, grantable in grants:
            by = "" if grantor == owner or grantor == want_owner(want, privilege) else f" GRANTED BY {ident(grantor)}"
            if not wanted or by:
                changes.append(("REVOKE", privilege, f"{by} CASCADE"))
            elif grantable:
                changes.append(("REVOKE GRANT OPTION FOR", privilege, " CASCADE"))
    for privilege in sorted(want.privileges):
        grants = [] if privilege.relation in recreated else actual.privileges.get(privilege, [])
        owner = actual.owners.get((privilege.kind if privilege.kind != "column" else "table", *privilege.target[:2]))
        if not any(grantor in (owner, want_owner(want, privilege)) for grantor, _ in grants):
            changes.append(("GRANT", privilege, ""))
    steps += _grouped(changes, actual)

    # roles no longer in the catalog: what they own and were granted in this database, then the role
    for name in dropped_roles:
        run(Step(f"DROP OWNED BY {ident(name)} CASCADE"))
        run(Step(f"DROP ROLE {ident(name)}"))

    # the masking keys, out of the server's log
    have_keys = actual.keys or {}
    for audience in sorted(set(have_keys) - set(want.keys)):
        run(Step(f"DELETE FROM {META}.masking_keys WHERE audience = {literal(audience)}"))
    for audience, key in sorted(want.keys.items()):
        if have_keys.get(audience) != key:
            run(Step(f"INSERT INTO {META}.masking_keys VALUES ({literal(audience)}, {literal(key)}) "
                     "ON CONFLICT (audience) DO UPDATE SET key = EXCLUDED.key",
                     shown=f"-- set the masking key of audience {audience} (derived from the data folder's "
                           "masking secret; not shown, not logged)"))
    return Plan(steps, notes)


def _grouped(changes: list[tuple[str, Privilege, str]], actual: Actual) -> list[Step]:
    """One statement per change, object and grantee: the columns of a column privilege listed together, in the
    table's order."""
    merged: dict[tuple, list[str]] = {}
    for verb, privilege, suffix in changes:
        target = privilege.target[:2] if privilege.kind == "column" else privilege.target
        key = (verb, privilege.kind, target, privilege.grantee, privilege.privilege, suffix)
        merged.setdefault(key, []).append(privilege.target[-1])
    steps = []
    for (verb, kind, target, grantee, privilege, suffix), columns in merged.items():
        if kind == "column":
            order = actual.relations.get(target, {}).get("columns", [])
            columns = sorted(columns, key=lambda name: order.index(name) if name in order else len(order))
        on = (f"{privilege} ({', '.join(map(ident, columns))}) ON TABLE {ident(*target)}" if kind == "column"
              else Privilege(kind, target, grantee, privilege).on())
        steps.append(Step(f"{verb} {on} {'TO' if verb == 'GRANT' else 'FROM'} {grantee_sql(grantee)}{suffix}"))
    return steps


def want_owner(want: Desired, privilege: Privilege) -> str | None:
    """The owner the object will have once the plan ran (grants its old owner made move to it)."""
    if privilege.kind == "database":
        return None
    if privilege.kind == "schema":
        return want.schemas.get(privilege.target[0])
    relation = privilege.relation
    return want.tables.get(relation) or (want.views[relation][1] if relation in want.views else None)


# --- the connection ------------------------------------------------------------------------------------------

def warehouse_url(url: str | None = None) -> str:
    url = url or os.environ.get(URL_VARIABLE, "").strip()
    if not url:
        raise ApplyError(f"{URL_VARIABLE} is not set: governance apply needs the PostgreSQL warehouse's URL "
                         "(a superuser's; `make team-up` writes it to <data>/team/team.env)")
    if url.split("://", 1)[0].split("+", 1)[0] not in ("postgresql", "postgres"):
        raise ApplyError(f"{URL_VARIABLE}: expected a postgresql:// URL, not {url.split('://', 1)[0]}://...")
    return url.replace("postgresql+psycopg2://", "postgresql://", 1)


def _connect(url: str | None):
    import psycopg2

    url = warehouse_url(url)
    try:
        connection = psycopg2.connect(url)
    except psycopg2.Error as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ApplyError(f"cannot connect to the warehouse ({URL_VARIABLE}): {reason}") from None
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        superuser = cursor.fetchone()[0]
        cursor.execute("SHOW standard_conforming_strings")
        conforming = cursor.fetchone()[0] == "on"
    connection.rollback()
    if not superuser or not conforming:
        connection.close()
        raise ApplyError(f"{URL_VARIABLE} must connect as a superuser (apply creates roles, changes table owners "
                         "and policies)" if not superuser else "the server has standard_conforming_strings off")
    return connection


def apply_catalog(catalog: Catalog, *, execute: bool, url: str | None = None, data_dir: Path | None = None) -> Plan:
    """Plan the catalog against the warehouse; with `execute`, run the plan in one transaction (all or nothing).
    One apply at a time (an advisory lock); the plan is computed inside the transaction that runs it."""
    import psycopg2

    connection = _connect(url)
    try:
        with connection.cursor() as cursor:
            if not execute:
                cursor.execute("SET TRANSACTION READ ONLY")
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
            actual = read_actual(cursor)
            plan = plan_changes(desired_state(catalog, actual, data_dir), actual)
            if not execute:
                connection.rollback()
                return plan
            step = None
            try:
                for step in plan.steps:
                    if step.quiet:
                        for statement in QUIET:
                            cursor.execute(statement)
                    cursor.execute(step.sql)
                connection.commit()
            except psycopg2.Error as error:
                connection.rollback()
                reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
                raise ApplyError(f"the server refused `{step}`: {reason}; nothing was changed (rolled back)") from None
        return plan
    finally:
        connection.close()


PASSWORD_DAYS = 90


def issue_password(catalog: Catalog, principal: str, *, days: int = PASSWORD_DAYS,
                   url: str | None = None) -> tuple[str, dt.datetime]:
    """A new random password for the login of `principal` (made by apply), valid `days`: returned once, stored by
    the server only as its SCRAM-SHA-256 verifier, computed here so the password never reaches the server."""
    from psycopg2.extensions import encrypt_password

    if principal not in principals(catalog):
        raise ApplyError(f"'{principal}' is not a principal of the catalog ({catalog.directory})")
    if not 1 <= days <= 366:
        raise ApplyError(f"a password lives 1 to 366 days, not {days}")
    connection = _connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s "
                           "AND rolcanlogin", (principal,))
            found = cursor.fetchone()
            if found is None or not (found[0] or "").startswith(MANAGED):
                raise ApplyError(f"no login '{principal}' made by governance apply: run `governance apply --yes` first")
            password = secrets.token_urlsafe(32)
            verifier = encrypt_password(password, principal, connection, "scram-sha-256")
            until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).replace(microsecond=0)
            for statement in QUIET:
                cursor.execute(statement)
            cursor.execute(f"ALTER ROLE {ident(principal)} PASSWORD {literal(verifier)} "
                           f"VALID UNTIL {literal(until.isoformat())}")
        connection.commit()
        return password, until
    finally:
        connection.close()
