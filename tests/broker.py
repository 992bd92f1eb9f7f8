"""Test helper: a real Mosquitto broker on a free loopback port, and a throw-away test CA.

Not a conftest: fixtures are wired elsewhere. Typical use::

    with Mosquitto(tmp_path) as broker:
        ...  # broker.host, broker.port
        broker.stop()   # SIGTERM: persistent sessions and queued QoS 1 messages are saved
        broker.start()  # same port, state restored

Never touches a system broker on 1883: every instance picks its own free port.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["Mosquitto", "free_port", "make_test_ca", "mosquitto_binary", "write_password_file"]


def mosquitto_binary() -> str | None:
    """Path of the mosquitto binary, or None when it is not installed."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def write_password_file(path: Path | str, users: dict[str, str]) -> Path:
    """A mosquitto password file (``$6$``: salted SHA-512, what mosquitto_passwd 2.0 reads)."""
    lines = []
    for user, password in users.items():
        salt = os.urandom(12)
        digest = hashlib.sha512(password.encode() + salt).digest()
        lines.append(f"{user}:$6${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}\n")
    path = Path(path)
    path.write_text("".join(lines))
    path.chmod(0o600)
    return path


class Mosquitto:
    """A mosquitto process with its config, persistence and log in `tmp_dir`.

    `tls` is a dict with ``cafile``, ``certfile``, ``keyfile`` (and optionally
    ``require_certificate``): a second, TLS-only listener is opened on `tls_port`.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        tmp_dir: Path | str,
        *,
        port: int | None = None,
        tls: dict | None = None,
        password_file: Path | str | None = None,
        allow_anonymous: bool = True,
        persistence: bool = True,
        extra_config: str = "",
        binary: str | None = None,
        start_timeout: float = 10.0,
    ):
        self.dir = Path(tmp_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.binary = binary or mosquitto_binary()
        if not self.binary:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.port = port or free_port(self.host)
        self.tls = dict(tls) if tls else None
        self.tls_port: int | None = free_port(self.host) if tls else None
        self.password_file = Path(password_file) if password_file else None
        self.allow_anonymous = allow_anonymous
        self.persistence = persistence
        self.extra_config = extra_config
        self.start_timeout = start_timeout
        self.config_path = self.dir / "mosquitto.conf"
        self.log_path = self.dir / "mosquitto.log"
        self.data_dir = self.dir / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self._write_config()

    # ----------------------------------------------------------------- config

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.data_dir}/",
            "persistence_file mosquitto.db",
            "autosave_interval 0",  # saved at shutdown (SIGTERM); 0 also disables periodic saves
            "max_queued_messages 1000000",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_type subscribe",  # "<client id> <qos> <filter>": tests wait for a subscription, not a sleep
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # mosquitto drops root to 'mosquitto' otherwise; tmp dirs are root's
        if self.password_file:
            lines.append(f"password_file {self.password_file}")
        if self.tls:
            lines += [
                f"listener {self.tls_port} {self.host}",
                f"cafile {self.tls['cafile']}",
                f"certfile {self.tls['certfile']}",
                f"keyfile {self.tls['keyfile']}",
                f"require_certificate {'true' if self.tls.get('require_certificate') else 'false'}",
            ]
        if self.extra_config:
            lines.append(self.extra_config)
        self.config_path.write_text("\n".join(lines) + "\n")

    # ----------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> Mosquitto:
        """Start (again) on the same port(s); returns when every listener accepts connections."""
        if self.running:
            return self
        with open(self.log_path, "ab") as output:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.config_path)],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        ports = [self.port] + ([self.tls_port] if self.tls_port else [])
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}:\n{self.log()}")
            if all(_port_open(self.host, p) for p in ports):
                return self
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"mosquitto did not open {ports} within {self.start_timeout} s:\n{self.log()}")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait: mosquitto writes its persistence file on a clean exit."""
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
        """SIGKILL: nothing is saved (a crash)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> Mosquitto:
        self.stop()
        return self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        tls = f", tls_port={self.tls_port}" if self.tls_port else ""
        return f"Mosquitto({self.host}:{self.port}{tls}, {state})"


# --------------------------------------------------------------------------- test CA


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{result.stderr}")


_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def _make_ca(out: Path, name: str, cn: str) -> tuple[Path, Path]:
    key, crt = out / f"{name}.key", out / f"{name}.crt"
    _openssl(
        "req",
        "-x509",
        *_EC_KEY,
        "-keyout",
        str(key),
        "-out",
        str(crt),
        "-days",
        "3",
        "-subj",
        f"/CN={cn}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=out,
    )
    return crt, key


def _make_leaf(out: Path, name: str, cn: str, ca: tuple[Path, Path], usage: str, san: str = "") -> tuple[Path, Path]:
    key, csr, crt, ext = out / f"{name}.key", out / f"{name}.csr", out / f"{name}.crt", out / f"{name}.ext"
    _openssl("req", "-new", *_EC_KEY, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}", cwd=out)
    ext_lines = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={usage}",
        "subjectKeyIdentifier=hash",
        "authorityKeyIdentifier=keyid,issuer",
    ]
    if san:
        ext_lines.append(f"subjectAltName={san}")
    ext.write_text("\n".join(ext_lines) + "\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca[0]),
        "-CAkey",
        str(ca[1]),
        "-CAcreateserial",
        "-out",
        str(crt),
        "-days",
        "2",
        "-extfile",
        str(ext),
        cwd=out,
    )
    csr.unlink()
    ext.unlink()
    return crt, key


def make_test_ca(tmp_dir: Path | str) -> dict[str, str]:
    """A throw-away PKI under `tmp_dir` made with the ``openssl`` CLI (EC P-256, 2-3 days).

    Keys: ``ca`` (trusted CA cert), ``server_cert``/``server_key`` (127.0.0.1 and localhost,
    signed by ``ca``), ``client_cert``/``client_key`` (signed by ``ca``, for mutual TLS),
    ``untrusted_ca`` and ``untrusted_server_cert``/``untrusted_server_key`` (a second,
    unrelated CA and a server cert it signed, with the same names: verification must fail).
    """
    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl command is needed to make test certificates")
    out = Path(tmp_dir)
    out.mkdir(parents=True, exist_ok=True)
    san = "IP:127.0.0.1,DNS:localhost"
    ca = _make_ca(out, "ca", "monitor test CA")
    server = _make_leaf(out, "server", "localhost", ca, "serverAuth", san)
    client = _make_leaf(out, "client", "monitor-test-client", ca, "clientAuth")
    bad_ca = _make_ca(out, "untrusted_ca", "untrusted test CA")
    bad_server = _make_leaf(out, "untrusted_server", "localhost", bad_ca, "serverAuth", san)
    for key in (ca[1], server[1], client[1], bad_ca[1], bad_server[1]):
        key.chmod(0o600)
    return {
        "ca": str(ca[0]),
        "ca_key": str(ca[1]),
        "server_cert": str(server[0]),
        "server_key": str(server[1]),
        "client_cert": str(client[0]),
        "client_key": str(client[1]),
        "untrusted_ca": str(bad_ca[0]),
        "untrusted_server_cert": str(bad_server[0]),
        "untrusted_server_key": str(bad_server[1]),
    }
