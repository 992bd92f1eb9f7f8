#!/usr/bin/env bash
# The fast loop: the unit tests without those marked slow (training, daemons, subprocesses),
# in about 40 s on 2 cores (about 1 180 tests, two pytest workers). Extra arguments go to pytest (e.g. -x, -k name, a file).
# The full suite: .venv/bin/python -m pytest -q -n 2   (3.3 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
OMP_NUM_THREADS=1 exec "$PY" -m pytest -q -n 2 -m "not slow" "$@"
