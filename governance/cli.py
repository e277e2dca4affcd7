"""`governance` command line: questions a data owner asks of the catalog."""

from __future__ import annotations

import argparse
import json
import sys

from governance.catalog import CatalogError, load_catalog
from governance.lineage import LineageError, events_path, load_events, render, trace


def _owner(args: argparse.Namespace) -> dict:
    catalog = load_catalog()
    dataset = catalog.dataset(args.dataset)
    team = catalog.teams[dataset.owner]
    return {"dataset": args.dataset, "owner": f"team:{dataset.owner}", "contact": team.contact,
            "on_call": team.on_call, "domain": dataset.domain, "classification": dataset.classification}


def _trace(args: argparse.Namespace) -> dict:
    try:
        tree = trace(load_events(events_path()), args.dataset, args.version)
    except LineageError as error:
        raise SystemExit(f"governance: {error}") from None
    if args.json:
        return tree
    print(render(tree))
    return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="governance", description="Ask the governance catalog.")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    commands = parser.add_subparsers(dest="command", required=True)
    owner = commands.add_parser("owner", help="who owns DATASET and who is on call")
    owner.add_argument("dataset", help="asset key as the Dagster UI writes it (marts/flights) or table name")
    owner.set_defaults(handler=_owner)
    provenance = commands.add_parser("trace", help="the runs, input versions and landing files behind a version "
                                     "of DATASET (a prediction: the model version that scored it)")
    provenance.add_argument("dataset", help="asset key (marts/flights), table (marts.flights) or dataset name")
    provenance.add_argument("--version", help="a dataset version, or a run id (OpenLineage or Dagster); "
                            "the latest when omitted")
    provenance.set_defaults(handler=_trace)
    args = parser.parse_args(argv)
    try:
        answer = args.handler(args)
    except CatalogError as error:
        print(f"governance: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        for key, value in answer.items():
            print(f"{key:15} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
