"""Codec conventions users' tools expect: dotted paths, timestamp units, line protocol,
Telegraf JSON, multi-level topic placeholders; on real payload shapes from Telegraf,
Tasmota and zigbee2mqtt (tests/fixtures/payloads/README.md says where each comes from)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.core.config import ConfigError, TopicRule, load_config
from monitor.core.types import REJECT_REASONS as REASONS
from monitor.core.types import Reading, RejectReason
from monitor.io import codec as codec_module
from monitor.io.codec import Codec, json_decoder, parse_timestamp
from monitor.io.mqtt import subscriptions, topic_filter
from monitor.io.nats import partition_mappings

ROOT = Path(__file__).resolve().parents[1]
PAYLOADS = ROOT / "tests" / "fixtures" / "payloads"
NOW = 1_700_000_000.0  # received_at; the fixtures are stamped 10 s earlier
T = 1_699_999_990.0


def payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def as_tuples(readings) -> list[tuple]:
    return [tuple(r) for r in readings]


def by_channel(readings) -> dict[str, float]:
    return {r.channel: r.value for r in readings}


# --------------------------------------------------------------------------- Telegraf


TELEGRAF = Codec(
    [
        TopicRule(template="telegraf/{host}/{plugin}", stream="{host}", format="influx"),
        TopicRule(template="telegraf/{host}", stream="{host}", format="influx"),
        TopicRule(template="tgjson/{host}/{plugin}", stream="{host}", format="telegraf_json"),
        TopicRule(template="percpu/{host}", stream="{host}", format="telegraf_json", channel="{cpu}.{field}"),
        TopicRule(template="modbus/{host}", stream="{host}", format="influx", channel="{name}/{field}"),
        TopicRule(template="tgms/{host}", stream="{host}", format="telegraf_json", timestamp_unit="ms"),
    ]
)


def test_telegraf_line_protocol_gives_one_reading_per_numeric_field_at_the_ns_timestamp():
    readings, rejects = TELEGRAF.decode("telegraf/edge-01/cpu", payload("telegraf-cpu.influx"), NOW)
    assert rejects == []
    assert as_tuples(readings) == [
        ("edge-01", "cpu.usage_user", T, 2.5125628140703515),
        ("edge-01", "cpu.usage_system", T, 1.0050251256281406),
        ("edge-01", "cpu.usage_idle", T, 96.48241206030151),
        ("edge-01", "cpu.usage_iowait", T, 0.0),
    ]


def test_telegraf_line_protocol_batch_reads_integers_quoted_strings_and_skips_metadata_only_lines():
    readings, rejects = TELEGRAF.decode("telegraf/edge-01", payload("telegraf-batch.influx"), NOW)
    values = by_channel(readings)
    assert values["mem.active"] == 2049179648.0  # 2049179648i
    assert values["disk.used_percent"] == 64.2
    assert values["system.n_cpus"] == 4.0
    assert values["modbus.flow_m3h"] == 41.25
    assert "modbus.running" not in values  # a boolean field is typed metadata
    assert not any(c.startswith("system.uptime") for c in values)  # a string field, with a comma inside quotes
    assert len(readings) == 17
    assert rejects == []  # a line of strings only is metadata beside its batch, not a fault
    assert {r.timestamp for r in readings} == {T}


def test_line_protocol_channel_format_reads_escaped_tag_values():
    line = b"modbus,name=pump\\ 7,slave_id=1 flow_m3h=41.25,discharge_bar=3.8 1699999990000000000"
    readings, rejects = TELEGRAF.decode("modbus/edge-01", line, NOW)
    assert rejects == []
    assert as_tuples(readings) == [
        ("edge-01", "pump 7/flow_m3h", T, 41.25),
        ("edge-01", "pump 7/discharge_bar", T, 3.8),
    ]


def test_telegraf_json_standard_form_gives_measurement_dot_field_channels():
    readings, rejects = TELEGRAF.decode("tgjson/raynor/docker", payload("telegraf-docker.json"), NOW)
    assert rejects == []
    assert as_tuples(readings) == [
        ("raynor", "docker.field_1", T, 30.0),
        ("raynor", "docker.field_2", T, 4.0),
        ("raynor", "docker.field_N", T, 59.0),
        ("raynor", "docker.n_images", T, 660.0),
    ]


def test_telegraf_json_is_recognised_by_auto_instead_of_becoming_a_timestamp_channel():
    # The default rule (sensors/{stream}/{channel}, format auto) used to read Telegraf's
    # json output as json_multi: one channel called "timestamp" holding the epoch.
    codec = Codec([TopicRule()])
    readings, rejects = codec.decode("sensors/raynor/docker", payload("telegraf-docker.json"), NOW)
    assert rejects == []
    assert "timestamp" not in by_channel(readings)
    assert by_channel(readings) == {
        "docker.field_1": 30.0,
        "docker.field_2": 4.0,
        "docker.field_N": 59.0,
        "docker.n_images": 660.0,
    }
    assert {r.timestamp for r in readings} == {T}


def test_line_protocol_is_recognised_by_auto():
    codec = Codec([TopicRule()])
    readings, rejects = codec.decode("sensors/edge-01/cpu", payload("telegraf-cpu.influx"), NOW)
    assert rejects == []
    assert by_channel(readings)["cpu.usage_idle"] == 96.48241206030151
    # and a bare number still is one
    readings, _ = codec.decode("sensors/edge-01/cpu", b"21.5", NOW)
    assert as_tuples(readings) == [("edge-01", "cpu", NOW, 21.5)]


def test_telegraf_json_batch_with_a_channel_format_over_tags():
    readings, rejects = TELEGRAF.decode("percpu/edge-01", payload("telegraf-batch.json"), NOW)
    assert rejects == []
    values = by_channel(readings)
    assert values == {
        "cpu0.usage_idle": 96.48241206030151,
        "cpu0.usage_system": 1.0050251256281406,
        "cpu0.usage_user": 2.5125628140703515,
        "cpu1.usage_idle": 91.2,
        "cpu1.usage_system": 3.1,
        "cpu1.usage_user": 5.7,
    }


def test_telegraf_json_milliseconds_by_magnitude_and_by_explicit_unit():
    auto, _ = TELEGRAF.decode("tgjson/edge-01/sensor", payload("telegraf-ms.json"), NOW)
    explicit, rejects = TELEGRAF.decode("tgms/edge-01", payload("telegraf-ms.json"), NOW)
    assert rejects == []
    assert {r.timestamp for r in auto} == {r.timestamp for r in explicit} == {T + 0.5}
    # an explicit unit is obeyed, not guessed: seconds taken as ms land in 1970
    readings, _ = TELEGRAF.decode(
        "tgms/edge-01", b'{"fields":{"x":1},"name":"m","tags":{},"timestamp":1699999990}', NOW
    )
    assert readings[0].timestamp == pytest.approx(1_699_999.99)


def test_a_channel_format_naming_a_missing_tag_is_a_counted_reject():
    doc = b'{"fields":{"usage_idle":99.0},"name":"cpu","tags":{"host":"h"},"timestamp":1699999990}'
    readings, rejects = TELEGRAF.decode("percpu/edge-01", doc, NOW)
    assert readings == []
    assert [r.reason for r in rejects] == [RejectReason.MISSING_VALUE]
    assert "cpu" in rejects[0].detail


BAD_LINES = [
    # (payload, reasons in order)
    (b"cpu usage_idle=", [RejectReason.MALFORMED]),
    (b"cpu", [RejectReason.MALFORMED]),
    (b"cpu usage_idle=1.0 17000000000000000000x", [RejectReason.MALFORMED]),
    (b'cpu note="unterminated 1', [RejectReason.MALFORMED]),
    (b"cpu a=1.0 b=2", [RejectReason.MALFORMED]),  # four sections
    (b"cpu =1.0", [RejectReason.MALFORMED]),
    (b"cpu a=12xi", [RejectReason.MALFORMED]),
    (b",host=a x=1", [RejectReason.MALFORMED]),
    (b"cpu a=nan", [RejectReason.NON_FINITE]),
    (b"cpu a=1 1800000000000000000", [RejectReason.FUTURE_TIMESTAMP]),
    (b"cpu a=" + b"9" * 400 + b"i", [RejectReason.NON_FINITE]),
    (b'cpu s="text only"', [RejectReason.MISSING_VALUE]),
    (b"\xff\xfe x=1", [RejectReason.MALFORMED]),
    (b"cpu a=1 1699999990000000000\ncpu b= 1699999990000000000\ncpu c=3 1699999990000000000", [RejectReason.MALFORMED]),
]


@pytest.mark.parametrize("line,reasons", BAD_LINES)
def test_bad_line_protocol_is_a_counted_reject_and_good_lines_beside_it_survive(line, reasons):
    readings, rejects = TELEGRAF.decode("telegraf/edge-01", line, NOW)
    assert [r.reason for r in rejects] == reasons
    assert all(r.detail for r in rejects)
    if b"\n" in line:
        assert by_channel(readings) == {"cpu.a": 1.0, "cpu.c": 3.0}


BAD_TELEGRAF_JSON = [
    b'{"fields": 3, "name": "cpu", "timestamp": 1}',
    b'{"fields": {"x": 1}, "name": "", "timestamp": 1699999990}',
    b'{"fields": {"x": 1}, "name": "cpu", "timestamp": "yesterday"}',
    b'{"metrics": [1, 2]}',
    b'"cpu"',
    b"[1,",
]


@pytest.mark.parametrize("doc", BAD_TELEGRAF_JSON)
def test_bad_telegraf_json_is_a_counted_reject(doc):
    readings, rejects = TELEGRAF.decode("tgjson/edge-01/cpu", doc, NOW)
    assert readings == []
    assert rejects and all(r.reason in (RejectReason.MALFORMED, RejectReason.BAD_TIMESTAMP) for r in rejects)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(alphabet='cpu, =\\"\n1.0ie-tf', max_size=80).map(str.encode))
def test_influx_and_telegraf_decoders_never_raise(data):
    for topic in ("telegraf/h/cpu", "tgjson/h/cpu", "percpu/h"):
        readings, rejects = TELEGRAF.decode(topic, data, NOW)
        assert all(r.reason in REASONS and r.reason != RejectReason.INTERNAL for r in rejects)
        assert all(type(r) is Reading and r.timestamp <= NOW + 300 for r in readings)


# --------------------------------------------------------------------------- Tasmota


def test_tasmota_sensor_flattened_gives_dotted_channels_at_the_device_time():
    codec = Codec(
        [
            TopicRule(
                template="tele/{device}/SENSOR",
                stream="{device}",
                format="json_multi",
                timestamp_field="Time",
                nested="flatten",
            )
        ]
    )
    readings, rejects = codec.decode("tele/plug-07/SENSOR", payload("tasmota-pow-SENSOR.json"), NOW)
    assert rejects == []
    values = by_channel(readings)
    assert values["ENERGY.Power"] == 367.0
    assert values["ENERGY.Voltage"] == 235.0
    assert values["ENERGY.Factor"] == 0.72
    assert "ENERGY.TotalStartTime" not in values  # a string: metadata
    assert {r.stream for r in readings} == {"plug-07"}
    assert {r.timestamp for r in readings} == {T}  # "2023-11-14T22:13:10", naive = UTC

    readings, rejects = codec.decode("tele/plug-07/SENSOR", payload("tasmota-multi-SENSOR.json"), NOW)
    assert rejects == []
    assert by_channel(readings) == {
        "ANALOG.CTEnergy.Energy": 0.006,
        "ANALOG.CTEnergy.Power": 2068.0,
        "ANALOG.CTEnergy.Voltage": 230.0,
        "ANALOG.CTEnergy.Current": 8.992,
        "DHT11.Temperature": 23.0,
        "DHT11.Humidity": 37.0,
        "DHT11.DewPoint": 7.5,
    }


def test_tasmota_without_flatten_keeps_todays_behaviour_nested_values_are_metadata():
    codec = Codec(
        [TopicRule(template="tele/{device}/SENSOR", stream="{device}", format="json_multi", timestamp_field="Time")]
    )
    readings, rejects = codec.decode("tele/plug-07/SENSOR", payload("tasmota-pow-SENSOR.json"), NOW)
    assert readings == []
    assert [r.reason for r in rejects] == [RejectReason.MISSING_VALUE]


def test_tasmota_dotted_value_field_picks_one_nested_number():
    codec = Codec(
        [
            TopicRule(
                template="tele/{device}/SENSOR",
                stream="{device}",
                channel="power",
                format="json",
                value_field="ENERGY.Power",
                timestamp_field="Time",
            )
        ]
    )
    readings, rejects = codec.decode("tele/plug-07/SENSOR", payload("tasmota-pow-SENSOR.json"), NOW)
    assert rejects == []
    assert as_tuples(readings) == [("plug-07", "power", T, 367.0)]
    # the path leads nowhere: missing, counted
    readings, rejects = codec.decode("tele/plug-07/SENSOR", payload("tasmota-multi-SENSOR.json"), NOW)
    assert readings == [] and [r.reason for r in rejects] == [RejectReason.MISSING_VALUE]


def test_tasmota_state_flattened_reads_the_nested_wifi_numbers():
    codec = Codec(
        [
            TopicRule(
                template="tele/{device}/STATE",
                stream="{device}",
                format="json_multi",
                timestamp_field="Time",
                nested="flatten",
            )
        ]
    )
    readings, rejects = codec.decode("tele/plug-07/STATE", payload("tasmota-STATE.json"), NOW)
    assert rejects == []
    values = by_channel(readings)
    assert values["Wifi.RSSI"] == 30.0 and values["Wifi.Signal"] == -85.0 and values["UptimeSec"] == 11.0
    assert "Wifi.SSId" not in values and "POWER" not in values


# --------------------------------------------------------------------------- dotted paths


DOTTED = Codec(
    [
        TopicRule(
            template="d/{stream}/{channel}",
            format="json",
            value_field="fields.temp",
            timestamp_field="meta.ts",
            channel_field="meta.name",
        ),
        TopicRule(template="m/{stream}", format="json_multi", timestamp_field="meta.ts"),
        TopicRule(template="a/{stream}/{channel}", format="json_array", value_field="v.x", timestamp_field="v.t"),
    ]
)


@pytest.mark.parametrize(
    "topic,doc,expected",
    [
        ("d/p1/temp", b'{"fields": {"temp": 21.5}, "meta": {"ts": 1699999990}}', [("p1", "temp", T, 21.5)]),
        ("d/p1/temp", b'{"fields": {"temp": 1}, "meta": {"ts": 1699999990, "name": "t2"}}', [("p1", "t2", T, 1.0)]),
        ("d/p1/temp", b'{"fields.temp": 7, "fields": {"temp": 1}}', [("p1", "temp", NOW, 7.0)]),  # literal key wins
        ("m/p1", b'{"meta": {"ts": 1699999990}, "a": 1, "b": 2.5}', [("p1", "a", T, 1.0), ("p1", "b", T, 2.5)]),
        (
            "a/p1/x",
            b'[{"v": {"x": 1, "t": 1699999990}}, {"v": {"x": 2, "t": 1699999991}}]',
            [("p1", "x", T, 1.0), ("p1", "x", T + 1, 2.0)],
        ),
    ],
)
def test_dotted_paths_reach_into_nested_objects(topic, doc, expected):
    for columns in (False, True):
        readings, rejects = Codec(DOTTED.rules, columns=columns).decode(topic, doc, NOW)
        assert rejects == []
        assert as_tuples(readings) == expected


@pytest.mark.parametrize(
    "doc,reason",
    [
        (b'{"fields": 5}', RejectReason.MISSING_VALUE),  # the path stops at a number
        (b'{"fields": {"temp": "warm"}}', RejectReason.MALFORMED),
        (b'{"fields": {"temp": 1}, "meta": {"ts": "soon"}}', RejectReason.BAD_TIMESTAMP),
        (b'{"fields": {"temp": 1}, "meta": {"name": []}}', RejectReason.MALFORMED),
    ],
)
def test_bad_values_at_dotted_paths_are_counted_rejects(doc, reason):
    readings, rejects = DOTTED.decode("d/p1/temp", doc, NOW)
    assert readings == []
    assert [r.reason for r in rejects] == [reason]


@pytest.mark.parametrize("field", ["", "a..b", ".a", "a."])
def test_an_empty_path_segment_is_a_config_error(field):
    with pytest.raises(ConfigError) as err:
        TopicRule(value_field=field)
    assert err.value.key == "topics[].value_field"


# --------------------------------------------------------------------------- timestamp units


UNITS = Codec(
    [
        TopicRule(template=f"{unit}/{{stream}}/{{channel}}", format="auto", timestamp_unit=unit)
        for unit in ("s", "ms", "us", "ns", "auto")
    ]
)


@pytest.mark.parametrize(
    "unit,stamp",
    [
        ("s", "1699999990.5"),
        ("ms", "1699999990500"),
        ("us", "1699999990500000"),
        ("ns", "1699999990500000000"),
        ("auto", "1699999990.5"),
        ("auto", "1699999990500"),
        ("auto", "1699999990500000"),
        ("auto", "1699999990500000000"),
    ],
)
def test_timestamp_units_in_every_json_shape(unit, stamp):
    docs = [
        f'{{"value": 1.5, "ts": {stamp}}}',  # json
        f'{{"value": 1.5, "ts": "{stamp}"}}',  # json, numeric string
        f'{{"ts": {stamp}, "x": 1.5}}',  # json_multi
        f'[{{"value": 1.5, "ts": {stamp}}}, {{"value": 1.5, "ts": {stamp}}}]',  # json_array (fast paths)
        f'[{{"ts": {stamp}, "x": 1.5}}, {{"ts": {stamp}, "x": 1.5}}]',  # json_array of rows
    ]
    for columns in (False, True):
        codec = Codec(UNITS.rules, columns=columns)
        for doc in docs:
            readings, rejects = codec.decode(f"{unit}/p1/c", doc.encode(), NOW)
            assert rejects == [], doc
            stamps = [r.timestamp for r in as_readings(readings)]
            assert stamps and stamps == pytest.approx([T + 0.5] * len(stamps), abs=1e-6), doc


def as_readings(result) -> list[Reading]:
    return list(result)  # a list, or a ReadingBlock / FrameBlock (sequences of Reading)


def test_an_explicit_unit_is_not_guessed():
    # 1699999990 taken as seconds by auto; as milliseconds it is 1970-01-20
    readings, _ = UNITS.decode("ms/p1/c", b'{"value": 1, "ts": 1699999990}', NOW)
    assert readings[0].timestamp == pytest.approx(1_699_999.99)
    # and seconds in the ms range are far in the future: a counted reject
    readings, rejects = UNITS.decode("s/p1/c", b'{"value": 1, "ts": 1699999990500}', NOW)
    assert readings == [] and [r.reason for r in rejects] == [RejectReason.FUTURE_TIMESTAMP]


def test_parse_timestamp_auto_magnitudes():
    assert parse_timestamp(1699999990) == T
    assert parse_timestamp(1699999990_000) == T
    assert parse_timestamp(1699999990_000_000) == T
    assert parse_timestamp(1699999990_000_000_000) == T
    assert parse_timestamp(1699999990, scale=1e3) == pytest.approx(1_699_999.99)


def test_an_unknown_timestamp_unit_is_a_clear_config_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        TopicRule(timestamp_unit="sec")  # type: ignore[arg-type]
    assert err.value.key == "topics[].timestamp_unit"
    assert "s, ms, us or ns" in str(err.value)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("topics: [{template: 'a/{stream}/{channel}', timestamp_unit: seconds}]\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg, environ={})
    assert err.value.key == "topics[0].timestamp_unit"
    assert "'ms'" in str(err.value) and "'seconds'" in str(err.value)


# --------------------------------------------------------------------------- multi-level topics


ZIGBEE = Codec(
    [TopicRule(template="zigbee2mqtt/{device...}", stream="{device}", format="json_multi", timestamp_field="last_seen")]
)


def test_multi_level_placeholder_subscribes_with_hash_and_captures_slashed_friendly_names():
    assert topic_filter("zigbee2mqtt/{device...}") == "zigbee2mqtt/#"
    assert topic_filter("site/{site}/{path...}") == "site/+/#"
    assert subscriptions(ZIGBEE.rules) == [("zigbee2mqtt/#", 1)]
    readings, rejects = ZIGBEE.decode("zigbee2mqtt/kitchen/weather", payload("zigbee2mqtt-weather.json"), NOW)
    assert rejects == []
    assert {r.stream for r in readings} == {"kitchen/weather"}
    assert by_channel(readings) == {
        "battery": 86.0,
        "humidity": 55.43,
        "linkquality": 97.0,
        "pressure": 1000.6,
        "temperature": 22.75,
        "voltage": 2995.0,
    }
    assert {r.timestamp for r in readings} == {T}  # last_seen ISO 8601
    readings, _ = ZIGBEE.decode("zigbee2mqtt/0x00158d00036c1821", payload("zigbee2mqtt-weather.json"), NOW)
    assert {r.stream for r in readings} == {"0x00158d00036c1821"}


def test_zigbee2mqtt_thermostat_epoch_ms_last_seen_and_metadata():
    readings, rejects = ZIGBEE.decode("zigbee2mqtt/trv", payload("zigbee2mqtt-trv.json"), NOW)
    assert by_channel(readings) == {
        "current_heating_setpoint": 13.5,
        "linkquality": 83.0,
        "local_temperature": 14.0,
        "local_temperature_calibration": -1.0,
        "position": 0.0,
    }
    assert {r.timestamp for r in readings} == {T}  # last_seen: epoch ms
    # json_multi's existing rule: a boolean is not a number, counted per channel
    assert [(r.reason, "battery_low" in r.detail) for r in rejects] == [(RejectReason.MALFORMED, True)]


def test_the_bridge_state_seen_by_a_catch_all_rule_is_a_counted_reject():
    readings, rejects = ZIGBEE.decode("zigbee2mqtt/bridge/state", payload("zigbee2mqtt-bridge-state.txt"), NOW)
    assert readings == [] and [r.reason for r in rejects] == [RejectReason.MALFORMED]


@pytest.mark.parametrize(
    "topic,stream",
    [
        ("zigbee2mqtt/a", "a"),
        ("zigbee2mqtt/a/b/c/d", "a/b/c/d"),
        ("zigbee2mqtt", None),  # one or more levels
        ("zigbee2mqtt/", None),
        ("zigbee2mqtt/a//b", None),  # placeholders never match an empty level
        ("zigbee2mqtt/a/", None),
        ("other/a", None),
    ],
)
def test_multi_level_placeholder_matches_one_or_more_non_empty_levels(topic, stream):
    found = ZIGBEE.route(topic)
    assert (found[0] if found else None) == stream


def test_multi_level_placeholder_with_fixed_levels_before_it():
    codec = Codec([TopicRule(template="plant/{site}/{path...}", stream="{site}:{path}", channel="v", format="number")])
    readings, _ = codec.decode("plant/north/line1/pump3/flow", b"4.5", NOW)
    assert as_tuples(readings) == [("north:line1/pump3/flow", "v", NOW, 4.5)]


@pytest.mark.parametrize("template", ["a/{x...}/b", "a/pre{x...}", "a/{x...}suffix"])
def test_a_multi_level_placeholder_must_be_the_whole_last_level(template):
    with pytest.raises(ConfigError) as err:
        TopicRule(template=template, stream="{x}", format="json_multi")
    assert "whole last level" in str(err.value)


def test_nats_partitions_refuse_a_multi_level_placeholder():
    with pytest.raises(ConfigError) as err:
        partition_mappings(ZIGBEE.rules, 4)
    assert "multi-level" in str(err.value)


# --------------------------------------------------------------------------- dependencies


def test_orjson_is_a_runtime_dependency_not_only_dev():
    text = (ROOT / "pyproject.toml").read_text()  # tomllib is 3.11+, the project supports 3.10
    block = text.split("\ndependencies = [", 1)[1].split("\n]", 1)[0]
    runtime = [line.strip().strip('",') for line in block.splitlines() if line.strip().startswith('"')]
    assert any(d.startswith("orjson>=") for d in runtime), runtime


def test_the_json_decoder_in_use_is_logged_once(caplog, monkeypatch):
    monkeypatch.setattr(codec_module, "_DECODER_LOGGED", [False])
    with caplog.at_level(logging.INFO, logger="monitor.io.codec"):
        Codec([TopicRule()])
        Codec([TopicRule()])
    lines = [r.getMessage() for r in caplog.records if "JSON decoder" in r.getMessage()]
    assert lines == [f"payload JSON decoder: {json_decoder()}"]
    assert json_decoder().startswith("orjson ")  # installed as a runtime dependency


def test_the_stdlib_fallback_still_decodes_and_says_so(caplog, monkeypatch):
    monkeypatch.setattr(codec_module, "_fast_loads", None)
    monkeypatch.setattr(codec_module, "_DECODER_LOGGED", [False])
    with caplog.at_level(logging.INFO, logger="monitor.io.codec"):
        codec = Codec([TopicRule()])
    assert any("stdlib json" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    readings, rejects = codec.decode("sensors/raynor/docker", payload("telegraf-docker.json"), NOW)
    assert rejects == [] and len(readings) == 4
