"""Cost accounting of every materialization, applied to every asset once (definitions.py): the step's compute
function runs inside a meter (platform_assets/cost/meter.py) and each materialization it reports gets its cost as
numeric metadata (`cost/...`, plotted by the Dagster UI) and a row in the warehouse's ops.asset_costs table.

Attribution in a step that materializes several assets: each asset's interval runs from the previous
materialization (or the step's start) to its own, so the sources of the raw step, loaded one after another, each
carry their own load. A materialization that states its own time (`cost/own_seconds`: dbt's run_results.json)
was built inside one tool invocation with others: the interval they share is split among them in proportion to
their own times. What remains after the last materialization goes to the last one: the assets of a step add up
to the step.

Materializations are held until the step ends (their order and everything else the step yields unchanged),
so that the table sizes, the history and the row in ops.asset_costs cost one warehouse connection per step.
PLATFORM_COST_ACCOUNTING=off switches it off (to measure what it costs, docs/cost.md)."""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import dagster as dg

from governance.catalog import CatalogError, load_catalog
from governance.cost import COST_COLUMNS, COST_TABLE, TREND_WINDOW, cost_verdict
from platform_assets.cost.meter import Reading, StepMeter
from platform_assets.settings import load_settings

OWN_SECONDS = "cost/own_seconds"
# The metadata the platform's assets already report, read as rows out (the first present) and rows in.
ROWS_OUT_KEYS = ("cost/rows_out", "rows_loaded_this_run", "rows_scored_this_run", "rows_in_run_range",
                 "dagster/row_count")
ROWS_IN_KEYS = ("cost/rows_in", "train_rows")
MARKER = "_platform_cost_accounting"


@dataclass
class Held:
    """A materialization held until the step ends, with its share of the step's cost."""

    event: object
    key: dg.AssetKey
    reading: Reading
    own_seconds: float | None


def materialized_key(context: dg.AssetExecutionContext, event) -> dg.AssetKey | None:
    if isinstance(event, dg.Output):  # an asset check's output (platform_assets/checks/daily.py) has no asset
        return context.assets_def.keys_by_output_name.get(event.output_name)
    if isinstance(event, dg.MaterializeResult):
        return event.asset_key or context.asset_key
    if isinstance(event, dg.AssetMaterialization):
        return event.asset_key
    return None


def _metadata_value(metadata, key: str):
    value = (metadata or {}).get(key)
    value = getattr(value, "value", value)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _first(metadata, keys) -> int | None:
    return next((int(v) for v in (_metadata_value(metadata, k) for k in keys) if v is not None), None)


def _combined(readings: list[Reading]) -> Reading:
    peaks = [r.peak_memory_bytes for r in readings if r.peak_memory_bytes is not None]
    spills = [r.spill_bytes for r in readings if r.spill_bytes is not None]
    return Reading(sum(r.wall_seconds for r in readings), sum(r.cpu_seconds for r in readings),
                   max(peaks) if peaks else None, max(spills) if spills else None)


def attribute(held: list[Held], remainder: Reading) -> list[Held]:
    """Each held materialization with its final share: runs of materializations that state their own time share
    their intervals in proportion to it (peak and spill: the run's), the remainder goes to the last one."""
    if not held:
        return held
    held = list(held)
    held[-1] = replace(held[-1], reading=_combined([held[-1].reading, remainder]))
    start = 0
    while start < len(held):
        end = start + 1
        if held[start].own_seconds is not None:
            while end < len(held) and held[end].own_seconds is not None:
                end += 1
            group = held[start:end]
            total = _combined([h.reading for h in group])
            own_total = sum(h.own_seconds for h in group)
            for i, item in enumerate(group, start):
                share = item.own_seconds / own_total if own_total > 0 else 1 / len(group)
                held[i] = replace(item, reading=Reading(total.wall_seconds * share, total.cpu_seconds * share,
                                                         total.peak_memory_bytes, total.spill_bytes))
        start = end
    return held


def _relation(context: dg.AssetExecutionContext, key: dg.AssetKey) -> str | None:
    """The table an asset writes: its `dagster/table_name`, else schema.table from a two-part key."""
    spec = context.assets_def.specs_by_key.get(key)
    table = spec.metadata.get("dagster/table_name") if spec else None
    table = getattr(table, "value", table) or getattr(table, "text", None)
    if isinstance(table, str) and table.count(".") == 1:
        return table
    return ".".join(key.path) if len(key.path) == 2 else None


def _span(context: dg.AssetExecutionContext) -> tuple[dt.date | None, dt.date | None, int | None]:
    if context.assets_def.partitions_def is None or not context.has_partition_key_range:
        return None, None, None
    window = context.partition_time_window
    return window.start.date(), (window.end - dt.timedelta(days=1)).date(), len(context.partition_keys)


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _history(store, datasets: list[str]) -> list[dict]:
    """Of each dataset: its newest cost rows per number of days (TREND_WINDOW of them) and its newest row."""
    if not datasets:
        return []
    frame = store.read(
        "SELECT dataset, days, wall_seconds, table_bytes FROM (SELECT dataset, days, wall_seconds, table_bytes, "
        "recorded_at, row_number() OVER (PARTITION BY dataset, days ORDER BY recorded_at DESC) AS n_span, "
        "row_number() OVER (PARTITION BY dataset ORDER BY recorded_at DESC) AS n_all "
        f"FROM {COST_TABLE} WHERE dataset IN ({', '.join(map(_sql_text, datasets))})) AS recent "
        f"WHERE n_span <= {TREND_WINDOW} OR n_all = 1 ORDER BY recorded_at DESC")
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def _number(value):
    return None if value is None else dg.MetadataValue.float(float(value)) if isinstance(value, float) \
        else dg.MetadataValue.int(int(value))


