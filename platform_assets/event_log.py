"""Dagster's sqlite event log, storing a batch of asset events in one transaction per database.

A run over many days records one materialization per asset and day (the demo's one run: about 9,000). The
sqlite event log stores each event with two fresh connections and two commits, 10-15 ms each: over a minute
per run, at every scale. Dagster hands over the events of one output as a batch when DAGSTER_EVENT_BATCH_SIZE
is set (platform_assets/__init__.py sets it), and this storage writes such a batch in one statement to the run's database and in one transaction to
the cross-run index, as dagster-postgres does. Configured in dagster.yaml by platform_assets.instance.
"""

from __future__ import annotations

from collections.abc import Sequence

from dagster._core.events import DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log import SqliteEventLogStorage

BATCHED_TYPES = {DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_OBSERVATION}


class BatchedSqliteEventLogStorage(SqliteEventLogStorage):
    @classmethod
    def from_config_value(cls, inst_data, config_value) -> BatchedSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)  # the parent builds its own class, not `cls`

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        if {event.dagster_event_type for event in events} - BATCHED_TYPES or len({e.run_id for e in events}) > 1:
            super().store_event_batch(events)  # one at a time
            return
        with self.run_connection(events[0].run_id) as connection:
            connection.execute(self.prepare_insert_event_batch(events))
        with self.index_transaction() as connection:
            ids = [connection.execute(self.prepare_insert_event(event)).inserted_primary_key[0] for event in events]
            self._store_asset_event_tags(connection, events, ids)
            # The asset's row records its latest event: the last one of each asset in the batch.
            latest = {event.dagster_event.asset_key: (event, event_id)
                      for event, event_id in zip(events, ids, strict=True)}
            for event, event_id in latest.values():
                self._store_asset_event(connection, event, event_id)
