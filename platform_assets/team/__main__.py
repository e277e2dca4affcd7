"""`python -m platform_assets.team up|down|status`: the team target's servers on this machine (make team-up,
team-down, team-status). Errors are one line naming what failed and where its log is."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from platform_assets.settings import REPO_ROOT
from platform_assets.team.postgres import ServerError
from platform_assets.team.servers import WORKER_COUNT, down, status, team_env_file, up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platform_assets.team", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="start PostgreSQL, Redis and the Celery workers; write team.env")
    start.add_argument("--workers", type=int, default=WORKER_COUNT, help=f"Celery workers (default {WORKER_COUNT})")
    commands.add_parser("down", help="stop them (their data stays) and remove team.env")
    commands.add_parser("status", help="what runs; exit status 1 when something does not")
    args = parser.parse_args(argv)
    # The data folder only: PLATFORM_TARGET=team may be set before team.env exists.
    data_dir = Path(os.environ.get("PLATFORM_DATA_DIR", REPO_ROOT / "data")).resolve()
    try:
        if args.command == "up":
            if args.workers < 1:
                parser.error("--workers: at least 1")
            servers = up(data_dir, args.workers)
            for name, seconds in servers.seconds.items():
                print(f"{name}: {seconds:.1f} s")
            print("\n".join(status(data_dir)[1][:-1]))
            print(f"settings: {team_env_file(data_dir)} (PLATFORM_TARGET=team make demo | make dev)")
            return 0
        if args.command == "down":
            stopped = down(data_dir)
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
            return 0
        running, lines = status(data_dir)
        print("\n".join(lines))
        return 0 if running else 1
    except ServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
