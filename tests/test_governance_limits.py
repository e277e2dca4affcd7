"""Limits and names: a runaway or memory-hungry query is stopped at its role's limit (access.yml) and audited,
spill files stay in a private folder of the query, and identifiers resolve as DuckDB resolves them (any case)
without opening a way around a denied or masked column. Real queries on conftest.governed_warehouse."""

import json
import shutil
import threading
import time
from pathlib import Path

import duckdb
import pytest
import yaml

from governance.access import AccessDenied, _sandbox, query_references
from governance.audit import read_audit_log, verify_audit_log
from governance.catalog import CATALOG_DIR, CatalogError, load_catalog
from governed import read

CATALOG = load_catalog()


def _catalog(tmp_path: Path, edit_access=None, edit_datasets=None):
    folder = tmp_path / "catalog"
    shutil.copytree(CATALOG_DIR, folder)
    for name, edit in (("access.yml", edit_access), ("datasets.yml", edit_datasets)):
        if edit:
            content = yaml.safe_load((folder / name).read_text())
            edit(content)
            (folder / name).write_text(yaml.safe_dump(content, sort_keys=False))
    return load_catalog(folder)


def _limits(role: str, **limits):
    return lambda access: access["roles"][role].update(limits={**access["roles"][role].get("limits", {}), **limits})


@pytest.mark.parametrize(("edit", "message"), [
    (lambda access: access.pop("limits"), "access.yml: limits: required"),
    (lambda access: access.update(limits={"query_seconds": 10}), "limits: memory required"),
    (lambda access: access.update(limits={"memory": "1GB"}), "limits: query_seconds required"),
    (lambda access: access.update(limits={"query_seconds": 0, "memory": "1GB"}),
     "query_seconds: Input should be greater"),
    (lambda access: access.update(limits={"query_seconds": 10, "memory": "lots"}), "memory 'lots' must be a size"),
    (lambda access: access.update(limits={"query_seconds": 10, "memory": "-1"}), "memory '-1' must be a size"),
    (lambda access: access.update(limits={"query_seconds": 10, "memory": "1MB"}), "below the 16MiB"),
    (lambda access: access.update(limits={"query_seconds": 10, "memory": "1GB", "rows": 5}), "rows: Extra inputs"),
    (_limits("analyst", query_seconds=-1), "roles.analyst': limits.query_seconds"),
    (_limits("analyst", memory="unlimited"), "roles.analyst': limits.memory"),
])
def test_limits_are_required_and_validated_by_the_catalog(tmp_path, edit, message):
    with pytest.raises(CatalogError, match=message):
        _catalog(tmp_path, edit)


def test_a_role_without_its_own_limits_gets_the_catalog_default():
    assert "limits" not in yaml.safe_load((CATALOG_DIR / "access.yml").read_text())["roles"]["analyst"]
    analyst = CATALOG.access.limits_of("analyst")
    default = CATALOG.access.limits
    assert (analyst.query_seconds, analyst.memory) == (default.query_seconds, default.memory)
    assert all(CATALOG.access.limits_of(role).query_seconds and CATALOG.access.limits_of(role).memory
               for role in CATALOG.access.roles)


RUNAWAYS = {
    "cross join": "SELECT count(*) FROM bookings a, bookings b, bookings c, range(100000000) r",
    "recursive CTE": "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 1000000000) "
                     "SELECT count(*) FROM t, (SELECT count(*) FROM bookings)",
}


@pytest.mark.parametrize("runaway", RUNAWAYS)
def test_a_runaway_query_is_stopped_at_the_roles_time_limit_and_audited(governed_warehouse, tmp_path, runaway):
    catalog = _catalog(tmp_path, _limits("analyst", query_seconds=1.5))
    started = time.monotonic()
    with pytest.raises(AccessDenied, match=r"time limit of role 'analyst': 1.5 s \(access.yml limits.query_seconds\)"):
        read("analyst", RUNAWAYS[runaway], catalog=catalog)
    elapsed = time.monotonic() - started
    assert 1.5 <= elapsed < 6, elapsed  # interrupted, not run to its end (minutes)
    record = read_audit_log()[-1]
    assert record["decision"] == "deny" and "limits.query_seconds" in record["reason"] and record["seconds"] >= 1.5
    assert read("analyst", "SELECT count(*) FROM bookings", catalog=catalog).rows == [(governed_warehouse["rows"],)]
    assert verify_audit_log().ok


