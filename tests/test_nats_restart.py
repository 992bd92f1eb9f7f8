"""kill -9 of one NATS worker mid-stream, then a restart: no reading lost, no alert twice.

Two `monitor run` processes own partitions 0-3 and 4-7. Worker A (0-3) is killed with
SIGKILL right after it announced a firing alert, while faults are still in progress;
the rest of the feed is published while it is down. Restarted, it replays its
partitions' last window from JetStream (alerts muted), then takes what it had not acked
and what came since: the alerts seen on the alert subject are exactly those of one
process on the whole feed (the firing once, its resolution once, same alert id).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import yaml

from monitor.core.model.bundle import load_bundle
from monitor.core.scoring_model import ScoringModel
from monitor.io.nats import partition_of
from tests.broker import free_port
from tests.daemon_support import train_small_model, wait_until
from tests.nats_server import NatsServer, nats_server_binary
from tests.nats_support import (
    FAULTY,
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

ROOT = Path(__file__).resolve().parents[1]
KILL_AT = 195  # rows published before the kill: the faults of partition 0 (rows 150-240) are firing


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.set_num_threads(1)
    models = tmp_path_factory.mktemp("nats-restart-models")
    train_small_model(models)
    return models


def test_kill_9_and_restart_loses_nothing_and_repeats_no_alert(models, tmp_path):
    a_faults = [s for s in FAULTY if partition_of(s.split("/"), 8) < 4]
    assert a_faults, "the test needs a faulty stream in worker A's partitions"
    with NatsServer(tmp_path / "nats", partitions=8) as server:
        cfg = nats_config(server.url, models)
        config = tmp_path / "worker.yaml"
        config.write_text(yaml.safe_dump(cfg.to_dict()))
        tap = AlertTap(server.url)
        a = Worker(config, "0-3", free_port(), tmp_path / "a.log").start()
        b = Worker(config, "4-7", free_port(), tmp_path / "b.log").start()
        try:
            data = feed(float(int(time.time()) - ROWS - 60))
            msgs = messages(data, range(ROWS))
            split = KILL_AT * len(data)
            publish_nats(server.url, msgs[:split])
            wait_until(
                lambda: {x["stream"] for x in tap.alerts if x["state"] == "firing"} >= set(a_faults),
                timeout=60,
                what="worker A's firing alerts",
            )
            # Mid-episode, once A has acked what it handled: an alert sent in the instant
            # between its batch's handling and that batch's ack would be sent again after
            # the restart, with the same alert_id (at-least-once; docs/scaling.md), which
            # is not what this test is about.
            wait_until(lambda: drained(server.url, range(4)), timeout=60, what="worker A's partitions acked")
            a.kill()  # mid-episode: the faults fired, none resolved yet
            publish_nats(server.url, msgs[split:])
            a.start()
            wait_until(lambda: drained(server.url, range(8)), timeout=60, what="every partition acked")
            time.sleep(1.0)  # a repeated alert would arrive now
        finally:
            codes = [w.stop() for w in (a, b)]
            tap.close()
    assert codes == [0, 0]
    model = ScoringModel.from_bundle(load_bundle(models))
    expected = sorted(alert_key(x.to_dict()) for x in offline_alerts(cfg, model, msgs, time.time()))
    got = sorted(alert_key(x) for x in tap.alerts)
    assert len(got) == len(set(got))  # no alert twice
    assert got == expected
    firing = {k[2] for k in expected if k[1] == "firing"}
    resolved = {k[2] for k in expected if k[1] == "resolved"}
    assert set(a_faults) <= firing and set(a_faults) <= resolved  # fired before the kill, resolved after
    assert "warmed with" in (tmp_path / "a.log").read_text()
