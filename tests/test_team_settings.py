"""The team target's settings and what is chosen from them, without servers: every server setting is required on
`team` (a missing or wrong one is a one-line error naming it, never a silent fall back to an embedded piece), and
ignored on `embedded`; the instance configuration and the executor follow the target."""

import subprocess
import sys

import pytest
import yaml

from platform_assets.instance import InstanceConfigError, _write_config, dagster_yaml
from platform_assets.settings import REPO_ROOT, TEAM_VARIABLES, SettingsError, load_settings

TEAM = {"PLATFORM_TARGET": "team", "PLATFORM_WAREHOUSE_URL": "postgresql://platform@db.example:5432/warehouse",
        "DAGSTER_PG_URL": "postgresql+psycopg2://dagster@db.example:5432/dagster",
        "MLFLOW_TRACKING_URI": "postgresql+psycopg2://mlflow@db.example:5432/mlflow",
        "PLATFORM_CELERY_BROKER": "redis://:secret@broker.example:6379/0",
        "PLATFORM_CELERY_BACKEND": "redis://:secret@broker.example:6379/1"}


@pytest.fixture
def team_env(data_dir, monkeypatch):
    for name, value in TEAM.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_the_team_target_reads_every_server_from_the_environment(team_env, data_dir):
    settings = load_settings()
    assert (settings.warehouse_url, settings.dagster_pg_url, settings.mlflow_tracking_uri, settings.celery_broker,
            settings.celery_backend) == tuple(TEAM[variable] for variable in TEAM_VARIABLES.values())
    assert settings.dagster_home == data_dir / "team" / "dagster_home"
    assert settings.mlflow_artifact_location == (data_dir / "mlflow" / "artifacts").as_uri(), "still a folder here"


@pytest.mark.parametrize("variable", list(TEAM_VARIABLES.values()))
def test_a_missing_server_setting_on_team_is_an_error_naming_it(team_env, variable):
    team_env.delenv(variable)
    with pytest.raises(SettingsError, match=f"^{variable} is not set: PLATFORM_TARGET=team needs it"):
        load_settings()
    team_env.setenv(variable, "  ")
    with pytest.raises(SettingsError, match=f"^{variable} is not set"):
        load_settings()


@pytest.mark.parametrize("variable", ["PLATFORM_WAREHOUSE_URL", "DAGSTER_PG_URL"])
def test_the_warehouse_and_the_instance_must_be_postgresql(team_env, variable):
    team_env.setenv(variable, "sqlite:////tmp/x.db")
    with pytest.raises(SettingsError, match=f"^{variable}=sqlite://...: expected a postgresql:// URL$"):
        load_settings()


def test_the_embedded_target_ignores_the_team_settings(team_env, data_dir):
    team_env.setenv("PLATFORM_TARGET", "embedded")
    settings = load_settings()
    assert settings.warehouse_url is settings.celery_broker is None
    assert settings.mlflow_tracking_uri == f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}"
    assert settings.dagster_home == data_dir / "dagster_home"


def test_the_executor_follows_the_target(team_env):
    from platform_assets.definitions import build_definitions

    team = build_definitions(load_settings()).resolve_job_def("materialize_all").executor_def
    assert team.name == "celery"
    team_env.setenv("PLATFORM_TARGET", "embedded")
    embedded = build_definitions(load_settings()).resolve_job_def("materialize_all").executor_def
    assert embedded.name == "in_process"


def test_a_team_instance_runs_several_runs_but_one_per_source_and_day(tmp_path):
    config = yaml.safe_load(dagster_yaml("team"))["concurrency"]["runs"]
    assert config["max_concurrent_runs"] > 1
    assert config["tag_concurrency_limits"] == [
        {"key": "platform/source_day", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}]
    assert yaml.safe_load(dagster_yaml("embedded"))["concurrency"]["runs"] == {"max_concurrent_runs": 1}
    _write_config(tmp_path / "dagster.yaml", {}, tmp_path, "team")
    assert yaml.safe_load((tmp_path / "dagster.yaml").read_text())["storage"] == {
        "postgres": {"postgres_url": {"env": "DAGSTER_PG_URL"}}}


def test_a_team_instance_refuses_a_dagster_yaml_without_postgres_storage(tmp_path):
    _write_config(tmp_path / "dagster.yaml", {}, tmp_path, "embedded")
    with pytest.raises(InstanceConfigError, match="PLATFORM_TARGET=team keeps runs in PostgreSQL"):
        _write_config(tmp_path / "dagster.yaml", {}, tmp_path, "team")


def test_the_instance_command_prints_one_line_for_a_missing_setting(tmp_path):
    environment = {"PATH": "/usr/bin:/bin", "PLATFORM_TARGET": "team", "PLATFORM_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "platform_assets.instance"], cwd=REPO_ROOT, env=environment,
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: PLATFORM_WAREHOUSE_URL is not set: PLATFORM_TARGET=team needs it (`make team-up` writes it to "
        "<data>/team/team.env; docs/team.md)"]
