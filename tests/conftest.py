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
