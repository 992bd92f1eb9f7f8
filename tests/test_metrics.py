"""Metric families, bounded per-stream cardinality, and the HTTP endpoints over real sockets."""

from __future__ import annotations

import gzip
import socket
import sys
import urllib.error
import urllib.request

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from monitor.core.types import REJECT_REASONS as REASONS
from monitor.core.types import Rejected
from monitor.io.http import serve
from monitor.io.metrics import Metrics


def sample(registry: CollectorRegistry, name: str, **labels: str):
    return registry.get_sample_value(name, labels)


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode()


EXPECTED_FAMILIES = [
    "monitor_messages_received_total",
    "monitor_readings_received_total",
    "monitor_readings_rejected_total",
    "monitor_drops_total",
    "monitor_windows_scored_total",
    "monitor_scoring_batch_size_bucket",
    "monitor_scoring_latency_seconds_bucket",
    "monitor_end_to_end_latency_seconds_bucket",
    "monitor_queue_depth",
    "monitor_streams_active",
    "monitor_anomaly_score",
    "monitor_alert_state",
    "monitor_stream_labels_dropped_total",
    "monitor_alerts_total",
    "monitor_model_info",
    "monitor_model_load_timestamp_seconds",
    "monitor_model_loads_total",
    "monitor_model_load_duration_seconds",
    "monitor_sink_errors_total",
    "monitor_mqtt_connected",
    "monitor_mqtt_reconnects_total",
    "monitor_build_info",
]


def test_every_family_is_exported_on_the_injected_registry_only():
    registry = CollectorRegistry()
    m = Metrics(registry, version="1.2.3")
    m.set_score("pump1", score=0.5, firing=False)
    m.model_load(True, 0.01, "v7", at=1700000000.0)
    text = generate_latest(registry).decode()
    for name in EXPECTED_FAMILIES:
        assert f"\n{name}" in "\n" + text, name
    assert sample(registry, "monitor_build_info", version="1.2.3", python=__import__("platform").python_version()) == 1
    # nothing leaked into the global registry, and a second registry does not collide
    assert REGISTRY.get_sample_value("monitor_messages_received_total") is None
    Metrics(CollectorRegistry())
    with pytest.raises(ValueError):
        Metrics(registry)  # same names twice on one registry: rejected


def test_fixed_label_children_are_bound_at_construction_and_counted():
    registry = CollectorRegistry()
    m = Metrics(registry)
    for reason in REASONS:
        assert sample(registry, "monitor_readings_rejected_total", reason=reason) == 0
    assert sample(registry, "monitor_drops_total", reason="queue_full") == 0
    assert sample(registry, "monitor_alerts_total", state="firing") == 0
    assert sample(registry, "monitor_model_loads_total", result="rejected") == 0

    m.add_rejected({"malformed": 3, "non_finite": 0})
    m.rejected([Rejected("malformed", "x"), Rejected("oversized", "y"), Rejected("brand_new", "z")])
    m.drop("queue_full", 5)
    m.drop("stream_cap")
    m.drop("brand_new_reason", 0)  # nothing to add: no series created
    m.rejected_children["internal"].inc(2)
    assert sample(registry, "monitor_readings_rejected_total", reason="malformed") == 4
    assert sample(registry, "monitor_readings_rejected_total", reason="oversized") == 1
    assert sample(registry, "monitor_readings_rejected_total", reason="brand_new") == 1
    assert sample(registry, "monitor_readings_rejected_total", reason="internal") == 2
    assert sample(registry, "monitor_drops_total", reason="queue_full") == 5
    assert sample(registry, "monitor_drops_total", reason="stream_cap") == 1
    assert sample(registry, "monitor_drops_total", reason="brand_new_reason") is None

    m.scored(64, 0.004)
    m.scored(1, 0.001)
    m.end_to_end(0.02)
    assert sample(registry, "monitor_windows_scored_total") == 65
    assert sample(registry, "monitor_scoring_batch_size_count") == 2
    assert sample(registry, "monitor_scoring_latency_seconds_sum") == pytest.approx(0.005)
    assert sample(registry, "monitor_end_to_end_latency_seconds_count") == 1
    m.alert("firing", "pump1")
    assert sample(registry, "monitor_alert_state", stream="pump1") == 1
    m.alert("resolved", "pump1")
    assert sample(registry, "monitor_alert_state", stream="pump1") == 0
    m.alert("firing")
    assert sample(registry, "monitor_alerts_total", state="firing") == 2
    assert sample(registry, "monitor_alerts_total", state="resolved") == 1
    m.sink_error("alertmanager")
    assert sample(registry, "monitor_sink_errors_total", sink="alertmanager") == 1


