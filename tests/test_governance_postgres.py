"""Governance compiled into PostgreSQL (`governance apply`), on a real server started here: every published dataset
of the catalog with the same rows as the DuckDB governed warehouse (governed.published_rows), the catalog applied,
then read AS each principal's own login over TCP with its password. The access tests' matrix runs again as those
logins; row filters, deny by default, the keys out of reach, the owner role refused, apply idempotent and revoking
what the catalog no longer gives."""

import datetime as dt
import re
import shutil
import tempfile
from pathlib import Path

import psycopg2
import psycopg2.extras
import pytest
import yaml

from governance.access import masking_key
from governance.catalog import load_catalog
from governance.cli import main as governance_main
from governance.identity import principals
from governance.catalog import MaskingRule
from governance.policy import SEQUENCE_MASKING, decide, masked_value, masking_sql
from governance.postgres import OWNER, ApplyError, apply_catalog, issue_password, literal, view_owner, view_schema
from governed import principal_of, published_rows
from platform_assets.team.postgres import start_postgres, stop_postgres
from test_governance_access import ATTRIBUTES, PII_COLUMNS, ROLES, _leaks
from test_personal_data import DATES, RULES, TEXTS

CATALOG = load_catalog()
PG_TYPES = {"DOUBLE": "double precision"}  # every other contract type is spelled the same in PostgreSQL
UNPUBLISHED = ("raw.bookings", "staging.stg_bookings__bookings", "intermediate.int_bookings__validated",
               "marts_audit.bookings")


def _create_published_tables(url: str) -> None:
    connection = psycopg2.connect(url)
    with connection, connection.cursor() as cursor:
        for key, table in published_rows()["tables"].items():
            schema, name = key.split("/")
            columns = ", ".join(f'"{column}" {PG_TYPES.get(kind, kind)}' for column, kind in table["columns"].items())
            cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            cursor.execute(f"CREATE TABLE {schema}.{name} ({columns})")
            psycopg2.extras.execute_values(cursor, f"INSERT INTO {schema}.{name} VALUES %s", table["rows"])
        for copy in UNPUBLISHED:
            cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {copy.split('.')[0]}")
            cursor.execute(f"CREATE TABLE {copy} AS SELECT * FROM marts.bookings")
    connection.close()


@pytest.fixture(scope="module")
def warehouse():
    # under /tmp, not pytest's folder: the server runs as the postgres user, who cannot enter root's 0700 folders
    folder = Path(tempfile.mkdtemp(prefix="platform-gov-pg-"))
    data = Path(tempfile.mkdtemp(prefix="platform-gov-data-"))  # the masking secret the keys derive from
    server = start_postgres(folder, databases=("warehouse",))
    url = server.url("warehouse")
    try:
        _create_published_tables(url)
        # the superuser that applies logs every statement too, as a DBA's audit setting would: keys and password
        # verifiers must stay out of the log all the same
        _superuser(url, "ALTER ROLE postgres SET log_statement = 'all'")
        roles_before = _superuser_rows(url, "SELECT rolname FROM pg_roles ORDER BY 1")
        planned = apply_catalog(CATALOG, execute=False, url=url, data_dir=data)
        roles_after_plan = _superuser_rows(url, "SELECT rolname FROM pg_roles ORDER BY 1")
        applied = apply_catalog(CATALOG, execute=True, url=url, data_dir=data)
        passwords = {name: issue_password(CATALOG, name, url=url)[0] for name in principals(CATALOG)}
        yield {"server": server, "url": url, "data": data, "passwords": passwords, "planned": planned,
               "applied": applied, "plan_changed_roles": roles_before != roles_after_plan}
    finally:
        stop_postgres(server)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)


def _superuser_rows(url: str, sql: str) -> list[tuple]:
    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall()
    finally:
        connection.close()


def _superuser(url: str, *statements: str) -> None:
    connection = psycopg2.connect(url)
    with connection, connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    connection.close()


def _login(warehouse, principal: str, password: str | None = None):
    return psycopg2.connect(host="127.0.0.1", port=warehouse["server"].port, dbname="warehouse", user=principal,
                            password=password or warehouse["passwords"][principal])


