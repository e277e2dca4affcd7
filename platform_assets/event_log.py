"""Dagster's sqlite event log, storing a batch of asset events in one transaction per database.

A run over many days records one materialization per asset and day (the demo's one run: about 9,000), and one
check evaluation per check and day (platform_assets/checks/daily.py: about 26,000). The sqlite event log stores
each event with two or three fresh connections and commits, 10-100 ms each: many minutes per run, at every scale.
Dagster hands over the events of one output as a batch when DAGSTER_EVENT_BATCH_SIZE is set (platform_assets/__init__.py
sets it; the daily check evaluations are handed over per check the same way), and this storage writes such a batch in
one statement to the run's database and in one transaction to the cross-run index, as dagster-postgres does for
materializations. Configured in dagster.yaml by platform_assets.instance.

A check planned over a run's days gets one row per day, and Dagster serialises the planned event again for each
row; here once per check. A batch of evaluations updates the planned rows of its days in one statement. Any other
batch Dagster hands over (the planned events with which a run is created: materializations and checks) is stored
event by event as Dagster stores it, but in one connection and one transaction per database for the whole batch.

Every other event (a run's 300-odd step, log and check events on a new day) is still stored one at a time, and
Dagster builds a new SQLAlchemy engine for every connection: about half of each event's cost. This storage keeps the
engines of the last few databases it used (a run's own and the index); their connections are still opened and
closed for each event (NullPool), so no file is held open between events and each commit reaches the database file
as before.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

import sqlalchemy as db
from dagster._core.events import DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable, SqlEventLogStorageTable
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster_shared.serdes import serialize_value
from sqlalchemy.pool import NullPool

BATCHED_TYPES = {DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_OBSERVATION}
CHECK_EVALUATION = DagsterEventType.ASSET_CHECK_EVALUATION
KEPT_ENGINES = 8  # databases whose engine is kept: a run's own and the index, and room for readers of a few runs


class BatchedSqliteEventLogStorage(SqliteEventLogStorage):
    # platform_assets/checks/daily.py hands this storage a run's daily check evaluations as batches
    stores_check_evaluation_batches = True

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> BatchedSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)  # the parent builds its own class, not `cls`

    def has_table(self, table_name: str) -> bool:
        """Whether the index database has `table_name`. The parent builds a new engine and connection for each
        answer (5-9 ms), and asks once per check evaluation stored alone (`supports_asset_checks`) and per batch of
        tagged asset events. A table once there stays (only `dagster instance migrate` changes the schema), so a
        yes is kept; a no is asked again."""
        present = self.__dict__.setdefault("_tables_present", set())
        if table_name not in present and super().has_table(table_name):
            present.add(table_name)
        return table_name in present

    @contextmanager
    def _connect(self, shard: str) -> Iterator[db.Connection]:
        """SqliteEventLogStorage._connect with the shard's engine kept (the parent disposes of it each time). Within
        `_one_transaction_per_database`, the connection that batch opened for the shard."""
        shared = getattr(self._thread, "shared", None)
        if shared is not None:  # this thread holds the lock for its batch
            if shard not in shared:
                shared[shard] = self._thread.opened.enter_context(self._transaction(shard))
            yield shared[shard]
            return
        with self._db_lock, self._transaction(shard) as connection:
            yield connection

    @contextmanager
    def _transaction(self, shard: str) -> Iterator[db.Connection]:
        engines = self.__dict__.setdefault("_engines", OrderedDict())
        engine = engines.pop(shard, None) or db.create_engine(
            self.conn_string_for_shard(shard), poolclass=NullPool, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
        engines[shard] = engine  # the most recently used last
        while len(engines) > KEPT_ENGINES:
            engines.popitem(last=False)
        if shard not in self._initialized_dbs:
            self._initdb(engine)
            self._initialized_dbs.add(shard)
        with engine.connect() as connection, connection.begin():
            yield connection

    @property
    def _thread(self) -> threading.local:
        return self.__dict__.setdefault("_thread_state", threading.local())

    @contextmanager
    def _one_transaction_per_database(self) -> Iterator[None]:
        """Every connection Dagster's code asks for inside is the one connection of its database for the whole
        block, committed at its end (rolled back on an error): what costs a single event most is opening,
        committing and closing its three or four connections."""
        with self._db_lock, ExitStack() as opened:
            self._thread.shared, self._thread.opened = {}, opened
            try:
                yield
            finally:
                self._thread.shared = None

    def _store_asset_check_evaluation_planned(self, event: EventLogEntry, event_id: int | None) -> None:
        """Dagster's: one planned row per partition of the run's range, with the event serialised once for all of
        them (Dagster serialises it again for each row: 334 times per check in a run over the history)."""
        planned = event.dagster_event.event_specific_data
        partitions = planned.partitions_subset.get_partition_keys() if planned.partitions_subset else [None]
        common = dict(asset_key=planned.asset_key.to_string(), check_name=planned.check_name, run_id=event.run_id,
                      execution_status=AssetCheckExecutionRecordStatus.PLANNED.value,
                      evaluation_event=serialize_value(event),
                      evaluation_event_timestamp=self._event_insert_timestamp(event),
                      evaluation_event_storage_id=event_id)
        with self.index_connection() as connection:
            connection.execute(AssetCheckExecutionsTable.insert(),
                               [{**common, "partition": partition} for partition in partitions])

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        types = {event.dagster_event_type for event in events}
        if len({e.run_id for e in events}) > 1 or not events[0].run_id or not (
                types <= BATCHED_TYPES or types == {CHECK_EVALUATION}):
            with self._one_transaction_per_database():  # a run's planned events, say: each as Dagster stores it
                super().store_event_batch(events)
            return
        # Each event serialised once for both databases and the check's row (Dagster's statements serialise it
        # again for each), and one compiled statement with the rows as parameters.
        rows = [self._event_to_row(event) for event in events]
        insert = SqlEventLogStorageTable.insert()
        with self.run_connection(events[0].run_id) as connection:
            connection.execute(insert, rows)
        with self.index_transaction() as connection:
            # One statement for all rows, their ids returned in the order of the rows (SQLite 3.35's RETURNING).
            ids = connection.execute(insert.returning(SqlEventLogStorageTable.c.id, sort_by_parameter_order=True),
                                     rows).scalars().all()
            if types == {CHECK_EVALUATION}:
                _record_check_executions(connection, events, rows, ids)
                return
            self._store_asset_event_tags(connection, events, ids)
            # The asset's row records its latest event: the last one of each asset in the batch.
            latest = {event.dagster_event.asset_key: (event, event_id)
                      for event, event_id in zip(events, ids, strict=True)}
            for event, event_id in latest.values():
                self._store_asset_event(connection, event, event_id)


_CHECK_ROW = AssetCheckExecutionsTable.c
# The planned row of a check, run and partition; its new values are the statement's parameters (column names).
_UPDATE_CHECK_ROW = AssetCheckExecutionsTable.update().where(db.and_(
    _CHECK_ROW.asset_key == db.bindparam("row_asset_key"), _CHECK_ROW.check_name == db.bindparam("row_check_name"),
    _CHECK_ROW.run_id == db.bindparam("row_run_id"), _CHECK_ROW.partition == db.bindparam("row_partition")))


def _record_check_executions(connection, events: Sequence[EventLogEntry], rows: list[dict], ids: list[int]) -> None:
    """The check execution row of each evaluation (planned by the run for its check and partition) gets its
    result; without a planned row, a new row. What SqlEventLogStorage._update_asset_check_evaluation does, in the
    batch's transaction: the partitioned evaluations in one statement, which updates one planned row each when the
    run planned them all (the usual case), else again one by one."""
    changes = [_check_execution(event, row["event"], event_id) for event, row, event_id in zip(events, rows, ids,
                                                                                                strict=True)]
    daily = [change for change in changes if change[1]["partition"] is not None]
    if daily and connection.execute(_UPDATE_CHECK_ROW, [{**values, **where} for where, values in daily]).rowcount \
            == len(daily):
        changes = [change for change in changes if change[1]["partition"] is None]
    for where, values in changes:
        if values["partition"] is None:
            updated = connection.execute(AssetCheckExecutionsTable.update().where(db.and_(
                _CHECK_ROW.asset_key == where["row_asset_key"], _CHECK_ROW.check_name == where["row_check_name"],
                _CHECK_ROW.run_id == where["row_run_id"], _CHECK_ROW.partition.is_(None))).values(**values)).rowcount
        else:
            updated = connection.execute(_UPDATE_CHECK_ROW, {**values, **where}).rowcount
        if updated == 0:
            connection.execute(AssetCheckExecutionsTable.insert().values(
                asset_key=where["row_asset_key"], check_name=where["row_check_name"], run_id=where["row_run_id"],
                **values))


def _check_execution(event: EventLogEntry, serialized: str, event_id: int) -> tuple[dict, dict]:
    """The check execution row an evaluation updates (its key, check, run and partition, as parameters of
    _UPDATE_CHECK_ROW) and its new values."""
    evaluation = event.dagster_event.event_specific_data
    status = (AssetCheckExecutionRecordStatus.SUCCEEDED if evaluation.passed
              else AssetCheckExecutionRecordStatus.FAILED).value
    values = dict(
        execution_status=status, evaluation_event=serialized,
        evaluation_event_timestamp=dt.datetime.fromtimestamp(event.timestamp, dt.UTC).replace(tzinfo=None),
        evaluation_event_storage_id=event_id, partition=evaluation.partition,
        materialization_event_storage_id=(evaluation.target_materialization_data.storage_id
                                          if evaluation.target_materialization_data else None))
    where = {"row_asset_key": evaluation.asset_key.to_string(), "row_check_name": evaluation.check_name,
             "row_run_id": event.run_id, "row_partition": evaluation.partition}
    return where, values
