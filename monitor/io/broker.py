"""A throw-away local MQTT broker for the demo: the system `mosquitto` binary if it is
installed, otherwise the pure-Python `amqtt` broker (``pip install monitor[demo]``).

Both listen on a free loopback port only and run as child processes that stop with us.
amqtt speaks MQTT 3.1.1 only; `protocol` says which the broker supports.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _wait_port(host: str, port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the broker exited at start (code {proc.returncode})")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the broker did not listen on {host}:{port} within {timeout:.0f}s")


@dataclass
class LocalBroker:
    kind: str  # "mosquitto" or "amqtt"
    host: str
    port: int
    protocol: Literal["5", "3.1.1"]
    proc: subprocess.Popen
    workdir: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def mosquitto_path() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def amqtt_available() -> bool:
    return importlib.util.find_spec("amqtt") is not None  # the optional extra, without importing it


def start_local_broker(prefer: str = "auto", host: str = "127.0.0.1", timeout: float = 15.0) -> LocalBroker:
    """Start a broker on a free loopback port. `prefer`: auto | mosquitto | amqtt."""
    port = free_port(host)
    workdir = Path(tempfile.mkdtemp(prefix="monitor-broker-"))
    binary = mosquitto_path()
    if prefer in ("auto", "mosquitto") and binary:
        conf = workdir / "mosquitto.conf"
        lines = [f"listener {port} {host}", "allow_anonymous true", "persistence false", "log_dest none"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n")
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        broker = LocalBroker("mosquitto", host, port, "5", proc, workdir)
    elif prefer in ("auto", "amqtt") and amqtt_available():
        conf = workdir / "amqtt.yaml"
        conf.write_text(
            "listeners:\n  default:\n    type: tcp\n    bind: " + f"{host}:{port}\n"
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n"
        )
        code = "import sys; from amqtt.scripts.broker_script import main; sys.argv=['amqtt','-c',sys.argv[1]]; main()"
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        broker = LocalBroker("amqtt", host, port, "3.1.1", proc, workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
        raise RuntimeError(
            "no MQTT broker available: install mosquitto (apt-get install mosquitto) "
            "or the pure-Python broker (pip install 'monitor[demo]')"
        )
    try:
        _wait_port(host, port, broker.proc, timeout)
    except RuntimeError:
        broker.stop()
        raise
    return broker
