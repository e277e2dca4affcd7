"""The catalog, its questions (owner, consumers, impact, access), validation with breaking-change review, and the
report. Catalog variants are copies of governance/catalog/ edited in a temporary folder."""

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest
import yaml

from governance.catalog import CatalogError, completeness_problems, load_catalog
from governance.check_status import latest_check_status
from governance.cli import main as governance_main
from governance.graph import load_asset_graph, load_manifest
from governance.impact import impact
from governance.paths import CATALOG_DIR, DBT_EXPOSURES
from governance.report import render_report
from governance.validate import validate

CATALOG = load_catalog()
GOVERNANCE = Path(sys.executable).parent / "governance"


def _catalog_copy(tmp_path: Path, edit_file: str | None = None, edit=None) -> Path:
    folder = tmp_path / "catalog"
    shutil.copytree(CATALOG_DIR, folder)
    if edit_file:
        path = folder / edit_file
        content = yaml.safe_load(path.read_text())
        path.write_text(yaml.safe_dump(edit(content) or content, sort_keys=False))
    return folder


def _load(folder: Path):
    return load_catalog.__wrapped__(folder)


# --- the catalog -------------------------------------------------------------------------------------------

def test_owner_answers_by_asset_key_relation_or_table_name(capsys):
    answers = []
    for name in ["marts/flight_features", "marts.flight_features", "flight_features"]:
        assert governance_main(["--json", "owner", name]) == 0
        answers.append(json.loads(capsys.readouterr().out))
    assert answers[0] == answers[1] == answers[2]
    assert answers[0]["owner"] == "team:ml-platform" and answers[0]["on_call"] == "ml-platform-oncall@example.com"
    assert answers[0]["steward"] == "priya.nair@example.com"
    assert CATALOG.dataset_key("flights") == "marts/flights"  # the published one of the two `flights`


