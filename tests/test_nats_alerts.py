"""Alerts into a JetStream stream exactly once, across a kill -9 that re-sends them.

A worker is killed between sending alerts and acking the readings that raised them: the
widest form of that window, made certain by a server permission that denies its acks
(``$JS.ACK.>``), so it handles and alerts on the whole feed and acks nothing. Restarted
with working credentials, it gets every message again and sends every alert again, with
the same ``Nats-Msg-Id`` (``<alert_id>:<state>``). A core subscriber sees each alert
twice (at-least-once); the alert stream (``nats.alerts_stream``) holds each one once.
"""

from __future__ import annotations

import asyncio
import json
import time

import nats
import pytest
import torch
import yaml

from monitor.core.model.bundle import load_bundle
from monitor.core.scoring_model import ScoringModel
from tests.broker import free_port
from tests.daemon_support import http_get, train_small_model, wait_until
from tests.nats_server import NatsServer, nats_server_binary
from tests.nats_support import (
    ROWS,
    AlertTap,
    Worker,
    alert_key,
    drained,
    feed,
    messages,
    nats_config,
    offline_alerts,
    publish_nats,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(nats_server_binary() is None, reason="nats-server is not installed"),
]

AUTH = """
authorization {
  users = [
    {user: noack, password: noack-pw, permissions: {publish: {deny: ["$JS.ACK.>"]}}}
    {user: worker, password: worker-pw}
  ]
}
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.set_num_threads(1)
    models = tmp_path_factory.mktemp("nats-alerts-models")
    train_small_model(models)
    return models


def stored_alerts(url: str, stream: str = "ALERTS") -> list[dict]:
    async def go() -> list[dict]:
        nc = await nats.connect(url)
        js = nc.jetstream()
        try:
            n = (await js.stream_info(stream)).state.messages
            return [json.loads((await js.get_msg(stream, seq)).data) for seq in range(1, n + 1)]
        finally:
            await nc.close()

    return asyncio.run(go())


def _metric(port: int, name: str) -> float:
    for line in http_get(port, "/metrics")[1].splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return -1.0


def test_kill_9_between_alerts_and_acks_stores_each_alert_once(models, tmp_path):
    with NatsServer(tmp_path / "nats", partitions=8, extra=AUTH) as server:
        admin = f"nats://worker:worker-pw@127.0.0.1:{server.port}"
        cfg = nats_config(server.url, models, alerts_stream="ALERTS", ack_wait_seconds=120)
        config = tmp_path / "worker.yaml"
        config.write_text(yaml.safe_dump(cfg.to_dict()))
        tap = AlertTap(admin)
        data = feed(float(int(time.time()) - ROWS - 60))
        msgs = messages(data, range(ROWS))
        model = ScoringModel.from_bundle(load_bundle(models))
        expected = sorted(alert_key(a.to_dict()) for a in offline_alerts(cfg, model, msgs, time.time()))
        port = free_port()
        creds = {"MONITOR_NATS__USER": "noack", "MONITOR_NATS__PASSWORD": "noack-pw"}
        w = Worker(config, "0-7", port, tmp_path / "w.log", env=creds).start()
        try:
            publish_nats(admin, msgs)
            wait_until(lambda: len(tap.alerts) >= len(expected), timeout=90, what="every alert sent once")
            assert not drained(admin, range(8))  # handled, alerted, nothing acked
            w.kill()  # between the alerts and the acks of their readings
            w.env = {"MONITOR_NATS__USER": "worker", "MONITOR_NATS__PASSWORD": "worker-pw"}
            w.start()
            wait_until(lambda: drained(admin, range(8)), timeout=90, what="everything handled again and acked")
            wait_until(lambda: len(tap.alerts) >= 2 * len(expected), timeout=30, what="every alert re-sent")
            duplicates = _metric(port, "monitor_nats_alerts_duplicate_total")
            time.sleep(0.5)
        finally:
            code = w.stop()
            tap.close()
        stored = stored_alerts(admin)
    assert code == 0
    assert sorted(alert_key(a) for a in tap.alerts) == sorted(expected * 2)  # at-least-once: sent twice
    assert sorted(alert_key(a) for a in stored) == expected  # the stream: each alert once
    assert duplicates == len(expected)  # the server dropped every re-send and said so
