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


@dg.job(executor_def=dg.in_process_executor)  # as the platform's embedded runs: steps in the run's process
def reports_its_process():
    where_it_runs()


@dg.job(executor_def=dg.in_process_executor)  # as the platform's embedded runs: steps in the run's process
def sleeps_for_minutes():
    sleeps()
