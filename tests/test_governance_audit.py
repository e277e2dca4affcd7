"""The audit log under attack: every governed call leaves exactly one record whatever breaks (parser, encodings,
malformed arguments, the command line, the log itself), errors never carry a stored value, and the hash chain
names the first record edited, inserted, deleted, reordered or cut short. Real governed queries on the real
warehouse fixture (conftest.governed_warehouse); real CLI calls, in process and as processes."""

import hashlib
import json
import multiprocessing
import os
import subprocess
import sys

import pytest

from governance.access import AccessDenied, QueryFailed, query_as
from governance.audit import (
    GENESIS, append_audit_record, audit_head_path, audit_log_path, line_hash, read_audit_log, verify_audit_log,
)
from governance.cli import main as governance_main
from governed import as_principal, principal_of, read, token_for

from governance.catalog import load_catalog  # noqa: E402

CATALOG = load_catalog()
PASSENGER_COLUMNS = ("passenger_name", "email", "phone_e164", "date_of_birth", "loyalty_number")


def _values(governed_warehouse) -> set[str]:
    """Every stored passenger value of marts/bookings, as text, in the forms it could leak."""
    values = set()
    for column_values in governed_warehouse["pii"]["marts/bookings"].values():
        for value in column_values:
            text = str(value)
            values |= {text, hashlib.sha256(text.encode()).hexdigest()[:16]}
    return values


def _leaked(values: set[str], *texts: str) -> list[str]:
    return sorted(value for value in values for text in texts if value in text)


def _run_cli(*args: str | bytes, token: str | None = None) -> subprocess.CompletedProcess:
    """The installed `governance` command as a process (argv bytes reach it as the OS gives them)."""
    command = os.path.join(os.path.dirname(sys.executable), "governance")
    return subprocess.run([command, *args], capture_output=True, timeout=120,
                          env={**os.environ, **({"GOVERNANCE_TOKEN": token} if token else {})})


def _real_log(governed_warehouse, count: int = 8) -> list[bytes]:
    """A log written by real governed calls: allowed, denied and failed ones."""
    calls = [("analyst", "SELECT email FROM bookings LIMIT 2", None),
             ("partner_airline", "SELECT passenger_name FROM bookings", {"carrier": "UA"}),
             ("analyst", "SELECT nope FROM bookings", None),
             ("customer_care", "SELECT passenger_name FROM marts.bookings LIMIT 1", None)]
    for index in range(count):
        role, sql, attributes = calls[index % len(calls)]
        try:
            read(role, sql, attributes)
        except AccessDenied:
            pass
    lines = audit_log_path().read_bytes().splitlines()
    assert len(lines) == count
    return lines


def _write(lines: list[bytes]) -> None:
    audit_log_path().write_bytes(b"".join(line + b"\n" for line in lines))


def test_real_governed_calls_form_a_chain_that_verifies(governed_warehouse, capsys):
    lines = _real_log(governed_warehouse)
    records = [json.loads(line) for line in lines]
    assert [r["seq"] for r in records] == list(range(1, 9))
    assert records[0]["prev"] == GENESIS
    assert all(r["prev"] == line_hash(previous) for r, previous in zip(records[1:], lines, strict=False))
    assert {r["decision"] for r in records} == {"allow", "deny", "error"}
    assert json.loads(audit_head_path().read_text()) == {"records": 8, "last": line_hash(lines[-1])}
    assert governance_main(["audit", "verify"]) == 0
    assert capsys.readouterr().out.startswith("verified 8 record(s)")
    installed = _run_cli("audit", "verify")  # the installed command, on the same data folder (environment)
    assert installed.returncode == 0 and installed.stdout.startswith(b"verified 8 record(s)")


def _edit(lines, number):
    record = json.loads(lines[number - 1])
    record["decision"] = "allow" if record["decision"] != "allow" else "deny"
    lines[number - 1] = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    return lines