def query(warehouse, principal: str, sql: str) -> tuple[list[str], list[tuple]]:
    """One statement as the principal's login: (column names, rows)."""
    connection = _login(warehouse, principal)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return [d.name for d in cursor.description], cursor.fetchall()
    finally:
        connection.close()


def refused(warehouse, principal: str, sql: str) -> str:
    """The server's refusal of `sql` as the principal's login (the test fails if it runs)."""
    with pytest.raises(psycopg2.Error) as refusal:
        query(warehouse, principal, sql)
    return str(refusal.value).strip()


def _flatten(columns: list[str], rows: list[tuple]) -> list:
    return [*columns, *(cell for row in rows for cell in row)]


def _stored(key: str, carrier: str | None = None) -> tuple[list[str], list[list]]:
    table = published_rows()["tables"][key]
    names = list(table["columns"])
    rows = [row for row in table["rows"] if carrier is None or row[names.index("carrier")] == carrier]
    return names, rows


@pytest.mark.parametrize("rule", [*RULES, MaskingRule(rule="year")], ids=lambda r: f"{r.rule}{r.keep or ''}")
def test_the_postgres_form_of_a_masking_rule_gives_what_python_gives(warehouse, rule):
    """masking_sql's PostgreSQL dialect, the Python form and (test_personal_data) the DuckDB form are one
    definition: equal on NULL, empty, unicode, quotes and 10,000-character values, dates and timestamps."""
    key = masking_key(warehouse["data"], "test:masking-rules")  # no reader's key: this statement is logged
    values = DATES if rule.rule == "year" else TEXTS + (DATES if rule.rule == "hash" else [])
    connection = psycopg2.connect(warehouse["url"])
    try:
        with connection.cursor() as cursor:
            for value in values:
                kind = ("timestamp" if isinstance(value, dt.datetime) else "date" if isinstance(value, dt.date)
                        or (value is None and rule.rule == "year") else "text")
                cursor.execute(f"CREATE TEMP TABLE stored (value {kind})")
                cursor.execute("INSERT INTO stored VALUES (%s)", (value,))
                cursor.execute(f"SELECT {masking_sql(rule, 'value', literal(key), 'postgres')} FROM stored")
                assert cursor.fetchone()[0] == masked_value(rule, value, key), (rule, value)
                cursor.execute("DROP TABLE stored")
    finally:
        connection.rollback()
        connection.close()


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("key", "column"), PII_COLUMNS)
def test_each_pii_column_reaches_each_role_only_as_its_policy_says(warehouse, role, key, column):
    """The embedded access matrix as PostgreSQL logins: full shows the stored values, masked shows exactly
    masked_value of each stored value (hashes with the login's audience key) and never the value in any form,
    denied leaves the column out of SELECT * and refuses it, a denied dataset has no view, a row filter keeps the
    login's carrier only; the base table is refused to every login."""
    principal = principal_of(role, ATTRIBUTES)
    schema, table = key.split("/")
    decision = decide(CATALOG, role, key)
    assert "permission denied for schema" in refused(warehouse, principal, f"SELECT {column} FROM {schema}.{table}")
    if not decision.allowed:
        assert "does not exist" in refused(warehouse, principal, f"SELECT {column} FROM {table}")
        assert "does not exist" in refused(warehouse, principal, f"SELECT 1 FROM {view_schema(role)}.{table}")
        return
    names, visible = _stored(key, ATTRIBUTES["carrier"] if decision.row_filter else None)
    values = [row[names.index(column)] for row in visible]
    everything = query(warehouse, principal, f"SELECT * FROM {table}")
    assert len(everything[1]) == len(visible)
    if decision.row_filter:
        assert {row[everything[0].index("carrier")] for row in everything[1]} == {ATTRIBUTES["carrier"]}
        assert 0 < len(visible) < published_rows()["rows"]
    access = decision.columns[column].access
    if access == "denied":
        assert column not in everything[0]
        assert _leaks(values, _flatten(*everything)) == []
        assert f'column "{column}" does not exist' in refused(warehouse, principal, f"SELECT {column} FROM {table}")
        return
    shown = [row[0] for row in query(warehouse, principal, f"SELECT {column} FROM {table}")[1]]
    if access == "full":
        assert sorted(map(str, shown)) == sorted(map(str, values))
        return
    assert access == "masked"
    rule = decision.columns[column].masking
    key_of_audience = masking_key(warehouse["data"], principals(CATALOG)[principal].audience)
    assert sorted(map(str, shown)) == sorted(str(masked_value(rule, value, key_of_audience)) for value in values)
    assert [v for v in shown if v is not None], "the masked column still has its rows"
    assert _leaks(values, _flatten(*everything)) == []
    derived = query(warehouse, principal, f"SELECT string_agg(CAST({column} AS text), ','), CAST(min({column}) AS "
                                          f"text), CAST(max({column}) AS text), upper(CAST(min({column}) AS text)) "
                                          f"FROM {table}")
    assert _leaks(values, _flatten(*derived)) == []


