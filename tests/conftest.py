"""Test-process settings: one torch/OpenMP thread.

On the 2-core CI host, torch's default (one thread per core) makes the training tests
contend with the brokers and daemon threads they start, and slows the suite several
times over (bench/threads.py). Set before torch is imported, so torch starts with one
thread; subprocesses the tests start inherit it.
"""

from __future__ import annotations

import os
import sys

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

if "torch" in sys.modules:  # imported already (a plugin): set it there too
    sys.modules["torch"].set_num_threads(1)


# Fixtures shared by the daemon tests (they were written out in each file). Imported
# inside the fixtures so that the thread settings above come before torch.
import shutil  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A small model trained once per test process (`daemon_support.train_small_model`)."""
    from tests.daemon_support import train_small_model  # noqa: PLC0415

    models = tmp_path_factory.mktemp("models")
    train_small_model(models)
    return models


@pytest.fixture
def models_dir(trained, tmp_path):
    """A private copy of `trained`: a test may promote, retrain or write state into it."""
    dst = tmp_path / "models"
    shutil.copytree(trained, dst, symlinks=True)
    return dst


@pytest.fixture
def broker(tmp_path):
    """A Mosquitto of the test's own on a free loopback port."""
    from tests.broker import Mosquitto  # noqa: PLC0415

    with Mosquitto(tmp_path / "broker") as b:
        yield b
