"""The NATS source's pure parts and its configuration, and the server agreeing with them."""

from __future__ import annotations

import asyncio
import subprocess

import nats
import pytest
import yaml

import monitor.io.nats as nats_module
from monitor.app.cli import main
from monitor.core.config import ConfigError, NATSConfig, TopicRule, parse_partitions, shard_partitions
from monitor.io.nats import alerts_subjects, partition_mappings, partition_of, server_config, stream_key, topic_of
from tests.broker import free_port
from tests.daemon_support import config_from, load_yaml
from tests.nats_server import DEFAULT_RULES, NatsServer, nats_server_binary


def test_mappings_key_partitions_on_the_stream_levels_only():
    rules = [
        TopicRule(template="plant/{site}/{asset}/{channel}", format="auto", stream="{site}/{asset}"),
        TopicRule(template="lab/{asset}", format="json_multi", stream="{asset}"),
    ]
    assert partition_mappings(rules, 16) == {
        "plant.*.*.*": "part.{{partition(16,1,2)}}.plant.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}",
        "lab.*": "part.{{partition(16,1)}}.lab.{{wildcard(1)}}",
    }
    with pytest.raises(ConfigError, match="names no topic level"):
        partition_mappings([TopicRule(template="plant/{x}", format="json_multi", stream="fixed")], 8)


@pytest.mark.skipif(nats_server_binary() is None, reason="nats-server is not installed")
def test_the_server_puts_every_stream_where_partition_of_says_and_channels_together(tmp_path):
    streams = [f"site{i % 3}/asset{i}" for i in range(60)]
    with NatsServer(tmp_path, partitions=8) as server:

        async def go() -> list[str]:
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            await js.add_stream(name="MONITOR", subjects=["part.>"])
            for s in streams:
                await nc.publish(f"plant.{s.replace('/', '.')}", b"{}")
                await nc.publish(f"plant.{s.replace('/', '.')}.flow", b"1")
            await nc.flush()
            subjects = []
            for seq in range(1, 2 * len(streams) + 1):
                subjects.append((await js.get_msg("MONITOR", seq)).subject)
            await nc.close()
            return subjects

        subjects = asyncio.run(go())
    seen: dict[str, set[int]] = {}
    for subject in subjects:
        _, p, rest = subject.split(".", 2)
        stream = "/".join(topic_of(rest).split("/")[1:3])
        seen.setdefault(stream, set()).add(int(p))
    assert seen == {s: {partition_of(s.split("/"), 8)} for s in streams}  # one partition per stream, ours
    assert len({p for ps in seen.values() for p in ps}) == 8  # 60 streams reach every partition


def test_partition_specs_and_shards():
    assert parse_partitions("", 4) == (0, 1, 2, 3)
    assert parse_partitions("0-2,6", 8) == (0, 1, 2, 6)
    assert shard_partitions("0/3", 8) == (0, 1) and shard_partitions("2/3", 8) == (5, 6, 7)
    assert sorted(p for i in range(3) for p in shard_partitions(f"{i}/3", 8)) == list(range(8))
    for bad, match in (("8", "outside 0..7"), ("a-b", "partition numbers"), ("3-1", "outside")):
        with pytest.raises(ConfigError, match=match):
            parse_partitions(bad, 8)
    for bad in ("3/3", "x/2", "1"):
        with pytest.raises(ConfigError, match="--shard"):
            shard_partitions(bad, 8)
    with pytest.raises(ConfigError, match="idle"):
        shard_partitions("0/9", 8)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"partitions": 0}, "nats.partitions"),
        ({"owned": "0-9"}, "nats.owned"),
        ({"stream": "a.b"}, "nats.stream"),
        ({"servers": ["localhost:4222"]}, "nats.servers"),
        ({"password": "s3cret-value"}, "nats.user"),
        ({"fetch_batch": 500, "max_ack_pending": 100}, "nats.max_ack_pending"),
        ({"warmup_from": "part"}, "nats.warmup_from"),  # the current prefix: nothing to re-key from
        ({"warmup_from": "old.part"}, "nats.warmup_from"),
        ({"alerts_stream": "MONITOR"}, "nats.alerts_stream"),  # the readings' stream
        ({"alerts_stream": "a b"}, "nats.alerts_stream"),
        ({"alerts_dedupe_seconds": 0}, "nats.alerts_dedupe_seconds"),
        ({"stats_seconds": -1}, "nats.stats_seconds"),
    ],
)
def test_bad_nats_sections_name_the_key_and_never_echo_the_password(section, key):
    raw = load_yaml("source: nats\n")
    raw["nats"] = section
    with pytest.raises(ConfigError) as err:
        config_from(raw)
    assert err.value.key == key
    assert "s3cret-value" not in str(err.value)


