# syntax=docker/dockerfile:1
# monitor: a small, CPU-only image of the streaming sensor anomaly daemon.
#
#   docker build -t monitor .
#   docker run --rm -v ./deploy/config:/etc/monitor:ro -v monitor-state:/var/lib/monitor \
#       -e MONITOR_MQTT__HOST=broker -p 127.0.0.1:9108:9108 monitor
#
# Volumes: /etc/monitor (monitor.yaml, read-only is fine) and /var/lib/monitor (models/
# with the `current` pointer, recordings/). Runs as uid 10001; exits 78 on a bad config.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- build: a venv in /opt
FROM ${PYTHON_IMAGE} AS build
# The CPU build of torch (no CUDA libraries: about a fifth of the size); same pin as
# scripts/install.sh. Override TORCH_INDEX with a mirror of PyTorch's CPU wheel index.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/monitor/venv \
 && /opt/monitor/venv/bin/pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY monitor ./monitor
# No [dev] extras (orjson is a runtime dependency now); matplotlib is only for report plots.
RUN /opt/monitor/venv/bin/pip install --no-cache-dir . \
 && find /opt/monitor/venv -depth -type d -name __pycache__ -exec rm -rf {} + \
 && rm -rf /opt/monitor/venv/lib/python3.*/site-packages/torch/include \
           /opt/monitor/venv/lib/python3.*/site-packages/torch/share/cmake

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="monitor" \
      org.opencontainers.image.description="Streaming sensor anomaly daemon: MQTT in, alerts and Prometheus metrics out" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 monitor \
 && useradd --system --uid 10001 --gid monitor --home-dir /var/lib/monitor --no-create-home \
            --shell /usr/sbin/nologin monitor \
 && install -d -o monitor -g monitor -m 0750 /var/lib/monitor /var/lib/monitor/models /var/lib/monitor/recordings
COPY --from=build /opt/monitor/venv /opt/monitor/venv
COPY deploy/config/monitor.yaml /etc/monitor/monitor.yaml
# The metrics port listens on all of the container's addresses (its own network
# namespace); publish it to the host's loopback only, or to the Prometheus network.
ENV PATH=/opt/monitor/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OMP_NUM_THREADS=1 \
    MONITOR_METRICS__ADDRESS=0.0.0.0 \
    MONITOR_METRICS__PORT=9108 \
    MONITOR_MODELS__DIR=/var/lib/monitor/models \
    MONITOR_RECORD__DIR=/var/lib/monitor/recordings
USER 10001:10001
WORKDIR /var/lib/monitor
VOLUME ["/etc/monitor", "/var/lib/monitor"]
EXPOSE 9108
# SIGTERM drains and stops within 8 s (give `docker stop -t 20`, compose stop_grace_period).
STOPSIGNAL SIGTERM
# /healthz: 200 while the scoring thread runs (liveness); /readyz adds broker and model.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('MONITOR_METRICS__PORT', '9108'); sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/healthz' % port, timeout=4).status == 200 else 1)"]
ENTRYPOINT ["monitor"]
CMD ["run", "--config", "/etc/monitor/monitor.yaml"]
