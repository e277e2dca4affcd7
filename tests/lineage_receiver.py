"""A Marquez-compatible OpenLineage receiver for tests: real HTTP on 127.0.0.1 (a free port), in a thread.
It accepts `POST /api/v1/lineage`, keeps every event, and can be told to stop listening after some events
(the endpoint going down mid-run) or to answer 503 (the endpoint failing)."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ENDPOINT = "/api/v1/lineage"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LineageReceiver:
    def __init__(self, port: int | None = None, stop_after: int | None = None, failing: bool = False) -> None:
        self.port = port or free_port()
        self.stop_after = stop_after
        self.failing = failing
        self.events: list[dict] = []
        self.requests = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LineageReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802  (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests += 1
                if receiver.failing:
                    self.send_response(503)
                elif self.path != ENDPOINT or self.headers.get("Content-Type") != "application/json":
                    self.send_response(404)
                else:
                    receiver.events.append(json.loads(body))
                    self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if receiver.stop_after is not None and len(receiver.events) >= receiver.stop_after:
                    threading.Thread(target=receiver.stop, daemon=True).start()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
