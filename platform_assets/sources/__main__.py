"""python -m platform_assets.sources check [SOURCE ...]: is every (or each named) source ready to run? Prints
each onboarding step as ok or a to-do line, in order; exits 1 while something is left to do."""

from __future__ import annotations

import argparse
import sys

from platform_assets.settings import load_settings
from platform_assets.sources.definitions import SourceDefinitionError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platform_assets.sources", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="check the onboarding steps of every (or each named) source")
    check.add_argument("sources", nargs="*", metavar="SOURCE")
    args = parser.parse_args(argv)
    from platform_assets.sources.check import check as check_sources  # noqa: PLC0415

    try:
        lines, ready = check_sources(args.sources, load_settings())
    except SourceDefinitionError as error:
        print(f"todo  fix platform_assets/sources/sources.yml: {error}")
        return 1
    print("\n".join(lines))
    return 0 if ready else 1


if __name__ == "__main__":
    sys.exit(main())
