"""Operating NATS workers against a real nats-server: changing N, metrics, recordings.

Changing N follows docs/scaling.md, "Changing N", step by step: the stream captures the
new prefix (`monitor nats-stream`), the server's mappings switch to it (a config reload),
the old workers drain and stop, and the new workers warm their streams from the old
prefix's last window, re-keyed under the new N. Devices publish throughout.
"""

from __future__ import annotations

import re
import shutil
import time
import urllib.request
from pathlib import Path

import pytest
import torch
import yaml

from monitor.app.cli import main
from monitor.core.config import shard_partitions
from monitor.core.model.bundle import load_bundle
from monitor.core.scoring_model import ScoringModel
from monitor.io.nats import partition_of
from monitor.io.nats_ops import METRIC_NAMES
from monitor.io.recording import iter_recordings
from tests.daemon_support import daemon_config, train_small_model, wait_until
from tests.nats_server import NatsServer, nats_server_binary
from tests.nats_support import (
    FAULTY,
    ROWS,
    alert_key,
    assert_order_kept,
    drained,
    feed,
    messages,
    nats_config,
    offline_alerts,
    publish_nats,
    readings_of,
    start_worker,
    stop_workers,
)

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(nats_server_binary() is None, reason="nats-server is not installed"),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.set_num_threads(1)
    models = tmp_path_factory.mktemp("nats-ops-models")
    train_small_model(models)
    return models


@pytest.fixture(autouse=True)
def fresh_calibration(models):
    shutil.rmtree(models / "state", ignore_errors=True)


def test_changing_n_from_4_to_6_partitions_loses_nothing_and_keeps_the_alerts(models, tmp_path):
    with NatsServer(tmp_path / "nats", partitions=4) as server:
        old_cfg = nats_config(server.url, models, partitions=4)
        new_cfg = nats_config(
            server.url, models, partitions=6, subject_prefix="part6", durable_prefix="monitor6", warmup_from="part"
        )
        new_yaml = tmp_path / "new.yaml"
        new_yaml.write_text(yaml.safe_dump(new_cfg.to_dict()))
        data = feed(float(int(time.time()) - ROWS - 60))
        msgs = messages(data, range(ROWS))
        split = 190 * len(data)  # mid-fault for every FAULTY stream
        old = [start_worker(old_cfg, parts) for parts in ((0, 1), (2, 3))]
        try:
            for svc, _, _ in old:
                wait_until(lambda svc=svc: svc.ready()[0], what="old worker ready")
            publish_nats(server.url, msgs[:split])
            wait_until(lambda: sum(c.messages for _, c, _ in old) >= split, timeout=60, what="first part handled")
            # 1. the stream captures the new prefix too; 2. the mappings switch (reload)
            assert main(["nats-stream", "--config", str(new_yaml)]) == 0
            server.remap(6, "part6")
            publish_nats(server.url, msgs[split:])  # devices go on publishing: onto part6.*
            # 3. the old workers drain what they had (nothing new reaches them), then stop
            wait_until(lambda: drained(server.url, range(4)), timeout=60, what="old partitions drained")
        finally:
            stop_workers(old)
        new = [start_worker(new_cfg, shard_partitions(f"{i}/2", 6)) for i in range(2)]
        try:
            wait_until(
                lambda: sum(c.messages for _, c, _ in new) >= len(msgs) - split, timeout=60, what="the rest handled"
            )
            time.sleep(0.3)  # anything extra (a duplicate) would show up now
        finally:
            stop_workers(new)
    before = [(s, ch, t) for _, c, _ in old for _, s, ch, t in c.handled]
    after = [(s, ch, t) for _, c, _ in new for _, s, ch, t in c.handled]
    assert len(before) == len(set(before)) and set(before) == readings_of(data, range(190))
    assert len(after) == len(set(after)) and set(after) == readings_of(data, range(190, ROWS))
    for _, c, _ in old:
        assert_order_kept(c.handled)
    for _, c, _ in new:  # on the partition the server's partition(6, site, asset) gives
        assert all(p == partition_of(s.split("/"), 6) for p, s, _, _ in c.handled)
        assert_order_kept(c.handled)
    assert all(c.warm > 0 for _, c, _ in new)  # each warmed its streams from the old prefix
    assert sum(svc.muted_alerts for svc, _, _ in new) >= len(FAULTY)  # the open episodes re-decided, muted
    model = ScoringModel.from_bundle(load_bundle(models))
    expected = sorted(alert_key(a.to_dict()) for a in offline_alerts(old_cfg, model, msgs, time.time()))
    got = sorted(alert_key(a) for _, c, _ in [*old, *new] for a in c.alerts)
    assert len(got) == len(set(got)) and got == expected
    assert {k[2] for k in expected if k[1] == "resolved"} >= set(FAULTY)  # resolved after the switch


