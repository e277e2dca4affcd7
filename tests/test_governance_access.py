"""Enforcement: the governed query entry point shows each role only what its policy allows, leaves no route to
unmasked data, and audits every read. Runs on a real DuckDB warehouse file (conftest.governed_warehouse)."""

import hashlib
import json

import duckdb
import pandas as pd
import pytest

from governance.access import AccessDenied, QueryFailed, masking_key, query_as, query_references
from governance.audit import audit_log_path, read_audit_log
from governance.catalog import load_catalog
from governance.cli import main as governance_main
from governance.identity import Principal, principals
from governance.policy import decide
from governed import principal_of, read, token_for

CATALOG = load_catalog()
PII_COLUMNS = [(key, name) for key, dataset in CATALOG.datasets.items() if dataset.published
               for name, column in dataset.columns.items() if column.pii]
ROLES = list(CATALOG.access.roles)
ATTRIBUTES = {"carrier": "UA"}


def _forms(value) -> set[str]:
    """A personal data value as it could leak: itself, and its unkeyed hashes."""
    text = str(value)
    return {text, text.lower(), hashlib.sha256(text.encode()).hexdigest()[:16], hashlib.md5(text.encode()).hexdigest()}


def _leaks(values: list, outputs: list) -> list[str]:
    """Every value (in any of its forms) found inside any output cell or text."""
    cells = [str(cell) for output in outputs for cell in (output if isinstance(output, list | tuple) else [output])]
    return sorted({form for value in values if value is not None for form in _forms(value)
                   for cell in cells if form in cell})


def _flatten(result) -> list:
    return [*result.columns, *(cell for row in result.rows for cell in row)]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("key", "column"), PII_COLUMNS)
def test_each_pii_column_reaches_each_role_only_as_its_policy_says(governed_warehouse, role, key, column):
    """For every role and every PII column: full shows the stored values, masked never shows them in any form,
    denied refuses the column and leaves it out of SELECT *, a denied dataset is refused, a row filter keeps
    only the reader's rows."""
    values = governed_warehouse["pii"][key][column]
    table = key.replace("/", ".")
    decision = decide(CATALOG, role, key)
    if not decision.allowed:
        with pytest.raises(AccessDenied, match="may not read|not granted"):
            read(role, f"SELECT {column} FROM {table}", attributes=ATTRIBUTES)
        return
    everything = read(role, f"SELECT * FROM {table}", attributes=ATTRIBUTES)
    if decision.row_filter:
        carriers = {row[everything.columns.index("carrier")] for row in everything.rows}
        assert carriers == {ATTRIBUTES["carrier"]}
        assert 0 < len(everything.rows) < governed_warehouse["rows"]
    access = decision.columns[column].access
    if access == "denied":
        assert column not in everything.columns
        assert _leaks(values, _flatten(everything)) == []
        with pytest.raises(AccessDenied, match=f"column {column}") as refused:
            read(role, f"SELECT {column} FROM {table}", attributes=ATTRIBUTES)
        assert _leaks(values, [str(refused.value)]) == []
        return
    selected = read(role, f"SELECT {column} FROM {table}", attributes=ATTRIBUTES)
    shown = [row[0] for row in selected.rows]
    if access == "full":
        assert set(shown) <= set(values) and len(shown) == len(everything.rows)
        if not decision.row_filter:
            assert sorted(map(str, shown)) == sorted(map(str, values))
        return
    assert access == "masked"
    assert _leaks(values, _flatten(everything)) == []
    assert _leaks(values, _flatten(selected)) == []
    # nor in derived forms: aggregates, concatenation, text functions
    derived = read(role, f"SELECT string_agg(CAST({column} AS VARCHAR), ','), min({column}), "
                             f"max({column}), upper(CAST(min({column}) AS VARCHAR)) FROM {table}", attributes=ATTRIBUTES)
    assert _leaks(values, _flatten(derived)) == []
    rule = decision.columns[column].masking.rule
    non_null = [v for v in shown if v is not None]
    assert non_null, "the masked column still has its rows"
    if rule == "redact":
        assert set(non_null) == {"***"}
    elif rule == "hash":
        assert all(len(v) == 16 for v in non_null)
    elif rule == "keep_last":
        assert all(v.startswith("*") for v in non_null)
    elif rule == "year":
        assert all(isinstance(v, int) and 1900 < v < 2014 for v in non_null)


