"""Governance for the platform, as a library with no Dagster import (platform_assets uses it, never the reverse).

    catalog        typed models over the YAML catalog in governance/catalog/, loading and reference checks
    policy         what a role may read of a dataset, column by column; masking SQL; the access matrix
    access         the governed query entry point (in-memory sandbox per query) and its audit log (audit)
    graph, impact  the asset graph snapshot and dbt manifest; downstream assets, consumers, whom to notify
    contracts      breaking changes of published datasets; validate: everything `governance validate` checks
    report         the self-contained HTML report; check_status reads check results from OpenLineage events
    cli            the `governance` command
"""
