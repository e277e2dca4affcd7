"""Check results per day: every check of a daily-partitioned asset is a daily-partitioned check, so Dagster's API
answers "did the checks pass for this day?" (`assetCheckExecutions(partition: "2013-01-03")`).

Dagster attaches an `AssetCheckResult` to the run's day when the run has one day (`dagster/partition`); in a run
of several days (a range run: the headless runner, a backfill with a single-run policy) it plans the check for
every day of the range but attaches a result to no day, so each day's planned check would stay unanswered. Here
a check result of a range run becomes one evaluation per day: either the check's own result for that day (a
check that judges each day on its own passes `DailyResults`), or the one result of the whole run, repeated on
each of its days and saying so in `judged_over` (a check that judges the run's days together, or the whole
table, cannot claim a day's result of its own: a failure on one day fails all days of that run).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import dagster as dg
from dagster._core.events import DagsterEvent, DagsterEventBatchMetadata, DagsterEventType, generate_event_batch_id

from platform_assets.partitions import daily_partitions

JUDGED_OVER = "judged_over"


def daily_check_spec(spec: dg.AssetCheckSpec) -> dg.AssetCheckSpec:
    """`spec` partitioned by day, like the asset it checks."""
    return spec._replace(partitions_def=daily_partitions)


@dataclass(frozen=True)
class DailyResults:
    """One check's results for the days of a run, each judged on its own day (day -> result)."""

    check_name: str
    by_day: Mapping[str, dg.AssetCheckResult]
    asset_key: dg.AssetKey | None = None


def run_days(context) -> list[str]:
    """The days (partition keys) the run materializes; [] for a run without partitions."""
    context = getattr(context, "op_execution_context", context)
    if not (context.has_partition_key or context.has_partition_key_range):
        return []
    return list(context.partition_keys)


RUN_DAYS = "days"  # the check judged the run's days together (one batch, one dbt build)
WHOLE_TABLE = "table"  # the check judged the whole table as the run left it
JUDGES = "platform/judges"  # a check spec's metadata: RUN_DAYS or WHOLE_TABLE, where a step holds both kinds


def judged_over(days: list[str], scope: str) -> str:
    """What a result of the whole run was judged on, in words (metadata `judged_over`)."""
    if scope == WHOLE_TABLE:
        return "the whole table after the run" + (f" of {days[0]}..{days[-1]}" if len(days) > 1 else "")
    if not days:
        return "the run (no partitions)"
    return f"{days[0]}..{days[-1]} together (one result for the run's {len(days)} days)" if len(days) > 1 else days[0]


def per_day(context, events: Iterable, scope: str = RUN_DAYS) -> Iterator:
    """`events` as the step yields them, with each result of a daily-partitioned check in a range run replaced by
    one evaluation per day of the run: a `DailyResults` carries its own result per day; a plain result is the
    whole run's (`scope`: the run's days together or the whole table), repeated on each day with `judged_over`
    saying so. In a run of one day, results pass unchanged (Dagster attaches them to the day)."""
    op_context = getattr(context, "op_execution_context", context)
    days = run_days(op_context)
    assets_def = op_context.assets_def
    selected = set(op_context.selected_asset_check_keys)
    by_asset: dict[dg.AssetKey, set[str]] = {}
    for key in selected:
        by_asset.setdefault(key.asset_key, set()).add(key.name)
    failed_blocking: list[dg.AssetCheckEvaluation] = []
    for event in events:
        named = isinstance(event, (DailyResults, dg.AssetCheckResult)) and event.asset_key is not None \
            and event.check_name is not None
        if named and dg.AssetCheckKey(event.asset_key, event.check_name) not in selected:
            op_context.log.debug(f"{event.asset_key.to_user_string()}:{event.check_name} not selected in this run: "
                                 "not reported")
            continue
        if isinstance(event, DailyResults):
            template = dg.AssetCheckResult(passed=True, asset_key=event.asset_key, check_name=event.check_name)
            key = template.resolve_target_check_key(by_asset)
            results = event.by_day
        elif isinstance(event, dg.AssetCheckResult):
            key = event.resolve_target_check_key(by_asset)
            judges = assets_def.get_spec_for_check_key(key).metadata.get(JUDGES, scope)
            event = event.with_metadata({JUDGED_OVER: judged_over(days, getattr(judges, "value", judges)),
                                         **event.metadata})
            results = {day: event for day in days} if days else {"": event}
        else:
            yield event
            continue
        spec = assets_def.get_spec_for_check_key(key)
        if spec.partitions_def is None or len(days) <= 1:  # Dagster attaches it to the run's day, if it has one
            for result in ([results[days[0]]] if days and days[0] in results else list(results.values())[:1]):
                yield result._replace(asset_key=key.asset_key, check_name=key.name)
            continue
        # The check's output once (what Dagster yields for an AssetCheckResult), then each day's evaluation.
        yield dg.Output(None, output_name=assets_def.get_output_name_for_asset_check_key(key))
        evaluations = [dg.AssetCheckEvaluation(
            asset_key=key.asset_key, check_name=key.name, passed=result.passed, metadata=result.metadata,
            severity=result.severity, description=result.description, blocking=spec.blocking, partition=day)
            for day, result in ((day, results.get(day)) for day in days) if result is not None]
        failed_blocking += [e for e in evaluations if e.blocking and not e.passed
                            and e.severity == dg.AssetCheckSeverity.ERROR]
        yield from _logged(op_context, evaluations)
    if failed_blocking:  # what Dagster raises for an AssetCheckResult of a failed blocking check
        checks = sorted({f"{e.asset_key.to_user_string()}: {e.check_name}" for e in failed_blocking})
        raise dg.Failure(description=f"{len(checks)} blocking asset check(s) failed with ERROR severity on "
                         f"{len({e.partition for e in failed_blocking})} day(s):\n" + "\n".join(checks))


def _logged(op_context, evaluations: list[dg.AssetCheckEvaluation]) -> Iterator:
    """One check's evaluations of the run's days, logged as one batch where the instance's event log stores
    them so (platform_assets/event_log.py: one transaction instead of three commits each); elsewhere (PostgreSQL)
    yielded one by one, as Dagster logs them."""
    if not getattr(op_context.instance.event_log_storage, "stores_check_evaluation_batches", False):
        yield from evaluations
        return
    step_context = op_context._step_execution_context  # noqa: SLF001  (Dagster's own path to log a step event)
    batch = generate_event_batch_id()
    for index, evaluation in enumerate(evaluations):
        yield DagsterEvent.from_step(
            DagsterEventType.ASSET_CHECK_EVALUATION, step_context, evaluation,
            message=f"Asset check '{evaluation.check_name}' on '{evaluation.asset_key.to_user_string()}' "
            f"{'passed' if evaluation.passed else 'did not pass'} for {evaluation.partition}.",
            batch_metadata=DagsterEventBatchMetadata(batch, index == len(evaluations) - 1))
