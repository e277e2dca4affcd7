import pytest

from governance.catalog import CatalogError, completeness_problems, load_catalog
from governance.cli import main as governance_main


def test_owner_answers_by_asset_key_or_table_name(capsys):
    assert governance_main(["--json", "owner", "marts/flight_features"]) == 0
    by_key = capsys.readouterr().out
    assert governance_main(["--json", "owner", "flight_features"]) == 0
    assert capsys.readouterr().out.replace("flight_features", "") == by_key.replace("marts/flight_features", "")
    assert '"owner": "team:ml-platform"' in by_key


def test_unknown_dataset_is_one_line_and_non_zero(capsys):
    assert governance_main(["owner", "no_such_table"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "'no_such_table' is not in the catalog" in error


def test_catalog_errors_name_the_file_and_key(tmp_path):
    (tmp_path / "teams.yml").write_text("ops: {description: d, contact: c@x.org, on_call: o@x.org}\n")
    (tmp_path / "datasets.yml").write_text("raw/flights: {owner: ops, domain: d, classification: secret}\n")
    with pytest.raises(CatalogError, match=r"datasets.yml: 'raw/flights': classification: Input should be"):
        load_catalog.__wrapped__(tmp_path)
    (tmp_path / "datasets.yml").write_text("raw/flights: {owner: nobody, domain: d, classification: public}\n")
    with pytest.raises(CatalogError, match="owner 'nobody' is not a team in teams.yml"):
        load_catalog.__wrapped__(tmp_path)


def test_completeness_reports_both_directions():
    catalog = load_catalog()
    problems = completeness_problems(catalog, set(catalog.datasets) - {"raw/flights"} | {"raw/tickets"})
    assert problems == ["asset 'raw/tickets' has no entry in datasets.yml",
                        "datasets.yml entry 'raw/flights' matches no asset"]


def test_governance_never_imports_dagster():
    import subprocess
    import sys

    code = "import sys, governance.catalog, governance.cli; sys.exit('dagster' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
