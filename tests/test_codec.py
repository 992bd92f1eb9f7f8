"""Codec: topic templates, payload formats, timestamps and reject reasons."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.core.config import ConfigError, TopicRule
from monitor.core.types import REJECT_REASONS as REASONS
from monitor.core.types import RawMessage, Reading, Rejected
from monitor.io.codec import Codec, parse_timestamp

NOW = 1_700_000_000.0  # received_at used throughout

RULES = [
    TopicRule(template="num/{stream}/{channel}", format="number"),
    TopicRule(template="one/{stream}/{channel}", format="json"),
    TopicRule(template="multi/{site}/{asset}", format="json_multi", stream="{site}/{asset}", channel="x"),
    TopicRule(template="batch/{stream}/{channel}", format="json_array"),
    TopicRule(template="plant/{site}/{asset}/{channel}", format="auto", stream="{site}/{asset}"),
    TopicRule(
        template="dev/unit-{n}/data",
        format="json",
        stream="unit{n}",
        channel="value",
        value_field="v",
        timestamp_field="time",
    ),
]


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(RULES, max_payload_bytes=4096, max_future_seconds=300.0)


def decode(codec: Codec, topic: str, payload: bytes) -> tuple[list[Reading], list[Rejected]]:
    return codec.decode(topic, payload, NOW)


# --------------------------------------------------------------------------- accepted

ACCEPTED = [
    # (topic, payload, expected readings as (stream, channel, timestamp, value))
    ("num/p1/temp", b"21.5", [("p1", "temp", NOW, 21.5)]),
    ("num/p1/temp", b" -3e2\n", [("p1", "temp", NOW, -300.0)]),
    ("num/p1/temp", b"7", [("p1", "temp", NOW, 7.0)]),
    ("one/p1/temp", b'{"value": 1.5}', [("p1", "temp", NOW, 1.5)]),
    ("one/p1/temp", b'{"value": 2, "ts": 1699999999}', [("p1", "temp", 1699999999.0, 2.0)]),
    ("one/p1/temp", b'{"value": 2, "ts": 1699999999500}', [("p1", "temp", 1699999999.5, 2.0)]),
    ("one/p1/temp", b'{"value": 2, "ts": "1699999999.25"}', [("p1", "temp", 1699999999.25, 2.0)]),
    ("one/p1/temp", b'{"value": 2, "ts": "2023-11-14T22:13:20Z"}', [("p1", "temp", 1700000000.0, 2.0)]),
    ("one/p1/temp", b'{"value": 2, "ts": "2023-11-14T23:13:20+01:00"}', [("p1", "temp", 1700000000.0, 2.0)]),
    ("one/p1/temp", b'{"value": 2, "ts": "2023-11-14 22:13:20"}', [("p1", "temp", 1700000000.0, 2.0)]),
    ("one/p1/temp", b'{"value": 2, "ts": null}', [("p1", "temp", NOW, 2.0)]),
    ("one/p1/temp", b'{"value": "4.25"}', [("p1", "temp", NOW, 4.25)]),
    ("one/p1/temp", b'{"value": 3, "channel": "rpm"}', [("p1", "rpm", NOW, 3.0)]),
    ("one/p1/temp", b'{"value": 3, "ts": 1700000299}', [("p1", "temp", 1700000299.0, 3.0)]),  # within 300 s
    (
        "multi/s1/pump",
        b'{"ts": 1699999990, "a": 1, "b": 2.5, "unit": "C", "meta": {"x": 1}}',
        [("s1/pump", "a", 1699999990.0, 1.0), ("s1/pump", "b", 1699999990.0, 2.5)],
    ),
    (
        "batch/p1/temp",
        b'[{"value": 1, "ts": 1699999990}, {"value": 2, "ts": 1699999991, "channel": "rpm"}]',
        [("p1", "temp", 1699999990.0, 1.0), ("p1", "rpm", 1699999991.0, 2.0)],
    ),
    (
        "batch/p1/temp",
        b'[{"ts": 1699999990, "a": 1, "b": 2}]',
        [("p1", "a", 1699999990.0, 1.0), ("p1", "b", 1699999990.0, 2.0)],
    ),
    ("batch/p1/temp", b"[]", []),
    ("plant/s/pump/temp", b"21.5", [("s/pump", "temp", NOW, 21.5)]),
    ("plant/s/pump/temp", b'{"value": 1}', [("s/pump", "temp", NOW, 1.0)]),
    ("plant/s/pump/temp", b'{"a": 1, "b": 2}', [("s/pump", "a", NOW, 1.0), ("s/pump", "b", NOW, 2.0)]),
    ("plant/s/pump/temp", b'  [{"value": 1}, {"c": 3}]', [("s/pump", "temp", NOW, 1.0), ("s/pump", "c", NOW, 3.0)]),
    ("dev/unit-7/data", b'{"v": 9, "time": 1699999000}', [("unit7", "value", 1699999000.0, 9.0)]),
]


@pytest.mark.parametrize("topic,payload,expected", ACCEPTED, ids=[f"{t}:{p[:30]!r}" for t, p, _ in ACCEPTED])
def test_accepted_payloads_become_readings(codec: Codec, topic: str, payload: bytes, expected: list) -> None:
    readings, rejects = decode(codec, topic, payload)
    assert rejects == []
    assert [tuple(r) for r in readings] == expected
    assert all(type(r) is Reading and type(r.value) is float and type(r.timestamp) is float for r in readings)


# --------------------------------------------------------------------------- rejected

REJECTED = [
    # (topic, payload, reasons in order, number of readings still produced)
    ("nowhere/p1/temp", b"1", ["unmatched_topic"], 0),
    ("num/p1", b"1", ["unmatched_topic"], 0),
    ("num/p1/temp/extra", b"1", ["unmatched_topic"], 0),
    ("num//temp", b"1", ["unmatched_topic"], 0),  # a placeholder never matches an empty level
    ("dev/unit-/data", b'{"v": 1}', ["unmatched_topic"], 0),
    ("num/p1/temp", b"1" * 4097, ["oversized"], 0),
    ("num/p1/temp", b"abc", ["malformed"], 0),
    ("num/p1/temp", b"true", ["malformed"], 0),
    ("num/p1/temp", b"\xff\xfe1", ["malformed"], 0),
    ("num/p1/temp", b"nan", ["non_finite"], 0),
    ("num/p1/temp", b"-Infinity", ["non_finite"], 0),
    ("num/p1/temp", b"1e999", ["non_finite"], 0),
    ("num/p1/temp", b"", ["missing_value"], 0),
    ("num/p1/temp", b"  \n", ["missing_value"], 0),
    ("one/p1/temp", b"{not json", ["malformed"], 0),
    ("one/p1/temp", b"[1, 2]", ["malformed"], 0),
    ("one/p1/temp", b"21.5", ["malformed"], 0),
    ("one/p1/temp", b'{"value": "\xff"}', ["malformed"], 0),
    ("one/p1/temp", b'{"value": true}', ["malformed"], 0),
    ("one/p1/temp", b'{"value": [1]}', ["malformed"], 0),
    ("one/p1/temp", b'{"value": "warm"}', ["malformed"], 0),
    ("one/p1/temp", b'{"value": NaN}', ["non_finite"], 0),
    ("one/p1/temp", b'{"value": Infinity}', ["non_finite"], 0),
    ("one/p1/temp", b'{"value": "nan"}', ["non_finite"], 0),
    ("one/p1/temp", b'{"value": "-inf"}', ["non_finite"], 0),
    ("one/p1/temp", b'{"value": 1' + b"0" * 400 + b"}", ["non_finite"], 0),
    ("one/p1/temp", b'{"value": null}', ["missing_value"], 0),
    ("one/p1/temp", b'{"other": 1}', ["missing_value"], 0),
    ("one/p1/temp", b'{"value": 1, "ts": "yesterday"}', ["bad_timestamp"], 0),
    ("one/p1/temp", b'{"value": 1, "ts": true}', ["bad_timestamp"], 0),
    ("one/p1/temp", b'{"value": 1, "ts": "nan"}', ["bad_timestamp"], 0),
    ("one/p1/temp", b'{"value": 1, "ts": 1700000301}', ["future_timestamp"], 0),
    ("one/p1/temp", b'{"value": 1, "ts": "2099-01-01T00:00:00Z"}', ["future_timestamp"], 0),
    ("one/p1/temp", b'{"value": 1, "channel": ["x"]}', ["malformed"], 0),
    ("multi/s1/pump", b'{"a": NaN, "b": 1, "c": true}', ["non_finite", "malformed"], 1),
    ("multi/s1/pump", b'{"unit": "C"}', ["missing_value"], 0),
    ("multi/s1/pump", b'{"a": 1, "ts": "soon"}', ["bad_timestamp"], 0),
    ("multi/s1/pump", b'{"a": 1, "ts": 1800000000}', ["future_timestamp"], 0),
    ("multi/s1/pump", b"[1]", ["malformed"], 0),
    ("batch/p1/temp", b'{"value": 1}', ["malformed"], 0),
    (
        "batch/p1/temp",
        b'[{"value": 1}, 5, {"value": "x"}, {"value": 2}, {"value": 3, "ts": 2e9}]',
        ["malformed", "malformed", "future_timestamp"],
        2,
    ),
    ("plant/s/pump/temp", b"[" * 3000, ["malformed"], 0),
    ("plant/s/pump/temp", b'"21.5"', ["malformed"], 0),
]


@pytest.mark.parametrize(
    "topic,payload,reasons,n_readings", REJECTED, ids=[f"{t}:{p[:30]!r}" for t, p, _, _ in REJECTED]
)
def test_bad_input_is_rejected_with_reason(
    codec: Codec, topic: str, payload: bytes, reasons: list, n_readings: int
) -> None:
    readings, rejects = decode(codec, topic, payload)
    assert [r.reason for r in rejects] == reasons
    assert len(readings) == n_readings
    assert all(r.detail and len(r.detail) < 400 for r in rejects)


def test_every_reason_is_a_declared_label(codec: Codec) -> None:
    produced = set()
    for topic, payload, _, _ in REJECTED:
        produced.update(r.reason for r in decode(codec, topic, payload)[1])
    assert produced == set(REASONS) - {"internal"}


def test_unexpected_errors_become_internal_rejects(codec: Codec, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(codec, "_single", boom)
    assert codec.decode("one/p1/temp", b'{"value": 1}', NOW) == ([], [Rejected("internal", "RuntimeError: bug")])


def test_wrong_argument_types_do_not_raise(codec: Codec) -> None:
    assert decode(codec, None, b"1")[1][0].reason == "unmatched_topic"  # type: ignore[arg-type]
    assert decode(codec, "num/p1/temp", None)[1][0].reason == "malformed"  # type: ignore[arg-type]
    assert decode(codec, "num/p1/temp", bytearray(b"2"))[0][0].value == 2.0  # type: ignore[arg-type]
    assert codec.decode("num/p1/temp", b"1", "later")[1][0].reason == "internal"  # type: ignore[arg-type]


def test_decode_message_uses_received_at(codec: Codec) -> None:
    readings, rejects = codec.decode_message(RawMessage(123.0, "num/p1/temp", b"4", 1, False))
    assert readings == [Reading("p1", "temp", 123.0, 4.0)] and rejects == []


def test_first_matching_rule_wins() -> None:
    codec = Codec(
        [
            TopicRule(template="a/{stream}/{channel}", format="number"),
            TopicRule(template="a/{stream}/{channel}", format="json", stream="second"),
        ]
    )
    assert codec.decode("a/s/c", b"1", NOW)[0] == [Reading("s", "c", NOW, 1.0)]
    assert codec.route("a/s/c") == ("s", "c", 0)
    assert codec.route("b/s/c") is None


def test_route_cache_is_bounded() -> None:
    codec = Codec([TopicRule(format="number")], cache_size=10)
    for i in range(25):
        assert codec.decode(f"sensors/s{i}/c", b"1", NOW)[0][0].stream == f"s{i}"
    assert len(codec._routes) <= 10


def test_repeated_placeholder_must_agree() -> None:
    codec = Codec([TopicRule(template="{stream}/x/{stream}", channel="c", format="number")])
    assert codec.decode("a/x/a", b"1", NOW)[0] == [Reading("a", "c", NOW, 1.0)]
    assert codec.decode("a/x/b", b"1", NOW)[1][0].reason == "unmatched_topic"


def test_two_placeholders_in_one_level_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"topics\[0\]\.template"):
        Codec([TopicRule(template="s/{stream}-{channel}", format="number")])


@pytest.mark.parametrize(
    "value,expected",
    [
        (1700000000, 1700000000.0),
        (1700000000123, 1700000000.123),
        ("1700000000", 1700000000.0),
        ("2023-11-14T22:13:20.5Z", 1700000000.5),
        ("2023-11-14T22:13:20.123456789+00:00", 1700000000.123456),
        ("2023-11-14", 1699920000.0),
    ],
)
def test_parse_timestamp(value: object, expected: float) -> None:
    assert parse_timestamp(value) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("value", ["", "soon", "inf", float("nan"), True, None, [1]])
def test_parse_timestamp_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(value)


# --------------------------------------------------------------------------- properties

topics = st.text(alphabet=st.sampled_from("ab/{}+#1 \x00é"), max_size=20)


@settings(max_examples=300, deadline=None)
@given(
    topic=topics | st.sampled_from(["num/p/c", "one/p/c", "multi/s/a", "batch/p/c", "plant/s/a/c"]),
    payload=st.binary(max_size=200),
)
def test_decode_never_raises_on_arbitrary_bytes(codec: Codec, topic: str, payload: bytes) -> None:
    readings, rejects = codec.decode(topic, payload, NOW)
    assert all(r.reason in REASONS for r in rejects)
    assert all(math.isfinite(r.value) and math.isfinite(r.timestamp) for r in readings)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["value", "ts", "channel", "a", "b"]) | st.text(max_size=4), children, max_size=4
        )
    ),
    max_leaves=12,
)


@pytest.mark.slow  # 300 hypothesis documents, ~3 s
@settings(max_examples=300, deadline=None)
@given(doc=json_values, topic=st.sampled_from(["one/p/c", "multi/s/a", "batch/p/c", "plant/s/a/c"]))
def test_decode_never_raises_on_arbitrary_json(codec: Codec, doc: object, topic: str) -> None:
    payload = json.dumps(doc).encode()  # may contain NaN / Infinity tokens
    readings, rejects = codec.decode(topic, payload, NOW)
    assert all(r.reason in REASONS and r.reason != "internal" for r in rejects)
    assert all(math.isfinite(r.value) for r in readings)


@settings(max_examples=300, deadline=None)
@given(value=st.floats(allow_nan=False, allow_infinity=False))
def test_finite_number_round_trips(codec: Codec, value: float) -> None:
    readings, rejects = codec.decode("num/p1/temp", repr(value).encode(), NOW)
    assert rejects == [] and readings == [Reading("p1", "temp", NOW, value)]


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=150), multi=st.booleans())
def test_json_array_keeps_every_valid_object_in_order(codec: Codec, values: list[float], multi: bool) -> None:
    key = "a" if multi else "value"
    payload = json.dumps([{key: v, "ts": NOW - 1000 + i} for i, v in enumerate(values)]).encode()
    readings, rejects = Codec(RULES).decode("batch/p1/temp", payload, NOW)
    assert rejects == []
    assert [r.value for r in readings] == values
    assert [r.timestamp for r in readings] == [NOW - 1000 + i for i in range(len(values))]
