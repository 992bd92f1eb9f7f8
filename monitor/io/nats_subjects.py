"""NATS subjects of the partitioned intake: pure functions, no client library.

Devices publish on ``plant.site1.pump1`` (MQTT ``plant/site1/pump1`` through the server's
MQTT listener). `partition_mappings` writes the server's subject mappings from the topic
rules: each stream's subject goes to ``<prefix>.<p>.<subject>`` with
``p = partition(N, stream tokens)``; `partition_of` computes the same p here (FNV-1a, as
nats-server does) and `stream_key` finds a topic's stream tokens, so a message can be
re-keyed under another N (changing N, docs/scaling.md). `server_config` writes a whole
nats-server config (deploy/nats/).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from monitor.core.config import ConfigError, TopicRule
from monitor.io.mqtt import topic_filter

__all__ = [
    "alerts_subjects",
    "partition_mappings",
    "partition_of",
    "server_config",
    "stream_key",
    "subject_of",
    "topic_of",
]

_PLACEHOLDER = re.compile(r"{(\w+)}")


def subject_of(topic: str) -> str:
    """The NATS subject of an MQTT topic (what the server's MQTT listener does for plain levels)."""
    return topic.replace("/", ".")


def topic_of(subject: str) -> str:
    return subject.replace(".", "/")


def _fnv1a32(data: bytes) -> int:
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def partition_of(tokens: Sequence[str], partitions: int) -> int:
    """The partition nats-server's ``partition(N, ...)`` gives these subject tokens: FNV-1a
    (32 bit) of the tokens concatenated, modulo N (nats-server subject_transform.go)."""
    return _fnv1a32("".join(tokens).encode()) % partitions


def partition_mappings(rules: Sequence[TopicRule], partitions: int, prefix: str = "part") -> dict[str, str]:
    """Server subject mappings, one per distinct topic rule shape: the rule's subject with
    wildcards -> ``prefix.{{partition(N, stream tokens)}}.<the same subject>``.

    The partition is keyed on the template levels the rule's ``stream`` format names, so
    every channel of a stream (``plant/{site}/{asset}/{channel}``) shares a partition.
    """
    out: dict[str, str] = {}
    for rule in rules:
        levels = rule.template.split("/")
        stream_names = set(_PLACEHOLDER.findall(rule.stream))
        wild: list[int] = []  # 1-based wildcard index per placeholder level
        key: list[int] = []
        dest: list[str] = []
        if levels[-1].endswith("...}"):
            raise ConfigError(
                "topics[].template",
                f"rule {rule.template!r}: a multi-level {{name...}} level cannot be partitioned on NATS; "
                "use one {name} per level",
            )
        for level in levels:
            names = _PLACEHOLDER.findall(level)
            if not names:
                dest.append(level)
                continue
            wild.append(len(wild) + 1)
            dest.append(f"{{{{wildcard({wild[-1]})}}}}")
            if stream_names.intersection(names):
                key.append(wild[-1])
        if not key:
            raise ConfigError(
                "topics[].stream",
                f"rule {rule.template!r}: its stream {rule.stream!r} names no topic level, so it cannot be partitioned",
            )
        source = subject_of(topic_filter(rule.template)).replace("+", "*")
        part = f"{{{{partition({partitions},{','.join(map(str, key))})}}}}"
        target = f"{prefix}.{part}." + ".".join(dest)
        if out.get(source, target) != target:
            raise ConfigError("topics", f"two rules of subject {source!r} key their partitions differently")
        out[source] = target
    return out


def stream_key(rules: Sequence[TopicRule], topic: str) -> list[str] | None:
    """The topic levels the server's mapping hashes for `topic` (its rule's stream levels), or
    None when no rule matches: what `partition_of` needs to re-key a message under another N."""
    levels = topic.split("/")
    for rule in rules:
        template = rule.template.split("/")
        if len(template) != len(levels):
            continue
        names = set(_PLACEHOLDER.findall(rule.stream))
        key: list[str] = []
        for pattern, level in zip(template, levels, strict=True):
            placeholders = _PLACEHOLDER.findall(pattern)
            if not placeholders:
                if pattern != level:
                    break
            elif names.intersection(placeholders):
                key.append(level)
        else:
            if key:
                return key
    return None


def alerts_subjects(topic: str) -> str:
    """The subjects an alerts stream captures for `alerts.topic` (``monitor/alerts/{stream}``:
    ``monitor.alerts.>``)."""
    head, sep, _ = topic.partition("{stream}")
    return subject_of(head) + ">" if sep else subject_of(topic)


def server_config(
    mappings: dict[str, str],
    *,
    host: str = "0.0.0.0",
    port: int = 4222,
    store_dir: str = "/data/jetstream",
    mqtt_port: int | None = None,
    server_name: str = "monitor-nats-0",
    cluster: dict[str, Any] | None = None,
) -> str:
    """A nats-server (2.9+) config: JetStream, the partition mappings, optionally MQTT and a cluster.

    `cluster`: ``{"name": ..., "port": ..., "routes": [...]}`` (JetStream clustering).
    """
    lines = [
        f"server_name: {server_name}",
        f"listen: {host}:{port}",
        "jetstream {",
        f'  store_dir: "{store_dir}"',
        "  max_memory_store: 256MB",
        "  max_file_store: 8GB",
        "}",
        "mappings = {",
        *[f'  "{src}": "{dst}"' for src, dst in mappings.items()],
        "}",
    ]
    if mqtt_port is not None:
        # the MQTT listener (needs JetStream and server_name); its publishes go through the mappings
        lines += ["mqtt {", f"  listen: {host}:{mqtt_port}", "}"]
    if cluster:
        lines += [
            "cluster {",
            f"  name: {cluster['name']}",
            f"  listen: {host}:{cluster['port']}",
            "  routes: [",
            *[f"    {r}" for r in cluster.get("routes", [])],
            "  ]",
            "}",
        ]
    return "\n".join(lines) + "\n"