def test_unknown_dataset_is_one_line_and_non_zero(capsys):
    assert governance_main(["owner", "no_such_table"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "'no_such_table' is not in the catalog" in error


def test_freshness_sla_is_exposed_as_timedeltas():
    sla = CATALOG.dataset("marts/flights").freshness_sla
    assert sla.warn_after == dt.timedelta(hours=26) and sla.fail_after == dt.timedelta(hours=50)
    assert CATALOG.dataset("raw/planes").freshness_sla.fail_after == dt.timedelta(days=30)
    assert all(d.freshness_sla is None or d.freshness_sla.warn_after <= d.freshness_sla.fail_after
               for d in CATALOG.datasets.values())


def test_the_demo_catalog_has_the_required_consumers_and_roles():
    kinds = {consumer.kind for consumer in CATALOG.consumers.values()}
    assert {"dashboard", "service", "ml_model"} <= kinds
    assert set(CATALOG.access.roles) == {"data_engineer", "analyst", "customer_care", "partner_airline", "ml_service"}
    assert CATALOG.access.roles["partner_airline"].row_filter.column == "carrier"


def test_the_delay_model_consumer_lists_what_the_model_really_reads():
    from platform_assets.ml.model import FEATURES, LABEL

    assert set(FEATURES) | {LABEL} <= set(CATALOG.consumers["delay-model"].depends_on["marts/flight_features"])


@pytest.mark.parametrize(("file", "edit", "message"), [
    ("datasets.yml", lambda d: d["raw/flights"].update(classification="secret"),
     r"datasets.yml: 'raw/flights': classification 'secret' is not one of"),
    ("datasets.yml", lambda d: d["raw/flights"].update(owner="nobody"),
     "datasets.yml: 'raw/flights': owner 'nobody' is not a team in teams.yml"),
    ("datasets.yml", lambda d: d["raw/flights"].update(steward="someone@example.com"),
     "datasets.yml: 'raw/flights': steward 'someone@example.com' is not a member of team 'flight-operations'"),
    ("datasets.yml", lambda d: d["marts/bookings"]["columns"]["email"].update(pii="emails"),
     "datasets.yml: 'marts/bookings': columns.email: pii category 'emails' is not in taxonomy.yml"),
    ("datasets.yml", lambda d: d["marts/bookings"]["columns"]["email"].update(classification="internal"),
     "columns.email: pii 'email' must be classified at least restricted"),
    ("datasets.yml", lambda d: d["marts/flights"].update(freshness_sla={"warn_after_hours": 5, "fail_after_hours": 2}),
     "datasets.yml: 'marts/flights': freshness_sla: Value error, fail_after_hours must be at least warn_after_hours"),
    ("datasets.yml", lambda d: d["marts/flights"].update(lifecycle={"status": "deprecated"}),
     "'marts/flights': lifecycle: Value error, a deprecated dataset needs a sunset date and a replacement"),
    ("teams.yml", lambda d: d["ml-platform"].update(members=[]), "teams.yml: 'ml-platform': members: List should"),
    ("consumers.yml", lambda d: d["delay-model"]["depends_on"].update({"raw/flights": ["year"]}),
     "consumers.yml: 'delay-model': depends_on: 'raw/flights' is not a published dataset"),
    ("access.yml", lambda d: d["roles"]["analyst"].update(clearance="top_secret"),
     "access.yml: roles.analyst: clearance 'top_secret' is not one of"),
    ("access.yml", lambda d: d["roles"]["analyst"]["datasets"].update({"marts/bookings": {"access": "full", "columns": {"email": "full"}}}),
     "access.yml: roles.analyst.datasets.marts/bookings.columns.email: full access beyond the role's clearance"),
    ("access.yml", lambda d: d["roles"]["ml_service"]["datasets"].update({"ml/flight_delay_predictions": "row_filtered"}),
     "roles.ml_service.datasets.ml/flight_delay_predictions: row_filtered needs the role's row_filter"),
    ("access.yml", lambda d: d["masking"].update(email={"rule": "keep_last"}),
     "access.yml: 'masking.email': keep: Value error|'keep' is required by keep_last"),
    ("consumers.yml", lambda d: d["ua-partner-feed"].__delitem__("attributes"),
     "consumers.yml: 'ua-partner-feed': role 'partner_airline' filters rows by the attribute 'carrier'"),
    ("consumers.yml", lambda d: d["aa-partner-feed"].update(attributes={"Carrier": "AA\n"}),
     "consumers.yml: 'aa-partner-feed': attribute 'Carrier' must be lowercase"),
    ("teams.yml", lambda d: d["ml-platform"]["members"][0].update(role="superuser"),
     "teams.yml: 'ml-platform'.members.priya.nair@example.com: role 'superuser' is not in access.yml"),
    ("teams.yml", lambda d: d["ml-platform"]["members"][0].update(role=None, attributes={"carrier": "UA"}),
     "members.priya.nair@example.com: attributes without a role"),
    ("teams.yml", lambda d: d["partnerships"]["members"].append(
        {"name": "Maria Lopez", "email": "maria.lopez@example.com", "role": "analyst"}),
     "principal 'maria.lopez@example.com' is defined twice"),
    ("access.yml", lambda d: d["masking"].pop("phone") and None,
     "access.yml: masking: no rule for pii category 'phone'"),
    ("approvals.yml", lambda d: d.append({"dataset": "marts/nothing", "column": "x", "change": "removed",
                                          "approved_by": "a", "approved_on": "2013-01-01", "reason": "r"}),
     "approvals.yml: entry 1: dataset 'marts/nothing' is not in the catalog"),
])
def test_catalog_errors_name_the_file_and_key(tmp_path, file, edit, message):
    folder = _catalog_copy(tmp_path, file, edit)
    with pytest.raises(CatalogError, match=message):
        _load(folder)


def test_completeness_reports_both_directions():
    problems = completeness_problems(CATALOG, set(CATALOG.datasets) - {"raw/flights"} | {"raw/tickets"})
    assert problems == ["asset 'raw/tickets' has no entry in datasets.yml",
                        "datasets.yml entry 'raw/flights' matches no asset"]


def test_governance_never_imports_dagster():
    code = ("import sys, governance.catalog, governance.cli, governance.access, governance.report, "
            "governance.validate; sys.exit('dagster' in sys.modules or 'platform_assets' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --- consumers, impact, access matrix ---------------------------------------------------------------------

def test_consumers_of_a_dataset(capsys):
    assert set(CATALOG.consumers_of("marts/flights")) == {"ops-delay-dashboard", "passenger-delay-notifications",
                                                          "ua-partner-feed", "aa-partner-feed"}
    assert governance_main(["--json", "consumers", "flight_delay_predictions"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert {c["consumer"] for c in answer["consumers"]} == {"ops-delay-dashboard", "passenger-delay-notifications"}
    assert all(c["on_call"] and c["owner"].startswith("team:") for c in answer["consumers"])


def test_impact_lists_every_downstream_asset_and_consumer_with_whom_to_notify():
    result = impact(CATALOG, load_asset_graph(), "raw/bookings")
    assert [d["dataset"] for d in result.downstream] == [
        "staging/stg_bookings__bookings", "intermediate/int_bookings__validated",
        "marts/bookings", "marts/bookings_quarantine"]
    assert [c.name for c in result.consumers] == ["passenger-delay-notifications", "ua-partner-feed",
                                                  "aa-partner-feed"]
    assert [n.team for n in result.notify] == ["team:passenger-data", "team:customer-experience", "team:partnerships"]
    assert result.notify[1].on_call == "cx-oncall@example.com"
    everything = impact(CATALOG, load_asset_graph(), "raw/flights")
    assert {c.name for c in everything.consumers} == set(CATALOG.consumers)
    assert "ml/flight_delay_predictions" in [d["dataset"] for d in everything.downstream]


def test_impact_of_a_column_keeps_only_the_direct_consumers_that_read_it(capsys):
    assert [c.name for c in impact(CATALOG, load_asset_graph(), "marts/bookings", "email").consumers] == [
        "passenger-delay-notifications"]
    assert impact(CATALOG, load_asset_graph(), "marts/bookings", "fare_usd").consumers == []
    assert governance_main(["--json", "impact", "marts/flights", "--column", "arr_delay"]) == 0
    answer = json.loads(capsys.readouterr().out)
    direct = {c["name"] for c in answer["consumers"] if c["via"] == "marts/flights"}
    # passenger-delay-notifications reads flights, but not arr_delay
    assert direct == {"ops-delay-dashboard", "ua-partner-feed", "aa-partner-feed"}
    # no column-level lineage: everything downstream and its consumers stay listed
    assert {d["dataset"] for d in answer["downstream"]} == {"marts/flight_features", "ml/delay_model",
                                                          "ml/flight_delay_live_quality",
                                                          "ml/flight_delay_predictions", "ml/flight_delay_drift",
                                                          "marts/bookings"}  # its gate checks the flights
    assert {c["name"]: c["via"] for c in answer["consumers"]}["passenger-delay-notifications"] == \
        "marts/bookings"  # the first downstream dataset it reads (it reads the predictions too)
    assert governance_main(["impact", "marts/flights", "--column", "arr_delay"]) == 0
    assert "team:operations-control" in capsys.readouterr().out
    assert governance_main(["impact", "marts/flights", "--column", "nope"]) == 1
    assert "'nope' is not a column of marts/flights" in capsys.readouterr().err


def test_access_matrix_shows_each_policy_type(capsys):
    assert governance_main(["--json", "access", "bookings"]) == 0
    matrix = json.loads(capsys.readouterr().out)
    roles = matrix["roles"]
    assert roles["data_engineer"]["columns"]["email"] == "full"
    assert roles["analyst"]["columns"]["email"] == "masked (hash)"
    assert roles["customer_care"]["columns"]["date_of_birth"] == "masked (year)"
    assert roles["partner_airline"]["row_filter"] == "carrier = <carrier>"
    assert roles["partner_airline"]["columns"]["passenger_name"] == "denied"
    assert roles["partner_airline"]["columns"]["fare_usd"] == "denied"
    assert roles["ml_service"]["dataset"].startswith("denied")
    assert governance_main(["access", "marts/bookings"]) == 0
    text = capsys.readouterr().out
    assert "masked (keep_last)" in text and text.splitlines()[1].split() == list(roles)
    assert governance_main(["access", "raw/bookings"]) == 1
    assert "not published" in capsys.readouterr().err


# --- validate: one source of truth, no unannounced breaking change ----------------------------------------

def _run_validate(data_dir: Path, catalog: Path = CATALOG_DIR) -> subprocess.CompletedProcess:
    env = {**os.environ, "PLATFORM_DATA_DIR": str(data_dir)}
    return subprocess.run([str(GOVERNANCE), "--catalog", str(catalog), "validate"], env=env, capture_output=True,
                          text=True, timeout=120)


def test_validate_passes_on_the_repository_catalog(tmp_path):
    """What CI runs: the installed console script over the repository's catalog, asset graph and dbt manifest."""
    result = _run_validate(tmp_path / "data")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("valid")
    assert "no warehouse at" in result.stdout


def test_validate_fails_and_explains_an_incomplete_catalog(tmp_path):
    def edit(datasets):
        datasets["raw/tickets"] = datasets.pop("raw/flights")

    result = _run_validate(tmp_path / "data", _catalog_copy(tmp_path, "datasets.yml", edit))
    assert result.returncode == 1
    assert "problem: asset 'raw/flights' has no entry in datasets.yml" in result.stdout
    assert "problem: datasets.yml entry 'raw/tickets' matches no asset" in result.stdout


def test_validate_fails_when_a_dbt_model_lacks_an_entry():
    manifest = load_manifest()
    model = next(node for node in manifest["nodes"].values() if node["name"] == "flights")
    manifest["nodes"]["model.flight_platform.flights_v2"] = {**model, "name": "flights_v2",
                                                             "fqn": [*model["fqn"][:-1], "flights_v2"]}
    result = validate(CATALOG, load_asset_graph(), manifest, Path("/nonexistent"), DBT_EXPOSURES)
    assert "dbt model 'marts/flights_v2' has no entry in datasets.yml" in result.problems


def _approve(change: str, column: str, dataset: str = "marts/flights"):
    def edit(approvals):
        approvals.append({"dataset": dataset, "column": column, "change": change,
                          "approved_by": "maria.lopez@example.com", "approved_on": "2013-12-01",
                          "reason": "the dashboard moved to the new column"})
    return edit


def test_a_removed_column_that_a_consumer_reads_fails_validate_unless_approved(governed_warehouse, tmp_path):
    with duckdb.connect(str(governed_warehouse["path"])) as connection:
        connection.execute("ALTER TABLE marts.flights DROP COLUMN arr_delay")
    result = _run_validate(governed_warehouse["path"].parent.parent)
    assert result.returncode == 1
    breaking = [line for line in result.stdout.splitlines() if line.startswith("problem: BREAKING")]
    assert breaking == [
        "problem: BREAKING: marts/flights.arr_delay removed [warehouse] breaks ops-delay-dashboard (owner "
        "team:operations-control, sam.okafor@example.com, on call ops-control-oncall@example.com); ua-partner-feed "
        "(owner team:partnerships, noor.haddad@example.com, on call partnerships-oncall@example.com); aa-partner-feed "
        "(owner team:partnerships, noor.haddad@example.com, on call partnerships-oncall@example.com); restore the "
        "column or record the consumers' agreement in approvals.yml"]
    approved = _run_validate(governed_warehouse["path"].parent.parent,
                             _catalog_copy(tmp_path, "approvals.yml", _approve("removed", "arr_delay")))
    assert approved.returncode == 0, approved.stdout
    assert "note: approved breaking change: marts/flights.arr_delay removed [warehouse], approved by " \
           "maria.lopez@example.com on 2013-12-01" in approved.stdout


def test_a_narrowed_type_breaks_and_a_widened_one_does_not(governed_warehouse, tmp_path):
    with duckdb.connect(str(governed_warehouse["path"])) as connection:
        connection.execute("ALTER TABLE marts.flights ALTER dep_delay TYPE INTEGER")
        connection.execute("ALTER TABLE marts.flights ALTER flight_number TYPE BIGINT")
    result = _run_validate(governed_warehouse["path"].parent.parent)
    assert result.returncode == 1
    assert "BREAKING: marts/flights.dep_delay type_changed (DOUBLE -> INTEGER) [warehouse] breaks ops-delay-dashboard" \
           in result.stdout
    assert "flight_number" not in result.stdout
    approved = _run_validate(governed_warehouse["path"].parent.parent,
                             _catalog_copy(tmp_path, "approvals.yml", _approve("type_changed", "dep_delay")))
    assert approved.returncode == 0, approved.stdout


def test_a_renamed_column_is_named_as_such_and_the_new_name_must_be_classified(governed_warehouse):
    with duckdb.connect(str(governed_warehouse["path"])) as connection:
        connection.execute("ALTER TABLE marts.bookings RENAME email TO email_address")
    result = _run_validate(governed_warehouse["path"].parent.parent)
    assert result.returncode == 1
    assert ("BREAKING: marts/bookings.email renamed (to email_address?) [warehouse] breaks "
            "passenger-delay-notifications (owner team:customer-experience") in result.stdout
    assert "marts/bookings.email_address is in the warehouse but not in datasets.yml: unclassified" in result.stdout


def test_a_column_dropped_from_dbt_or_from_the_contract_breaks_its_consumers(tmp_path):
    manifest = load_manifest()
    flights = next(n for n in manifest["nodes"].values() if n["resource_type"] == "model" and n["name"] == "flights")
    del flights["columns"]["carrier"]
    result = validate(CATALOG, load_asset_graph(), manifest, Path("/nonexistent"), DBT_EXPOSURES)
    assert any(p.startswith("BREAKING: marts/flights.carrier removed [dbt manifest] breaks ops-delay-dashboard")
               and "passenger-delay-notifications" in p for p in result.problems)

    def drop_from_contract(datasets):
        del datasets["marts/flight_features"]["columns"]["temp_f"]

    catalog = _load(_catalog_copy(tmp_path, "datasets.yml", drop_from_contract))
    result = validate(catalog, load_asset_graph(), None, Path("/nonexistent"), DBT_EXPOSURES)
    assert [p for p in result.problems if p.startswith("BREAKING")] == [
        "BREAKING: marts/flight_features.temp_f removed (delay-model reads it) [consumers.yml] breaks delay-model "
        "(owner team:ml-platform, priya.nair@example.com, on call ml-platform-oncall@example.com); restore the "
        "column or record the consumers' agreement in approvals.yml"]


def test_deprecated_datasets_past_their_sunset_fail_while_consumers_read_them(tmp_path):
    def deprecate(datasets):
        datasets["marts/flights"]["lifecycle"] = {"status": "deprecated", "sunset": "2014-01-31",
                                                  "replacement": "marts/flight_features"}

    catalog = _load(_catalog_copy(tmp_path, "datasets.yml", deprecate))
    before = validate(catalog, load_asset_graph(), None, Path("/x"), DBT_EXPOSURES, today=dt.date(2014, 1, 1))
    after = validate(catalog, load_asset_graph(), None, Path("/x"), DBT_EXPOSURES, today=dt.date(2014, 2, 1))
    message = "marts/flights is deprecated (sunset 2014-01-31, use marts/flight_features) and still read by"
    assert any(n.startswith(message) for n in before.notes) and before.problems == []
    assert any(p.startswith(message) and p.endswith("past its sunset date") for p in after.problems)


def test_consumers_must_be_able_to_read_what_they_depend_on(tmp_path):
    def as_partner(consumers):
        consumers["ops-delay-dashboard"].update(role="partner_airline", attributes={"carrier": "UA"})

    catalog = _load(_catalog_copy(tmp_path, "consumers.yml", as_partner))
    problems = validate(catalog, load_asset_graph(), None, Path("/x"), DBT_EXPOSURES).problems
    assert ("consumers.yml: 'ops-delay-dashboard' reads ml/flight_delay_predictions as role partner_airline, which "
            "may not read it (role 'partner_airline' may not read 'ml/flight_delay_predictions' (not granted))") in problems


def test_dbt_exposures_are_the_catalog_consumers():
    manifest = load_manifest()
    exposures = {e["label"]: e for e in manifest["exposures"].values()}
    assert set(exposures) == set(CATALOG.consumers)
    for name, consumer in CATALOG.consumers.items():
        models = {manifest["nodes"][n]["name"] for n in exposures[name]["depends_on"]["nodes"]}
        assert models == {k.split("/")[1] for k in consumer.depends_on if k.startswith("marts/")}
        assert exposures[name]["owner"]["email"] == consumer.contact


# --- the report --------------------------------------------------------------------------------------------

class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.ids, self.hrefs, self.text = [], set(), [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        self.ids.add(attrs.get("id"))
        for name in ("href", "src"):
            if attrs.get(name):
                self.hrefs.append(attrs[name])

    def handle_data(self, data):
        self.text.append(data)


def _lineage_event(lineage_dir: Path, table: str, assertions: list[dict], time: str, job: str = "") -> None:
    """An event shaped as platform_assets/lineage writes them (a dbt-ol style table name, the job named after the
    asset); the model's output is no table but the registered model."""
    lineage_dir.mkdir(parents=True, exist_ok=True)
    namespace = "duckdb:///data/warehouse/warehouse.duckdb" if "." in table else "mlflow://sqlite"
    event = {"eventType": "COMPLETE", "eventTime": time, "job": {"namespace": "flight-platform", "name": job or table},
             "run": {"runId": "01900000-0000-7000-8000-000000000000"}, "inputs": [],
             "outputs": [{"namespace": namespace, "name": f"warehouse.{table}" if "." in table else table,
                          "facets": {"dataQualityAssertions": {"_producer": "test", "_schemaURL": "x",
                                                               "assertions": assertions}}}]}
    with (lineage_dir / "events.jsonl").open("a") as file:
        file.write(json.dumps(event) + "\n")


def test_report_is_one_self_contained_page_with_everything_a_data_owner_asks(data_dir, capsys):
    lineage = data_dir / "lineage"
    _lineage_event(lineage, "marts.flights", [{"assertion": "unique", "name": "flights__flight_id_is_unique",
                                               "success": True, "severity": "error"}], "2013-01-02T00:00:00Z")
    _lineage_event(lineage, "marts.flights", [{"assertion": "unique", "name": "flights__flight_id_is_unique",
                                               "success": False, "severity": "error"}], "2013-01-03T00:00:00Z")
    _lineage_event(lineage, "marts.bookings", [{"assertion": "not_null", "column": "email", "success": True}],
                   "2013-01-03T00:00:00Z")
    _lineage_event(lineage, "flight_delay_classifier", [{"assertion": "training_set_schema", "success": True}],
                   "2013-01-03T00:00:00Z", job="ml/delay_model")
    out = data_dir / "report.html"
    assert governance_main(["report", "--out", str(out)]) == 0
    assert "datasets_with_check_status  3" in capsys.readouterr().out
    html = out.read_text()
    page = _Page()
    page.feed(html)
    text = " ".join(page.text)
    assert {"script", "link", "img", "iframe"}.isdisjoint(page.tags) and "svg" in page.tags and "style" in page.tags
    assert all(href.startswith("#") for href in page.hrefs), "nothing is fetched: every link stays in the page"
    assert "url(" not in html and "@import" not in html
    for key, dataset in CATALOG.datasets.items():
        assert "ds-" + key.replace("/", "-") in page.ids, key
        assert dataset.description in text
    assert page.tags.count("rect") == len(load_asset_graph()) + len(CATALOG.consumers)
    for team in CATALOG.teams.values():
        assert team.on_call in text
    for consumer in CATALOG.consumers:
        assert consumer in text
    assert "failed: flights__flight_id_is_unique" in text  # the newest event wins
    assert "masked (hash)" in text and "carrier = <carrier>" in text
    status = latest_check_status(CATALOG, lineage)
    assert status["marts/bookings"]["not_null(email)"]["success"] is True
    assert status["ml/delay_model"]["training_set_schema"]["success"] is True
    assert text.count("unknown") >= len(CATALOG.datasets) - 3


def test_report_renders_without_any_check_status():
    page = _Page()
    page.feed(render_report(CATALOG, load_asset_graph(), {}, dt.datetime(2013, 12, 1, tzinfo=dt.UTC)))
    text = " ".join(page.text)
    assert "Generated 2013-12-01 00:00 UTC" in text and "failed:" not in text
    assert text.count("no lineage event reported them") == len(CATALOG.datasets)



def _model_card(data_dir: Path, run: str, version: str, promoted: bool) -> None:
    """A card as platform_assets/ml/card.py writes it, where MLflow keeps a run's artifacts in the data folder."""
    folder = data_dir / "mlflow" / "artifacts" / run / "artifacts"
    folder.mkdir(parents=True)
    card = {"model": "flight_delay_classifier", "version": version, "created_at": f"2013-0{version}-01T00:00:00",
            "gate": {"passed": promoted, "decision": "passed" if promoted else "failed: roc_auc 0.59 < 0.60",
                     "promoted": promoted, "serving_after": "version 1"}}
    (folder / "model_card.json").write_text(json.dumps(card))
    (folder / "model_card.md").write_text(f"# Model card: flight_delay_classifier version {version}\n\n<sign-off>\n")


def test_the_report_links_every_model_card_from_the_dataset_that_registers_the_model(data_dir, capsys):
    _lineage_event(data_dir / "lineage", "flight_delay_classifier", [], "2013-01-03T00:00:00Z", job="ml/delay_model")
    _model_card(data_dir, "a" * 32, "1", promoted=True)
    _model_card(data_dir, "b" * 32, "2", promoted=False)
    (data_dir / "mlflow" / "artifacts" / ("c" * 32) / "artifacts").mkdir(parents=True)
    (data_dir / "mlflow" / "artifacts" / ("c" * 32) / "artifacts" / "model_card.json").write_text("{not json")
    out = data_dir / "report.html"
    assert governance_main(["report", "--out", str(out)]) == 0
    assert "model_cards                 2" in capsys.readouterr().out
    page = _Page()
    page.feed(out.read_text())
    text = " ".join(page.text)
    assert all(href.startswith("#") for href in page.hrefs), "the cards are in the page, nothing is fetched"
    assert {"#card-flight_delay_classifier-2", "#card-flight_delay_classifier-1"} <= set(page.hrefs)
    assert {"card-flight_delay_classifier-1", "card-flight_delay_classifier-2"} <= set(page.ids)
    section = out.read_text().split('id="ds-ml-delay_model"')[1].split("</section>")[0]
    assert section.index("version 2</a>") < section.index("version 1</a>")  # newest first
    assert "not promoted (failed: roc_auc 0.59 &lt; 0.60)" in section and "&lt;sign-off&gt;" in section
    assert "Model card: flight_delay_classifier version 1" in text
    assert text.count("Model cards (") == 1  # only the dataset whose job outputs the model

# --- pure rules ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("old", "new", "compatible"), [
    ("INTEGER", "INTEGER", True), ("INTEGER", "BIGINT", True), ("int", "INT8", True), ("INTEGER", "DOUBLE", True),
    ("DATE", "TIMESTAMP", True), ("FLOAT", "DOUBLE", True), ("BIGINT", "INTEGER", False),
    ("DOUBLE", "INTEGER", False), ("TIMESTAMP", "DATE", False), ("VARCHAR", "INTEGER", False),
    ("INTEGER", "VARCHAR", False), ("BOOLEAN", "INTEGER", False),
])
def test_type_changes_are_compatible_only_when_they_widen(old, new, compatible):
    from governance.contracts import is_compatible

    assert is_compatible(old, new) is compatible


def test_a_rename_is_only_called_so_when_it_is_unambiguous():
    from governance.contracts import schema_changes

    renamed = schema_changes("d", {"a": "INTEGER", "b": "VARCHAR"}, {"a": "INTEGER", "c": "VARCHAR"}, "w")
    assert [(c.column, c.change, c.detail) for c in renamed] == [("b", "renamed", "to c?")]
    ambiguous = schema_changes("d", {"a": "VARCHAR", "b": "VARCHAR"}, {"x": "VARCHAR", "y": "VARCHAR"}, "w")
    assert [(c.column, c.change) for c in ambiguous] == [("a", "removed"), ("b", "removed")]


def test_masking_sql_keeps_nulls_and_never_returns_the_value():
    from governance.catalog import MaskingRule
    from governance.policy import masking_sql

    rows = [("ivan.lee51@yahoo.com", dt.date(1978, 9, 19)), (None, None)]
    with duckdb.connect() as connection:
        connection.execute("CREATE TABLE t (v VARCHAR, d DATE)")
        connection.executemany("INSERT INTO t VALUES (?, ?)", rows)
        masked = {rule: connection.execute(f"SELECT {masking_sql(MaskingRule(**spec), 'v' if rule != 'year' else 'd')} "
                                           "FROM t", {"masking_key": "k"} if rule == "hash" else {}).fetchall()
                  for rule, spec in {"redact": {"rule": "redact"}, "hash": {"rule": "hash"},
                                     "keep_last": {"rule": "keep_last", "keep": 4}, "year": {"rule": "year"}}.items()}
    assert masked["redact"] == [("***",), (None,)]
    assert masked["keep_last"] == [("****************.com",), (None,)]
    assert masked["year"] == [(1978,), (None,)]
    assert len(masked["hash"][0][0]) == 16 and masked["hash"][1] == (None,)


def test_column_decisions_follow_overrides_clearance_and_pii_clearance():
    from governance.policy import decide

    partner = decide(CATALOG, "partner_airline", "marts/bookings", ["carrier", "passenger_name", "email",
                                                                      "fare_usd", "seat_number"])
    assert {name: c.access for name, c in partner.columns.items()} == {
        "carrier": "full", "passenger_name": "denied", "email": "masked", "fare_usd": "denied", "seat_number": "denied"}
    assert partner.columns["seat_number"].reason.startswith("unclassified")
    care = decide(CATALOG, "customer_care", "marts/bookings")
    assert care.columns["email"].access == "full" and care.columns["date_of_birth"].access == "masked"
    assert decide(CATALOG, "analyst", "marts/bookings").columns["passenger_name"].access == "masked"
    assert not decide(CATALOG, "analyst", "raw/bookings").allowed


def test_the_consumers_in_the_asset_graph_are_those_of_consumers_yml(tmp_path):
    def change(consumers):
        del consumers["ops-delay-dashboard"]["depends_on"]["ml/flight_delay_predictions"]
        consumers["bi-notebook"] = {**consumers["ua-partner-feed"], "kind": "notebook"}

    graph = load_asset_graph(consumers=True)
    assert validate(CATALOG, graph, None, Path("/x"), DBT_EXPOSURES).problems == []
    problems = validate(_load(_catalog_copy(tmp_path, "consumers.yml", change)), graph, None, Path("/x"),
                        DBT_EXPOSURES).problems
    assert problems == [
        "consumer 'consumers/bi-notebook' is in consumers.yml but not in the asset graph snapshot: regenerate the "
        "snapshot (UPDATE_SNAPSHOTS=1)",
        "consumer 'consumers/ops-delay-dashboard' reads ['marts/flights'] in consumers.yml, its asset depends on "
        "['marts/flights', 'ml/flight_delay_predictions'] in the graph snapshot: regenerate the snapshot "
        "(UPDATE_SNAPSHOTS=1)"]