def test_a_partner_reads_its_own_carrier_only_and_never_the_base_tables(warehouse):
    for principal, carrier, other in (("ua-partner-feed", "UA", "AA"), ("aa-partner-feed", "AA", "UA")):
        for key in ("marts/flights", "marts/bookings", "marts/flight_features"):
            table = key.split("/")[1]
            assert query(warehouse, principal, f"SELECT carrier, count(*) FROM {table} GROUP BY carrier")[1] == [
                (carrier, len(_stored(key, carrier)[1]))]
            others = f"SELECT count(*) FROM {table} WHERE carrier <> '{carrier}'"
            assert query(warehouse, principal, others)[1] == [(0,)]
            for sql in (f"SELECT * FROM marts.{table}", f"SELECT carrier FROM marts.{table}", f"TABLE marts.{table}"):
                assert "permission denied for schema marts" in refused(warehouse, principal, sql)
        # an error quotes a value of the login's own rows at most: the row policy runs before the query's predicate
        message = refused(warehouse, principal, "SELECT 1 FROM bookings WHERE CAST(carrier AS integer) = 1")
        assert f'"{carrier}"' in message and other not in message


def test_columns_computed_over_other_carriers_are_denied_and_sequences_hashed(warehouse):
    columns, _ = query(warehouse, "ua-partner-feed", "SELECT * FROM flight_features")
    assert not [c for c in columns if c.startswith("route_trailing")]
    assert {"carrier_trailing_flights", "carrier_trailing_mean_arr_delay",
            "carrier_trailing_delayed_share"} <= set(columns)
    assert "does not exist" in refused(warehouse, "ua-partner-feed",
                                       "SELECT route_trailing_flights FROM flight_features")
    names, rows = _stored("marts/bookings", "UA")
    key = masking_key(warehouse["data"], "consumer:ua-partner-feed")
    expected = sorted((masked_value(SEQUENCE_MASKING, row[names.index("booking_id")], key),
                       masked_value(SEQUENCE_MASKING, row[names.index("_row_number")], key)) for row in rows)
    assert sorted(query(warehouse, "ua-partner-feed", "SELECT booking_id, _row_number FROM bookings")[1]) == expected
    # the analyst, not row-filtered, reads the real identifiers
    assert sorted(query(warehouse, "ops-delay-dashboard", "SELECT booking_id FROM bookings")[1]) == sorted(
        (row[names.index("booking_id")],) for row in _stored("marts/bookings")[1])


