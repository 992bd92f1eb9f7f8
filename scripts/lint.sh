#!/usr/bin/env bash
# Lint, format check and types, exactly as .ci/run runs them (uses ./.venv).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff format --check .
.venv/bin/ruff check .
.venv/bin/mypy monitor
