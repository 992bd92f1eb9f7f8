"""A tiny sd_notify client and the daemon's systemd watchdog tick (no dependency).

systemd (``Type=notify``) passes ``NOTIFY_SOCKET``: a datagram socket to which the
service writes ``READY=1``, ``WATCHDOG=1``, ``STOPPING=1``, ``STATUS=...``. Without
``NOTIFY_SOCKET`` (a terminal, a container, a test) every call is a no-op that returns
False. A path starting with ``@`` is a Linux abstract socket.

`make_systemd_tick(service)` returns the callable the daemon's main loop runs every
tick (``service.run_forever(on_tick=...)``): it sends READY=1 once the service is ready
(connected to the broker and serving a model) and WATCHDOG=1 only while

* ``service.health()`` is ok (the scoring thread is alive),
* the scoring thread made progress recently (``service.last_progress``, a monotonic
  heartbeat it updates at least every 0.1 s while idle), and
* paho's network thread is alive, and, while connected, has received bytes from the
  broker within two keep-alive intervals (a wedged network thread stops them).

A check that fails withholds the ping (and says why in STATUS= and the log), so systemd
restarts the daemon after ``WatchdogSec``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

__all__ = [
    "SystemdTick",
    "enabled",
    "make_systemd_tick",
    "notify",
    "ready",
    "status",
    "stopping",
    "watchdog",
    "watchdog_interval",
]


def _socket_address(environ: Mapping[str, str]) -> str | None:
    path = environ.get("NOTIFY_SOCKET")
    if not path:
        return None
    if path[0] not in ("/", "@"):
        return None  # vsock and other address families are not used by this daemon
    return "\0" + path[1:] if path[0] == "@" else path


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    """True when running under a service manager that listens for notifications."""
    return _socket_address(os.environ if environ is None else environ) is not None


def notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send one notification (``KEY=VALUE`` lines). False without NOTIFY_SOCKET or on error."""
    address = _socket_address(os.environ if environ is None else environ)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8", "replace"))
        return True
    except OSError as exc:
        log.debug("sd_notify %r failed: %s", message.split("\n", 1)[0], exc)
        return False


def ready(text: str | None = None) -> bool:
    return notify("READY=1" + (f"\nSTATUS={text}" if text else ""))


def watchdog() -> bool:
    return notify("WATCHDOG=1")


def stopping(text: str | None = None) -> bool:
    return notify("STOPPING=1" + (f"\nSTATUS={text}" if text else ""))


def status(text: str) -> bool:
    return notify(f"STATUS={text}")


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """``WatchdogSec`` in seconds when the watchdog is on for this process, else None."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        seconds = int(usec) / 1e6
    except ValueError:
        return None
    return seconds if seconds > 0 else None


def liveness_problem(
    service, *, stall_seconds: float = 10.0, clock: Callable[[], float] = time.monotonic
) -> str | None:
    """THE liveness check: None while the daemon is alive, else what is wrong.

    One function for every judge: ``/healthz`` (so Docker's ``HEALTHCHECK`` and the
    Kubernetes liveness probe) through `Service.health`, and the systemd watchdog through
    `SystemdTick`. Checks: the scoring thread runs (``service.scoring_problem()``) and its
    heartbeat (``service.last_progress``, monotonic) is at most `stall_seconds` old; paho's
    network thread runs; while connected, it has received something within two
    keep-alives (plus 10 s). A broker outage is not a liveness problem: the daemon
    reconnects by itself (that is readiness, ``/readyz``).
    """
    why = service.scoring_problem()
    if why is not None:
        return f"unhealthy: {why}"
    age = clock() - float(service.last_progress)
    if age > stall_seconds:
        return f"scoring thread made no progress for {age:.1f} s"
    ingest = getattr(service, "ingest", None)
    if ingest is None:
        return "MQTT intake not started"
    own_check = getattr(ingest, "problem", None)  # an intake that checks itself (NATS)
    if callable(own_check):
        problem: str | None = own_check()
        return problem
    client = ingest.client
    thread = getattr(client, "_thread", None)
    if thread is None or not thread.is_alive():
        return "MQTT network thread is not running"
    if ingest.connected:
        keepalive = float(getattr(getattr(ingest, "cfg", None), "keepalive_seconds", 60) or 60)
        last_in = getattr(client, "_last_bytes_received", None)
        if isinstance(last_in, (int, float)):
            # paho's own clock is time.monotonic (paho.mqtt.client.time_func)
            silent = time.monotonic() - last_in
            if silent > 2 * keepalive + 10:
                return f"MQTT network thread received nothing for {silent:.0f} s while connected"
    return None


class SystemdTick:
    """Callable run by the daemon's main loop; see the module docstring.

    `stall_seconds`: the scoring heartbeat may be at most this old (default: half the
    watchdog interval, at most 10 s). `ping_every`: minimum seconds between WATCHDOG=1
    (default: a third of the watchdog interval, at most 5 s). `clock` is monotonic.
    """

    def __init__(
        self,
        service,
        *,
        stall_seconds: float | None = None,
        ping_every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        send: Callable[[str], bool] = notify,
    ):
        self.service = service
        interval = watchdog_interval()
        self.stall_seconds = stall_seconds if stall_seconds is not None else min(10.0, (interval or 20.0) / 2)
        self.ping_every = ping_every if ping_every is not None else min(5.0, (interval or 3.0) / 3)
        self.clock = clock
        self.send = send
        self.ready_sent = False
        self.last_ping: float | None = None
        self.pings = 0
        self.last_problem: str | None = None
        self._last_status: str | None = None

    # ----------------------------------------------------------------- checks

    def problem(self) -> str | None:
        """None when every check passes, else what is wrong (`liveness_problem`)."""
        return liveness_problem(self.service, stall_seconds=self.stall_seconds, clock=self.clock)

    # ----------------------------------------------------------------- tick

    def __call__(self) -> None:
        svc = self.service
        if not self.ready_sent:
            ok, why = svc.ready()
            if ok:
                self.ready_sent = self.send(f"READY=1\nSTATUS={self._summary()}") or not enabled()
                self._last_status = None
                log.info("ready: %s", self._summary())
            else:
                self._status(f"starting: {why}")
        problem = self.problem()
        now = self.clock()
        if problem is not None:
            if problem != self.last_problem:
                log.error("systemd watchdog withheld: %s", problem)
            self.last_problem = problem
            self._status(f"unhealthy: {problem}")
            return
        if self.last_problem is not None:
            log.info("systemd watchdog resumed")
            self.last_problem = None
        if self.ready_sent:
            ok, why = svc.ready()
            self._status(self._summary() if ok else f"degraded: {why}")
        if self.last_ping is None or now - self.last_ping >= self.ping_every:
            self.send("WATCHDOG=1")
            self.last_ping = now
            self.pings += 1

    def _summary(self) -> str:
        svc = self.service
        pipe = getattr(svc, "pipeline", None)
        model = getattr(getattr(pipe, "model", None), "version", None)
        streams = len(pipe.streams) if pipe is not None else 0
        return f"serving model {model or '-'}, {streams} stream(s)"

    def _status(self, text: str) -> None:
        if text != self._last_status:
            self._last_status = text
            self.send(f"STATUS={text}")


def make_systemd_tick(service, **kwargs) -> Callable[[], None]:
    """The on_tick callable for ``service.run_forever``; a no-op cost without systemd."""
    return SystemdTick(service, **kwargs)
