"""How a run's steps execute, per target (settings.target), chosen once when the definitions are built.

- embedded: every step reads or writes the one DuckDB file, which takes one writer at a time, so nothing in a run
  can run in parallel: steps run one after another inside the run's process. A process per step (the
  multiprocess executor) costs 4-8 s of interpreter start and imports each and buys no parallelism here.
- team: the warehouse is PostgreSQL, which takes concurrent writers: each step is a task on the Celery broker,
  run by whichever worker is free (`make team-up` starts two), so independent steps of a run run at once.
  A Kubernetes deployment swaps this for dagster-k8s' `k8s_job_executor` or dagster-celery-k8s' executor.
"""

from __future__ import annotations

import dagster as dg

from platform_assets.settings import Settings


def celery_executor(settings: Settings) -> dg.ExecutorDefinition:
    from dagster_celery import celery_executor as dagster_celery_executor  # noqa: PLC0415  (team only)

    # The same Celery settings the workers were started with (platform_assets/team/workers.py): one step per
    # worker at a time, acknowledged when it ends.
    return dagster_celery_executor.configured(
        {"broker": settings.celery_broker, "backend": settings.celery_backend,
         "config_source": {"task_acks_late": True, "worker_prefetch_multiplier": 1}},
        name="celery",
    )


EXECUTORS = {"embedded": lambda settings: dg.in_process_executor, "team": celery_executor}


def platform_executor(settings: Settings) -> dg.ExecutorDefinition:
    return EXECUTORS[settings.target](settings)