def test_a_memory_hungry_query_is_refused_at_the_roles_memory_limit_and_audited(governed_warehouse, tmp_path):
    catalog = _catalog(tmp_path, _limits("analyst", memory="32MB"))
    with pytest.raises(AccessDenied, match=r"memory limit of role 'analyst': 32MB \(access.yml limits.memory\)"):
        read("analyst", "SELECT length(string_agg(repeat(email, 1000), ',')) FROM bookings, range(100000)",
             catalog=catalog)
    record = read_audit_log()[-1]
    assert record["decision"] == "deny" and "limits.memory" in record["reason"]
    assert read("analyst", "SELECT count(email) FROM bookings", catalog=catalog).rows == [(governed_warehouse["rows"],)]
    roomy = read("analyst", "SELECT current_setting('memory_limit') FROM bookings LIMIT 1").rows
    assert roomy == [("953.6 MiB",)]  # the catalog default, 1GB


def test_both_databases_spill_only_into_a_private_folder_of_the_query(governed_warehouse, data_dir, tmp_path,
                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)  # DuckDB's default spill folder would be ./.tmp
    catalog = _catalog(tmp_path, _limits("analyst", query_seconds=2))
    root = data_dir / "governance" / "tmp"
    seen: list[tuple[str, int]] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            for folder in root.glob("query-*") if root.exists() else []:
                try:
                    seen.append((folder.name, folder.stat().st_mode & 0o777))
                except FileNotFoundError:
                    pass
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with pytest.raises(AccessDenied, match="time limit"):
            read("analyst", RUNAWAYS["cross join"], catalog=catalog)
    finally:
        stop.set()
        watcher.join()
    assert seen and {mode for _, mode in seen} == {0o700}
    assert root.stat().st_mode & 0o777 == 0o700
    assert list(root.iterdir()) == []  # removed after the query
    setting = read("analyst", "SELECT current_setting('temp_directory') FROM bookings LIMIT 1").rows[0][0]
    assert setting.startswith(str(root / "query-")) and setting.endswith("sandbox")
    with pytest.raises(AccessDenied, match="file system operations are disabled"):
        read("analyst", f"SELECT * FROM glob('{root}/**')")
    assert not (tmp_path / ".tmp").exists()
    references = query_references("SELECT email FROM bookings")
    sandbox = _sandbox(CATALOG, "analyst", ["marts/bookings"], references, {}, None,
                       audience="consumer:ops-delay-dashboard")
    try:
        source = sandbox.source.execute("SELECT current_setting('temp_directory'), current_setting('memory_limit'), "
                                        "current_setting('enable_external_access')").fetchall()
        assert source == [(str(sandbox.temporary / "source"), "953.6 MiB", False)]
        with pytest.raises(duckdb.Error):
            sandbox.source.execute("SET temp_directory = '.tmp'")  # locked
    finally:
        sandbox.close()
    assert not sandbox.temporary.exists()


def test_tables_schemas_and_columns_resolve_in_any_case(governed_warehouse):
    rows = governed_warehouse["rows"]
    assert read("analyst", "SELECT count(*) FROM Bookings").rows == [(rows,)]
    assert read("analyst", 'SELECT count(*) FROM "MARTS"."BOOKINGS"').rows == [(rows,)]
    assert read("data_engineer", "SELECT Flight_ID, CARRIER FROM Marts.Flights LIMIT 1").columns == ["flight_id",
                                                                                                   "carrier"]
    assert query_references("SELECT B.Email FROM MARTS.Bookings AS B").tables == [("marts", "bookings")]
    stored = governed_warehouse["pii"]["marts/bookings"]["email"]
    for sql in ["SELECT EMAIL FROM BOOKINGS", 'SELECT "EMAIL" FROM bookings', 'SELECT "Email" FROM "Bookings"',
                "SELECT B.EMAIL FROM bookings b", "SELECT b FROM BOOKINGS B", "SELECT * FROM Marts.BOOKINGS"]:
        result = read("analyst", sql)
        shown = json.dumps(result.rows, default=str)
        assert result.rows and not any(email in shown for email in stored), sql  # masked in every spelling
    assert [len(row[0]) for row in read("analyst", 'SELECT "EMAIL" FROM BOOKINGS').rows] == [16] * rows


