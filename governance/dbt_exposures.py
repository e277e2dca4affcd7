"""dbt exposures generated from consumers.yml, so dbt docs and lineage show who reads each model.

    python -m governance.dbt_exposures     rewrites dbt_project/models/exposures.yml
`governance validate` fails when the file and the catalog differ."""

from __future__ import annotations

import sys

import yaml

from governance.catalog import Catalog, load_catalog
from governance.paths import DBT_EXPOSURES

_DBT_TYPES = {"dashboard": "dashboard", "service": "application", "ml_model": "ml", "report": "analysis",
              "notebook": "notebook"}
_MATURITY = {"critical": "high", "high": "high", "medium": "medium", "low": "low"}
_DBT_FOLDERS = ("staging/", "intermediate/", "marts/")
HEADER = "# Generated from governance/catalog/consumers.yml by `python -m governance.dbt_exposures`; do not edit.\n"


def exposures_yaml(catalog: Catalog) -> str:
    exposures = []
    for name, consumer in catalog.consumers.items():
        models = [key for key in consumer.depends_on if key.startswith(_DBT_FOLDERS)]
        if not models:
            continue
        exposures.append({
            "name": name.replace("-", "_"),
            "label": name,
            "type": _DBT_TYPES[consumer.kind],
            "maturity": _MATURITY[consumer.criticality],
            "description": consumer.description,
            "owner": {"name": f"team:{consumer.owner}", "email": consumer.contact},
            "depends_on": [f"ref('{key.split('/', 1)[1]}')" for key in models],
            "meta": {"criticality": consumer.criticality, "role": consumer.role,
                     "columns": {key: columns for key, columns in consumer.depends_on.items()}},
        })
    return HEADER + yaml.safe_dump({"version": 2, "exposures": exposures}, sort_keys=False, width=110, default_flow_style=None)


def main() -> int:
    DBT_EXPOSURES.write_text(exposures_yaml(load_catalog()))
    print(f"wrote {DBT_EXPOSURES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
