"""The codec conventions through a real Mosquitto: a {name...} rule subscribes with '#'
and takes zigbee2mqtt's slashed friendly names, Telegraf line protocol arrives as
readings, and a gap in a sender's sequence numbers is counted."""

from __future__ import annotations

import queue
from pathlib import Path

import pytest
from broker import mosquitto_binary
from test_mqtt_ingest import broker, cfg_for, drain, make_ingest, publish, wait_for  # noqa: F401 (fixtures)

from monitor.core.config import TopicRule
from monitor.io.codec import Codec

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed"),
]

PAYLOADS = Path(__file__).resolve().parent / "fixtures" / "payloads"
RULES = [
    TopicRule(template="zigbee2mqtt/{device...}", stream="{device}", format="json_multi", timestamp_field="last_seen"),
    TopicRule(template="telegraf/{host}/{plugin}", stream="{host}", format="influx"),
    TopicRule(template="plant/{stream}", format="json_multi", sequence_field="seq"),
]


def test_multi_level_rule_line_protocol_and_sequence_gaps_over_a_real_broker(broker, make_ingest):  # noqa: F811
    codec = Codec(RULES)
    q: queue.Queue = queue.Queue(100)
    ingest = make_ingest(cfg_for(broker), q, rules=RULES, codec=codec)
    wait_for(lambda: ingest.subscribed, what="subscription")
    weather = (PAYLOADS / "zigbee2mqtt-weather.json").read_bytes()
    publish(
        broker,
        [
            ("zigbee2mqtt/kitchen/weather", weather),
            ("zigbee2mqtt/garden/shed/weather", weather),
            ("telegraf/edge-01/cpu", (PAYLOADS / "telegraf-cpu.influx").read_bytes()),
            *[("plant/p1", f'{{"seq": {n}, "flow": {n}.5}}'.encode()) for n in (1, 2, 3, 7, 8)],
        ],
    )
    items = drain(q, 6 + 6 + 4 + 5)
    readings = [r for item in items for r in item.readings]
    streams = {r.stream for r in readings}
    assert {"kitchen/weather", "garden/shed/weather", "edge-01", "p1"} == streams
    assert {r.channel for r in readings if r.stream == "edge-01"} == {
        "cpu.usage_user",
        "cpu.usage_system",
        "cpu.usage_idle",
        "cpu.usage_iowait",
    }
    assert [r.channel for r in readings if r.stream == "p1"] == ["flow"] * 5
    assert all(not item.rejected for item in items)
    assert codec.sequences.missing == 3  # 4, 5 and 6 never arrived
