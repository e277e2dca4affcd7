"""Who reads the published datasets, in the asset graph: each consumer of governance/catalog/consumers.yml
becomes an asset the platform does not materialize (kind dashboard, service, ml_model, ...), downstream of
exactly the datasets it reads, with its owner, contact, criticality and the columns it depends on. A change's
impact then shows in the Dagster UI's lineage, beside the dbt exposures generated from the same file. A
consumer that is itself a platform asset (`asset:` in the catalog) is that asset, already in the graph."""

import dagster as dg

from governance.catalog import Catalog

GROUP = "consumers"


def consumer_specs(catalog: Catalog) -> list[dg.AssetSpec]:
    return [
        dg.AssetSpec(
            key=dg.AssetKey([GROUP, name]),
            group_name=GROUP,
            description=consumer.description,
            deps=[dg.AssetKey.from_user_string(dataset) for dataset in consumer.depends_on],
            kinds={consumer.kind},
            owners=[f"team:{consumer.owner}", consumer.contact],
            tags={"criticality": consumer.criticality},
            metadata={
                "contact": consumer.contact,
                "criticality": consumer.criticality,
                "access role": consumer.role,
                **({"attributes": dg.MetadataValue.json(consumer.attributes)} if consumer.attributes else {}),
                "columns read": dg.MetadataValue.md("\n".join(
                    ["| dataset | columns |", "| --- | --- |",
                     *(f"| {dataset} | {', '.join(columns)} |" for dataset, columns in consumer.depends_on.items())])),
            },
        )
        for name, consumer in sorted(catalog.consumers.items()) if consumer.asset is None
    ]