def test_hash_tokens_are_keyed_per_audience(warehouse):
    """Two partners' tokens of one value differ; so do two analysts' of different audiences, on the same rows."""
    names, rows = _stored("marts/bookings", "UA")
    email = rows[0][names.index("email")]
    email_rule = CATALOG.access.masking["email"]
    ua, aa = (masking_key(warehouse["data"], f"consumer:{name}") for name in ("ua-partner-feed", "aa-partner-feed"))
    shown = {row[0] for row in query(warehouse, "ua-partner-feed", "SELECT email FROM bookings")[1]}
    assert masked_value(email_rule, email, ua) in shown
    assert masked_value(email_rule, email, aa) not in shown
    readers = ("ops-delay-dashboard", "sam.okafor@example.com", "lars.holm@example.com")  # three audiences
    tokens = [query(warehouse, reader, "SELECT email FROM bookings ORDER BY booking_id")[1] for reader in readers]
    for first, second in ((0, 1), (0, 2), (1, 2)):
        assert all(a != b for a, b in zip(tokens[first], tokens[second], strict=True))
    assert _superuser_rows(warehouse["url"], "SELECT count(DISTINCT key) = count(*), count(*) > 2 "
                                             "FROM governance.masking_keys") == [(True, True)]


def test_nothing_else_is_reachable(warehouse):
    """Deny by default as every login: unpublished copies, other roles' views, the key material, the owner role
    and the views' owners, creating objects, and turning the statement log off."""
    catalog_principals = principals(CATALOG)
    for principal, who in catalog_principals.items():
        for copy in UNPUBLISHED:
            assert "permission denied for schema" in refused(warehouse, principal, f"SELECT * FROM {copy}")
        for table in ("masking_keys", "principals"):
            assert "permission denied for schema governance" in refused(warehouse, principal,
                                                                         f"SELECT * FROM governance.{table}")
        for other in CATALOG.access.roles:
            if other != who.role:
                assert "permission denied for schema" in refused(warehouse, principal,
                                                                 f"SELECT 1 FROM {view_schema(other)}.flights")
        for role in (OWNER, view_owner(who.role), "postgres"):
            assert "permission denied to set role" in refused(warehouse, principal, f'SET ROLE "{role}"')
        assert "permission denied" in refused(warehouse, principal, "CREATE TABLE mine (a int)")
        assert "permission denied" in refused(warehouse, principal, "CREATE TEMP TABLE mine (a int)")
        assert "permission denied" in refused(warehouse, principal, "SET log_statement = 'none'")
    assert "does not exist" in refused(warehouse, "delay-model", "SELECT 1 FROM bookings")  # not granted
    assert "does not exist" in refused(warehouse, "ua-partner-feed", "SELECT 1 FROM bookings_quarantine")
    # the views' definitions are public metadata: they name the key table, never a key
    definitions = " ".join(row[0] for row in _superuser_rows(
        warehouse["url"], "SELECT pg_get_viewdef(c.oid) FROM pg_class c WHERE c.relkind = 'v' AND "
                          "c.relnamespace::regnamespace::text LIKE 'governed\\_%'"))
    keys = [row[0] for row in _superuser_rows(warehouse["url"], "SELECT key FROM governance.masking_keys")]
    assert "governance.masking_keys" in definitions and not [key for key in keys if key in definitions]
    # nor does the server's log, nor the plan apply printed
    log = warehouse["server"].log.read_text()
    assert not [key for key in keys if key in log or key in warehouse["applied"].text()]


def test_a_login_needs_its_password_and_is_logged(warehouse):
    for password in ("wrong", "x" * 43):
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            _login(warehouse, "ua-partner-feed", password)
    query(warehouse, "ua-partner-feed", "SELECT count(*) FROM flights /* audit-marker-3f1 */")
    refused(warehouse, "ua-partner-feed", "SELECT email FROM marts.bookings /* audit-marker-3f2 */")
    log = warehouse["server"].log.read_text()
    # a refusal is logged with its login, its reason and its statement
    assert re.search(r"ua-partner-feed@warehouse ERROR:  permission denied for schema marts.*\n.*"
                     r"ua-partner-feed@warehouse STATEMENT:  SELECT email FROM marts.bookings /\* audit-marker-3f2", log)
    assert "connection authorized: user=ua-partner-feed database=warehouse" in log
    assert re.search(r"ua-partner-feed@warehouse LOG:  statement: SELECT count\(\*\) FROM flights "
                     r"/\* audit-marker-3f1 \*/", log)
    assert 'password authentication failed for user "ua-partner-feed"' in log
    assert "SCRAM-SHA-256$" not in log  # the fixture's `governance password` statements were not logged
    assert "CREATE ROLE" in log  # though apply's statements were


