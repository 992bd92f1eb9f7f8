#!/usr/bin/env bash
# Install monitor into ./.venv. The pinned torch build goes in first, so the package's
# `torch>=2.6` requirement is already met and pip never pulls a multi-GB CUDA build.
# On this project's machines `pip install torch==2.13.0` resolves to a CPU build on disk;
# elsewhere set MONITOR_TORCH_INDEX to PyTorch's CPU wheel index.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ -n "${MONITOR_TORCH_INDEX:-}" ]; then
    .venv/bin/python -m pip install -q "torch==${MONITOR_TORCH_VERSION:-2.13.0}" --index-url "$MONITOR_TORCH_INDEX"
else
    .venv/bin/python -m pip install -q "torch==${MONITOR_TORCH_VERSION:-2.13.0}"
fi
.venv/bin/python -m pip install -q -e ".[dev]"
