"""A source of our own (tests/new_source, not a demo source) added to a copy of the project through exactly the
steps of the README's "Add a source": the contract, the dbt source and staging model, the generated contract
macro, the catalog, the dbt manifest, the graph snapshot, a delivery with its manifest; then materialized, its
checks pass and lineage names it. `python -m platform_assets.sources check` says what is left at each step."""

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from platform_assets.settings import REPO_ROOT

NEW = Path(__file__).parent / "new_source"
NAME = "gate_assignments"
DAY = dt.date(2013, 1, 2)
BIN = Path(sys.executable).parent


def _copy_project(target: Path) -> Path:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    for name in listed:
        if (REPO_ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, target / name)
    return target


def _append(path: Path, snippet: str) -> None:
    path.write_text(path.read_text().rstrip("\n") + "\n" + (NEW / snippet).read_text())


def _run(project: Path, env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(list(args), cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert not check or done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def _todo(project: Path, env: dict) -> list[str]:
    done = _run(project, env, sys.executable, "-m", "platform_assets.sources", "check", NAME, check=False)
    todo = [line.split("  ", 2)[2] for line in done.stdout.splitlines() if line.startswith("  todo")]
    assert (done.returncode == 0) == (not todo), done.stdout + done.stderr
    return todo


MATERIALIZE = """
import datetime as dt, json, sys
import dagster as dg
from platform_assets.instance import prepare_instance
from platform_assets.runner import materialize_range
from platform_assets.settings import load_settings

prepare_instance(load_settings())
day = dt.date.fromisoformat(sys.argv[1])
keys = [dg.AssetKey.from_user_string(key) for key in sys.argv[2:]]
with dg.DagsterInstance.get() as instance:
    run = materialize_range(instance, day, day, show_progress=False, assets=keys)
    result = run.results[0]
    print(json.dumps({
        "success": run.success,
        "materialized": sorted(e.asset_key.to_user_string() for e in result.get_asset_materialization_events()),
        "checks": {f"{e.asset_key.to_user_string()}:{e.check_name}": e.passed
                   for e in result.get_asset_check_evaluations()},
    }))
"""


def test_a_new_source_is_added_with_yaml_and_sql_alone(tmp_path):
    project = _copy_project(tmp_path / "project")
    data = tmp_path / "data"
    env = {**os.environ, "PLATFORM_DATA_DIR": str(data), "DAGSTER_HOME": str(data / "dagster_home"),
           "PLATFORM_DELIVERY_RETRIES": "0", "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    python = [sys.executable, "-m"]

    # 1. The contract in sources.yml: the check lists every step still to do, in the README's order.
    _append(project / "platform_assets/sources/sources.yml", "sources.yml")
    todo = _todo(project, env)
    assert [line.split(":")[0].split(" ")[0] for line in todo] == [
        "dbt_project/models/staging/_sources.yml", "dbt_project/models/staging/stg_gate_assignments__<entity>.sql",
        "dbt_project/macros/source_contracts.sql", "governance/catalog/datasets.yml",
        "dbt_project/target/manifest.json", "tests/snapshots/asset_graph.json", "a"]
    # 2. The dbt source table, 3. the staging model with its documentation and tests.
    _append(project / "dbt_project/models/staging/_sources.yml", "_sources.yml")
    shutil.copy(NEW / "stg_gate_assignments__gates.sql", project / "dbt_project/models/staging")
    _append(project / "dbt_project/models/staging/_staging.yml", "_staging.yml")
    # 4. The generated contract macro.
    _run(project, env, *python, "platform_assets.sources.dbt_contract")
    # 5. The catalog entries.
    _append(project / "governance/catalog/datasets.yml", "datasets.yml")
    # 6. The dbt manifest.
    _run(project / "dbt_project", env, str(BIN / "dbt"), "parse", "--quiet", "--profiles-dir", ".")
    # 7. The reviewed graph snapshot.
    _run(project, env, sys.executable, "-c", "import json, sys; sys.path.insert(0, 'tests'); "
         "import test_definitions as t; t.SNAPSHOT.write_text(json.dumps(t._graph_snapshot(), indent=2) + '\\n')")
    assert _todo(project, env) == [f"a first delivery in {data}/landing/{NAME}/ with its manifest in "
                                   f"{data}/landing/{NAME}/_manifests/ (the README's delivery contract)"]
    _run(project, env, *python, "governance.cli", "validate")

    # 8. Its system delivers a file with a manifest (the contract's helper does what the README describes).
    csv = (NEW / f"{NAME}_{DAY}.csv").read_bytes()
    _run(project, env, sys.executable, "-c", "import datetime as dt, pathlib, sys; "
         "from platform_assets.sources.landing import write_delivery; "
         f"write_delivery(pathlib.Path(sys.argv[1]), '{NAME}', dt.date.fromisoformat('{DAY}'), "
         "{sys.argv[2]: (pathlib.Path(sys.argv[3]).read_bytes(), int(sys.argv[4]))})",
         str(data / "landing"), f"{NAME}_{DAY}.csv", str(NEW / f"{NAME}_{DAY}.csv"), str(csv.count(b"\n") - 1))
    assert _todo(project, env) == []
    # The demo keeps working beside it: the simulator delivers the demo's sources and says it skips this one.
    replay = _run(project, env, *python, "platform_assets.simulator", "deliver", "--start", str(DAY), "--end", str(DAY))
    assert f"not a demo source, not generated (its own system delivers it): {NAME}" in replay.stdout

    # 9. Materialized with the reference it checks against; its checks pass; lineage names it.
    done = _run(project, env, sys.executable, "-c", MATERIALIZE, str(DAY), f"raw/{NAME}",
                f"staging/stg_{NAME}__gates", "raw/airlines")
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["success"], done.stdout + done.stderr
    assert outcome["materialized"] == ["raw/airlines", f"raw/{NAME}", f"staging/stg_{NAME}__gates"]
    checks = outcome["checks"]
    assert checks[f"raw/{NAME}:contract"] and checks[f"staging/stg_{NAME}__gates:stg_gate_assignments__gate_is_present"]
    events = [json.loads(line) for line in (data / "lineage" / "events.jsonl").read_text().splitlines()]
    completed = {e["job"]["name"]: e for e in events if e["eventType"] == "COMPLETE"}
    raw = completed[f"raw/{NAME}"]
    assert [i["name"] for i in raw["inputs"]] == [str((data / "landing" / NAME / f"{NAME}_{DAY}.csv").resolve())]
    assert [o["name"] for o in raw["outputs"]] == [f"warehouse.raw.{NAME}"]
    staged = completed[f"staging/stg_{NAME}__gates"]
    assert f"warehouse.raw.{NAME}" in [i["name"] for i in staged["inputs"]]