def test_nats_config_masks_its_password():
    cfg = config_from({"source": "nats", "nats": {"user": "w", "password": "s3cret-value"}})
    assert cfg.to_dict()["nats"]["password"] == "***" and "s3cret" not in repr(cfg.nats)
    assert isinstance(cfg.nats, NATSConfig) and cfg.nats.owned_partitions() == tuple(range(8))


def test_server_config_has_jetstream_mappings_and_mqtt():
    text = server_config(partition_mappings(DEFAULT_RULES, 8), mqtt_port=1883, server_name="n1")
    assert "jetstream {" in text and "mqtt {" in text and "server_name: n1" in text
    assert '"plant.*.*": "part.{{partition(8,1,2)}}.plant.{{wildcard(1)}}.{{wildcard(2)}}"' in text


def _run_cli(tmp_path, raw: dict, *args: str) -> int:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    return main(["run", "--config", str(cfg), *args])


def test_source_nats_without_nats_py_exits_78_with_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(nats_module, "nats", None)  # what the module holds when `import nats` failed
    assert _run_cli(tmp_path, {"source": "nats"}) == 78
    err = capsys.readouterr().err
    assert "pip install 'monitor[nats]'" in err and "Traceback" not in err


def test_partitions_need_source_nats(tmp_path, capsys):
    assert _run_cli(tmp_path, {"source": "mqtt"}, "--partitions", "0-3") == 78
    assert "need source: nats" in capsys.readouterr().err
    assert _run_cli(tmp_path, {"source": "nats", "nats": {"partitions": 4}}, "--partitions", "2-5") == 78
    assert "--partitions: partitions '2-5' are outside 0..3" in capsys.readouterr().err


def test_nats_server_config_command_prints_what_the_server_accepts(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"source": "nats", "nats": {"partitions": 12}}))
    assert main(["nats-server-config", "--config", str(cfg), "--store-dir", str(tmp_path / "js")]) == 0
    text = capsys.readouterr().out
    assert '"sensors.*.*": "part.{{partition(12,1)}}.sensors.{{wildcard(1)}}.{{wildcard(2)}}"' in text
    if nats_server_binary() is not None:
        conf = tmp_path / "nats.conf"
        conf.write_text(text)
        out = subprocess.run([nats_server_binary(), "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stdout + out.stderr


def test_stream_key_is_what_the_mapping_hashes_so_messages_can_be_rekeyed():
    assert stream_key(DEFAULT_RULES, "plant/site1/pump3") == ["site1", "pump3"]
    assert stream_key(DEFAULT_RULES, "plant/site1/pump3/flow") == ["site1", "pump3"]  # channels with their stream
    assert stream_key(DEFAULT_RULES, "lab/x/y") is None and stream_key(DEFAULT_RULES, "plant/a") is None
    # the tokens the mapping `partition(N,1,2)` hashes: the same partition under any N
    for n in (4, 6, 16):
        assert partition_of(stream_key(DEFAULT_RULES, "plant/s/a/flow"), n) == partition_of(["s", "a"], n)


def test_alerts_subjects_capture_every_stream_of_the_alerts_topic():
    assert alerts_subjects("monitor/alerts/{stream}") == "monitor.alerts.>"
    assert alerts_subjects("alerts") == "alerts"


def test_nats_stream_command_without_a_server_says_so_and_exits_69(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    raw = {"source": "nats", "nats": {"servers": [f"nats://127.0.0.1:{free_port()}"], "connect_timeout_seconds": 0.5}}
    cfg.write_text(yaml.safe_dump(raw))
    assert main(["nats-stream", "--config", str(cfg)]) == 69
    err = capsys.readouterr().err
    assert "cannot prepare stream MONITOR" in err and "Traceback" not in err
