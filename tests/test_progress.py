"""`make demo`'s progress lines, read from the event log of a real run (the shared pipeline run)."""

import re

from platform_assets.progress import HEARTBEAT_SECONDS, RunProgress, steps_to_execute


def test_progress_numbers_each_step_and_reports_its_duration_outputs_and_log_lines(pipeline_run):
    instance, result = pipeline_run["instance"], pipeline_run["first"]
    entries = [record.event_log_entry for record in instance.get_records_for_run(result.run_id).records]
    total = steps_to_execute(instance, instance.get_run_by_id(result.run_id))
    steps = {entry.step_key for entry in entries if entry.is_dagster_event and entry.dagster_event.is_step_start}
    assert total == len(steps) >= 5

    progress = RunProgress(entries[0].timestamp, run_id=result.run_id, total_steps=total)
    text = "\n".join(progress.lines(entries, entries[-1].timestamp))

    assert re.search(rf"^  00:\d\d  started  raw_snapshots \(step 1 of {total}\)$", text, re.MULTILINE), text
    assert re.search(rf"^  00:\d\d  started  raw_ingestion \(step 2 of {total}\)$", text, re.MULTILINE), text
    for step in steps:
        assert re.search(rf"done     {step} in \d\d:\d\d: \d+ materialized, \d+ check results "
                         rf"\(\d+ of {total} steps finished\)", text), step
    assert f"({total} of {total} steps finished)" in text
    flights = pipeline_run["first_counts"]["raw"]["flights"]
    assert f"raw_ingestion: raw.flights: {flights:,} rows for 2013-01-01..2013-01-10, published" in text
    assert "FAILED" not in text


def test_progress_says_what_it_waits_for_after_a_quiet_while():
    planning = RunProgress(started=1000.0)
    assert planning.lines([], 1001.0) == []
    assert planning.lines([], 1001.0 + HEARTBEAT_SECONDS) == ["  00:31  Dagster is planning the run"]
    starting = RunProgress(started=1000.0, run_id="run", planned=1562)
    starting.lines([], 1000.0)
    assert starting.lines([], 1000.0 + HEARTBEAT_SECONDS) == [
        "  00:30  the run is starting: 1,562 planned materializations recorded"]
    running = RunProgress(started=1000.0, run_id="run", running={"dbt_cleaned_and_features": 1010.0})
    running.lines([], 1020.0)
    assert running.lines([], 1020.0 + HEARTBEAT_SECONDS) == ["  00:50  still running: dbt_cleaned_and_features (00:40)"]