def test_the_plan_lists_what_apply_runs_and_a_second_apply_plans_nothing(warehouse, monkeypatch, capsys):
    assert not warehouse["plan_changed_roles"], "--plan changed the server"
    planned, applied = warehouse["planned"].text(), warehouse["applied"].text()
    assert planned == applied
    for statement in ('CREATE ROLE "gov_owner" NOSUPERUSER', 'CREATE ROLE "ua-partner-feed" NOSUPERUSER',
                      'GRANT "gov_partner_airline" TO "ua-partner-feed"',
                      'ALTER TABLE "marts"."bookings" OWNER TO "gov_owner"',
                      'ALTER TABLE "marts"."bookings" FORCE ROW LEVEL SECURITY',
                      'CREATE POLICY "gov_partner_airline" ON "marts"."bookings" FOR SELECT TO '
                      '"gov_partner_airline_views" USING (CAST("carrier" AS text) = (SELECT',
                      'CREATE VIEW "governed_analyst"."bookings" WITH (security_barrier) AS SELECT',
                      'REVOKE CONNECT ON DATABASE "warehouse" FROM PUBLIC CASCADE',
                      'REVOKE USAGE ON SCHEMA "public" FROM PUBLIC CASCADE',
                      'GRANT SELECT ("booking_id", "flight_id", "flight_date", "carrier", "flight_number", "origin", '
                      '"dest", "booked_on", "passenger_name", "email", "phone_e164", "date_of_birth", '
                      '"loyalty_number", "fare_class", "fare_usd", "data_date", "_source_file", "_batch_id", '
                      '"_row_number") ON TABLE "marts"."bookings" TO "gov_analyst_views"',
                      "-- set the masking key of audience consumer:ua-partner-feed"):
        assert statement in applied
    assert apply_catalog(CATALOG, execute=False, url=warehouse["url"], data_dir=warehouse["data"]).steps == []
    monkeypatch.setenv("PLATFORM_WAREHOUSE_URL", warehouse["url"])
    monkeypatch.setenv("PLATFORM_DATA_DIR", str(warehouse["data"]))
    for mode in ([], ["--plan"], ["--yes"]):
        assert governance_main(["apply", *mode]) == 0
        assert "no changes: the warehouse matches the catalog" in capsys.readouterr().out


def test_the_command_line_refuses_with_one_line(warehouse, monkeypatch, capsys):
    monkeypatch.delenv("PLATFORM_WAREHOUSE_URL", raising=False)
    assert governance_main(["apply"]) == 1
    assert capsys.readouterr().err.strip() == ("governance: PLATFORM_WAREHOUSE_URL is not set: governance apply needs "
                                               "the PostgreSQL warehouse's URL (a superuser's; `make team-up` writes "
                                               "it to <data>/team/team.env)")
    login_url = (f"postgresql://delay-model:{warehouse['passwords']['delay-model']}@127.0.0.1:"
                 f"{warehouse['server'].port}/warehouse")
    monkeypatch.setenv("PLATFORM_WAREHOUSE_URL", login_url)
    assert governance_main(["apply"]) == 1
    error = capsys.readouterr().err
    assert "must connect as a superuser" in error and warehouse["passwords"]["delay-model"] not in error
    monkeypatch.setenv("PLATFORM_WAREHOUSE_URL", warehouse["url"])
    assert governance_main(["password", "nobody@example.com"]) == 1
    assert "is not a principal of the catalog" in capsys.readouterr().err
    assert governance_main(["--catalog", "/tmp", "apply", "--yes"]) == 1
    assert "uses the repository's catalog" in capsys.readouterr().err
    # a password handed out by the command line works, once shown; the old one stops working
    assert governance_main(["password", "delay-model", "--days", "7"]) == 0
    password = capsys.readouterr().out.splitlines()[1]
    old, warehouse["passwords"]["delay-model"] = warehouse["passwords"]["delay-model"], password
    assert query(warehouse, "delay-model", "SELECT count(*) FROM flights")[1] == [(published_rows()["rows"],)]
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        _login(warehouse, "delay-model", old)