def test_scrape_time_callbacks_and_model_swap():
    registry = CollectorRegistry()
    m = Metrics(registry)
    depth = [3]
    m.set_callbacks(queue_depth=lambda: depth[0], streams_active=lambda: 12)
    assert sample(registry, "monitor_queue_depth") == 3
    depth[0] = 9
    assert sample(registry, "monitor_queue_depth") == 9
    assert sample(registry, "monitor_streams_active") == 12

    m.model_load(True, 0.5, "v1", at=100.0)
    m.model_load(False, 0.1)
    m.model_load(True, 0.25, "v2", at=200.0)
    assert sample(registry, "monitor_model_info", version="v1") is None  # replaced, not accumulated
    assert sample(registry, "monitor_model_info", version="v2") == 1
    assert sample(registry, "monitor_model_load_timestamp_seconds") == 200.0
    assert sample(registry, "monitor_model_load_duration_seconds") == 0.25
    assert sample(registry, "monitor_model_loads_total", result="ok") == 2
    assert sample(registry, "monitor_model_loads_total", result="rejected") == 1

    m.set_mqtt_connected(True)
    assert sample(registry, "monitor_mqtt_connected") == 1
    m.set_mqtt_connected(False)
    assert sample(registry, "monitor_mqtt_connected") == 0


def test_per_stream_gauges_have_bounded_cardinality():
    registry = CollectorRegistry()
    m = Metrics(registry, max_stream_labels=3)
    exported = [m.set_score(f"s{i}", score=float(i), firing=bool(i % 2)) for i in range(5)]
    assert exported == [True, True, True, False, False]
    for _ in range(3):  # repeated updates of an unlabelled stream are counted once
        m.set_score("s4", score=9.0)
    text = generate_latest(registry).decode()
    assert text.count("monitor_anomaly_score{") == 3
    assert text.count("monitor_alert_state{") == 3
    assert sample(registry, "monitor_anomaly_score", stream="s3") is None
    assert sample(registry, "monitor_stream_labels_dropped_total") == 2
    assert sample(registry, "monitor_alert_state", stream="s1") == 1

    m.forget_stream("s0")  # frees a slot and removes its series
    assert sample(registry, "monitor_anomaly_score", stream="s0") is None
    assert sample(registry, "monitor_alert_state", stream="s0") is None
    assert m.set_score("s4", score=4.5)
    assert sample(registry, "monitor_anomaly_score", stream="s4") == 4.5
    assert m.labelled_streams == 3
    m.forget_stream("never-seen")  # harmless


def test_zero_stream_labels_exports_none():
    registry = CollectorRegistry()
    m = Metrics(registry, max_stream_labels=0)
    assert not m.set_score("a", score=1.0)
    assert "monitor_anomaly_score{" not in generate_latest(registry).decode()


# --------------------------------------------------------------------------- HTTP