def test_masked_values_cannot_be_probed_with_a_known_value(governed_warehouse):
    email = governed_warehouse["pii"]["marts/bookings"]["email"][0]
    probe = f"SELECT count(*) FROM marts.bookings WHERE email = '{email}' OR lower(email) LIKE '%{email[:6]}%'"
    assert read("data_engineer", probe).rows == [(1,)]
    assert read("analyst", probe).rows == [(0,)]


def test_hash_tokens_are_stable_and_keyed(governed_warehouse, data_dir):
    first = read("analyst", "SELECT email FROM bookings ORDER BY booking_id").rows
    second = read("analyst", "SELECT email FROM bookings ORDER BY booking_id").rows
    assert first == second  # the same passenger keeps the same token, so analysts can count and join
    key_file = data_dir / "governance" / "masking_key"
    assert key_file.stat().st_mode & 0o077 == 0
    assert key_file.read_text().strip() not in json.dumps(first)
    assert masking_key(data_dir, principals(CATALOG)[principal_of("analyst")].audience) not in json.dumps(first)


def test_two_readers_tokens_of_the_same_passenger_cannot_be_joined(governed_warehouse):
    query = "SELECT flight_id, email FROM bookings ORDER BY flight_id"
    analyst = dict(read("analyst", query).rows)
    partners = {carrier: dict(read("partner_airline", query, attributes={"carrier": carrier}).rows)
                for carrier in governed_warehouse["carriers"]}
    for carrier, tokens in partners.items():
        assert tokens and all(analyst[booking] != token for booking, token in tokens.items()), carrier
    assert set.isdisjoint(*(set(tokens.values()) for tokens in partners.values()))


def test_the_masking_secret_is_created_once_whole_under_concurrent_first_use(data_dir):
    import concurrent.futures

    for trial in range(20):
        (data_dir / "governance" / "masking_key").unlink(missing_ok=True)
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            keys = set(pool.map(lambda _: masking_key(data_dir, "reader"), range(64)))
        assert len(keys) == 1, f"trial {trial}: readers saw different secrets"
    secret = (data_dir / "governance" / "masking_key").read_text()
    assert len(secret) == 64 and not list((data_dir / "governance").glob(".masking_key.*"))


@pytest.mark.parametrize("content", ["", "\n", "short", "z" * 64])
def test_an_empty_or_malformed_masking_secret_refuses_masked_reads(governed_warehouse, data_dir, content):
    (data_dir / "governance").mkdir(exist_ok=True)
    (data_dir / "governance" / "masking_key").write_text(content)
    (data_dir / "governance" / "masking_key").chmod(0o600)
    with pytest.raises(AccessDenied, match="masking secret is empty or malformed"):
        read("analyst", "SELECT email FROM bookings")
    assert read_audit_log()[-1]["decision"] == "deny"
    assert read("data_engineer", "SELECT email FROM bookings").rows  # nothing masked: nothing keyed


def test_unknown_roles_are_denied_and_audited(governed_warehouse):
    intern = Principal("intern@example.com", "member", "intern", {}, "team:interns")
    with pytest.raises(AccessDenied, match="unknown role 'intern': denied by default"):
        query_as(CATALOG, intern, "SELECT flight_id FROM marts.flights")
    record = read_audit_log()[-1]
    assert (record["principal"], record["role"], record["decision"]) == ("intern@example.com", "intern", "deny")


def test_unclassified_columns_are_denied(governed_warehouse):
    with duckdb.connect(str(governed_warehouse["path"])) as connection:
        connection.execute("ALTER TABLE marts.bookings ADD COLUMN passport_number VARCHAR DEFAULT 'X1234567'")
    everything = read("data_engineer", "SELECT * FROM marts.bookings")
    assert "passport_number" not in everything.columns
    assert "X1234567" not in json.dumps(everything.rows, default=str)
    with pytest.raises(AccessDenied, match="passport_number .*unclassified"):
        read("data_engineer", "SELECT passport_number FROM marts.bookings")


def test_unpublished_and_ungranted_datasets_are_denied(governed_warehouse):
    with pytest.raises(AccessDenied, match="not granted"):
        read("ml_service", "SELECT * FROM marts.bookings")
    with pytest.raises(AccessDenied, match="denied by its grant"):
        read("analyst", "SELECT * FROM marts.bookings_quarantine")