def _catalog_copy(tmp_path: Path, change) -> Path:
    folder = tmp_path / "catalog"
    shutil.copytree(CATALOG.directory, folder)
    files = {path.name: yaml.safe_load(path.read_text()) for path in folder.glob("*.yml")}
    change(files)
    for name, content in files.items():
        (folder / name).write_text(yaml.safe_dump(content, sort_keys=False))
    return folder


def _restore(warehouse) -> None:
    """The repository catalog applied again; logins it re-creates get passwords; then nothing is left to do."""
    apply_catalog(CATALOG, execute=True, url=warehouse["url"], data_dir=warehouse["data"])
    for name in principals(CATALOG):
        try:
            _login(warehouse, name).close()
        except psycopg2.OperationalError:
            warehouse["passwords"][name] = issue_password(CATALOG, name, url=warehouse["url"])[0]
    assert apply_catalog(CATALOG, execute=False, url=warehouse["url"], data_dir=warehouse["data"]).steps == []


def test_what_the_catalog_no_longer_gives_is_revoked_on_the_next_apply(warehouse, tmp_path):
    def change(files):
        del files["access.yml"]["roles"]["ml_service"]["datasets"]["marts/flights"]  # a grant
        del files["consumers.yml"]["aa-partner-feed"]  # a principal
        del files["datasets.yml"]["marts/bookings"]["columns"]["fare_class"]  # a column

    changed = load_catalog(_catalog_copy(tmp_path, change))
    try:
        plan = apply_catalog(changed, execute=False, url=warehouse["url"], data_dir=warehouse["data"]).text()
        for statement in ('DROP VIEW "governed_ml_service"."flights"',
                          'DROP POLICY "gov_ml_service" ON "marts"."flights"',
                          'REVOKE SELECT ("flight_id", "flight_date", "data_date", "carrier", "airline_name", '
                          '"flight_number", "tailnum", "origin", "origin_airport_name", "dest", "dest_airport_name", '
                          '"sched_dep_time", "sched_arr_time", "sched_dep_hour", "scheduled_departure_hour_utc", '
                          '"dep_time", "arr_time", "dep_delay", "arr_delay", "air_time", "distance", "is_cancelled", '
                          '"plane_year_built", "plane_seats", "plane_aircraft_type", "has_known_plane", '
                          '"has_known_dest_airport", "_source_file", "_batch_id") ON TABLE "marts"."flights" FROM '
                          '"gov_ml_service_views" CASCADE',
                          'DROP ROLE "aa-partner-feed"', "DELETE FROM governance.principals WHERE login = "
                          "'aa-partner-feed'", "DELETE FROM governance.masking_keys WHERE audience = "
                          "'consumer:aa-partner-feed'",
                          'DROP VIEW "governed_analyst"."bookings"',
                          'REVOKE SELECT ("fare_class") ON TABLE "marts"."bookings" FROM "gov_analyst_views" CASCADE'):
            assert statement in plan
        assert 'GRANT SELECT ("fare_class")' not in plan
        apply_catalog(changed, execute=True, url=warehouse["url"], data_dir=warehouse["data"])
        assert apply_catalog(changed, execute=False, url=warehouse["url"], data_dir=warehouse["data"]).steps == []
        assert "does not exist" in refused(warehouse, "delay-model", "SELECT 1 FROM flights")
        assert query(warehouse, "delay-model", "SELECT count(*) FROM flight_features")[1] == [
            (published_rows()["rows"],)]
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            _login(warehouse, "aa-partner-feed")
        assert "does not exist" in refused(warehouse, "ops-delay-dashboard", "SELECT fare_class FROM bookings")
    finally:
        _restore(warehouse)
    assert query(warehouse, "aa-partner-feed", "SELECT DISTINCT carrier FROM flights")[1] == [("AA",)]