TAMPERING = {
    "edit a record in the middle": (lambda lines: _edit(lines, 3), 3, "edited"),
    "edit the first record": (lambda lines: _edit(lines, 1), 1, "edited"),
    "edit the last record": (lambda lines: _edit(lines, 8), 8, "edited"),
    "edit keeping the JSON canonical, seq changed": (
        lambda lines: lines[:4] + [lines[4].replace(b'"seq":5', b'"seq":9')] + lines[5:], 5, "edited"),
    "break a record's JSON": (lambda lines: lines[:5] + [lines[5][:-7]] + lines[6:], 6, "not a JSON record"),
    "insert a copy of another record": (lambda lines: lines[:4] + [lines[1]] + lines[4:], 5, "inserted"),
    "insert a forged record that chains correctly": (
        lambda lines: lines[:4] + [json.dumps({"decision": "allow", "seq": 5, "prev": line_hash(lines[3])},
                                              sort_keys=True, separators=(",", ":")).encode()] + lines[4:],
        5, "inserted"),
    "delete a record": (lambda lines: lines[:3] + lines[4:], 4, "record 4 missing"),
    "delete two records": (lambda lines: lines[:5] + lines[7:], 6, "records 6-7 missing"),
    "reorder two records": (lambda lines: lines[:2] + [lines[3], lines[2]] + lines[4:], 3, "reordered"),
    "move a record to the end": (lambda lines: lines[:1] + lines[2:] + [lines[1]], 2, "reordered"),
    "truncate whole records": (lambda lines: lines[:6], 7, "records 7-8 missing at the end"),
    "append an unchained record": (lambda lines: lines + [b'{"decision":"allow"}'], 9, "not a chained record"),
}


@pytest.mark.parametrize("tampering", TAMPERING)
def test_verify_names_the_first_tampered_line(governed_warehouse, capsys, tampering):
    change, line, kind = TAMPERING[tampering]
    _write(change(_real_log(governed_warehouse)))
    result = verify_audit_log()
    assert (result.ok, result.line) == (False, line), result.message
    assert result.message.startswith(f"line {line}: ") and kind in result.message
    assert governance_main(["audit", "verify"]) == 1
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith(f"line {line}: ")


def test_a_log_cut_inside_a_record_is_named_and_refuses_further_queries(governed_warehouse):
    lines = _real_log(governed_warehouse, 5)
    audit_log_path().write_bytes(b"".join(line + b"\n" for line in lines[:4]) + lines[4][:40])
    result = verify_audit_log()
    assert (result.ok, result.line) == (False, 5) and "cut short" in result.message
    with pytest.raises(QueryFailed, match="ends in a partial record"):  # no answer without a record in a whole log
        read("analyst", "SELECT count(*) FROM bookings")
    assert audit_log_path().read_bytes().endswith(lines[4][:40])


def test_a_missing_head_is_not_passed_off_as_verified(governed_warehouse):
    _real_log(governed_warehouse, 3)
    audit_head_path().unlink()
    result = verify_audit_log()
    assert not result.ok and "cannot be told" in result.message


def test_a_log_written_before_chaining_is_reported_unchained_not_verified(governed_warehouse, capsys):
    legacy = [{"at": "2025-01-01T00:00:00", "role": "analyst", "sql": f"SELECT {n}", "decision": "allow"}
              for n in range(3)]
    audit_log_path().parent.mkdir(parents=True, exist_ok=True)
    audit_log_path().write_text("".join(json.dumps(record, sort_keys=True) + "\n" for record in legacy))
    assert not verify_audit_log().ok and "before the log was chained" in verify_audit_log().message
    read("analyst", "SELECT count(*) FROM bookings")
    read("analyst", "SELECT count(*) FROM flights")
    records = read_audit_log()
    assert [r.get("seq") for r in records] == [None, None, None, 4, 5]
    assert records[3]["prev"] == line_hash(audit_log_path().read_bytes().splitlines()[2])
    assert governance_main(["audit", "verify"]) == 1
    message = capsys.readouterr().out
    assert message.startswith("unchained up to line 3") and "lines 4-5 verified" in message


