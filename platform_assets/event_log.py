"""Dagster's sqlite event log, storing a batch of asset events in one transaction per database.

A run over many days records one materialization per asset and day (the demo's one run: about 9,000), and one
check evaluation per check and day (platform_assets/checks/daily.py: about 26,000). The sqlite event log stores
each event with two or three fresh connections and commits, 10-100 ms each: many minutes per run, at every scale.
Dagster hands over the events of one output as a batch when DAGSTER_EVENT_BATCH_SIZE is set (platform_assets/__init__.py
sets it; the daily check evaluations are handed over per check the same way), and this storage writes such a batch in
one statement to the run's database and in one transaction to the cross-run index, as dagster-postgres does for
materializations. Configured in dagster.yaml by platform_assets.instance.

Every other event (a run's 300-odd step, log and check events on a new day) is still stored one at a time, and
Dagster builds a new SQLAlchemy engine for every connection: about half of each event's cost. This storage keeps the
engines of the last few databases it used (a run's own and the index); their connections are still opened and
closed for each event (NullPool), so no file is held open between events and each commit reaches the database file
as before.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as db
from dagster._core.events import DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable, SqlEventLogStorageTable
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
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

    @contextmanager
    def _connect(self, shard: str) -> Iterator[db.Connection]:
        """SqliteEventLogStorage._connect with the shard's engine kept (the parent disposes of it each time)."""
        with self._db_lock:
            engines = self.__dict__.setdefault("_engines", OrderedDict())
            engine = engines.pop(shard, None) or db.create_engine(
                self.conn_string_for_shard(shard), poolclass=NullPool,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
            engines[shard] = engine  # the most recently used last
            while len(engines) > KEPT_ENGINES:
                engines.popitem(last=False)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as connection, connection.begin():
                yield connection

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        types = {event.dagster_event_type for event in events}
        if len({e.run_id for e in events}) > 1 or not events[0].run_id or not (
                types <= BATCHED_TYPES or types == {CHECK_EVALUATION}):
            super().store_event_batch(events)  # one at a time
            return
        # Each event serialised once for both databases and the check's row (Dagster's statements serialise it
        # again for each), and one compiled statement with the rows as parameters.
        rows = [self._event_to_row(event) for event in events]
        insert = SqlEventLogStorageTable.insert()
        with self.run_connection(events[0].run_id) as connection:
            connection.execute(insert, rows)
        with self.index_transaction() as connection:
            ids = [connection.execute(insert, row).inserted_primary_key[0] for row in rows]
            if types == {CHECK_EVALUATION}:
                for event, row, event_id in zip(events, rows, ids, strict=True):
                    _record_check_execution(connection, event, row["event"], event_id)
                return
            self._store_asset_event_tags(connection, events, ids)
            # The asset's row records its latest event: the last one of each asset in the batch.
            latest = {event.dagster_event.asset_key: (event, event_id)
                      for event, event_id in zip(events, ids, strict=True)}
            for event, event_id in latest.values():
                self._store_asset_event(connection, event, event_id)


def _record_check_execution(connection, event: EventLogEntry, serialized: str, event_id: int) -> None:
    """The check execution row of the evaluation (planned by the run for its check and partition) gets its
    result; without a planned row, a new row. What SqlEventLogStorage._update_asset_check_evaluation does, in the
    batch's transaction."""
    evaluation = event.dagster_event.event_specific_data
    table = AssetCheckExecutionsTable.c
    status = (AssetCheckExecutionRecordStatus.SUCCEEDED if evaluation.passed
              else AssetCheckExecutionRecordStatus.FAILED).value
    values = dict(
        execution_status=status, evaluation_event=serialized,
        evaluation_event_timestamp=dt.datetime.fromtimestamp(event.timestamp, dt.UTC).replace(tzinfo=None),
        evaluation_event_storage_id=event_id, partition=evaluation.partition,
        materialization_event_storage_id=(evaluation.target_materialization_data.storage_id
                                          if evaluation.target_materialization_data else None))
    partition = table.partition.is_(None) if evaluation.partition is None else table.partition == evaluation.partition
    updated = connection.execute(AssetCheckExecutionsTable.update().where(db.and_(
        table.asset_key == evaluation.asset_key.to_string(), table.check_name == evaluation.check_name,
        table.run_id == event.run_id, partition)).values(**values)).rowcount
    if updated == 0:
        connection.execute(AssetCheckExecutionsTable.insert().values(
            asset_key=evaluation.asset_key.to_string(), check_name=evaluation.check_name, run_id=event.run_id,
            **values))
