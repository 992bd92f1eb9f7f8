#!/usr/bin/env bash
# The fast loop: the unit tests without those marked slow (training, daemons, subprocesses),
# in about 30 s on 2 cores (510 tests, 32 s of CPU). Extra arguments go to pytest (e.g. -x, -k name, a file).
# The full suite: .venv/bin/python -m pytest -q   (about 170 s of CPU; target under 4 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
OMP_NUM_THREADS=1 exec "$PY" -m pytest -q -m "not slow" "$@"
