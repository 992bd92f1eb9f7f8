"""`monitor run` start-up order: a bad config exits 78 before torch is imported; SIGTERM/SIGINT
handlers are in place before any thread starts, so a stop during start-up is clean."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from broker import free_port

ROOT = Path(__file__).resolve().parents[1]

# main() in-process, then report whether torch got imported on the way
_RUN_AND_REPORT_TORCH = (
    "import sys; from monitor.app.cli import main; rc = main(sys.argv[1:]); "
    "print('torch imported:', 'torch' in sys.modules); sys.exit(rc)"
)


@pytest.mark.slow  # a subprocess
def test_a_bad_config_exits_78_before_torch_is_imported(tmp_path):
    conf = tmp_path / "bad.yaml"
    conf.write_text("mqtt: {port: 99999}\n")
    res = subprocess.run(
        [sys.executable, "-c", _RUN_AND_REPORT_TORCH, "run", "--config", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert res.returncode == 78, res.stderr
    assert "mqtt.port" in res.stderr
    assert "torch imported: False" in res.stdout


def _config(tmp_path: Path) -> Path:
    conf = tmp_path / "run.yaml"
    conf.write_text(
        yaml.safe_dump(
            {
                "mqtt": {"host": "127.0.0.1", "port": free_port(), "reconnect_min_seconds": 0.1},
                "metrics": {"address": "127.0.0.1", "port": 0},
                "models": {"dir": str(tmp_path / "models")},
            }
        )
    )
    return conf


@pytest.mark.slow  # a subprocess that imports torch
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_during_start_up_is_a_clean_exit(tmp_path, sig):
    """The signal is sent as soon as the handlers are in (while torch is still being imported):
    the daemon exits 0 without starting its threads, instead of dying by the signal."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "monitor",
            "--log-level",
            "DEBUG",
            "run",
            "--config",
            str(_config(tmp_path)),
            "--plain-logs",
        ],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        assert proc.stderr is not None
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            if "signal handlers installed" in line:
                proc.send_signal(sig)
                break
        assert any("signal handlers installed" in line for line in seen), "".join(seen)
        rest = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "".join(seen) + rest
    assert "monitor started" not in "".join(seen) + rest
