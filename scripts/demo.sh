#!/usr/bin/env bash
# One command on a fresh machine: install, then run the demo (train on a bundled recording,
# start a local broker, run the daemon, replay a fault, print alerts). Ctrl-C stops it.
#   bash scripts/demo.sh [--duration 90] [--speed 20] [--metrics-port 9108]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
    # no system broker: the pure-Python one
    .venv/bin/python -m pip install -q -e ".[demo]"
fi
exec .venv/bin/monitor demo "$@"
