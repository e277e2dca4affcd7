"""Source simulator CLI.

  python -m platform_assets.simulator deliver --start 2013-01-01 --end 2013-11-30
  python -m platform_assets.simulator next --days 3        (the days after the last delivery)
  --defect NAME=VALUE overrides a booking defect, a field of BookingDefects (malformed_email_rate=0.05;
  docs/sources.md); --scale multiplies volume.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

from platform_assets.settings import load_settings
from platform_assets.simulator.bookings import BookingDefects
from platform_assets.simulator.deliver import LAST_DATA_DAY, days_between, deliver_day, demo_sources, next_days
from platform_assets.sources.definitions import SOURCES


def main(argv: list[str] | None = None) -> int:
    settings = load_settings()
    parser = argparse.ArgumentParser(prog="python -m platform_assets.simulator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    deliver = commands.add_parser("deliver", help="deliver a date range")
    deliver.add_argument("--start", type=dt.date.fromisoformat, required=True)
    deliver.add_argument("--end", type=dt.date.fromisoformat, required=True)
    following = commands.add_parser("next", help="deliver the days after the last delivery")
    following.add_argument("--days", type=int, default=1)
    for command in (deliver, following):
        command.add_argument("--scale", type=float, default=settings.scale)
        command.add_argument("--seed", type=int, default=settings.seed)
        command.add_argument("--defect", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)

    try:
        defects = BookingDefects.from_overrides(dict(item.split("=", 1) for item in args.defect))
    except ValueError as error:
        print(f"simulator: {error}", file=sys.stderr)
        return 2
    if args.command == "deliver":
        if args.end > LAST_DATA_DAY or args.start > args.end:
            print(f"simulator: the data covers 2013-01-01..{LAST_DATA_DAY}; got {args.start}..{args.end}",
                  file=sys.stderr)
            return 2
        days = list(days_between(args.start, args.end))
    else:
        days = next_days(settings.landing_dir, args.days)
        if not days:
            print(f"simulator: every day up to {LAST_DATA_DAY} is already delivered; the data ends there.")
            return 0
        if len(days) < args.days:
            print(f"simulator: only {len(days)} day(s) left before the data ends on {LAST_DATA_DAY}.")

    if others := sorted(set(SOURCES) - set(demo_sources())):
        print(f"simulator: not a demo source, not generated (its own system delivers it): {', '.join(others)}")
    started = time.monotonic()
    rows = 0
    for index, day in enumerate(days, 1):
        manifests = deliver_day(settings.landing_dir, day, args.seed, args.scale, defects)
        rows += sum(f["rows"] for manifest in manifests.values() for f in manifest["files"])
        if index == len(days) or index % 30 == 0:
            print(f"  delivered {index}/{len(days)} days (up to {day}), {rows:,} rows", flush=True)
    print(f"simulator: delivered {days[0]}..{days[-1]} into {settings.landing_dir} "
          f"in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
