"""The embedded event log (platform_assets/event_log.py) keeps the engines of the databases it writes, and still
leaves each event in the database file itself with no file held open between events: what another process reading
the run (the webserver, whose watcher waits for the run's database file to change) relies on."""

import time
from pathlib import Path

import psutil
from dagster._core.events import DagsterEvent, DagsterEventType, EngineEventData
from dagster._core.events.log import EventLogEntry

from platform_assets.event_log import KEPT_ENGINES, BatchedSqliteEventLogStorage


def engine_event(run_id: str, message: str) -> EventLogEntry:
    event = DagsterEvent(event_type_value=DagsterEventType.ENGINE_EVENT.value, job_name="job", message=message,
                         event_specific_data=EngineEventData())
    return EventLogEntry(error_info=None, level=20, user_message=message, run_id=run_id, timestamp=time.time(),
                         dagster_event=event)


def open_databases(folder: Path) -> list[str]:
    return [item.path for item in psutil.Process().open_files() if item.path.startswith(str(folder))]


def test_each_event_is_in_the_run_database_file_at_once_and_no_file_stays_open(tmp_path: Path):
    writer = BatchedSqliteEventLogStorage(base_dir=str(tmp_path))
    run_ids = [f"run{number:02d}" for number in range(KEPT_ENGINES + 4)]
    for number in range(3):
        for run_id in run_ids:
            writer.store_event(engine_event(run_id, f"{run_id} event {number}"))
            # the commit is checkpointed into the run's database file (its write-ahead log gone with the last
            # connection), where a reader in another process finds it
            assert not (tmp_path / f"{run_id}.db-wal").exists()
            assert open_databases(tmp_path) == []
            reader = BatchedSqliteEventLogStorage(base_dir=str(tmp_path))
            assert [entry.user_message for entry in reader.get_logs_for_run(run_id)] == [
                f"{run_id} event {n}" for n in range(number + 1)]
            reader.dispose()
    assert len(writer._engines) == KEPT_ENGINES  # the most recent databases' engines, no more
    assert list(writer._engines)[-1] == run_ids[-1]
    writer.dispose()
