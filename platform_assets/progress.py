"""A run's progress on the terminal, read from the instance's event log while it runs: which step started or
finished (step n of all), how long it took and what it materialized and checked, the steps' own log lines
(rows loaded per source), and every 30 s of silence what is still running."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import dagster as dg

POLL_SECONDS = 2
HEARTBEAT_SECONDS = 30
MESSAGE_CHARACTERS = 160


def clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes:02d}:{seconds:02d}"


@dataclass
class RunProgress:
    """Turns event log entries into progress lines; `started` is the wall-clock time elapsed times count from."""

    started: float
    run_id: str | None = None
    total_steps: int | None = None
    running: dict[str, float] = field(default_factory=dict)  # step -> when it started
    steps_started: int = 0
    steps_finished: int = 0
    planned: int = 0
    outputs: dict[str, list[int]] = field(default_factory=dict)  # step -> [materializations, check results]
    quiet_since: float | None = None

    def lines(self, entries: list[dg.EventLogEntry], now: float) -> list[str]:
        out = [line for entry in entries if (line := self._line(entry))]
        self.quiet_since = now if out or self.quiet_since is None else self.quiet_since
        if now - self.quiet_since >= HEARTBEAT_SECONDS:
            self.quiet_since = now
            out.append(f"  {clock(now - self.started)}  {self._waiting_for(now)}")
        return out

    def _waiting_for(self, now: float) -> str:
        if self.running:
            return "still running: " + ", ".join(f"{step} ({clock(now - since)})"
                                                 for step, since in self.running.items())
        if self.run_id is None:
            return "Dagster is planning the run"
        if not self.steps_started:  # Dagster first records every asset partition it plans to materialize
            return f"the run is starting: {self.planned:,} planned materializations recorded"
        return "starting the next step"

    def _line(self, entry: dg.EventLogEntry) -> str | None:
        at = f"  {clock(entry.timestamp - self.started)}"
        step = entry.step_key
        if not entry.is_dagster_event:
            if step and entry.level >= logging.INFO:
                return f"{at}  {'':9}{step}: {entry.user_message.splitlines()[0][:MESSAGE_CHARACTERS]}"
            return None
        event = entry.get_dagster_event()
        kind = event.event_type
        if kind == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED:
            self.planned += 1
        if kind == dg.DagsterEventType.STEP_START:
            self.running[step] = entry.timestamp
            self.steps_started += 1
            return f"{at}  started  {step} (step {self._of(self.steps_started)})"
        if kind in (dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            self.outputs.setdefault(step, [0, 0])[kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION] += 1
        if kind not in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            return None
        self.steps_finished += 1
        took = clock(entry.timestamp - self.running.pop(step, entry.timestamp))
        materialized, checked = self.outputs.pop(step, [0, 0])
        finished = f"({self._of(self.steps_finished)} steps finished)"
        if kind == dg.DagsterEventType.STEP_FAILURE:
            reason = event.step_failure_data.error.message.strip().splitlines() if event.step_failure_data.error else []
            return f"{at}  FAILED   {step} after {took} {finished}: " \
                   f"{(reason or ['see the run in the UI'])[0][:MESSAGE_CHARACTERS]}"
        return f"{at}  done     {step} in {took}: {materialized} materialized, {checked} check results {finished}"

    def _of(self, number: int) -> str:
        return f"{number} of {self.total_steps}" if self.total_steps else str(number)


def _newest_run_since(instance: dg.DagsterInstance, started: float) -> dg.DagsterRun | None:
    records = instance.get_run_records(limit=1)
    return records[0].dagster_run if records and records[0].create_timestamp.timestamp() >= started else None


def steps_to_execute(instance: dg.DagsterInstance, run: dg.DagsterRun) -> int | None:
    plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id) if run.execution_plan_snapshot_id \
        else None
    return len(plan.step_keys_to_execute or plan.steps) if plan else None


def follow_run(instance: dg.DagsterInstance, started: float, finished: threading.Event) -> None:
    """Print the progress of the first run created after `started` (wall clock) until `finished` is set."""
    progress, run, cursor = RunProgress(started), None, None
    while True:
        done = finished.wait(POLL_SECONDS)
        if run is None and (run := _newest_run_since(instance, started)) is not None:
            progress.run_id, progress.total_steps = run.run_id, steps_to_execute(instance, run)
            print(f"  {clock(time.time() - started)}  run {run.run_id} planned: {progress.total_steps} steps",
                  flush=True)
        entries = []
        if run is not None:
            connection = instance.get_records_for_run(run.run_id, cursor=cursor)
            cursor, entries = connection.cursor, [record.event_log_entry for record in connection.records]
        for line in progress.lines(entries, time.time()):
            print(line, flush=True)
        if done:
            return