def test_what_a_dba_granted_besides_the_catalog_is_revoked(warehouse):
    url = warehouse["url"]
    try:
        _superuser(url, f'GRANT "{OWNER}" TO "ua-partner-feed"', "GRANT SELECT ON marts.bookings TO PUBLIC",
                   'GRANT SELECT ON raw.bookings TO "gov_analyst"', "GRANT USAGE ON SCHEMA governance TO PUBLIC",
                   'GRANT SELECT ON governance.masking_keys TO "gov_analyst" WITH GRANT OPTION',
                   'ALTER ROLE "delay-model" BYPASSRLS')
        # why it matters: with the owner role a partner reads every carrier's passengers
        connection = _login(warehouse, "ua-partner-feed")
        with connection.cursor() as cursor:
            cursor.execute(f'SET ROLE "{OWNER}"')
            cursor.execute("SELECT count(DISTINCT carrier) FROM marts.bookings")
            assert cursor.fetchone() == (2,)
        connection.close()
        plan = apply_catalog(CATALOG, execute=False, url=url, data_dir=warehouse["data"]).text()
        for statement in (f'REVOKE "{OWNER}" FROM "ua-partner-feed"',
                          'REVOKE SELECT ON TABLE "marts"."bookings" FROM PUBLIC',
                          'REVOKE SELECT ON TABLE "raw"."bookings" FROM "gov_analyst"',
                          'REVOKE USAGE ON SCHEMA "governance" FROM PUBLIC',
                          'REVOKE SELECT ON TABLE "governance"."masking_keys" FROM "gov_analyst"',
                          'ALTER ROLE "delay-model" NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT LOGIN NOREPLICATION '
                          'NOBYPASSRLS'):
            assert statement in plan
        apply_catalog(CATALOG, execute=True, url=url, data_dir=warehouse["data"])
        assert "permission denied to set role" in refused(warehouse, "ua-partner-feed", f'SET ROLE "{OWNER}"')
        assert "permission denied" in refused(warehouse, "ops-delay-dashboard", "SELECT * FROM raw.bookings")
    finally:
        _restore(warehouse)


def test_a_table_a_build_replaced_is_governed_again_by_the_next_apply(warehouse):
    """A build that replaces a published table (dbt's table materialization: a new table, the old one dropped with
    its dependent views) leaves readers without the dataset, never with the new table unprotected."""
    url = warehouse["url"]
    try:
        _superuser(url, "CREATE TABLE marts.flights__dbt_tmp AS SELECT * FROM marts.flights",
                   "DROP TABLE marts.flights CASCADE", "ALTER TABLE marts.flights__dbt_tmp RENAME TO flights")
        assert "does not exist" in refused(warehouse, "ua-partner-feed", "SELECT 1 FROM flights")
        assert "permission denied" in refused(warehouse, "ua-partner-feed", "SELECT 1 FROM marts.flights")
        plan = apply_catalog(CATALOG, execute=False, url=url, data_dir=warehouse["data"]).text()
        assert 'ALTER TABLE "marts"."flights" FORCE ROW LEVEL SECURITY' in plan
        assert 'CREATE VIEW "governed_partner_airline"."flights"' in plan
        apply_catalog(CATALOG, execute=True, url=url, data_dir=warehouse["data"])
        assert query(warehouse, "ua-partner-feed", "SELECT DISTINCT carrier FROM flights")[1] == [("UA",)]
    finally:
        _restore(warehouse)


def test_apply_refuses_a_role_it_did_not_create(warehouse, tmp_path):
    _superuser(warehouse["url"], 'CREATE ROLE "intruder@example.com" LOGIN')

    def change(files):
        files["teams.yml"]["partnerships"]["members"].append(
            {"name": "In Truder", "email": "intruder@example.com", "role": "analyst"})

    try:
        with pytest.raises(ApplyError, match="a role 'intruder@example.com' exists that governance apply did not "
                                             "create"):
            apply_catalog(load_catalog(_catalog_copy(tmp_path, change)), execute=True, url=warehouse["url"],
                          data_dir=warehouse["data"])
    finally:
        _superuser(warehouse["url"], 'DROP ROLE "intruder@example.com"')
    assert apply_catalog(CATALOG, execute=False, url=warehouse["url"], data_dir=warehouse["data"]).steps == []
