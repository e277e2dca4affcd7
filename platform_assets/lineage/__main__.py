"""`python -m platform_assets.lineage pending|flush`: the events waiting for delivery to the configured
OpenLineage transport, and delivering them now."""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from platform_assets.lineage.emitter import LineageEmitter
from platform_assets.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platform_assets.lineage", description=__doc__)
    parser.add_argument("command", choices=["pending", "flush"],
                        help="pending: list the queued events; flush: deliver them now")
    args = parser.parse_args(argv)
    emitter = LineageEmitter(load_settings().lineage_dir)
    if emitter.disabled:
        print("OpenLineage is disabled (OPENLINEAGE_DISABLED=true): nothing is recorded or delivered")
        return 0
    if args.command == "flush":
        delivered, remaining = emitter.flush()
        state = emitter.state()
        print(f"delivered {delivered} event(s) to {state.destination or 'nowhere (no transport configured)'}; "
              f"{remaining} pending" + (f" ({state.last_error})" if remaining and state.last_error else ""))
        return 1 if remaining else 0
    state = emitter.state()
    destination = state.destination or "no transport configured: events are only recorded locally"
    print(f"{len(state.pending)} event(s) pending delivery to {destination} ({emitter.pending_path})")
    if state.last_error:
        failed_at = dt.datetime.fromtimestamp(state.last_failure, dt.UTC).isoformat(timespec="seconds")
        print(f"last attempt {failed_at} failed: {state.last_error}")
    for event in state.pending:
        print(f"  {event.get('eventTime', '?'):32} {event.get('eventType', '?'):8} {event['job']['name']:40} "
              f"run {event['run']['runId']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
