"""Sequence numbers in payloads (topics[].sequence_field): gaps and restarts counted per
stream and exported, so loss at the broker (Mosquitto's per-client queue) becomes visible."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from monitor.app.service import Service
from monitor.core.config import ConfigError, TopicRule, load_config
from monitor.io.codec import Codec
from monitor.io.sequence import REORDER_WINDOW, SequenceCollector, SequenceTracker

NOW = 1_700_000_000.0


def sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def test_tracker_counts_missing_numbers_ignores_redeliveries_and_sees_restarts():
    t = SequenceTracker()
    for seq in (1, 2, 3, 7, 8):  # 4, 5, 6 lost
        t.see("a", seq)
    assert (t.missing, t.restarts) == (3, 0)
    t.see("a", 8)  # a QoS 1 redelivery
    t.see("a", 5)  # late, within the reorder window
    assert (t.missing, t.restarts) == (3, 0)
    t.see("a", 9)
    assert t.missing == 3  # the late one did not move the newest back
    t.see("a", 9 + REORDER_WINDOW + 10)
    assert t.missing == 3 + REORDER_WINDOW + 9
    t.see("a", 0)  # the sender restarted
    t.see("a", 1)
    assert t.restarts == 1 and t.missing == 3 + REORDER_WINDOW + 9
    t.see("b", 100)  # streams are independent; a first number is no gap
    t.see("b", 102)
    assert t.missing == 3 + REORDER_WINDOW + 9 + 1


def test_tracker_memory_is_bounded():
    t = SequenceTracker(max_streams=10)
    for i in range(1000):
        t.see(f"s{i}", 1)
    assert len(t._last) <= 10


def test_codec_reads_the_sequence_field_and_keeps_it_out_of_the_channels():
    codec = Codec(
        [
            TopicRule(template="m/{stream}", format="json_multi", sequence_field="seq"),
            TopicRule(template="j/{stream}/{channel}", format="json", sequence_field="meta.n"),
        ]
    )
    for seq in (10, 11, 14):  # 12 and 13 lost
        readings, rejects = codec.decode("m/pump1", f'{{"ts": {NOW - 5}, "seq": {seq}, "flow": 1.5}}'.encode(), NOW)
        assert rejects == []
        assert [r.channel for r in readings] == ["flow"]  # not "seq"
    assert codec.sequences.missing == 2
    for seq in (1, 2, 3, 5):
        readings, _ = codec.decode("j/pump2/temp", f'{{"value": 1, "meta": {{"n": {seq}}}}}'.encode(), NOW)
        assert len(readings) == 1
    assert codec.sequences.missing == 3
    # batched rows as json_multi, the columnar path included: the field is still not a channel
    rows = TopicRule(template="b/{stream}/{channel}", format="json_array", sequence_field="seq")
    for cols in (False, True):
        readings, rejects = Codec([rows], columns=cols).decode(
            "b/p3/x", b'[{"ts": 1, "seq": 1, "a": 1}, {"ts": 2, "seq": 2, "a": 2}]', NOW
        )
        assert rejects == []
        assert [r.channel for r in readings] == ["a", "a"]


def test_a_missing_or_non_integer_sequence_number_is_ignored_not_a_reject():
    codec = Codec([TopicRule(template="m/{stream}", format="json_multi", sequence_field="seq")])
    for doc in (b'{"a": 1}', b'{"a": 1, "seq": "x"}', b'{"a": 1, "seq": 2.5}', b'{"a": 1, "seq": true}'):
        readings, rejects = codec.decode("m/s", doc, NOW)
        assert len(readings) == 1 and rejects == []
    assert codec.sequences.missing == 0 and codec.sequences._last == {}


def test_rules_without_a_sequence_field_track_nothing():
    codec = Codec([TopicRule(template="m/{stream}", format="json_multi")])
    for seq in (1, 5, 9):
        readings, _ = codec.decode("m/s", f'{{"seq": {seq}, "a": 1}}'.encode(), NOW)
        assert {r.channel for r in readings} == {"seq", "a"}  # today's behaviour: a numeric key is a channel
    assert codec.sequences.missing == 0


def test_collector_exports_the_counts():
    t = SequenceTracker()
    registry = CollectorRegistry()
    registry.register(SequenceCollector(t))
    for seq in (1, 4):
        t.see("a", seq)
    t.see("a", 4 - REORDER_WINDOW - 1)  # far back: a restart
    text = generate_latest(registry).decode()
    assert sample(text, "monitor_sequence_missing_total") == 2.0
    assert sample(text, "monitor_sequence_restarts_total") == 1.0


def test_the_daemon_exports_the_gaps_of_its_codec(tmp_path):
    (tmp_path / "c.yaml").write_text(
        f"stream: {{channels: [flow], period_seconds: 1.0}}\nmodels: {{dir: {tmp_path / 'models'}}}\n"
        "metrics: {port: 0}\n"
        "topics: [{template: 'plant/{stream}', format: json_multi, sequence_field: seq}]\n"
    )
    svc = Service(load_config(tmp_path / "c.yaml", environ={}))
    for seq in (1, 2, 6):
        svc.codec.decode("plant/p1", f'{{"seq": {seq}, "flow": 1.0}}'.encode(), NOW)
    assert sample(generate_latest(svc.registry).decode(), "monitor_sequence_missing_total") == 3.0


@pytest.mark.parametrize("field", ["", "a..b"])
def test_a_bad_sequence_field_is_a_config_error(field):
    with pytest.raises(ConfigError) as err:
        TopicRule(sequence_field=field)
    assert err.value.key == "topics[].sequence_field"
