"""OpenLineage for every materialization: a START and a COMPLETE, FAIL or ABORT event per asset, with the
physical datasets it read and wrote, built with the openlineage-python client and sent through its
transports (see `emitter` for where events go).

- `lineage_run(context, key, inputs=..., outputs=...)`: a context manager around one asset's materialization;
- `tracked(inputs=..., outputs=...)`: the same around an asset function, as a decorator under `@dg.asset`;
- `emit_dbt_lineage(...)`: one run per dbt model from dbt's artifacts, after the build;
- `table_dataset`, `file_dataset`, `model_dataset`: the datasets an asset declares.
"""

from platform_assets.lineage.datasets import file_dataset, model_dataset, table_dataset
from platform_assets.lineage.dbt import emit_dbt_lineage
from platform_assets.lineage.runs import lineage_run, tracked

__all__ = ["emit_dbt_lineage", "file_dataset", "lineage_run", "model_dataset", "table_dataset", "tracked"]
