"""An HTTP server on loopback for the tests that need a real socket: the probe, the load tool, the workflows'
scripts and the Kubernetes client's wire."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# How often the serving thread looks for a shutdown: the library's 0.5 s would add half a second to every
# test's end.
POLL_S = 0.02


# What an API server's /version answers (every field the Kubernetes client's model requires).
API_VERSION = {
    "major": "1",
    "minor": "35",
    "gitVersion": "v1.35.0",
    "gitCommit": "x",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.26",
    "compiler": "gc",
    "platform": "linux/amd64",
}


class Server(http.server.ThreadingHTTPServer):
    """A listen backlog for a prober's bursts of new connections (the library's 5 refuses some on a busy
    machine, which an analysis would rightly count as failures)."""

    request_queue_size = 128
    daemon_threads = True


@contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free loopback port for the block: its base URL, ``http://127.0.0.1:PORT``."""
    server = Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": POLL_S}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def send_json(handler: http.server.BaseHTTPRequestHandler, document: object) -> None:
    """Answer ``handler``'s request with ``document``, as an API server does (200, JSON, its length)."""
    body = json.dumps(document).encode()
    handler.send_response(200)  # with the Date header, as every HTTP server
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
