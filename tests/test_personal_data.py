"""Personal data stays inside the governed route: a pipeline run on real days with defective simulator bookings
(known gaps, quarantined rows, a file refused for an unreadable line, a delivery failing its contract on a date
of birth) leaves no personal value of the landing files in any store outside the warehouse: the Dagster event
log, the run and compute logs, the alert log, the lineage events, MLflow's store and the governance audit log."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from deliveries import delivered_file, redeliver
from governance.access import masking_key
from governance.catalog import MaskingRule, load_catalog
from governance.masking import mask_category, operations_key, personal_data
from governance.policy import masked_value, masking_sql
from governed import read
from platform_assets.sources.landing import days_between

# Malformed e-mails and phones, copies, missing fields, unknown flights; enough days to train the model.
DEFECTIVE_DAYS = (dt.date(2013, 1, 1), dt.date(2013, 1, 6))
REFUSED_DAY = dt.date(2013, 1, 7)  # a bookings line the reader cannot parse
BLOCKED_DAY = dt.date(2013, 1, 8)  # dates of birth that are not dates: the blocking contract fails
SNIFFED_LINES = 20_480  # DuckDB's CSV sniffer reads this many lines; a bad line after them is quoted
SCALE = 0.05  # bookings per flight x 8: a few hundred a day, plenty of every defect at these rates
SHORTEST = 6  # normalised forms shorter than this would match unrelated text and are not searched for
# A phone's digits alone are searched for only when they are a whole number (10 digits and more): a 7-digit local
# number matched the fraction of a timestamp in dbt's manifest ("1795813802.5556712"); its written form still is.
SHORTEST_DIGITS = 10
GOVERNED_STORES = ("warehouse", "landing")  # where raw personal data lives by design; not scanned


def _defects():
    from platform_assets.simulator.bookings import BookingDefects

    return BookingDefects(duplicate_rate=0.03, malformed_email_rate=0.08, malformed_phone_rate=0.08,
                          unknown_flight_rate=0.02, missing_required_rate=0.03)


def _csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def _csv_line(fields: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(fields)
    return buffer.getvalue()


def _unreadable(text: str) -> str:
    """The bookings repeated past the lines DuckDB's sniffer reads, then one whose passenger name opens a quote
    that never closes: the reader's error quotes that line and every line after it."""
    rows = _csv_rows(text)
    name = rows[0].index("passenger_name")
    padding = rows[1:] * (SNIFFED_LINES // (len(rows) - 1) + 1)
    broken = _csv_line(rows[3]).replace(rows[3][name], '"' + rows[3][name], 1)
    return "".join([*map(_csv_line, [rows[0], *padding]), broken, *map(_csv_line, rows[4:])])


def _not_dates(text: str) -> str:
    """Every fifth booking with a date of birth that is no date (month 13)."""
    rows = _csv_rows(text)
    position = rows[0].index("date_of_birth")
    for row in rows[1::5]:
        row[position] = row[position][:5] + "13" + row[position][7:]
    return "".join(map(_csv_line, rows))


RULES = [MaskingRule(rule="redact"), MaskingRule(rule="hash"), MaskingRule(rule="keep_last", keep=4),
         MaskingRule(rule="keep_last", keep=1)]
TEXTS = [None, "", "jane.doe42@example.org", "  (212) 555-0100 ", "Zoë Ångström-Łukasz 山田太郎 🙂", "x" * 10_000,
         "O'Brien \"quoted\" \\ back", "ab"]
DATES = [None, dt.date(1985, 3, 2), dt.date(1940, 1, 1), dt.datetime(2001, 12, 31, 23, 59, 59, 123456)]


@pytest.mark.parametrize("rule", [*RULES, MaskingRule(rule="year")], ids=lambda r: f"{r.rule}{r.keep or ''}")
def test_the_python_form_of_a_masking_rule_gives_what_duckdb_gives(rule, data_dir):
    """masked_value and masking_sql are one definition: equal on real values, NULL, unicode and long ones."""
    key = operations_key()
    assert key and len(key) == 64
    values = DATES if rule.rule == "year" else TEXTS + (DATES if rule.rule == "hash" else [])
    with duckdb.connect() as connection:
        for value in values:
            kind = ("TIMESTAMP" if isinstance(value, dt.datetime) else "DATE" if isinstance(value, dt.date)
                    or (value is None and rule.rule == "year") else "VARCHAR")
            connection.execute(f"CREATE OR REPLACE TABLE stored (value {kind})")
            connection.execute("INSERT INTO stored VALUES ($value)", {"value": value})
            sql = masking_sql(rule, '"value"')
            parameters = {"masking_key": key} if "$masking_key" in sql else {}
            [(in_sql,)] = connection.execute(f"SELECT {sql} FROM stored", parameters).fetchall()
            assert masked_value(rule, value, key) == in_sql, (rule, value)


def test_catalog_columns_decide_what_is_masked_and_by_which_rule(data_dir):
    bookings = personal_data("raw/bookings")
    assert bookings.columns == {"passenger_name", "email", "phone", "date_of_birth", "loyalty_number"}
    assert bookings.show("booking_id", "BK201301010000001") == "BK201301010000001"  # not personal: as it is
    assert bookings.show("passenger_name", "Jane Doe") == "***"
    assert bookings.show("phone", "(212) 555-0100") == "**********0100"
    assert bookings.show("date_of_birth", "1985-03-02") == 1985
    assert bookings.show("date_of_birth", "1985-13-02") == "***"  # not a date as delivered: nothing of it shown
    token = bookings.show("email", "jane@example.org")
    assert len(token) == 16 and token == bookings.show("email", "jane@example.org") != "jane@example.org"
    assert token == mask_category("email", "jane@example.org")
    # the operations audience's tokens are not any governed reader's
    reader = masking_key(data_dir, '["analyst", []]')
    assert masked_value(load_catalog().access.masking["email"], "jane@example.org", reader) != token
    assert personal_data("marts/flights").columns == set()


def test_no_usable_secret_redacts_instead_of_hashing_unkeyed(data_dir):
    secret = data_dir / "governance" / "masking_key"
    secret.parent.mkdir(parents=True)
    secret.write_text("not a secret\n")
    assert operations_key() is None
    assert personal_data("raw/bookings").show("email", "jane@example.org") == "***"
    assert mask_category("loyalty_id", "UA000000001") == "***"
    assert masked_value(MaskingRule(rule="hash"), "jane@example.org", None) == "***"
    assert masked_value(MaskingRule(rule="hash"), "jane@example.org", "") == "***"


def test_a_dataset_the_catalog_does_not_know_is_personal_throughout(data_dir):
    unknown = personal_data("raw/not_in_the_catalog")
    assert unknown.holds_personal_data and unknown.show("anything", "value") == "***"


@pytest.fixture(scope="module")
def defective_platform(tmp_path_factory):
    """Four real days through the real platform on a real Dagster instance: two defective deliveries
    materialized end to end, a refused one and one failing the contract (raw layer), with the owner alerts
    of every run written to the alert log."""
    folder = tmp_path_factory.mktemp("personal") / "data"
    previous = {name: os.environ.get(name) for name in ("PLATFORM_DATA_DIR", "DAGSTER_HOME")}
    os.environ["PLATFORM_DATA_DIR"] = str(folder)
    from platform_assets.automation.alerts import run_alerts, send
    from platform_assets.definitions import build_definitions
    from platform_assets.instance import prepare_instance
    from platform_assets.runner import materialize_range
    from platform_assets.settings import load_settings
    from platform_assets.simulator.deliver import deliver_day

    try:
        settings = load_settings()
        prepare_instance(settings)
        for day in days_between(DEFECTIVE_DAYS[0], BLOCKED_DAY):
            deliver_day(settings.landing_dir, day, settings.seed, SCALE,
                        _defects() if day <= DEFECTIVE_DAYS[1] else None)
        for day, change in ((REFUSED_DAY, _unreadable), (BLOCKED_DAY, _not_dates)):
            path = delivered_file(settings.landing_dir, "bookings", day)
            redeliver(settings.landing_dir, "bookings", day, change(path.read_text()).encode())
        repository = build_definitions().get_repository_def()
        with dg.DagsterInstance.get() as instance:
            runs = [materialize_range(instance, *DEFECTIVE_DAYS, show_progress=False)]
            for day in (REFUSED_DAY, BLOCKED_DAY):
                runs.append(materialize_range(instance, day, day, show_progress=False,
                                              assets=[dg.AssetKey(["raw", "bookings"])]))
            for run in runs:
                for run_id in run.run_ids:
                    send(run_alerts(instance, repository, settings, run_id), settings.alert_log, None, None)
            # a governed read, so that the audit log is there to scan
            read("analyst", "SELECT email, passenger_name FROM marts.bookings LIMIT 5")
            yield {"settings": settings, "instance": instance, "runs": runs}
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _tokens(text: str) -> list[str]:
    """Lowercase letters-and-digits runs: how a value is compared, whatever quoting, escaping or punctuation
    surrounds it in a store."""
    return re.findall(r"[a-z0-9]+", text.lower())


def personal_values(landing: Path) -> tuple[dict[tuple[str, ...], str], list[str]]:
    """Every distinct value of every PII column (catalog `pii:` of raw/<source>) of every landing file, as the
    token sequences to search for (the value lowercased and stripped; a phone also as its digits only), with
    what each is; and the forms too short to search for."""
    catalog = load_catalog()
    searched: dict[tuple[str, ...], str] = {}
    short = []
    with duckdb.connect() as connection:
        for key, dataset in catalog.datasets.items():
            layer, name = key.split("/")
            personal = {column: entry.pii for column, entry in dataset.columns.items() if entry.pii}
            files = sorted(p for p in (landing / name).glob("*.*") if p.is_file()) if layer == "raw" else []
            if not personal or not files:
                continue
            for path in files:
                rows = connection.execute(
                    "SELECT * FROM read_csv($path, header = true, all_varchar = true, strict_mode = false, "
                    "ignore_errors = true)", {"path": str(path)}).fetchdf()
                # the line the reader cannot parse is skipped above: read it as plain text too
                plain = _csv_rows(path.read_text(errors="replace"))
                extra = [dict(zip(plain[0], row, strict=False)) for row in plain[1:]]
                for column, category in personal.items():
                    values = set(rows[column].dropna()) | {row.get(column) for row in extra} - {None, ""}
                    for value in values:
                        forms = {value.strip().lower()}
                        if category == "phone":
                            forms.add(re.sub(r"\D", "", value))
                        for form in forms:
                            tokens = tuple(_tokens(form))
                            if len("".join(tokens)) < (SHORTEST_DIGITS if form.isdigit() else SHORTEST):
                                short.append(f"{column}={form!r}")
                            else:
                                searched[tokens] = f"{name}.{column}"
    return searched, short


def _found(searched: dict[tuple[str, ...], str], text: str) -> list[str]:
    tokens = _tokens(text)
    at: dict[str, list[int]] = {}
    for index, token in enumerate(tokens):
        at.setdefault(token, []).append(index)
    found = []
    for needle, what in searched.items():
        for start in at.get(needle[0], ()):
            if tuple(tokens[start:start + len(needle)]) == needle:
                context = " ".join(tokens[max(start - 8, 0):start + len(needle) + 4])
                found.append(f"{what} {' '.join(needle)!r} in: {context}")
                break
    return found


def _stores(folder: Path, instance: dg.DagsterInstance) -> dict[str, str]:
    """Every store outside the warehouse, as text: each file under the data folder but the governed ones, and
    every event of the instance as serialized by Dagster (check metadata, log messages, failures)."""
    stores = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and relative.parts[0] not in GOVERNED_STORES:
            stores[str(relative)] = path.read_bytes().decode("utf-8", errors="replace")
    records = instance.get_run_records()
    stores["dagster event log (API)"] = "\n".join(
        dg.serialize_value(entry) for record in records for entry in instance.all_logs(record.dagster_run.run_id))
    stores["dagster runs (API)"] = "\n".join(dg.serialize_value(record.dagster_run) for record in records)
    return stores


def test_the_defective_deliveries_take_every_path_that_writes_values(defective_platform):
    """The scan below is meaningful only if the paths that quote values ran: known gaps with failing values,
    a refused file, a failed blocking contract, alerts, lineage and a trained model."""
    instance, settings = defective_platform["instance"], defective_platform["settings"]
    evaluations = [entry.dagster_event.event_specific_data for record in instance.get_run_records()
                   for entry in instance.all_logs(record.dagster_run.run_id,
                                                  of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)]
    failed = {(e.asset_key.to_user_string(), e.check_name) for e in evaluations if not e.passed}
    assert {("raw/bookings", "contract_known_gaps"), ("raw/bookings", "contract")} <= failed
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM marts.bookings_quarantine").fetchall()[0][0] > 10
    alerts = [json.loads(line) for line in settings.alert_log.read_text().splitlines()]
    assert any("cannot be read as csv" in alert["message"] for alert in alerts)
    assert list(settings.lineage_dir.rglob("*.json*")), "lineage events are written under the data folder"
    assert (settings.mlflow_dir / "mlflow.db").exists()


def test_no_personal_value_of_the_landing_files_is_in_any_store_outside_the_warehouse(defective_platform):
    settings, instance = defective_platform["settings"], defective_platform["instance"]
    searched, short = personal_values(settings.landing_dir)
    categories = {what for what in searched.values()}
    assert {"bookings.passenger_name", "bookings.email", "bookings.phone", "bookings.date_of_birth",
            "bookings.loyalty_number"} <= categories
    assert len(searched) > 1000, "a few hundred bookings a day, five personal columns"
    print(f"searched {len(searched)} personal values; {len(short)} forms too short to search for: {short[:10]}")
    stores = _stores(settings.data_dir, instance)
    assert any(name.startswith("dagster_home") for name in stores) and any(n.startswith("lineage") for n in stores)
    assert any(name.startswith("mlflow") for name in stores) and any(n.startswith("alerts") for n in stores)
    leaks = {name: found for name, text in stores.items() if (found := _found(searched, text))}
    assert not leaks, "personal values outside the warehouse:\n" + "\n".join(
        f"{name}: {len(found)} value(s), e.g. {found[:3]}" for name, found in leaks.items())
