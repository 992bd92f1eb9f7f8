"""The daemon's HTTP endpoint: ``/metrics``, ``/healthz`` and ``/readyz`` on one port.

`serve(registry, ...)` exposes the given registry (never the global one) and answers the
health checks with the callables it is given: 200 when they pass, 503 with the reason when
they do not. The metric definitions themselves are `monitor.io.metrics`.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

__all__ = ["HealthCheck", "MetricsServer", "serve"]

log = logging.getLogger(__name__)

HealthCheck = Callable[[], "tuple[bool, str]"]


class MetricsServer:
    """A running metrics/health HTTP server; `port` is the bound port."""

    def __init__(self, httpd: ThreadingHTTPServer, thread: threading.Thread):
        self._httpd = httpd
        self._thread = thread
        self.address = str(httpd.server_address[0])  # a host string (AF_INET/AF_INET6; typed str | bytes)
        self.port = int(httpd.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _check(fn: HealthCheck) -> tuple[bool, str]:
    try:
        ok, reason = fn()
        return bool(ok), str(reason or ("ok" if ok else "not ok"))
    except Exception as exc:
        return False, f"check failed: {type(exc).__name__}: {exc}"


def serve(
    registry: CollectorRegistry,
    address: str = "127.0.0.1",
    port: int = 9108,
    health: HealthCheck = lambda: (True, "ok"),
    ready: HealthCheck = lambda: (True, "ok"),
) -> MetricsServer:
    """Serve /metrics, /healthz and /readyz from a daemon thread; port 0 picks a free port."""

    class Handler(BaseHTTPRequestHandler):
        timeout = 10  # a stalled client cannot hold a thread forever
        server_version = "monitor"

        def do_GET(self) -> None:
            self._respond(send_body=True)

        def do_HEAD(self) -> None:
            self._respond(send_body=False)

        def _respond(self, send_body: bool) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                try:
                    encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                    body = encoder(registry)
                    status = 200
                except Exception as exc:
                    log.exception("metrics exposition failed")
                    status, content_type = 500, "text/plain; charset=utf-8"
                    body = f"metrics exposition failed: {type(exc).__name__}\n".encode()
            elif path in ("/healthz", "/readyz"):
                ok, reason = _check(health if path == "/healthz" else ready)
                status, content_type = (200 if ok else 503), "text/plain; charset=utf-8"
                body = (reason + "\n").encode()
            else:
                status, content_type = 404, "text/plain; charset=utf-8"
                body = b"not found: try /metrics, /healthz or /readyz\n"
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if send_body:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("http %s - %s", self.address_string(), format % args)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in address else socket.AF_INET

    httpd = Server((address, port), Handler)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="metrics-http", daemon=True
    )
    thread.start()
    server = MetricsServer(httpd, thread)
    log.info("metrics on %s/metrics", server.url)
    return server