@pytest.mark.parametrize("sql", ['SELECT "PASSENGER_NAME" FROM bookings', "SELECT Passenger_Name FROM BOOKINGS",
                                 "SELECT b.PASSENGER_NAME FROM Marts.Bookings b",
                                 "SELECT count(*) FROM bookings WHERE PASSENGER_NAME LIKE 'A%'",
                                 "SELECT booking_id FROM bookings JOIN (SELECT 1 AS x) USING (x) "
                                 "WHERE length(\"Passenger_Name\") > 3"])
def test_a_denied_column_in_any_case_is_denied_with_the_reason(governed_warehouse, sql):
    with pytest.raises(AccessDenied, match=r"may not read marts/bookings column passenger_name \(denied by the grant\)"):
        read("partner_airline", sql, {"carrier": "UA"})
    assert read_audit_log()[-1]["decision"] == "deny"


def test_a_users_own_mixed_case_dataset_is_governed_the_same_way(governed_warehouse, tmp_path):
    """A dataset a user adds with mixed-case names in the catalog and the warehouse: found in any case, its PII
    column masked, a column denied by a grant refused."""
    def add_dataset(datasets):
        bookings = datasets["marts/bookings"]
        datasets["marts/Partner_Miles"] = {
            "owner": bookings["owner"], "steward": bookings["steward"], "domain": bookings["domain"],
            "description": "Miles partners credit per booking.", "classification": "restricted", "published": True,
            "columns": {"Booking_ID": {"type": "VARCHAR", "classification": "internal"},
                        "Member_Email": {"type": "VARCHAR", "classification": "restricted", "pii": "email"},
                        "Miles": {"type": "INTEGER", "classification": "internal"}}}

    def grant(access):
        access["roles"]["analyst"]["datasets"]["marts/Partner_Miles"] = "full"
        access["roles"]["customer_care"]["datasets"]["marts/Partner_Miles"] = {
            "access": "full", "columns": {"Member_Email": "denied"}}

    catalog = _catalog(tmp_path, grant, add_dataset)
    emails = governed_warehouse["pii"]["marts/bookings"]["email"]
    with duckdb.connect(str(governed_warehouse["path"])) as connection:
        connection.execute('CREATE TABLE marts."Partner_Miles" ("Booking_ID" VARCHAR, "Member_Email" VARCHAR, '
                           '"Miles" INTEGER)')
        connection.executemany("INSERT INTO marts.\"Partner_Miles\" VALUES (?, ?, ?)",
                               [[f"B{i}", email, i * 100] for i, email in enumerate(emails)])
    for sql in ["SELECT member_email, miles FROM partner_miles", 'SELECT "MEMBER_EMAIL" FROM MARTS.PARTNER_MILES',
                "SELECT * FROM Partner_Miles"]:
        result = read("analyst", sql, catalog=catalog)
        assert len(result.rows) == len(emails) and not set(emails) & set(json.dumps(result.rows).split('"')), sql
    assert read("analyst", "SELECT sum(MILES) FROM partner_miles", catalog=catalog).rows == [
        (sum(i * 100 for i in range(len(emails))),)]
    with pytest.raises(AccessDenied, match=r"column Member_Email \(denied by the grant\)"):
        read("customer_care", "SELECT member_email FROM PARTNER_MILES", catalog=catalog)
    assert "Member_Email" not in read("customer_care", "SELECT * FROM partner_miles", catalog=catalog).columns
    assert read_audit_log()[-1]["datasets"] == ["marts/Partner_Miles"]


def test_a_cte_in_another_case_still_shadows_the_dataset(governed_warehouse):
    # ml_service is not granted bookings: a CTE of that name (any case) is the CTE, and the real one stays denied
    assert read("ml_service", "WITH BOOKINGS AS (SELECT 1 AS n) SELECT n FROM bookings").rows == [(1,)]
    with pytest.raises(AccessDenied, match="not granted"):
        read("ml_service", "WITH b AS (SELECT 1 AS n) SELECT * FROM MARTS.Bookings")
