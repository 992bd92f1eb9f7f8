"""The daemon's HTTP endpoint: ``/metrics``, ``/healthz`` and ``/readyz`` on one port.

`serve(registry, ...)` exposes the given registry (never the global one) and answers the
health checks with the callables it is given: 200 when they pass, 503 with the reason when
they do not. The metric definitions themselves are `monitor.io.metrics`.

``/metrics`` is prometheus_client's own WSGI app (`make_wsgi_app`), called in-process by
this handler: content negotiation (text or OpenMetrics), ``name[]`` filters and gzip when
the scraper sends ``Accept-Encoding: gzip`` (Prometheus does) are the library's. The
server around it stays ours: one bound address (IPv4 or IPv6), a per-request timeout,
HEAD, and the health endpoints.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, make_wsgi_app

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
    metrics_app = make_wsgi_app(registry)

    def scrape(query: str, accept: str, accept_encoding: str) -> tuple[int, list[tuple[str, str]], bytes]:
        """One GET of prometheus_client's WSGI app: (status, headers, body)."""
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/metrics",
            "QUERY_STRING": query,
            "HTTP_ACCEPT": accept,
            "HTTP_ACCEPT_ENCODING": accept_encoding,
        }
        answer: list = []
        body = b"".join(metrics_app(environ, lambda status, headers, exc_info=None: answer.extend((status, headers))))
        return int(str(answer[0]).split()[0]), list(answer[1]), body

    class Handler(BaseHTTPRequestHandler):
        timeout = 10  # a stalled client cannot hold a thread forever
        server_version = "monitor"

        def do_GET(self) -> None:
            self._respond(send_body=True)

        def do_HEAD(self) -> None:
            self._respond(send_body=False)

        def _respond(self, send_body: bool) -> None:
            path, _, query = self.path.partition("?")
            headers: list[tuple[str, str]] = []
            if path == "/metrics":
                try:
                    status, headers, body = scrape(
                        query, self.headers.get("Accept", ""), self.headers.get("Accept-Encoding", "")
                    )
                    content_type = next((v for k, v in headers if k.lower() == "content-type"), "text/plain")
                    headers = [(k, v) for k, v in headers if k.lower() not in ("content-type", "content-length")]
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
            for name, value in headers:  # Content-Encoding: gzip, from the WSGI app
                self.send_header(name, value)
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