ESCAPES = {
    "raw table": "SELECT * FROM raw.bookings",
    "staging table": "SELECT * FROM staging.stg_bookings__bookings",
    "intermediate table": "SELECT email FROM intermediate.int_bookings__validated",
    "audit schema": "SELECT * FROM marts_audit.bookings",
    "catalog-qualified warehouse": "SELECT * FROM warehouse.marts.bookings",
    "unqualified staging name": "SELECT * FROM stg_bookings__bookings",
    "read_csv": "SELECT * FROM read_csv('{landing}')",
    "read_csv_auto": "SELECT * FROM read_csv_auto('{landing}')",
    "file path as table": "SELECT * FROM '{landing}'",
    "read_text": "SELECT content FROM read_text('{landing}')",
    "read_blob": "SELECT content FROM read_blob('{landing}')",
    "read_json": "SELECT * FROM read_json('{landing}')",
    "read_parquet of the warehouse": "SELECT * FROM read_parquet('{warehouse}')",
    "glob": "SELECT * FROM glob('{data}/**')",
    "sniff_csv": "SELECT * FROM sniff_csv('{landing}')",
    "query_table": "SELECT * FROM query_table('raw.bookings')",
    "query": "SELECT * FROM query('SELECT * FROM raw.bookings')",
    "attach": "ATTACH '{warehouse}' AS stolen (READ_ONLY)",
    "attach after a select": "SELECT 1; ATTACH '{warehouse}' AS stolen",
    "set external access": "SET enable_external_access = true",
    "unlock configuration": "SET lock_configuration = false",
    "reset": "RESET enable_external_access",
    "pragma": "PRAGMA enable_profiling",
    "copy out": "COPY marts.bookings TO '{data}/stolen.csv'",
    "copy in": "COPY marts.bookings FROM '{landing}'",
    "export database": "EXPORT DATABASE '{data}/stolen'",
    "install extension": "INSTALL httpfs",
    "load extension": "LOAD httpfs",
    "create secret": "CREATE SECRET s (TYPE s3, KEY_ID 'k', SECRET 'v')",
    "use another database": "USE warehouse",
    "python variable (replacement scan)": "SELECT * FROM leaked_frame",
    "getenv": "SELECT getenv('HOME')",
}


@pytest.mark.parametrize("route", ESCAPES)
def test_escape_routes_are_closed_and_audited(governed_warehouse, data_dir, route):
    leaked_frame = pd.DataFrame({"email": governed_warehouse["pii"]["marts/bookings"]["email"]})  # noqa: F841
    sql = ESCAPES[route].format(landing=data_dir / "landing" / "bookings" / "bookings_2013-01-01.csv",
                                warehouse=governed_warehouse["path"], data=data_dir)
    before = len(read_audit_log())
    with pytest.raises(AccessDenied) as denied:
        read("analyst", sql)
    emails = governed_warehouse["pii"]["marts/bookings"]["email"]
    assert _leaks(emails, [str(denied.value)]) == []
    records = read_audit_log()
    assert len(records) == before + 1 and records[-1]["sql"] == sql
    # a wall of the sandbox (files, settings) is a denial; a name the sandbox does not hold fails as an error
    assert records[-1]["decision"] == ("error" if isinstance(denied.value, QueryFailed) else "deny")
    assert records[-1]["decision"] in ("deny", "error")
    assert not (data_dir / "stolen.csv").exists() and not (data_dir / "stolen").exists()


def test_system_tables_show_only_the_roles_copy(governed_warehouse, data_dir):
    result = read("analyst", "SELECT database_name, path FROM duckdb_databases()")
    assert str(governed_warehouse["path"]) not in json.dumps(result.rows)
    tables = read("analyst", "SELECT schema_name, table_name, sql FROM duckdb_tables()")
    assert {(s, t) for s, t, _ in tables.rows} <= {("marts", "bookings")}  # nothing was named: nothing copied
    named = read("analyst", "SELECT sql FROM duckdb_views() UNION ALL SELECT sql FROM duckdb_tables() "
                           "UNION ALL SELECT email FROM marts.bookings")
    assert (data_dir / "governance" / "masking_key").read_text() not in json.dumps(named.rows)
    assert masking_key(data_dir, principals(CATALOG)[principal_of("analyst")].audience) not in json.dumps(named.rows)
    assert str(governed_warehouse["path"]) not in json.dumps(named.rows)
    settings = read("analyst", "SELECT value FROM duckdb_settings() WHERE name = 'enable_external_access'")
    assert settings.rows == [("false",)]


