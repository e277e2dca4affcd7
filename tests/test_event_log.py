"""The embedded event log (platform_assets/event_log.py) keeps the engines of the databases it writes, and still
leaves each event in the database file itself with no file held open between events: what another process reading
the run (the webserver, whose watcher waits for the run's database file to change) relies on."""

import time
from pathlib import Path

import dagster as dg
import psutil
import pytest
import sqlalchemy as db
from dagster._core.events import DagsterEvent, DagsterEventType, EngineEventData
from dagster._core.events.log import EventLogEntry

from platform_assets.event_log import KEPT_ENGINES, BatchedSqliteEventLogStorage


def engine_event(run_id: str, message: str) -> EventLogEntry:
    event = DagsterEvent(event_type_value=DagsterEventType.ENGINE_EVENT.value, job_name="job", message=message,
                         event_specific_data=EngineEventData())
    return EventLogEntry(error_info=None, level=20, user_message=message, run_id=run_id, timestamp=time.time(),
                         dagster_event=event)


def entry(kind: DagsterEventType, data) -> EventLogEntry:
    """An event of run `run` with `data`."""
    event = DagsterEvent(event_type_value=kind.value, job_name="job", event_specific_data=data)
    return EventLogEntry(error_info=None, level=20, user_message="", run_id="run", timestamp=time.time(),
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


def check_rows(storage) -> list[tuple]:
    """The check execution rows, as the UI and Dagster's check APIs read them (their ids and times left out)."""
    from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable as Table
    from dagster._serdes import deserialize_value

    with storage.index_connection() as connection:
        rows = connection.execute(db.select(Table.c.asset_key, Table.c.check_name, Table.c.partition, Table.c.run_id,
                                            Table.c.execution_status, Table.c.evaluation_event)
                                  .order_by(Table.c.check_name, Table.c.partition)).fetchall()
    return [(*row[:5], deserialize_value(row[5], EventLogEntry).dagster_event.event_type_value) for row in rows]


def test_check_rows_are_the_ones_dagsters_own_sqlite_storage_writes(tmp_path: Path):
    """A run's planned checks (one partitioned over three days, one not), evaluated as a batch, plus an evaluation
    of a day nothing planned: the same execution rows as Dagster's storage, which stores them one at a time."""
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (AssetCheckEvaluation,
                                                                              AssetCheckEvaluationPlanned)
    from dagster._core.storage.event_log import SqliteEventLogStorage

    days = ["2013-01-01", "2013-01-02", "2013-01-03"]
    key = dg.AssetKey(["raw", "flights"])
    subset = dg.DailyPartitionsDefinition("2013-01-01").empty_subset().with_partition_keys(days).to_serializable_subset()

    planned = [entry(DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED, AssetCheckEvaluationPlanned(
                   asset_key=key, check_name=name, partitions_subset=part))
               for name, part in (("daily", subset), ("whole", None))]
    evaluations = [entry(DagsterEventType.ASSET_CHECK_EVALUATION, AssetCheckEvaluation(
        asset_key=key, check_name=name, passed=day != "2013-01-02", metadata={}, partition=day))
        for name, day in [("daily", day) for day in [*days, "2013-01-04"]] + [("whole", None)]]
    ours = BatchedSqliteEventLogStorage(base_dir=str(tmp_path / "ours"))
    dagsters = SqliteEventLogStorage(base_dir=str(tmp_path / "dagster"))
    for event in planned:
        ours.store_event(event)
        dagsters.store_event(event)
    assert check_rows(ours) == check_rows(dagsters)
    assert [row[4] for row in check_rows(ours)] == ["PLANNED"] * 4
    ours.store_event_batch(evaluations)
    for event in evaluations:
        dagsters.store_event(event)
    expected = check_rows(dagsters)
    assert len(expected) == 5 and {row[4] for row in expected} == {"SUCCEEDED", "FAILED"}
    assert check_rows(ours) == expected
    # each row names the stored evaluation it holds (the ids the batch's one insert returned, in order)
    from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable as Table
    from dagster._core.storage.event_log.schema import SqlEventLogStorageTable as Events

    with ours.index_connection() as connection:
        pairs = connection.execute(db.select(Table.c.evaluation_event, Events.c.event).join(
            Events, Events.c.id == Table.c.evaluation_event_storage_id)).fetchall()
    assert len(pairs) == 5 and all(held == stored for held, stored in pairs)


def test_a_batch_of_check_evaluations_all_planned_updates_their_rows(tmp_path: Path):
    """The usual batch: every day planned. One update statement for the batch, the same rows as Dagster's."""
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (AssetCheckEvaluation,
                                                                              AssetCheckEvaluationPlanned)
    from dagster._core.storage.event_log import SqliteEventLogStorage

    days = [f"2013-01-{day:02d}" for day in range(1, 31)]
    key = dg.AssetKey(["marts", "flights"])
    subset = dg.DailyPartitionsDefinition("2013-01-01").empty_subset().with_partition_keys(days).to_serializable_subset()

    planned = entry(DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
                    AssetCheckEvaluationPlanned(asset_key=key, check_name="daily", partitions_subset=subset))
    evaluations = [entry(DagsterEventType.ASSET_CHECK_EVALUATION, AssetCheckEvaluation(
        asset_key=key, check_name="daily", passed=day[-1] != "7", metadata={}, partition=day)) for day in days]
    ours = BatchedSqliteEventLogStorage(base_dir=str(tmp_path / "ours"))
    dagsters = SqliteEventLogStorage(base_dir=str(tmp_path / "dagster"))
    for storage in (ours, dagsters):
        storage.store_event(planned)
    ours.store_event_batch(evaluations)
    for event in evaluations:
        dagsters.store_event(event)
    assert check_rows(ours) == check_rows(dagsters)
    assert [row[4] for row in check_rows(ours)].count("FAILED") == 3 and len(check_rows(ours)) == 30


def test_a_runs_planned_events_stored_as_one_batch_are_the_rows_dagster_stores_one_at_a_time(tmp_path: Path):
    """The planned events Dagster hands over as one batch when it creates a run (materializations and checks mixed)
    go through Dagster's own code in one transaction per database: the same rows in the run's database and in the
    index, no file left open; an event that fails leaves none of the batch."""
    from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationPlanned
    from dagster._core.events import AssetMaterializationPlannedData
    from dagster._core.storage.event_log import SqliteEventLogStorage
    from dagster._core.storage.event_log.schema import AssetKeyTable, SqlEventLogStorageTable

    days = dg.DailyPartitionsDefinition("2013-01-01").empty_subset().with_partition_keys(
        ["2013-01-01", "2013-01-02"]).to_serializable_subset()
    keys = [dg.AssetKey(["raw", "flights"]), dg.AssetKey(["marts", "flights"])]
    planned = [entry(DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
                     AssetMaterializationPlannedData(key, partition=None, partitions_subset=days)) for key in keys]
    planned += [entry(DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
                      AssetCheckEvaluationPlanned(asset_key=key, check_name="rows", partitions_subset=days))
                for key in keys]

    def index_rows(storage) -> list[tuple]:
        with storage.index_connection() as connection:
            events = connection.execute(db.select(
                SqlEventLogStorageTable.c.dagster_event_type, SqlEventLogStorageTable.c.asset_key,
                SqlEventLogStorageTable.c.run_id).order_by(SqlEventLogStorageTable.c.id)).fetchall()
            assets = connection.execute(db.select(AssetKeyTable.c.asset_key).order_by(AssetKeyTable.c.asset_key))
            return [tuple(row) for row in events] + [tuple(row) for row in assets.fetchall()]

    ours = BatchedSqliteEventLogStorage(base_dir=str(tmp_path / "ours"))
    dagsters = SqliteEventLogStorage(base_dir=str(tmp_path / "dagster"))
    ours.store_event_batch(planned)
    for event in planned:
        dagsters.store_event(event)
    assert [e.dagster_event_type for e in ours.get_logs_for_run("run")] == [
        e.dagster_event_type for e in dagsters.get_logs_for_run("run")]
    assert index_rows(ours) == index_rows(dagsters) and len(index_rows(ours)) == 6
    assert check_rows(ours) == check_rows(dagsters) and len(check_rows(ours)) == 4
    assert open_databases(tmp_path) == [] and not (tmp_path / "ours" / "run.db-wal").exists()

    class FailingOnChecks(BatchedSqliteEventLogStorage):
        def store_asset_check_event(self, event, event_id):
            raise OSError("disk full")

    failing = FailingOnChecks(base_dir=str(tmp_path / "ours"))
    model = dg.AssetKey(["ml", "model"])
    with pytest.raises(OSError, match="disk full"):  # the check's event comes after the model's in the batch
        failing.store_event_batch([entry(DagsterEventType.ASSET_MATERIALIZATION_PLANNED, AssetMaterializationPlannedData(
            model, partition=None, partitions_subset=days)), planned[2]])
    assert index_rows(ours) == index_rows(dagsters) and len(ours.get_logs_for_run("run")) == 4
    assert open_databases(tmp_path) == []


def test_a_table_found_in_the_index_is_kept_and_a_missing_one_is_asked_again(tmp_path: Path):
    storage = BatchedSqliteEventLogStorage(base_dir=str(tmp_path))
    assert storage.has_table("asset_check_executions") and storage.supports_asset_checks
    assert not storage.has_table("added_later")
    index = db.create_engine(storage.conn_string_for_shard("index"))
    with index.begin() as connection:
        connection.execute(db.text("CREATE TABLE added_later (x INTEGER)"))
    assert storage.has_table("added_later"), "a no is not kept"
    with index.begin() as connection:
        connection.execute(db.text("DROP TABLE added_later"))
    assert storage.has_table("added_later"), "a yes is kept (Dagster drops no table while it runs)"
    index.dispose()
    storage.dispose()