def _append_many(folder: str, writer: int, count: int) -> None:
    os.environ["PLATFORM_DATA_DIR"] = folder
    for index in range(count):
        append_audit_record({"writer": writer, "index": index, "decision": "allow"})


def test_concurrent_writers_cannot_fork_the_chain(governed_warehouse, data_dir):
    read("analyst", "SELECT count(*) FROM bookings")
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_append_many, args=(str(data_dir), writer, 60)) for writer in range(4)]
    for process in processes:
        process.start()
    read("partner_airline", "SELECT count(*) FROM bookings", {"carrier": "AA"})  # a real query meanwhile
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    records = read_audit_log()
    assert len(records) == 242 and [r["seq"] for r in records] == list(range(1, 243))
    result = verify_audit_log()
    assert result.ok and result.message.startswith("verified 242 record(s)"), result.message


def test_nothing_is_answered_when_the_audit_log_cannot_be_written(governed_warehouse, capsys):
    audit_log_path().mkdir(parents=True)  # the log's path is taken by a directory: no record can be appended
    with pytest.raises(QueryFailed, match="audit log .* cannot be written"):
        read("analyst", "SELECT count(*) FROM bookings")
    os.environ["GOVERNANCE_TOKEN"] = token_for(principal_of("customer_care"))
    try:
        assert governance_main(["query", "SELECT passenger_name FROM bookings"]) == 1
    finally:
        del os.environ["GOVERNANCE_TOKEN"]
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "cannot be written" in captured.err


CRASHES = {
    "lone surrogate in the SQL": ("analyst", "SELECT '\udcff' FROM bookings", None, "error", "not valid UTF-8"),
    "deep nesting": ("analyst", "SELECT * FROM " + "(SELECT * FROM " * 500 + "bookings" + ")" * 500, None,
                     "error", "nested too deeply"),
    "SQL as bytes": ("analyst", b"SELECT 1", None, "error", "must be text"),
    "SQL missing": ("analyst", None, None, "error", "must be text"),
    "role as a list": (["analyst"], "SELECT 1", None, "deny", "role must be"),
    "role with a lone surrogate": ("analyst\udcff", "SELECT 1", None, "deny", "role must be"),
    "attribute names of two types": ("partner_airline", "SELECT 1 FROM bookings", {1: "UA", "carrier": "AA"},
                                     "deny", "attribute name"),
    "attribute value as a list": ("partner_airline", "SELECT 1 FROM bookings", {"carrier": ["UA", "AA"]},
                                  "deny", "one short printable text value"),
    "attribute value as an int": ("partner_airline", "SELECT 1 FROM bookings", {"carrier": 5}, "deny",
                                  "one short printable text value"),
    "attribute with a lone surrogate": ("partner_airline", "SELECT 1 FROM bookings", {"carrier": "U\udcffA"},
                                        "deny", "printable"),
    "attributes as a list": ("partner_airline", "SELECT 1 FROM bookings", ["carrier", "UA"], "deny",
                             "attributes must map"),
}


@pytest.mark.parametrize("case", CRASHES)
def test_inputs_that_used_to_crash_are_audited_once_and_answered_in_one_line(governed_warehouse, case):
    role, sql, attributes, decision, reason = CRASHES[case]
    with pytest.raises(AccessDenied, match=reason) as refused:  # a principal made in code: the catalog refuses these
        query_as(CATALOG, as_principal(role, attributes), sql)
    assert "\n" not in str(refused.value) and "UA" not in str(refused.value) and "AA" not in str(refused.value)
    assert isinstance(refused.value, QueryFailed) == (decision == "error")
    (record,) = read_audit_log()
    assert record["decision"] == decision and reason in record["reason"]
    assert "UA" not in json.dumps(record["reason"]) and record["attributes"] in ({}, attributes)
    assert verify_audit_log().ok