def _scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("monitor_nats_"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_metrics_per_partition_and_recordings_of_a_nats_worker(models, tmp_path):
    """Lag / pending, acks, redeliveries, warm-up by partition; record.enabled records what
    the worker received, as the MQTT path does (the same file format, replayable)."""
    with NatsServer(tmp_path / "nats", partitions=4) as server:
        rec = tmp_path / "rec"
        nats_section = {"servers": [server.url], "partitions": 4, "reconnect_seconds": 0.2, "stats_seconds": 0.2}
        cfg = daemon_config(1, models, source="nats", nats=nats_section, record={"enabled": True, "dir": str(rec)})
        data = feed(float(int(time.time()) - ROWS - 60))
        msgs = messages(data, range(40))
        svc, collect, thread = start_worker(cfg, (0, 1))
        try:
            wait_until(lambda: svc.ready()[0], what="worker ready")
            publish_nats(server.url, msgs)
            mine = [m for m in msgs if partition_of(m[0].split("/")[1:3], 4) in (0, 1)]
            wait_until(lambda: collect.messages >= len(mine), what="its partitions handled")
            port = svc.http.port
            wait_until(
                lambda: (
                    _scrape(port).get('monitor_nats_consumer_pending{partition="0"}') == 0
                    and _scrape(port).get('monitor_nats_consumer_ack_pending{partition="1"}') == 0
                ),
                what="the consumers' counts read",
            )
            m = _scrape(port)
        finally:
            stop_workers([(svc, collect, thread)])
        # a restart warms up: its warm-up readings are counted per partition
        svc2, collect2, thread2 = start_worker(cfg, (0, 1))
        try:
            wait_until(lambda: svc2.ready()[0], what="restarted worker ready")
            m2 = _scrape(svc2.http.port)
        finally:
            stop_workers([(svc2, collect2, thread2)])
    per_part = {p: sum(1 for t, _ in mine if partition_of(t.split("/")[1:3], 4) == p) for p in (0, 1)}
    assert {p: m[f'monitor_nats_delivered_total{{partition="{p}"}}'] for p in (0, 1)} == per_part
    assert not any('partition="2"' in k or 'partition="3"' in k for k in m)  # only its own partitions
    assert all(m[f'monitor_nats_acks_total{{partition="{p}"}}'] >= 1 for p in (0, 1))
    assert m['monitor_nats_redelivered_total{partition="0"}'] == 0
    assert m['monitor_nats_warmup_messages_total{partition="0"}'] == 0
    assert {p: m2[f'monitor_nats_warmup_messages_total{{partition="{p}"}}'] for p in (0, 1)} == per_part
    assert {p: m2[f'monitor_nats_warmup_readings_total{{partition="{p}"}}'] for p in (0, 1)} == {
        p: n * 5 for p, n in per_part.items()
    }
    # the NATS metrics the alert rules use are the ones a worker exports
    rules = (ROOT / "deploy" / "prometheus" / "rules" / "monitor.rules.yml").read_text()
    used = set(re.findall(r"monitor_nats_\w+", rules))
    assert used and used <= {k.split("{")[0] for k in m}
    assert {k.split("{")[0] for k in m} == set(METRIC_NAMES)  # what tests/test_deploy.py knows
    # the recording holds each live message once (warm-up replays are not recorded again)
    recorded = [(r.topic, r.payload) for r in iter_recordings(rec)]
    assert sorted(recorded) == sorted(mine)