def test_http_endpoints_on_a_free_port():
    registry = CollectorRegistry()
    m = Metrics(registry)
    m.messages_received.inc(7)
    ready_state = [False, "no model loaded yet"]
    server = serve(
        registry, "127.0.0.1", 0, health=lambda: (True, "ok"), ready=lambda: (ready_state[0], ready_state[1])
    )
    try:
        assert server.port > 0
        base = f"http://127.0.0.1:{server.port}"
        status, ctype, body = get(base + "/metrics")
        assert status == 200 and ctype.startswith("text/plain")
        assert "monitor_messages_received_total 7.0" in body

        assert get(base + "/healthz")[::2] == (200, "ok\n")
        assert get(base + "/readyz")[::2] == (503, "no model loaded yet\n")
        ready_state[:] = [True, "ok"]
        assert get(base + "/readyz")[::2] == (200, "ok\n")
        assert get(base + "/metrics?debug=1")[0] == 200
        assert get(base + "/nope")[0] == 404

        req = urllib.request.Request(base + "/metrics", headers={"Accept": "application/openmetrics-text"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
            assert resp.read().decode().rstrip().endswith("# EOF")
    finally:
        server.shutdown()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


def test_a_failing_health_check_is_a_503_with_the_reason():
    def broken():
        raise RuntimeError("pipeline thread died")

    with serve(CollectorRegistry(), "127.0.0.1", 0, health=broken, ready=lambda: (True, "ok")) as server:
        status, _, body = get(f"http://127.0.0.1:{server.port}/healthz")
    assert status == 503 and "pipeline thread died" in body


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return False
    return True


@pytest.mark.parametrize(("given", "other"), [("127.0.0.1", "127.0.0.2"), ("127.0.0.2", "127.0.0.1")])
def test_server_binds_only_the_configured_address(given, other):
    """Two loopback addresses of the same host (all of 127/8 is local on Linux): the one not given is refused."""
    with serve(CollectorRegistry(), given, 0) as server:
        assert server.address == given and server.url == f"http://{given}:{server.port}"
        assert get(f"{server.url}/healthz")[0] == 200
        assert not _reachable(other, server.port)


def test_a_wildcard_bind_is_reachable_on_every_loopback_address():
    """The contrast that shows the check above can fail: bound to 0.0.0.0, both addresses answer."""
    with serve(CollectorRegistry(), "0.0.0.0", 0) as server:
        assert _reachable("127.0.0.1", server.port) and _reachable("127.0.0.2", server.port)


def test_received_totals_add_plain_int_sources_at_scrape_time():
    registry = CollectorRegistry()
    m = Metrics(registry)
    m.messages_received.inc(2)
    stats = {"messages": 0, "readings": 0}
    m.add_received_source(lambda: (stats["messages"], stats["readings"]))
    m.add_received_source(lambda: (10, 20))
    stats["messages"], stats["readings"] = 5, 7
    assert sample(registry, "monitor_messages_received_total") == 17
    assert sample(registry, "monitor_readings_received_total") == 27
    assert sample(registry, "monitor_messages_received_created") is None  # no _created series
    text = generate_latest(registry).decode()
    assert "monitor_messages_received_total 17.0" in text
    assert text.count("# TYPE monitor_readings_received_total counter") == 1


# --------------------------------------------------------------------------- exposition (issue 13)


def _scrape(url: str, **headers: str) -> tuple[dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=5) as resp:
        return {k.lower(): v for k, v in resp.headers.items()}, resp.read()


def test_metrics_are_gzipped_when_the_scraper_accepts_gzip():
    registry = CollectorRegistry()
    Metrics(registry).messages_received.inc(3)
    with serve(registry, "127.0.0.1", 0) as server:
        headers, body = _scrape(f"{server.url}/metrics", **{"Accept-Encoding": "gzip"})
        assert headers.get("content-encoding") == "gzip" and headers["content-type"].startswith("text/plain")
        assert int(headers["content-length"]) == len(body)
        text = gzip.decompress(body).decode()
        assert "monitor_messages_received_total 3.0" in text
        plain_headers, plain = _scrape(f"{server.url}/metrics")  # no Accept-Encoding: plain text
        assert "content-encoding" not in plain_headers and b"monitor_messages_received_total 3.0" in plain
        assert len(body) < len(plain)
        # the WSGI app's name[] filter comes with it
        _, only = _scrape(f"{server.url}/metrics?name[]=monitor_messages_received_total")
        assert only.decode().count("# TYPE ") == 1


def test_no_created_series_are_exported():
    registry = CollectorRegistry()
    m = Metrics(registry)
    m.messages_received.inc()
    m.alert("firing", "s1")
    m.scored(4, 0.01)
    text = generate_latest(registry).decode()
    assert "monitor_alerts_total" in text and "monitor_scoring_latency_seconds_count" in text
    assert "_created" not in text


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process_* metrics read /proc")
def test_process_metrics_are_exported():
    registry = CollectorRegistry()
    Metrics(registry)
    assert sample(registry, "process_resident_memory_bytes") > 0
    assert sample(registry, "process_start_time_seconds") > 0
    assert sample(registry, "process_open_fds") >= 3


def test_there_is_one_retrain_success_series_and_none_before_any_retrain():
    registry = CollectorRegistry()
    Metrics(registry)
    text = generate_latest(registry).decode()
    assert "retrain" not in text  # before any retrain: no series that reads 0
