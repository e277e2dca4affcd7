"""Where events go.

Every event is appended to `<data>/lineage/events.jsonl` through the client's file transport: the
platform's own record, which `governance trace` reads. That is the whole default.

When a transport is configured the standard OpenLineage way (`OPENLINEAGE_URL`, `OPENLINEAGE_CONFIG`,
`openlineage.yml` in the working directory or `~/.openlineage/`, `OPENLINEAGE__TRANSPORT__*`), each event is
also delivered there, through a durable queue, `<data>/lineage/pending.jsonl`: the event is queued, then the
queue is delivered in order. An endpoint that is down or slow never fails a run nor holds it up: HTTP gets a
short timeout and no retries inside a step (settable in the transport config), a failed delivery leaves the
rest queued, and further attempts wait `RETRY_AFTER_SECONDS` (shared by every step process through
`delivery.json`). The queue is delivered at the next emission after that, or by
`python -m platform_assets.lineage flush`; `... pending` lists it. Delivery is at least once.

`OPENLINEAGE_DISABLED=true` turns all of it off, the local record included.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# openlineage is imported in the functions that use it: loading the code location must not import it (0.2 s).
EVENTS_FILE = "events.jsonl"
PENDING_FILE = "pending.jsonl"
STATE_FILE = "delivery.json"
LOCK_FILE = ".lock"
RETRY_AFTER_SECONDS = 60.0
# Under the configured values: a delivery attempt inside a step is short and not retried (the queue retries).
HTTP_DELIVERY_DEFAULTS: dict[str, Any] = {"timeout": 2.0, "retry": {"total": 0}}

log = logging.getLogger(__name__)


def lineage_disabled() -> bool:
    return os.environ.get("OPENLINEAGE_DISABLED", "").strip().lower() == "true"


def configured_transport() -> dict | None:
    """The transport configured the client's own way, or None. Read through the client (config file,
    `OPENLINEAGE__` variables), then `OPENLINEAGE_URL` as the client falls back to it."""
    from openlineage.client import OpenLineageClient  # noqa: PLC0415
    from openlineage.client.transport.noop import NoopConfig, NoopTransport  # noqa: PLC0415

    config = dict(OpenLineageClient(transport=NoopTransport(NoopConfig())).config.transport or {})
    if not config.get("type"):
        url = os.environ.get("OPENLINEAGE_URL")
        if not url:
            return None
        config = {"type": "http", "url": url, "endpoint": os.environ.get("OPENLINEAGE_ENDPOINT", "api/v1/lineage")}
        if api_key := os.environ.get("OPENLINEAGE_API_KEY"):
            config["auth"] = {"type": "api_key", "apiKey": api_key}
    return bounded(config)


def bounded(config: dict) -> dict:
    """HTTP transports (also inside a composite) with the in-step delivery defaults under their settings."""
    config = dict(config)
    if config.get("type") == "http":
        config = {**HTTP_DELIVERY_DEFAULTS, **config}
    children = config.get("transports")
    if isinstance(children, dict):
        config["transports"] = {name: bounded(child) for name, child in children.items() if child}
    elif isinstance(children, list):
        config["transports"] = [bounded(child) for child in children]
    return config


@dataclass(frozen=True)
class DeliveryState:
    pending: list[dict]
    last_failure: float | None
    last_error: str | None
    destination: str | None


class LineageEmitter:
    """Records every event under `directory` and delivers it to the configured transport, if any."""

    def __init__(self, directory: Path) -> None:
        from openlineage.client import OpenLineageClient  # noqa: PLC0415
        from openlineage.client.transport import get_default_factory  # noqa: PLC0415
        from openlineage.client.transport.file import FileConfig, FileTransport  # noqa: PLC0415

        self.directory = directory
        self.disabled = lineage_disabled()
        self.destination: str | None = None
        self.delivery = None
        self.delivery_error: str | None = None
        if self.disabled:
            return
        directory.mkdir(parents=True, exist_ok=True)
        self.recorder = OpenLineageClient(
            transport=FileTransport(FileConfig(log_file_path=str(directory / EVENTS_FILE), append=True)))
        try:
            config = configured_transport()
            if config and not self._is_the_record(config):
                self.destination = _describe(config)
                self.delivery = get_default_factory().create(config)
        except Exception as error:  # a broken configuration must not fail a run: keep the events queued
            self.delivery_error = f"transport configuration: {error}"
            self.destination = self.destination or "the configured transport"
            log.warning("OpenLineage %s; events are kept in %s", self.delivery_error, self.pending_path)

    @property
    def events_path(self) -> Path:
        return self.directory / EVENTS_FILE

    @property
    def pending_path(self) -> Path:
        return self.directory / PENDING_FILE

    @property
    def delivers(self) -> bool:
        return self.destination is not None

    def emit(self, event: Any) -> None:
        """Record the event, queue it for delivery, deliver the queue unless a recent attempt failed."""
        from openlineage.client.serde import Serde  # noqa: PLC0415

        if self.disabled:
            return
        with self._locked():
            self.recorder.emit(event)
            if not self.delivers:
                return
            with self.pending_path.open("a") as queue:
                queue.write(Serde.to_json(event) + "\n")
            self._deliver_queue(force=False)

    def flush(self) -> tuple[int, int]:
        """Deliver the queue now, whatever the last failure; (delivered, still pending)."""
        with self._locked():
            return self._deliver_queue(force=True)

    def state(self) -> DeliveryState:
        with self._locked():
            state = self._read_state()
            return DeliveryState([json.loads(line) for line in self._queued()], state.get("failed_at"),
                                 state.get("error"), self.destination)

    def _deliver_queue(self, force: bool) -> tuple[int, int]:
        queued = self._queued()
        if not queued:
            return 0, 0
        state = self._read_state()
        if not force and state.get("failed_at") and time.time() - state["failed_at"] < RETRY_AFTER_SECONDS:
            return 0, len(queued)
        delivered, failure = 0, self.delivery_error
        if self.delivery is not None:
            for line in queued:
                try:
                    # The stored event as the client serialized it: the transport serializes it unchanged.
                    self.delivery.emit(json.loads(line))
                except Exception as error:
                    failure = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                    break
                delivered += 1
        if failure:
            self._write_state({"failed_at": time.time(), "error": failure, "destination": self.destination})
            log.warning("OpenLineage delivery to %s failed (%s); %d event(s) kept in %s",
                        self.destination, failure, len(queued) - delivered, self.pending_path)
        else:
            self._write_state({})
        if delivered:
            _replace(self.pending_path, "".join(line + "\n" for line in queued[delivered:]))
        return delivered, len(queued) - delivered

    def _queued(self) -> list[str]:
        if not self.pending_path.exists():
            return []
        return [line for line in self.pending_path.read_text().splitlines() if line.strip()]

    def _read_state(self) -> dict:
        path = self.directory / STATE_FILE
        return json.loads(path.read_text()) if path.exists() else {}

    def _write_state(self, state: dict) -> None:
        _replace(self.directory / STATE_FILE, json.dumps(state) + "\n")

    def _is_the_record(self, config: dict) -> bool:
        """A file transport aimed at the record itself would write every event twice."""
        path = config.get("log_file_path")
        return config.get("type") == "file" and path is not None and Path(path).resolve() == self.events_path

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time across the step processes of a run and the flush command."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / LOCK_FILE).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _describe(config: dict) -> str:
    if config.get("type") == "http":
        return f"{config['url'].rstrip('/')}/{str(config.get('endpoint', 'api/v1/lineage')).lstrip('/')}"
    if config.get("type") == "composite":
        children = config.get("transports") or {}
        names = children.keys() if isinstance(children, dict) else [child.get("type") for child in children]
        return "composite (" + ", ".join(map(str, names)) + ")"
    return f"{config.get('type')} transport"


def _replace(path: Path, text: str) -> None:
    """Write a file whole or not at all."""
    partial = path.with_suffix(path.suffix + ".tmp")
    partial.write_text(text)
    os.replace(partial, path)
