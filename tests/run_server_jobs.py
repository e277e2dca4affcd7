"""Jobs the run server's tests launch (tests/test_run_server.py), loaded from this file in the run's process."""

import os
import sys
import time

import dagster as dg


@dg.op
def where_it_runs(context: dg.OpExecutionContext) -> None:
    """Records its process, that process's parent, and which libraries were loaded before the op imported any."""
    context.log_event(dg.AssetMaterialization("where_it_runs", metadata={
        "pid": os.getpid(), "parent": os.getppid(),
        "scikit-learn loaded": "sklearn.pipeline" in sys.modules,
        "platform definitions loaded": "platform_assets.definitions" in sys.modules,
        # what the server's dbt warm-up leaves for every run: dbt's JSON schemas of its project and profile classes
        "dbt schemas built": _dbt_schemas_built(),
    }))


def _dbt_schemas_built() -> int:
    if "dbt_common.dataclass_schema" not in sys.modules:
        return 0
    return sys.modules["dbt_common.dataclass_schema"].dbtClassMixin.json_schema.cache_info().currsize


@dg.op
def sleeps(context: dg.OpExecutionContext) -> None:
    context.log.info(f"sleeping in {os.getpid()}")
    time.sleep(300)


@dg.op
def parses_models_on_a_thread(context: dg.OpExecutionContext) -> None:
    """What dbt does on its thread of a step when it parses models: its static parser (native, with a thread pool
    of its own). It waited forever in a run forked from a server whose warm-up had started that pool."""
    import threading

    from dbt_extractor import py_extract_from_source

    found = []
    model = ("{{{{ config(materialized='table') }}}} select * from {{{{ ref('model_{}') }}}} "
             "join {{{{ source('s', 't') }}}}")
    parser = threading.Thread(target=lambda: found.extend(
        py_extract_from_source(model.format(n))["refs"] for n in range(20)))
    parser.start()
    parser.join()
    context.log_event(dg.AssetMaterialization("parsed", metadata={"refs": len(found)}))


@dg.job(executor_def=dg.in_process_executor)  # as the platform's embedded runs: steps in the run's process
def parses_models():
    parses_models_on_a_thread()


@dg.job(executor_def=dg.in_process_executor)  # as the platform's embedded runs: steps in the run's process
def reports_its_process():
    where_it_runs()


@dg.job(executor_def=dg.in_process_executor)  # as the platform's embedded runs: steps in the run's process
def sleeps_for_minutes():
    sleeps()
