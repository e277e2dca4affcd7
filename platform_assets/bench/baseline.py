"""The floor: the platform's ingestion, cleaning, features, training and scoring as one bare Python process of
plain DuckDB SQL and scikit-learn. No orchestration, no checks or audits, no lineage, no model registry.

- Ingestion: one read per source of all its landing files of the period, with the platform's own reader
  (platform_assets/sources/definitions.py), into `raw.<source>` with the same columns: the declared columns
  plus the data date, source file, row number, batch id and ingestion time (the file hash is left empty: it
  is lineage). No manifest or hash verification, no contract audit.
- Cleaning and features: the dbt models' own SQL, compiled by `dbt compile` for the benchmark period (so the
  baseline cannot drift from the platform's semantics: deduplication, quarantine, features), each run once
  as `CREATE TABLE ... AS` in dependency order. No tests, no audit, no publishing.
- Model: the platform's own feature list, time split, pipeline and metrics (platform_assets/ml/model.py),
  trained once and used to score the period; predictions written to the same table name.

With --new-day (the baseline of the platform's incremental day): on the warehouse the period's run left, the one
day's deliveries appended to `raw.<source>`, each incremental model's day deleted and inserted again from its SQL
compiled for that day (the other models rebuilt whole, as dbt does), and the day scored with the model the
period's run saved beside the warehouse (no retraining: the platform's new day does not retrain either).

`python -m platform_assets.bench.baseline --landing DIR --warehouse FILE --manifest FILE --start D --end D --out FILE
[--new-day]`
"""

import time

STARTED = time.time()  # before the heavy imports: the baseline pays its own start-up too

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pickle  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import duckdb  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from platform_assets.bench.report import PREDICTIONS, models_in_build_order  # noqa: E402
from platform_assets.ml.model import (  # noqa: E402
    FEATURES, LABEL, as_model_input, build_pipeline, evaluate, split_by_time,
)
from platform_assets.settings import DBT_PROJECT_DIR  # noqa: E402
from platform_assets.sources.definitions import LANDING_FILE_COLUMN, SOURCES, reader_sql  # noqa: E402
from platform_assets.sources.landing import delivered_manifests, read_manifest  # noqa: E402

def ingest(connection: duckdb.DuckDBPyConnection, landing: Path, days: list[dt.date],
           append: bool = False) -> dict[str, float]:
    """Each source's files of the period in one read (the platform's reader), with the same lineage columns
    except the file hash. `append`: added to the tables (a new day: a snapshot only if one was delivered that day)."""
    seconds = {}
    connection.execute("CREATE SCHEMA IF NOT EXISTS raw")
    for source in SOURCES.values():
        started = time.perf_counter()
        manifests = delivered_manifests(landing, source.name)[0]
        delivered = [(day, str(file.path)) for day in (sorted(manifests) if source.snapshot and not append else days)
                     if day in manifests for file in read_manifest(landing, source.name, day).files]
        file_days, paths = [day for day, _ in delivered], [path for _, path in delivered]
        if append and not paths:
            continue
        connection.execute(
            f"""
            {f"INSERT INTO raw.{source.name} BY NAME" if append else f"CREATE TABLE raw.{source.name} AS"}
            SELECT delivered.* EXCLUDE ({LANDING_FILE_COLUMN}, ordinality),
                   files.day AS _data_date, files.path AS _source_file, CAST(NULL AS VARCHAR) AS _file_sha256,
                   row_number() OVER (PARTITION BY files.path ORDER BY delivered.ordinality) AS _row_number,
                   'baseline' AS _batch_id, CAST(now() AS TIMESTAMP) AS _ingested_at
            FROM ({reader_sql(source)}) AS delivered
            JOIN (SELECT unnest($paths) AS path, CAST(unnest($days) AS DATE) AS day) AS files
                ON delivered.{LANDING_FILE_COLUMN} = files.path
            """,
            {"paths": paths, "days": file_days},
        )
        seconds[source.name] = time.perf_counter() - started
    return seconds


def build_models(connection: duckdb.DuckDBPyConnection, manifest: dict) -> dict[str, float]:
    seconds = {}
    for node in models_in_build_order(manifest):
        started = time.perf_counter()
        relation = f"{node['schema']}.{node['alias'] or node['name']}"
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {node['schema']}")
        connection.execute(f"CREATE TABLE {relation} AS {node['compiled_code']}")
        seconds[f"{node['fqn'][1]}/{node['name']}"] = time.perf_counter() - started
    return seconds


def build_day(connection: duckdb.DuckDBPyConnection, manifest: dict, day: dt.date) -> dict[str, float]:
    """The models of one new day: each incremental model's day replaced by its SQL compiled for the day (limited
    to the day in case a model reads wider), the others rebuilt whole."""
    seconds = {}
    for node in models_in_build_order(manifest):
        started = time.perf_counter()
        relation = f"{node['schema']}.{node['alias'] or node['name']}"
        if node["config"].get("materialized") == "incremental":
            connection.execute(f"DELETE FROM {relation} WHERE data_date = $1", [day])
            connection.execute(f"INSERT INTO {relation} BY NAME SELECT * FROM ({node['compiled_code']}) AS model "
                               "WHERE data_date = $1", [day])
        else:
            connection.execute(f"CREATE OR REPLACE TABLE {relation} AS {node['compiled_code']}")
        seconds[f"{node['fqn'][1]}/{node['name']}"] = time.perf_counter() - started
    return seconds


