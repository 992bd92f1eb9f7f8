"""source: nats against a real nats-server: 2 workers × 8 partitions × 20 streams.

Each worker owns half the partitions through durable consumers; every reading must be
handled exactly once, by the worker owning its stream's partition, in each stream's
order, and the alerts must be those one process decides on the same feed. The same
again with the devices publishing MQTT to the server's MQTT listener.
"""

from __future__ import annotations

import collections
import contextlib
import shutil
import time
from pathlib import Path

import pytest
import torch

from monitor.core.model.bundle import load_bundle
from monitor.core.scoring_model import ScoringModel
from monitor.io.nats import partition_of
from tests.broker import Mosquitto
from tests.daemon_support import Publisher, train_small_model, wait_until
from tests.nats_server import NatsServer, nats_server_binary
from tests.nats_support import (
    FAULTY,
    ROWS,
    STREAMS,
    alert_key,
    feed,
    messages,
    nats_config,
    offline_alerts,
    publish_nats,
    start_worker,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(nats_server_binary() is None, reason="nats-server is not installed"),
]

ROOT = Path(__file__).resolve().parents[1]
OWNED = {"a": tuple(range(0, 4)), "b": tuple(range(4, 8))}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.set_num_threads(1)
    models = tmp_path_factory.mktemp("nats-models")
    train_small_model(models)
    return models


@pytest.fixture(autouse=True)
def fresh_calibration(models):
    """Each test compares with one process starting fresh: no calibrator state saved by an
    earlier test's workers (a restarted worker restores its own, by design)."""
    shutil.rmtree(models / "state", ignore_errors=True)


def bridge(tmp_path, nats_mqtt_port: int) -> Mosquitto:
    """deploy/nats/mosquitto-bridge.conf as shipped, its address moved to the test server."""
    conf = (ROOT / "deploy" / "nats" / "mosquitto-bridge.conf").read_text()
    assert "address nats:1883" in conf
    return Mosquitto(tmp_path / "mosquitto", extra_config=conf.replace("nats:1883", f"127.0.0.1:{nats_mqtt_port}"))


@pytest.mark.parametrize("via", ["nats", "mqtt", "bridge"])
def test_two_workers_own_eight_partitions_of_twenty_streams(models, tmp_path, via):
    with NatsServer(tmp_path / "nats", partitions=8, mqtt=via != "nats") as server, contextlib.ExitStack() as stack:
        cfg = nats_config(server.url, models)
        workers = {name: start_worker(cfg, parts) for name, parts in OWNED.items()}
        try:
            for svc, _, _ in workers.values():
                wait_until(lambda svc=svc: svc.ready()[0] and svc.ingest.warmed.is_set(), what="worker ready")
            data = feed(float(int(time.time()) - ROWS - 60))
            msgs = messages(data, range(ROWS))
            if via == "nats":
                publish_nats(server.url, msgs)
            else:  # MQTT devices -> (a Mosquitto bridge ->) the server's MQTT listener -> the mappings
                port = (
                    server.mqtt_port if via == "mqtt" else stack.enter_context(bridge(tmp_path, server.mqtt_port)).port
                )
                pub = Publisher(port, client_id="devices")
                try:
                    infos = [pub.publish(t, p, qos=1) for t, p in msgs]
                    for info in infos:
                        info.wait_for_publish(10)
                finally:
                    pub.close()
            wait_until(
                lambda: sum(c.messages for _, c, _ in workers.values()) >= len(msgs), timeout=60, what="all handled"
            )
            time.sleep(0.3)  # anything extra (a duplicate) would show up now
        finally:
            for svc, _, thread in workers.values():
                svc.request_stop()
                thread.join(15)
    handled = {name: c.handled for name, (_, c, _) in workers.items()}
    # every reading exactly once
    everything = [(s, ch, t) for h in handled.values() for _, s, ch, t in h]
    sent = {
        (s, ch, float(data[s][0][i]))
        for s in STREAMS
        for ch in ("flow", "pressure", "temperature", "vibration", "current")
        for i in range(ROWS)
    }
    assert len(everything) == len(set(everything)) == len(sent)
    assert set(everything) == sent
    # by the owner of its stream's partition, which is the server's partition(8, site, asset)
    owner: dict[str, set[str]] = collections.defaultdict(set)
    for name, h in handled.items():
        for p, stream, _, _ in h:
            assert p in OWNED[name]
            assert p == partition_of(stream.split("/"), 8)
            owner[stream].add(name)
    assert all(len(names) == 1 for names in owner.values()) and set(owner) == set(STREAMS)
    assert {next(iter(n)) for n in owner.values()} == {"a", "b"}  # both workers have streams
    # each stream's order kept (per channel: its timestamps rise in handling order)
    for h in handled.values():
        last: dict[tuple[str, str], float] = {}
        for _, stream, channel, ts in h:
            assert ts > last.get((stream, channel), float("-inf"))
            last[(stream, channel)] = ts
    # the alerts one process takes on the same feed
    model = ScoringModel.from_bundle(load_bundle(models))
    expected = sorted(alert_key(a.to_dict()) for a in offline_alerts(cfg, model, msgs, time.time()))
    got = sorted(alert_key(a) for _, c, _ in workers.values() for a in c.alerts)
    assert got == expected
    assert set(FAULTY) <= {k[2] for k in expected if k[1] == "firing"}


