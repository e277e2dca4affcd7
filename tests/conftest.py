"""Shared fixtures. Every test that writes state gets its own temporary data folder."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from lineage_receiver import LineageReceiver

# A short real window: enough days for the trailing statistics, a holdout, and the July date-format switch
# is exercised in the simulator tests instead.
PIPELINE_FIRST_DAY = dt.date(2013, 1, 1)
PIPELINE_LAST_DAY = dt.date(2013, 1, 10)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "data"
    monkeypatch.setenv("PLATFORM_DATA_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory):
    """The real graph materialized twice over the same window on a real temporary Dagster instance,
    with the multiprocess executor; returns (settings, first run, counts after run 1, second run, counts)."""
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