def _record(context: dg.AssetExecutionContext, held: list[Held], warehouse) -> list:
    """The held materializations with their cost metadata; their rows appended to ops.asset_costs."""
    first_day, last_day, days = _span(context)
    relations = {h.key: _relation(context, h.key) for h in held}
    datasets = [h.key.to_user_string() for h in held]
    extra: dict[str, dict] = {name: {} for name in datasets}
    try:
        catalog = load_catalog()
    except CatalogError:
        catalog = None
    try:
        with warehouse.open() as store:
            store.append(COST_TABLE, COST_COLUMNS, [])
            sizes = store.table_bytes(sorted({r for r in relations.values() if r}))
            history = _history(store, sorted(set(datasets)))
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            rows = []
            for item, name in zip(held, datasets, strict=True):
                reading, metadata = item.reading, item.event.metadata or {}
                size = sizes.get(relations[item.key])
                before = next((r["table_bytes"] for r in history if r["dataset"] == name), None)
                previous = [r["wall_seconds"] for r in history if r["dataset"] == name and r["days"] == days]
                budget = catalog.datasets[name].budget if catalog and name in catalog.datasets else None
                alert = cost_verdict(reading.wall_seconds, reading.cpu_seconds, reading.peak_memory_bytes, days,
                                     budget, previous)
                written = None if size is None else size - (before or 0)
                extra[name] = {"cost/table_bytes": size, "cost/bytes_written": written, "cost/alert": alert}
                rows.append([context.run.run_id, context.op_def.name, name, first_day, last_day, days, now,
                             reading.wall_seconds, reading.cpu_seconds, item.own_seconds, reading.peak_memory_bytes,
                             _first(metadata, ROWS_IN_KEYS), _first(metadata, ROWS_OUT_KEYS), size, written,
                             reading.spill_bytes, alert])
            store.append(COST_TABLE, COST_COLUMNS, rows)
    except Exception as error:  # noqa: BLE001  (the data is materialized: a cost row not written is a warning)
        context.log.warning(f"cost of {', '.join(datasets)} not recorded in {COST_TABLE}: "
                            f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
    events = []
    for item, name in zip(held, datasets, strict=True):
        reading, metadata = item.reading, item.event.metadata or {}
        cost = {"cost/wall_seconds": round(reading.wall_seconds, 3), "cost/cpu_seconds": round(reading.cpu_seconds, 3),
                "cost/peak_memory_mb": None if reading.peak_memory_bytes is None
                else round(reading.peak_memory_bytes / 2**20, 1),
                "cost/rows_in": _first(metadata, ROWS_IN_KEYS), "cost/rows_out": _first(metadata, ROWS_OUT_KEYS),
                "cost/spill_bytes": reading.spill_bytes, "cost/days": days, **extra[name]}
        alert = cost.pop("cost/alert", None)
        values = {k: _number(v) for k, v in cost.items() if v is not None}
        if alert:
            values["cost/alert"] = dg.MetadataValue.text(alert)
            context.log.warning(f"{name}: cost alert: {alert}")
        events.append(_with_metadata(item.event, {**metadata, **values}))
    return events


def _with_metadata(event, metadata: dict):
    if isinstance(event, dg.MaterializeResult):
        return dg.MaterializeResult(asset_key=event.asset_key, metadata=metadata, check_results=event.check_results,
                                    data_version=event.data_version, tags=event.tags, value=event.value)
    return event.with_metadata(metadata)


def _accounted(context: dg.AssetExecutionContext, events: Iterator, warehouse, spill_folder) -> Iterator:
    meter = StepMeter(spill_folder).start()
    held: list[Held] = []
    queue: list = []  # everything from the first materialization on, in order
    failure = None
    try:
        for event in events:
            key = materialized_key(context, event)
            if key is None:
                if queue:
                    queue.append(event)
                else:
                    yield event
                continue
            own = _metadata_value(event.metadata, OWN_SECONDS)
            held.append(Held(event, key, meter.mark(), own))
            queue.append(held[-1])
    except GeneratorExit:
        raise
    except BaseException as error:  # the step failed: what it materialized before is still reported
        failure = error
    finally:
        remainder = meter.mark()
        meter.stop()
    if held:
        started = time.perf_counter()
        accounted = iter(_record(context, attribute(held, remainder), warehouse))
        context.log.debug(f"cost of {len(held)} materialization(s) recorded in {time.perf_counter() - started:.3f} s")
        yield from (next(accounted) if isinstance(item, Held) else item for item in queue)
    if failure is not None:
        raise failure


def with_cost_accounting(assets: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """`assets` whose step is metered and whose materializations carry their cost (in place: the op is shared by
    every Definitions built from it; applying it twice changes nothing)."""
    op = assets.node_def
    compute = op.compute_fn
    fn = compute.decorated_fn
    if getattr(fn, MARKER, False):
        return assets
    if not inspect.isgeneratorfunction(fn):
        raise dg.DagsterInvalidDefinitionError(
            f"{op.name}: cost accounting needs an asset function that yields its results (yield, not return)")

    @functools.wraps(fn)
    def accounted(context, *args, **kwargs):
        settings = load_settings()
        if not settings.cost_accounting:
            yield from fn(context, *args, **kwargs)
            return
        from platform_assets.resources import warehouse_resource  # noqa: PLC0415  (resources imports dagster-dbt)

        warehouse = warehouse_resource(settings)
        yield from _accounted(context, fn(context, *args, **kwargs), warehouse, warehouse.spill_folder())

    setattr(accounted, MARKER, True)
    op._compute_fn = compute._replace(decorated_fn=accounted)  # noqa: SLF001  (no public way to wrap an op's function)
    return assets