def test_changing_the_number_of_workers_resumes_every_partition_warm(models, tmp_path):
    """docs/scaling.md, "Changing the number of workers": stop the 2 workers, start 1 owning
    all 8 partitions. It resumes each partition at its ack floor and warms it from the log,
    so the alerts are one process's, none repeated, though faults straddle the change."""
    with NatsServer(tmp_path / "nats", partitions=8) as server:
        cfg = nats_config(server.url, models)
        data = feed(float(int(time.time()) - ROWS - 60))
        msgs = messages(data, range(ROWS))
        split = 190 * len(data)  # mid-fault for every FAULTY stream
        workers = [start_worker(cfg, parts) for parts in OWNED.values()]
        collects = [c for _, c, _ in workers]
        try:
            for svc, _, _ in workers:
                wait_until(lambda svc=svc: svc.ready()[0], what="worker ready")
            publish_nats(server.url, msgs[:split])
            wait_until(lambda: sum(c.messages for c in collects) >= split, timeout=60, what="first part handled")
        finally:
            for svc, _, thread in workers:
                svc.request_stop()
                thread.join(15)
        svc, one, thread = start_worker(cfg, tuple(range(8)))
        try:
            wait_until(lambda: svc.ready()[0], what="the single worker ready (warmed)")
            publish_nats(server.url, msgs[split:])
            wait_until(lambda: one.messages >= len(msgs) - split, timeout=60, what="the rest handled")
            time.sleep(0.3)
        finally:
            svc.request_stop()
            thread.join(15)
    before = [(s, ch, t) for c in collects for _, s, ch, t in c.handled]
    after = [(s, ch, t) for _, s, ch, t in one.handled]
    assert len(before) == split * 5 and len(after) == (len(msgs) - split) * 5
    assert len(set(before + after)) == len(msgs) * 5  # every reading live exactly once
    assert one.warm > 0
    assert svc.muted_alerts >= len(FAULTY)  # the warm-up re-decided the firing episodes, muted
    model = ScoringModel.from_bundle(load_bundle(models))
    expected = sorted(alert_key(a.to_dict()) for a in offline_alerts(cfg, model, msgs, time.time()))
    got = sorted(alert_key(a) for c in [*collects, one] for a in c.alerts)
    assert len(got) == len(set(got)) and got == expected


def test_a_second_restart_without_new_messages_resumes_at_the_same_place(models, tmp_path):
    """A re-created consumer reports ack floor 0 until its first ack: the worker must take
    its start sequence as the floor, or a second restart would redeliver the whole log."""
    with NatsServer(tmp_path / "nats", partitions=8) as server:
        cfg = nats_config(server.url, models)
        data = feed(float(int(time.time()) - ROWS - 60))
        msgs = messages(data, range(60))
        runs = []
        for i in range(3):
            svc, collect, thread = start_worker(cfg, tuple(range(8)))
            try:
                wait_until(lambda svc=svc: svc.ready()[0], what="worker ready")
                if i == 0:
                    publish_nats(server.url, msgs)
                    wait_until(lambda c=collect: c.messages >= len(msgs), what="all handled")
                time.sleep(0.5)  # anything redelivered would arrive now
            finally:
                svc.request_stop()
                thread.join(15)
            runs.append((collect.messages, collect.warm))
    assert runs[0] == (len(msgs), 0)
    assert runs[1][0] == runs[2][0] == 0  # nothing live again
    assert runs[1][1] == runs[2][1] == len(msgs)  # both warmed from the same floor