def test_the_sandbox_holds_even_for_statements_the_parser_would_refuse(governed_warehouse):
    """Second wall: were the SELECT-only check bypassed, the sandbox itself refuses files and settings."""
    from governance.access import _sandbox

    sandbox = _sandbox(CATALOG, "analyst", ["marts/bookings"], query_references("SELECT * FROM bookings"), {}, None,
                       audience="consumer:ops-delay-dashboard")
    leaked = pd.DataFrame({"email": governed_warehouse["pii"]["marts/bookings"]["email"]})  # noqa: F841
    with sandbox.database as database:
        assert set(sandbox.held) == {"marts/bookings"}
        with pytest.raises(duckdb.Error, match="leaked"):  # no replacement scan of the caller's variables
            database.execute("SELECT * FROM leaked")
        for statement in [f"ATTACH '{governed_warehouse['path']}' AS w", "SET enable_external_access = true",
                          "SET lock_configuration = false", "COPY marts.bookings TO 'stolen.csv'",
                          "INSTALL httpfs"]:
            with pytest.raises(duckdb.Error):
                database.execute(statement)
        assert database.execute("SELECT count(*) FROM duckdb_databases() WHERE NOT internal").fetchall() == [(1,)]
    sandbox.source.close()


def test_queries_that_scan_a_dataset_twice_run_on_copies(governed_warehouse):
    rows = governed_warehouse["rows"]
    assert read("analyst", "SELECT count(*) FROM bookings a JOIN bookings b USING (booking_id)").rows == [
        (rows,)]
    twice = read("analyst", "SELECT (SELECT count(*) FROM bookings) + (SELECT count(email) FROM bookings)")
    assert twice.rows == [(2 * rows,)]
    assert read("analyst", "SELECT count(*) FROM bookings LIMIT 1").rows == [(rows,)]


def test_every_read_appends_one_audit_record(governed_warehouse, data_dir):
    assert read_audit_log() == []
    read("partner_airline", "SELECT f.flight_id, b.email FROM flights f JOIN bookings b USING (flight_id)",
         attributes={"carrier": "AA"})
    with pytest.raises(AccessDenied):
        read("partner_airline", "SELECT passenger_name FROM bookings", attributes={"carrier": "AA"})
    allowed, denied = read_audit_log()
    assert audit_log_path().parent == data_dir / "governance" and "audit" in audit_log_path().name
    assert allowed["principal"] == "aa-partner-feed" and allowed["role"] == "partner_airline"
    assert allowed["token_id"] == token_for("aa-partner-feed").split("_")[1]
    assert allowed["catalog"].startswith("sha256:") and len(allowed["catalog"]) == 71
    assert allowed["decision"] == "allow" and allowed["attributes"] == {"carrier": "AA"}
    assert allowed["datasets"] == ["marts/flights", "marts/bookings"]
    assert allowed["columns"] == {"marts/flights": ["flight_id"], "marts/bookings": ["flight_id", "email"]}
    assert allowed["at"] and allowed["rows"] > 0
    assert denied["decision"] == "deny" and "passenger_name" in denied["reason"]
    assert denied["datasets"] == ["marts/bookings"]


