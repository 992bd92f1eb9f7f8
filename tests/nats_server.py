"""Test helper: a real nats-server (JetStream, subject-mapping partitions, optional MQTT
listener) on free loopback ports, beside `tests/broker.py`'s Mosquitto.

    with NatsServer(tmp_path, partitions=8) as server:
        ...  # server.url ("nats://127.0.0.1:PORT"), server.mqtt_port (when mqtt=True)
        server.kill()   # SIGKILL; server.start() again: same ports, same JetStream store

Never touches a system server on 4222: every instance picks its own free ports. The
config is the one `monitor.io.nats.server_config` writes (what deploy/nats/ shows).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from monitor.core.config import TopicRule
from monitor.io.nats import partition_mappings, server_config
from tests.broker import _port_open, free_port

__all__ = ["DEFAULT_RULES", "NatsServer", "nats_server_binary"]

# the daemon tests' topic rules (tests/daemon_support.py): one JSON object per stream, or a channel per topic
DEFAULT_RULES = [
    TopicRule(template="plant/{site}/{asset}", format="json_multi", stream="{site}/{asset}"),
    TopicRule(template="plant/{site}/{asset}/{channel}", format="auto", stream="{site}/{asset}"),
]


def nats_server_binary() -> str | None:
    found = shutil.which("nats-server")
    if found:
        return found
    return "/usr/sbin/nats-server" if os.access("/usr/sbin/nats-server", os.X_OK) else None


class NatsServer:
    host = "127.0.0.1"

    def __init__(
        self,
        tmp_dir: Path | str,
        *,
        partitions: int = 8,
        rules: list[TopicRule] | None = None,
        mqtt: bool = False,
        start_timeout: float = 10.0,
        prefix: str = "part",
        extra: str = "",
    ):
        self.dir = Path(tmp_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.binary = nats_server_binary()
        if not self.binary:
            raise RuntimeError("nats-server is not installed (apt-get install nats-server)")
        self.port = free_port(self.host)
        self.mqtt_port = free_port(self.host) if mqtt else None
        self.start_timeout = start_timeout
        self.config_path = self.dir / "nats.conf"
        self.log_path = self.dir / "nats.log"
        self.rules = rules if rules is not None else DEFAULT_RULES
        self.extra = extra  # appended to the config (authorization, ...)
        self._write_config(partitions, prefix)
        self.proc: subprocess.Popen | None = None

    def _write_config(self, partitions: int, prefix: str) -> None:
        self.partitions = partitions
        text = server_config(
            partition_mappings(self.rules, partitions, prefix),
            host=self.host,
            port=self.port,
            store_dir=str(self.dir / "js"),
            mqtt_port=self.mqtt_port,
            server_name=f"test-{self.port}",
        )
        self.config_path.write_text(text + self.extra)

    def remap(self, partitions: int, prefix: str) -> None:
        """New mappings (changing N), applied by a config reload (SIGHUP), as an operator would."""
        self._write_config(partitions, prefix)
        assert self.proc is not None
        mark = self.log().count("Reloaded server configuration")
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + self.start_timeout
        while self.log().count("Reloaded server configuration") <= mark:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not reload its config:\n{self.log()}")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> NatsServer:
        if self.running:
            return self
        with open(self.log_path, "ab") as output:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.config_path)],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        ports = [self.port] + ([self.mqtt_port] if self.mqtt_port else [])
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.proc.returncode}:\n{self.log()}")
            if all(_port_open(self.host, p) for p in ports):
                return self
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"nats-server did not open {ports} within {self.start_timeout} s:\n{self.log()}")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
