"""A minimal JSON-over-HTTP handler for the fake model servers the tests run on loopback."""
from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Callable, Iterator, Mapping

Reply = tuple[int, Mapping[str, Any], Mapping[str, str]]


def json_handler(respond: Callable[[str, dict[str, str], dict[str, Any]], Reply]) -> type[BaseHTTPRequestHandler]:
    """A handler class answering every POST with `respond(path, lower-cased headers, body)`."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:  # keep test output clean
            pass

        def do_POST(self) -> None:  # noqa: N802
            n = int(self.headers.get("content-length", 0))
            body = json.loads(self.rfile.read(n) or b"{}")
            status, payload, extra = respond(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


@contextlib.contextmanager
def serving(server: HTTPServer) -> Iterator[HTTPServer]:
    """Serve `server` on a daemon thread while the block runs, then shut it down and close it."""
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
