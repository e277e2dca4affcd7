"""Shared fixtures. Every test that writes state gets its own temporary data folder."""

from __future__ import annotations

import datetime as dt
import inspect
import os
from pathlib import Path

import pytest

from dagster_servers import PLATFORM_DAY, environment, start_run_server, start_webserver, stop
from lineage_receiver import LineageReceiver

REPO_ROOT = Path(__file__).resolve().parent.parent
# Processes the tests start (the daemon, the webserver, code servers) import this checkout's code, not the
# checkout the editable install points at (another worktree, say): dagster.yaml names classes of this package.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))

# A short real window: enough days for the trailing statistics, a holdout, and the July date-format switch
# is exercised in the simulator tests instead.
PIPELINE_FIRST_DAY = dt.date(2013, 1, 1)
PIPELINE_LAST_DAY = dt.date(2013, 1, 10)


# `make test` runs the suite on TEST_WORKERS pytest-xdist workers (--dist loadgroup). A module's tests stay on one
# worker (its module-scoped fixtures start their servers once), and so do all the modules that use one of this
# suite's session-scoped fixtures (each would otherwise be built once per worker).
def session_fixtures(item: pytest.Item) -> set[str]:
    """The session-scoped fixtures defined under tests/ (not pytest's own) that `item` uses."""
    return {name for name, fixture_defs in item._fixtureinfo.name2fixturedefs.items()
            if any(d.scope == "session" and Path(inspect.getfile(d.func)).resolve().is_relative_to(REPO_ROOT / "tests")
                   for d in fixture_defs)}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups (pytest_collection_finish checks it did)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    group = {}  # module -> the module whose name its group carries (union of modules sharing a session fixture)

    def root(module: str) -> str:
        while group.setdefault(module, module) != module:
            module = group[module]
        return module

    first_user = {}
    for item in items:
        for name in session_fixtures(item):
            group[root(item.module.__name__)] = root(first_user.setdefault(name, item.module.__name__))
    for item in items:
        item.add_marker(pytest.mark.xdist_group(root(item.module.__name__)))