COMMAND_LINES = {
    "non-UTF-8 byte in the SQL": (["query", b"SELECT '\xff' FROM bookings"], "error", "not valid UTF-8"),
    "non-UTF-8 byte in the token file name": (["query", "--token-file", b"/tmp/t\xffoken", "SELECT 1 FROM bookings"],
                                              "deny", "cannot be read"),
    "a role asked for": (["query", "--role", "data_engineer", "SELECT 1 FROM bookings"], "error",
                         "unrecognized arguments"),
    "an attribute asked for": (["query", "--attribute", "carrier=AA", "SELECT 1 FROM bookings"], "error",
                               "unrecognized arguments"),
    "missing SQL": (["query"], "error", "required: sql"),
    "bad option value": (["query", "--max-rows", "many", "SELECT 1"], "error", "argument --max-rows: invalid int value"),
    "a catalog of the caller's own": (["--catalog", "/nonexistent/catalog", "query", "SELECT 1"], "deny",
                                      "uses the repository's catalog"),
}


@pytest.mark.parametrize("case", COMMAND_LINES)
def test_command_line_failures_before_the_query_are_audited_once_in_one_line(governed_warehouse, case):
    args, decision, reason = COMMAND_LINES[case]
    finished = _run_cli(*args, token=token_for(principal_of("analyst")))
    assert finished.returncode != 0 and finished.stdout == b""
    assert finished.stderr.count(b"\n") == 1 and b"Traceback" not in finished.stderr, finished.stderr
    assert reason.encode() in finished.stderr
    (record,) = read_audit_log()
    assert record["decision"] == decision and reason in record["reason"]
    assert args[-1] == "SELECT 1 FROM bookings" or record["sql"] is None or "SELECT" in record["sql"]
    assert "many" not in record["reason"] and "UA" not in record["reason"]


@pytest.mark.parametrize(("role", "sql"), [
    ("customer_care", "SELECT CAST(passenger_name AS INTEGER) FROM bookings"),  # reads names in clear
    ("analyst", "SELECT CAST(passenger_name AS INTEGER) FROM bookings"),  # reads them masked
    ("partner_airline", "SELECT CAST(email AS INTEGER) FROM bookings"),  # a keyed token
    ("customer_care", "SELECT error(passenger_name) FROM bookings"),
    ("customer_care", "SELECT CAST(email AS DATE) FROM bookings ORDER BY email DESC"),
    ("data_engineer", "SELECT CAST(phone_raw AS INTEGER) FROM marts.bookings_quarantine"),
])
def test_engine_errors_never_carry_a_value_into_the_audit_log_or_stderr(governed_warehouse, capsys, role, sql):
    values = _values(governed_warehouse) | {str(v) for v in governed_warehouse["pii"]["marts/bookings_quarantine"]
                                            .get("phone_raw", [])}
    reader = {"carrier": "UA"} if role == "partner_airline" else None
    tokens = {cell for row in read(role, "SELECT * FROM bookings", reader).rows for cell in map(str, row)
              if len(cell) > 3}  # what the role itself reads (masked tokens too) stays out of errors as well
    os.environ["GOVERNANCE_TOKEN"] = token_for(principal_of(role, reader))
    try:
        assert governance_main(["query", sql]) == 1
    finally:
        del os.environ["GOVERNANCE_TOKEN"]
    err = capsys.readouterr().err
    record = read_audit_log()[-1]
    assert record["decision"] == "error" and "message is withheld" in record["reason"]
    assert _leaked(values | tokens, err, record["reason"]) == []
    assert err.count("\n") == 1 and ("Conversion Error" in err or "Invalid Input Error" in err)


def test_error_text_that_cannot_depend_on_the_data_is_kept(governed_warehouse):
    """The proof of value-freedom: the same error on the same datasets with no row. A misspelt column is named."""
    with pytest.raises(QueryFailed, match='Referenced column "pasenger_name" not found'):
        read("customer_care", "SELECT pasenger_name FROM bookings")
    with pytest.raises(AccessDenied, match="file system operations are disabled") as refused:
        read("analyst", "SELECT * FROM read_csv('/etc/passwd')")
    assert not isinstance(refused.value, QueryFailed) and read_audit_log()[-1]["decision"] == "deny"
