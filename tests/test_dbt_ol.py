"""dbt's own OpenLineage integration (dbt-ol, openlineage-dbt) run by hand with the command dbt_project/README.md
documents names the warehouse's tables exactly as the platform's lineage does, whatever PLATFORM_DATA_DIR looks
like (relative, with a trailing slash, through a symlink, unset), so a lineage backend joins the two.

The profile cannot resolve a symlink (dbt and dbt-ol render profiles.yml with `env_var` and nothing else): the
documented command's `dbt_target env` resolves the folder, and the profile refuses a path it can tell is not in
that form. One real dbt-ol build (30-36 s on 2 cores shared under load 8), on a copy of the warehouse of
conftest.pipeline_run (no pipeline run of its own)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dbt.config.renderer import ProfileRenderer
from openlineage.common.provider.dbt.local import DbtLocalArtifactProcessor

from platform_assets.settings import DBT_PROJECT_DIR, REPO_ROOT, load_settings
from platform_assets.transformations.dbt_target import dbt_target_env

BIN = Path(sys.executable).parent
PROFILES = DBT_PROJECT_DIR / "profiles.yml"


def documented_dbt_ol_command() -> str:
    """The fenced shell block of dbt_project/README.md that runs dbt-ol."""
    blocks = re.findall(r"```bash\n(.*?)```", (DBT_PROJECT_DIR / "README.md").read_text(), re.S)
    matching = [block for block in blocks if "dbt-ol build" in block]
    assert len(matching) == 1, "dbt_project/README.md: expected one ```bash block running dbt-ol build"
    return matching[0]


# --- the environment the documented command sets (pure, no dbt) ---

@pytest.mark.parametrize("given", ["relative", "trailing/", "link", "link/", "unset"])
def test_the_documented_environment_names_the_data_folder_resolved(given, tmp_path, monkeypatch):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    monkeypatch.chdir(tmp_path)
    if given == "unset":
        monkeypatch.delenv("PLATFORM_DATA_DIR", raising=False)
        expected = (REPO_ROOT / "data").resolve()  # the profile's old default `../data`, from dbt_project/
    else:
        monkeypatch.setenv("PLATFORM_DATA_DIR", given)
        expected = real if given.startswith("link") else tmp_path / given.rstrip("/")
    env = dbt_target_env(load_settings())
    assert env["PLATFORM_DATA_DIR"] == str(expected.resolve())
    assert Path(env["PLATFORM_DATA_DIR"]).is_absolute() and not env["PLATFORM_DATA_DIR"].endswith("/")


# --- the profile, rendered by dbt's renderer and by dbt-ol's own (in process: no dbt run) ---

def _render_with_dbt() -> str:
    from dbt_common.context import set_invocation_context
    set_invocation_context(dict(os.environ))  # dbt's env_var reads the invocation's environment
    profile = yaml.safe_load(PROFILES.read_text())["flight_platform"]["outputs"]["embedded"]
    return ProfileRenderer({}).render_data(profile)["path"]


def _render_with_dbt_ol() -> str:
    processor = DbtLocalArtifactProcessor.__new__(DbtLocalArtifactProcessor)  # only its profile loading
    processor.jinja_environment = None
    return processor.load_yaml_with_jinja(str(PROFILES))["flight_platform"]["outputs"]["embedded"]["path"]


@pytest.mark.parametrize("render", [_render_with_dbt, _render_with_dbt_ol], ids=["dbt", "dbt-ol"])
def test_the_profile_renders_the_warehouse_in_the_platforms_form_or_stops(render, monkeypatch):
    monkeypatch.setenv("PLATFORM_DATA_DIR", "/srv/platform/data/")
    assert render() == "/srv/platform/data/warehouse/warehouse.duckdb"
    for given in ("../data", "data", "/srv/./data", "/srv/a/../data", "/srv//data", ""):
        monkeypatch.setenv("PLATFORM_DATA_DIR", given)
        with pytest.raises(Exception, match="PLATFORM_DATA_DIR as an absolute resolved path"):
            render()
    monkeypatch.delenv("PLATFORM_DATA_DIR")
    with pytest.raises(Exception, match="PLATFORM_DATA_DIR as an absolute resolved path"):
        render()


# --- the real dbt-ol, as documented, against the platform's own events ---

def _duckdb_datasets(events: list[dict]) -> set[tuple[str, str]]:
    return {(d["namespace"], d["name"]) for e in events for d in e.get("inputs", []) + e.get("outputs", [])
            if d["namespace"].startswith("duckdb://")}


def test_dbt_ol_by_hand_names_the_tables_as_the_platform_does(pipeline_run, tmp_path):
    platform_data = pipeline_run["settings"].data_dir
    platform_events = [json.loads(line) for line in (platform_data / "lineage" / "events.jsonl").read_text().splitlines()]
    platform = _duckdb_datasets(platform_events)
    platform_namespace = f"duckdb://{(platform_data / 'warehouse' / 'warehouse.duckdb').resolve()}"
    assert {namespace for namespace, _ in platform} == {platform_namespace}

    # A copy of that warehouse (dbt-ol builds into it), reached relative to the repository, through a symlink,
    # with a trailing slash: every form the profile once named differently at the same time.
    copy = tmp_path / "copy"
    (copy / "warehouse").mkdir(parents=True)
    for name in ("warehouse.duckdb", "warehouse.duckdb.wal"):
        if (platform_data / "warehouse" / name).exists():
            shutil.copy2(platform_data / "warehouse" / name, copy / "warehouse" / name)
    (tmp_path / "link").symlink_to(copy)
    given = os.path.relpath(tmp_path / "link", REPO_ROOT) + "/"
    events_file = tmp_path / "dbt-ol-events.jsonl"
    (tmp_path / "openlineage.yml").write_text(
        f"transport:\n  type: file\n  log_file_path: {events_file}\n  append: true\n")
    env = {name: value for name, value in os.environ.items() if not name.startswith(("OPENLINEAGE", "DBT_"))}
    env.update(PLATFORM_DATA_DIR=given, PATH=f"{BIN}:{env['PATH']}", OPENLINEAGE_CONFIG=str(tmp_path / "openlineage.yml"),
               # dbt's artifacts and logs out of the checkout (dbt-ol reads them from DBT_TARGET_PATH too)
               DBT_TARGET_PATH=str(tmp_path / "target"), DBT_LOG_PATH=str(tmp_path / "logs"))
    env.pop("PLATFORM_TARGET", None)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", documented_dbt_ol_command()], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    dbt_ol_events = [json.loads(line) for line in events_file.read_text().splitlines()]
    assert {e["eventType"] for e in dbt_ol_events} >= {"START", "COMPLETE"}
    dbt_ol = _duckdb_datasets(dbt_ol_events)
    copy_namespace = f"duckdb://{(copy / 'warehouse' / 'warehouse.duckdb').resolve()}"
    assert {namespace for namespace, _ in dbt_ol} == {copy_namespace}
    # Sources and every model: raw, staging, intermediate and the audited marts.
    names = {name for _, name in dbt_ol}
    assert len(names) >= 19 and {name.split(".")[1] for name in names} == {"raw", "staging", "intermediate",
                                                                           "marts_audit"}
    # The same data folder named as the platform names it: the same datasets, all of them.
    assert {(platform_namespace, name) for name in names} <= platform