@pytest.hookimpl(trylast=True)  # after xdist has named each test's group
def pytest_collection_finish(session: pytest.Session) -> None:
    """Stop rather than run with the groups ignored: pytest-xdist 3.8 writes them into a test's node id the way
    pytest up to 9.1 keeps it (pyproject.toml pins pytest below 9.2, which keeps it elsewhere)."""
    if getattr(session.config.option, "loadgroup", False) and not all("@" in item.nodeid for item in session.items):
        raise pytest.UsageError("pytest-xdist's --dist loadgroup had no effect on the node ids: each worker would "
                                "start the module fixtures' servers and build the session fixtures again")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "data"
    monkeypatch.setenv("PLATFORM_DATA_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory):
    """The real graph materialized twice over the same window on a real temporary Dagster instance, as
    `make demo` runs it; returns (settings, first run, counts after run 1, second run, counts)."""
    import dagster as dg

    folder = tmp_path_factory.mktemp("pipeline") / "data"
    previous = {name: os.environ.get(name) for name in ("PLATFORM_DATA_DIR", "DAGSTER_HOME")}
    os.environ["PLATFORM_DATA_DIR"] = str(folder)
    from platform_assets.demo import deliver, layer_row_counts
    from platform_assets.instance import prepare_instance
    from platform_assets.runner import materialize_range
    from platform_assets.settings import load_settings

    settings = load_settings()
    prepare_instance(settings)
    deliver(settings, PIPELINE_FIRST_DAY, PIPELINE_LAST_DAY)
    with dg.DagsterInstance.get() as instance:
        first = materialize_range(instance, PIPELINE_FIRST_DAY, PIPELINE_LAST_DAY, show_progress=False)
        first_counts = layer_row_counts(settings)
        # The second run also delivers its lineage over HTTP to a Marquez-compatible receiver.
        receiver = LineageReceiver().start()
        os.environ["OPENLINEAGE_URL"] = receiver.url
        try:
            second = materialize_range(instance, PIPELINE_FIRST_DAY, PIPELINE_LAST_DAY, show_progress=False)
        finally:
            os.environ.pop("OPENLINEAGE_URL")
            receiver.stop()
        second_counts = layer_row_counts(settings)
        yield {"settings": settings, "instance": instance, "first": first, "first_counts": first_counts,
               "second": second, "second_counts": second_counts, "lineage_receiver": receiver}
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def governed_warehouse(data_dir: Path) -> dict:
    """A real DuckDB warehouse file in the temporary data folder with every published dataset of the catalog,
    typed as its contract says, holding simulator bookings (real-looking personal data) on real flights of
    2013-01-01 of two carriers; the raw, staging, intermediate and audit copies and a landing file hold the
    same personal data unmasked. Returns the path, the personal data values per dataset and column, carriers."""
    import duckdb

    from governed import published_rows

    data = published_rows()
    path = data_dir / "warehouse" / "warehouse.duckdb"
    path.parent.mkdir(parents=True)
    with duckdb.connect(str(path)) as connection:
        for key, table in data["tables"].items():
            schema, name = key.split("/")
            connection.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            columns = ", ".join(f'"{column}" {kind}' for column, kind in table["columns"].items())
            connection.execute(f"CREATE TABLE {schema}.{name} ({columns})")
            connection.executemany(f"INSERT INTO {schema}.{name} VALUES ({', '.join('?' * len(table['columns']))})",
                                   table["rows"])
        for copy in ("raw.bookings", "staging.stg_bookings__bookings", "intermediate.int_bookings__validated",
                     "marts_audit.bookings"):
            connection.execute(f"CREATE SCHEMA IF NOT EXISTS {copy.split('.')[0]}")
            connection.execute(f"CREATE TABLE {copy} AS SELECT * FROM marts.bookings")
    landing = data_dir / "landing" / "bookings" / "bookings_2013-01-01.csv"
    landing.parent.mkdir(parents=True)
    bookings = data["pii"]["marts/bookings"]
    landing.write_text("passenger_name,email\n" + "".join(f"{name},{email}\n" for name, email
                                                         in zip(bookings["passenger_name"], bookings["email"],
                                                                strict=True)))
    return {"path": path, "pii": data["pii"], "carriers": data["carriers"], "rows": data["rows"]}

# Runs launched from the UI or the API start at once in a subprocess of the code server: no daemon (whose sensors
# would start runs of their own) is needed.
IMMEDIATE_RUNS_YAML = """\
run_coordinator:
  module: dagster.core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
"""


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory):
    """A data folder with one delivered day (PLATFORM_DAY) and an instance that launches runs immediately, shared by the
    tests of the UI and of the API (test_ui_browser.py, test_check_results_api.py)."""
    folder = tmp_path_factory.mktemp("ui") / "data"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PLATFORM_DATA_DIR", str(folder))
        from platform_assets.demo import deliver
        from platform_assets.instance import prepare_instance
        from platform_assets.settings import load_settings

        settings = load_settings()
        settings.dagster_home.mkdir(parents=True)
        (settings.dagster_home / "dagster.yaml").write_text(IMMEDIATE_RUNS_YAML)
        prepare_instance(settings)
        day = dt.date.fromisoformat(PLATFORM_DAY)
        deliver(settings, day, day)
    return settings


@pytest.fixture(scope="session")
def webserver(platform):
    """`dagster-webserver` over `platform` on 127.0.0.1, once its code location has loaded, with the run server
    its runs start on (both as under `make dev`); its URL."""
    env = environment(platform.data_dir, platform.dagster_home)
    run_server = start_run_server(env, platform.data_dir / "run_server.log")
    try:
        server, url = start_webserver(env, platform.data_dir / "webserver.log")
        try:
            yield url
        finally:
            stop(server)
    finally:
        stop(run_server)