def test_cli_query_prints_the_governed_result_and_refuses_in_one_line(governed_warehouse, capsys, monkeypatch,
                                                                    tmp_path):
    monkeypatch.setenv("GOVERNANCE_TOKEN", token_for(principal_of("analyst")))
    assert governance_main(["--json", "query", "SELECT * FROM marts.bookings"]) == 0
    out = capsys.readouterr().out
    for column, values in governed_warehouse["pii"]["marts/bookings"].items():
        assert _leaks(values, [out]) == [], column
    assert len(json.loads(out)["rows"]) == governed_warehouse["rows"]
    assert governance_main(["query", "SELECT * FROM raw.bookings"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "not a published dataset" in error
    token_file = tmp_path / "token"
    token_file.write_text(token_for(principal_of("customer_care")) + "\n")
    assert governance_main(["query", "--token-file", str(token_file),
                            "SELECT passenger_name FROM bookings LIMIT 1"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == governed_warehouse["pii"]["marts/bookings"]["passenger_name"][0]
    monkeypatch.setenv("GOVERNANCE_TOKEN", token_for("ua-partner-feed"))
    assert governance_main(["query", "SELECT DISTINCT carrier FROM flights"]) == 0
    assert capsys.readouterr().out.splitlines()[1].strip() == "UA"


def test_query_references_are_read_from_the_parse_tree():
    refs = query_references("WITH recent AS (SELECT email, carrier FROM marts.bookings) "
                            "SELECT r.email, f.dep_delay FROM recent r JOIN flights f USING (carrier)")
    assert refs.tables == [("marts", "bookings"), ("", "recent"), ("", "flights")]
    assert {"email", "carrier", "dep_delay", "recent"} <= refs.names and not refs.wide
    assert query_references("SELECT * FROM flights").wide
    assert query_references("SELECT b FROM bookings b").wide  # a whole row as a value
    with pytest.raises(AccessDenied, match="single SELECT"):
        query_references("SELECT 1; SELECT 2")
    with pytest.raises(AccessDenied, match="does not parse"):
        query_references("SELEC 1")


def test_governed_queries_on_the_real_pipeline_warehouse(pipeline_run):
    """The real marts of ten days: no stored passenger value reaches the analyst, the partner airline sees exactly
    its carrier's rows, and the catalog's contract matches every published table."""
    from governance.graph import load_asset_graph, load_manifest
    from governance.paths import DBT_EXPOSURES
    from governance.validate import validate

    folder = pipeline_run["settings"].data_dir
    with duckdb.connect(str(pipeline_run["settings"].warehouse_path), read_only=True) as connection:
        stored = connection.execute("SELECT passenger_name, email, phone_e164, date_of_birth, loyalty_number "
                                    "FROM marts.bookings USING SAMPLE 300 ROWS").fetchall()
        ua_rows = connection.execute("SELECT count(*) FROM marts.bookings WHERE carrier = 'UA'").fetchall()[0][0]
    analyst = read("analyst", "SELECT * FROM marts.bookings", data_dir=folder)
    cells = {str(cell) for row in analyst.rows for cell in row}
    assert not {str(value) for row in stored for value in row if value is not None} & cells
    partner = read("partner_airline", "SELECT carrier, count(*) FROM marts.bookings GROUP BY carrier",
                             attributes={"carrier": "UA"}, data_dir=folder)
    assert partner.rows == [("UA", ua_rows)]
    result = validate(CATALOG, load_asset_graph(), load_manifest(), pipeline_run["settings"].warehouse_path,
                      DBT_EXPOSURES)
    assert result.problems == []
    assert any("compared with the warehouse" in note for note in result.notes)


@pytest.mark.parametrize("attributes", [{"carrier": ["UA", "AA"]}, {"carrier": 5}, {"carrier": "U\udcffA"},
                                        {"carrier": "UA\nAA"}, {"Carrier": "UA"}, ["carrier", "UA"]])
def test_malformed_attributes_are_denied_audited_and_not_echoed(governed_warehouse, attributes):
    """Attributes come from the catalog, which refuses these; a principal built in code with them is still denied."""
    partner = Principal("partner", "consumer", "partner_airline", attributes, "consumer:partner")
    with pytest.raises(AccessDenied) as denied:
        query_as(CATALOG, partner, "SELECT booking_id FROM bookings")
    assert "AA" not in str(denied.value) and "UA" not in str(denied.value)
    assert read_audit_log()[-1]["decision"] == "deny"


def test_a_query_that_breaks_the_parser_is_refused_and_audited_as_an_error(governed_warehouse):
    deep = "SELECT " + "(" * 20000 + "1" + ")" * 20000
    with pytest.raises(QueryFailed, match="does not parse|nested too deeply"):
        read("analyst", deep)
    assert read_audit_log()[-1]["decision"] == "error"


# --- identity: the principal and its role come from the catalog, authenticated by an issued token ---

def _denied(token, data_dir) -> str:
    with pytest.raises(AccessDenied) as denied:
        from governance.access import governed_query

        governed_query("SELECT flight_id FROM marts.flights", token=token, data_dir=data_dir)
    record = read_audit_log(data_dir)[-1]
    assert record["decision"] == "deny" and record["sql"] == "SELECT flight_id FROM marts.flights"
    assert not isinstance(token, str) or not token or token not in json.dumps(read_audit_log(data_dir)) + str(denied.value)
    return str(denied.value)


def test_a_read_without_a_valid_token_is_denied_and_audited(governed_warehouse, data_dir):
    from governance.identity import issue_token, revoke_token, tokens_path

    assert "no token" in _denied(None, data_dir) and "no token" in _denied("", data_dir)
    real = token_for("ops-delay-dashboard", data_dir)
    token_id = real.split("_")[1]
    forged = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")  # the right id, the wrong secret
    assert "not one this platform issued" in _denied(forged, data_dir)
    assert "not one this platform issued" in _denied(f"gvt_{'0' * 12}_{real.split('_', 2)[2]}", data_dir)
    for malformed in ["analyst", "data_engineer", real + "x", real.replace("gvt_", "gvt-"), "gvt_" + "é" * 56,
                      real + "\n" + real, {"role": "data_engineer"}]:
        assert "malformed" in _denied(malformed, data_dir)
    records = json.loads(tokens_path(data_dir).read_text())
    assert records[0]["sha256"] != real and real not in tokens_path(data_dir).read_text()  # stored hashed only
    assert tokens_path(data_dir).stat().st_mode & 0o077 == 0

    revoke_token(token_id, data_dir=data_dir)
    assert f"token {token_id} is revoked" in _denied(real, data_dir)
    short, _ = issue_token(CATALOG, "ops-delay-dashboard", days=1, data_dir=data_dir)
    stored = json.loads(tokens_path(data_dir).read_text())
    stored[-1]["expires_at"] = "2020-01-01T00:00:00+00:00"
    tokens_path(data_dir).write_text(json.dumps(stored))
    assert "is expired" in _denied(short, data_dir)
    ghost, _ = issue_token(CATALOG, "delay-model", data_dir=data_dir)
    stored = json.loads(tokens_path(data_dir).read_text())
    stored[-1]["principal"] = "retired-dashboard"  # a principal since removed from the catalog
    tokens_path(data_dir).write_text(json.dumps(stored))
    assert "no longer a principal" in _denied(ghost, data_dir)
    tokens_path(data_dir).write_text("{not json")
    assert "token store cannot be read" in _denied(token_for("ops-delay-dashboard", data_dir), data_dir)


def test_the_role_and_attributes_come_from_the_catalog_not_the_caller(governed_warehouse, data_dir, capsys,
                                                                        monkeypatch, tmp_path):
    monkeypatch.setenv("GOVERNANCE_TOKEN", token_for("ua-partner-feed", data_dir))
    for spoof in (["--role", "data_engineer"], ["--attribute", "carrier=AA"], ["--user", "anna.berg@example.com"]):
        # these options no longer exist: nothing to talk around; the refused call is audited
        assert governance_main(["query", *spoof, "SELECT DISTINCT carrier FROM bookings"]) == 2
        assert "unrecognized arguments" in capsys.readouterr().err
        assert read_audit_log(data_dir)[-1]["decision"] == "error"
    assert governance_main(["query", "SELECT DISTINCT carrier FROM bookings"]) == 0
    assert capsys.readouterr().out.split()[1] == "UA"
    allowed = read_audit_log(data_dir)[-1]
    # a policy file of the caller's own (making the partner a data engineer) is refused for governed reads
    own = tmp_path / "catalog"
    own.mkdir()
    for path in CATALOG.directory.glob("*.yml"):
        (own / path.name).write_text(path.read_text().replace("role: partner_airline", "role: data_engineer"))
    assert governance_main(["--catalog", str(own), "query", "SELECT passenger_name FROM bookings"]) == 1
    assert "uses the repository's catalog" in capsys.readouterr().err
    assert read_audit_log(data_dir)[-1]["decision"] == "deny"
    assert governance_main(["--catalog", str(own), "token", "issue", "ua-partner-feed"]) == 1
    capsys.readouterr()
    # the audit records who read, with which token, under which catalog
    record = allowed
    assert record["principal"] == "ua-partner-feed" and record["attributes"] == {"carrier": "UA"}
    assert record["catalog"] == CATALOG.digest and CATALOG.digest.startswith("sha256:")


def test_tokens_are_issued_listed_and_revoked_from_the_command_line(data_dir, capsys):
    assert governance_main(["token", "issue", "sam.okafor@example.com", "--days", "7"]) == 0
    lines = capsys.readouterr().out.splitlines()
    token = lines[1]
    assert lines[0].startswith("token ") and "sam.okafor@example.com (role analyst)" in lines[0]
    token_id = token.split("_")[1]
    assert governance_main(["--json", "token", "list"]) == 0
    listed = json.loads(capsys.readouterr().out)["tokens"]
    assert [(t["id"], t["principal"], t["state"]) for t in listed] == [(token_id, "sam.okafor@example.com", "active")]
    assert token not in json.dumps(listed) and "sha256" not in listed[0]
    assert governance_main(["token", "revoke", token_id]) == 0
    capsys.readouterr()
    assert governance_main(["token", "list"]) == 0
    assert "revoked" in capsys.readouterr().out
    for refused in (["token", "issue", "nobody@example.com"], ["token", "issue", "sam.okafor@example.com", "--days",
                                                                 "0"], ["token", "revoke", "000000000000"]):
        assert governance_main(refused) == 1
        assert capsys.readouterr().err.count("\n") == 1


def test_each_external_principal_gets_its_own_hash_tokens_and_rotation_changes_them(governed_warehouse, data_dir):
    query = "SELECT booking_id, email FROM bookings ORDER BY booking_id"
    dashboard = dict(read("analyst", query).rows)
    sam = dict(governed_query_as("sam.okafor@example.com", query).rows)
    noor = dict(governed_query_as("noor.haddad@example.com", query).rows)
    assert dashboard.keys() == sam.keys() == noor.keys()
    assert all(len({dashboard[b], sam[b], noor[b]}) == 3 for b in dashboard)  # three audiences, three tokens each
    lars = dict(governed_query_as("lars.holm@example.com", query).rows)  # a team shares its tokens
    priya = governed_query_as("priya.nair@example.com", query).rows  # same team, role data_engineer: in clear
    assert lars != sam and sorted(v for _, v in priya) == sorted(governed_warehouse["pii"]["marts/bookings"]["email"])

    from governance.access import rotate_masking_secret

    before = (data_dir / "governance" / "masking_key").read_text()
    assert governance_main(["keys", "rotate"]) == 0
    after = (data_dir / "governance" / "masking_key").read_text()
    assert after != before and len(after) == 64 and (data_dir / "governance" / "masking_key").stat().st_mode & 0o077 == 0
    rotated = dict(read("analyst", query).rows)
    assert rotated.keys() == dashboard.keys() and not set(rotated.values()) & set(dashboard.values())
    assert rotate_masking_secret(data_dir) and dict(read("analyst", query).rows) != rotated
    assert not list((data_dir / "governance").glob(".masking_key.*"))


def governed_query_as(principal: str, sql: str):
    from governance.access import governed_query

    return governed_query(sql, token=token_for(principal))


def test_a_masking_secret_others_can_read_or_nobody_can_read_refuses_masked_reads(governed_warehouse, data_dir):
    read("analyst", "SELECT email FROM bookings")
    secret = data_dir / "governance" / "masking_key"
    secret.chmod(0o644)
    with pytest.raises(AccessDenied, match="readable by others"):
        read("analyst", "SELECT email FROM bookings")
    secret.chmod(0o600)
    secret.unlink()
    secret.mkdir()  # unreadable as a file
    with pytest.raises(AccessDenied, match="cannot be read"):
        read("analyst", "SELECT email FROM bookings")
    assert [r["decision"] for r in read_audit_log()[-2:]] == ["deny", "deny"]
    assert read("data_engineer", "SELECT email FROM bookings").rows  # nothing masked: nothing keyed


def test_the_latency_benchmark_reads_as_principals_and_revokes_its_tokens(governed_warehouse, data_dir):
    from governance.bench import QUERIES, measure
    from governance.identity import list_tokens

    result = measure(data_dir, repeat=1)
    assert result["warehouse_bookings"] == governed_warehouse["rows"]
    assert [row["principal"] for row in result["queries"][1:]] == [principal for principal, _, _ in QUERIES]
    assert all(row["median_s"] > 0 for row in result["queries"])
    assert {token["state"] for token in list_tokens(data_dir)} == {"revoked"}
    allowed = [record for record in read_audit_log(data_dir) if record["decision"] == "allow"]
    assert len(allowed) == len(QUERIES)
