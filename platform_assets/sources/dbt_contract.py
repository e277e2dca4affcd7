"""The source contracts as a dbt macro, so dbt tests and quarantine rules read sources.yml instead of restating it.

    python -m platform_assets.sources.dbt_contract     rewrites dbt_project/macros/source_contracts.sql
tests/test_raw_ingestion.py fails when the checked-in file and sources.yml differ."""

from __future__ import annotations

import json
import sys

from platform_assets.settings import DBT_PROJECT_DIR
from platform_assets.sources.definitions import SOURCES, SourceDefinition

DBT_CONTRACTS = DBT_PROJECT_DIR / "macros" / "source_contracts.sql"
HEADER = ("{#- Generated from platform_assets/sources/sources.yml by `python -m platform_assets.sources.dbt_contract`;"
          " do not edit.\n    source_contract(name) returns that source's key and columns: type, required, accepted,"
          " range,\n    pattern and quarantined (rows breaking required/pattern are quarantined one by one). -#}\n")


def contract_json(source: SourceDefinition) -> dict:
    columns = {}
    for name, contract in source.columns.items():
        column = {"type": contract.type, "required": not contract.nullable}
        column.update({rule: value for rule, value in (("accepted", contract.accepted), ("range", contract.range),
                                                       ("pattern", contract.pattern)) if value is not None})
        column["quarantined"] = contract.quarantined
        columns[name] = column
    return {"key": list(source.key), "columns": columns}


def contracts_macro(sources: dict[str, SourceDefinition]) -> str:
    # one line per column keeps the diff of a contract change readable
    contracts = ",\n".join(
        f'  {json.dumps(name)}: {{"key": {json.dumps(contract["key"])}, "columns": {{\n'
        + ",\n".join(f'    {json.dumps(column)}: {json.dumps(rules)}' for column, rules in contract["columns"].items())
        + "\n  }}"
        for name, contract in ((name, contract_json(source)) for name, source in sources.items()))
    contracts = "{\n" + contracts + "\n}"
    return (HEADER + "{% macro source_contract(source_name) %}\n{%- set contracts -%}{% raw %}\n" + contracts
            + "\n{% endraw %}{%- endset -%}\n{%- set contracts = fromjson(contracts) -%}\n"
            "{%- if source_name not in contracts -%}\n"
            "  {{ exceptions.raise_compiler_error('source_contract: no source ' ~ source_name ~ ' in the generated contracts; if sources.yml has it, regenerate them: python -m platform_assets.sources.dbt_contract') }}\n"
            "{%- endif -%}\n{{ return(contracts[source_name]) }}\n{% endmacro %}\n")


def main() -> int:
    DBT_CONTRACTS.write_text(contracts_macro(SOURCES))
    print(f"wrote {DBT_CONTRACTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