def model_file(warehouse: Path) -> Path:
    return warehouse.with_name("baseline_model.pickle")


def features_relation(manifest: dict) -> str:
    node = next(n for n in manifest["nodes"].values() if n["resource_type"] == "model" and n["name"] == "flight_features")
    return f"{node['schema']}.{node['alias'] or node['name']}"


def train(connection: duckdb.DuckDBPyConnection, features: str, seed: int):
    frame = connection.execute(
        f"SELECT flight_date, {', '.join(FEATURES)}, {LABEL} FROM {features} WHERE {LABEL} IS NOT NULL "
        "ORDER BY flight_id"
    ).df()
    split = split_by_time(frame)
    pipeline = build_pipeline(seed)
    pipeline.fit(as_model_input(split.train), split.train[LABEL].astype(int))
    metrics = evaluate(split.holdout[LABEL].to_numpy(), pipeline.predict_proba(as_model_input(split.holdout))[:, 1])
    return pipeline, metrics


def score(connection: duckdb.DuckDBPyConnection, features: str, pipeline, first: dt.date, last: dt.date) -> None:
    frame = connection.execute(
        f"SELECT flight_id, flight_date, data_date, {', '.join(FEATURES)} FROM {features} "
        "WHERE data_date BETWEEN $first AND $last", {"first": first, "last": last},
    ).df()
    scored = pd.DataFrame({
        "flight_id": frame["flight_id"],
        "flight_date": frame["flight_date"],
        "data_date": frame["data_date"],
        "delay_probability": pipeline.predict_proba(as_model_input(frame))[:, 1],
    })
    scored["predicted_delayed"] = scored["delay_probability"] >= 0.5
    connection.execute("CREATE SCHEMA IF NOT EXISTS ml")
    connection.register("scored", scored)
    connection.execute(f"CREATE TABLE IF NOT EXISTS {PREDICTIONS} AS SELECT * FROM scored LIMIT 0")
    connection.execute(f"DELETE FROM {PREDICTIONS} WHERE data_date BETWEEN $1 AND $2", [first, last])
    connection.execute(f"INSERT INTO {PREDICTIONS} BY NAME SELECT * FROM scored")
    connection.unregister("scored")


def dbt_profile_settings() -> dict:
    """The engine settings of the platform's dbt profile (the memory limit comes from the environment)."""
    profiles = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())
    settings = profiles["flight_platform"]["outputs"]["embedded"]["settings"]
    return {name: value for name, value in settings.items() if name != "memory_limit"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platform_assets.bench.baseline", description=__doc__)
    parser.add_argument("--landing", type=Path, required=True)
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, required=True, help="manifest.json of `dbt compile`")
    parser.add_argument("--start", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--end", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, required=True, help="where to write the timings (JSON)")
    parser.add_argument("--new-day", action="store_true", help="one new day on the period's warehouse (--start = "
                        "--end = the day; --manifest compiled for it)")
    args = parser.parse_args(argv)
    manifest = json.loads(args.manifest.read_text())
    args.warehouse.parent.mkdir(parents=True, exist_ok=True)
    phases: dict = {"startup_seconds": time.time() - STARTED}
    config = dbt_profile_settings()
    if os.environ.get("DUCKDB_MEMORY_LIMIT"):
        config["memory_limit"] = os.environ["DUCKDB_MEMORY_LIMIT"]
    with duckdb.connect(str(args.warehouse), config=config) as connection:
        connection.execute("SET enable_progress_bar = false")
        days = [args.start + dt.timedelta(days=offset) for offset in range((args.end - args.start).days + 1)]
        if args.new_day:
            return new_day(connection, args, manifest, days, phases)
        phases["ingest_seconds"] = ingest(connection, args.landing, days)
        phases["model_seconds"] = build_models(connection, manifest)
        features = features_relation(manifest)
        started = time.perf_counter()
        pipeline, metrics = train(connection, features, args.seed)
        model_file(args.warehouse).write_bytes(pickle.dumps(pipeline))  # what a new day scores with
        phases["train_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        score(connection, features, pipeline, args.start, args.end)
        phases["score_seconds"] = time.perf_counter() - started
    phases["holdout_metrics"] = metrics
    phases["total_seconds"] = time.time() - STARTED
    args.out.write_text(json.dumps(phases, indent=2))
    return 0


def new_day(connection: duckdb.DuckDBPyConnection, args, manifest: dict, days: list[dt.date], phases: dict) -> int:
    if len(days) != 1:
        raise SystemExit("--new-day takes one day: --start and --end equal")
    phases["ingest_seconds"] = ingest(connection, args.landing, days, append=True)
    phases["model_seconds"] = build_day(connection, manifest, days[0])
    started = time.perf_counter()
    pipeline = pickle.loads(model_file(args.warehouse).read_bytes())  # the baseline's own file: trusted
    score(connection, features_relation(manifest), pipeline, days[0], days[0])
    phases["score_seconds"] = time.perf_counter() - started
    phases["total_seconds"] = time.time() - STARTED
    args.out.write_text(json.dumps(phases, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
