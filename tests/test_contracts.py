"""One generic contract suite per declared interface, run against every implementation
(as River's estimator checks are): `monitor.core.interfaces.Scorer`, `monitor.io.sinks.Sink`
and `monitor.io.sources.Source`. A new implementation joins by adding a case to its list."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import http.server
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nats
import numpy as np
import paho.mqtt.client as paho
import pytest
import torch

from monitor.core.config import ModelConfig, MQTTConfig, NATSConfig, TopicRule
from monitor.core.interfaces import Scorer
from monitor.core.model.bundle import load_bundle
from monitor.core.model.nets import build_autoencoder
from monitor.core.model.scorer import AutoencoderScorer
from monitor.core.types import Alert
from monitor.io import mqtt_fast
from monitor.io.codec import Codec
from monitor.io.mqtt import Ingested, MQTTIngest
from monitor.io.nats import NATSIngest
from monitor.io.sinks import AlertmanagerSink, JSONLinesSink, LogSink, MemorySink, MQTTSink, Sink, alert_json
from monitor.io.sources import Source
from tests.broker import Mosquitto, mosquitto_binary
from tests.daemon_support import wait_until
from tests.nats_server import NatsServer, nats_server_binary
from tests.nats_support import publish_nats, stream_messages

torch.set_num_threads(1)
FIXTURE = Path(__file__).parent / "fixtures" / "bundle-v1" / "models"

# =========================================================================== Scorer


def _autoencoder(architecture: str, n_channels: int, **cfg) -> AutoencoderScorer:
    torch.manual_seed(3)
    model_cfg = ModelConfig(architecture=architecture, window_size=8, hidden=[6], code_size=2, conv_channels=[4], **cfg)
    module = build_autoencoder(model_cfg, n_channels)
    scale = getattr(module, "channel_error_scale", None)
    if scale is not None:  # as training sets it: each channel's typical error
        scale.copy_(torch.linspace(0.5, 2.0, len(scale)))
    return AutoencoderScorer(module)


# (name, factory () -> (scorer, window_size, input channels, scored channels))
SCORERS: list[tuple[str, Callable[[], tuple[Scorer, int, int, int]]]] = [
    ("dense", lambda: (_autoencoder("dense", 3), 8, 3, 3)),
    ("conv1d", lambda: (_autoencoder("conv1d", 3), 8, 3, 3)),
    ("dense-context", lambda: (_autoencoder("dense", 2, context=["time_of_day"]), 8, 4, 2)),
    ("conv1d-channel_max", lambda: (_autoencoder("conv1d", 4, score_reduction="channel_max"), 8, 4, 4)),
    ("bundle-v1-trained", lambda: (AutoencoderScorer(load_bundle(FIXTURE).module), 8, 5, 5)),
]


@pytest.fixture(params=SCORERS, ids=[name for name, _ in SCORERS])
def scorer_case(request):
    return request.param[1]()


def _windows(batch: int, window: int, channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, window, channels)).astype(np.float32)


def test_scorer_declares_the_interface(scorer_case):
    scorer, *_ = scorer_case
    assert isinstance(scorer, Scorer)


def test_scorer_output_shapes_dtypes_and_ranges(scorer_case):
    scorer, w, c_in, c = scorer_case
    raw, per_channel, last = scorer.errors(_windows(7, w, c_in))
    assert raw.shape == (7,) and per_channel.shape == (7, c) and last.shape == (7, c)
    assert raw.dtype == per_channel.dtype == last.dtype == np.float32
    assert np.all(np.isfinite(raw)) and np.all(np.isfinite(per_channel)) and np.all(np.isfinite(last))
    assert np.all(raw >= 0) and np.all(per_channel >= 0)


def test_scorer_is_deterministic_and_leaves_input_and_itself_unchanged(scorer_case):
    scorer, w, c_in, _ = scorer_case
    x = _windows(5, w, c_in)
    x_before = x.copy()
    state = copy.deepcopy(getattr(scorer, "module", None))
    first = scorer.errors(x)
    second = scorer.errors(x)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(x, x_before)
    if state is not None:
        after = scorer.module.state_dict()  # type: ignore[attr-defined]
        for name, tensor in state.state_dict().items():
            assert torch.equal(tensor, after[name]), name


def test_scorer_batch_equals_one_window_at_a_time(scorer_case):
    scorer, w, c_in, _ = scorer_case
    x = _windows(6, w, c_in, seed=1)
    batched = scorer.errors(x)
    singles = [scorer.errors(x[i : i + 1]) for i in range(len(x))]
    for k in range(3):
        alone = np.concatenate([s[k] for s in singles])
        np.testing.assert_allclose(batched[k], alone, rtol=1e-5, atol=1e-7)


def test_scorer_batch_order_does_not_matter(scorer_case):
    scorer, w, c_in, _ = scorer_case
    x = _windows(9, w, c_in, seed=2)
    order = np.random.default_rng(0).permutation(9)
    straight, shuffled = scorer.errors(x), scorer.errors(x[order])
    for a, b in zip(straight, shuffled, strict=True):
        np.testing.assert_allclose(a[order], b, rtol=1e-5, atol=1e-7)


def test_scorer_accepts_an_empty_batch(scorer_case):
    scorer, w, c_in, c = scorer_case
    raw, per_channel, last = scorer.errors(np.empty((0, w, c_in), dtype=np.float32))
    assert raw.shape == (0,) and per_channel.shape == (0, c) and last.shape == (0, c)


def test_scorer_refuses_windows_of_the_wrong_shape_naming_the_expected_one(scorer_case):
    scorer, w, c_in, _ = scorer_case
    with pytest.raises(ValueError, match=rf"expects \({w}, {c_in}\)"):
        scorer.errors(_windows(2, w + 1, c_in))
    with pytest.raises(ValueError, match="batch, window_size, n_channels"):
        scorer.errors(np.zeros((w, c_in), dtype=np.float32))


# =========================================================================== Sink


def _alert(state: str = "firing", n: int = 1) -> Alert:
    return Alert(
        alert_id=f"a{n}",
        stream="site1/pump1",
        state=state,
        started_at=1_700_000_000.0 + n,
        ended_at=None if state == "firing" else 1_700_000_060.0 + n,
        peak_score=2.5,
        current_score=1.5 if state == "firing" else 0.5,
        threshold=0.7,
        model_version="v1",
        top_channels=[{"channel": "flow", "score": 2.0, "observed": 1.0, "reconstructed": 0.5}],
        group="pumps",
    )


@dataclass
class SinkCase:
    """A sink wired to a downstream the test controls."""

    sink: Sink
    delivered: Callable[[], list[str]]  # alert ids that reached the downstream, in order
    fail: Callable[[bool], None] | None  # make the downstream fail (True) or recover (False)
    errors: list[int] = field(default_factory=list)  # on_error calls, where the sink reports them
    reports_errors: bool = True


def _mqtt_case(_tmp: Path) -> SinkCase:
    out: list[str] = []
    broken = [False]

    def publish(topic: str, payload: bytes, qos: int, retain: bool) -> None:
        if broken[0]:
            raise RuntimeError("client closed")
        assert topic == "monitor/alerts/site1/pump1" and qos == 1
        out.append(json.loads(payload)["alert_id"])

    case = SinkCase(MQTTSink(publish, "monitor/alerts/{stream}", 1), lambda: out, lambda b: broken.__setitem__(0, b))
    case.sink.on_error = lambda: case.errors.append(1)  # type: ignore[attr-defined]
    return case


def _log_case(_tmp: Path) -> SinkCase:
    out: list[str] = []
    broken = [False]

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                if broken[0]:
                    raise OSError("log disk full")
                out.append(record.alert["alert_id"])  # type: ignore[attr-defined]
            except Exception:
                self.handleError(record)  # what logging does with a failing handler

    logger = logging.getLogger(f"contract-sink-{id(out)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(Handler())
    return SinkCase(LogSink(logger), lambda: out, lambda b: broken.__setitem__(0, b), reports_errors=False)


def _jsonl_case(tmp: Path) -> SinkCase:
    path = tmp / "alerts" / "alerts.jsonl"
    errors: list[int] = []

    def delivered() -> list[str]:
        if not path.is_file():
            return []
        return [json.loads(line)["alert_id"] for line in path.read_text().splitlines()]

    def fail(broken: bool) -> None:
        if broken:  # the directory replaced by a file: appends fail
            if path.parent.is_dir():
                keep = path.read_bytes() if path.exists() else b""
                path.unlink(missing_ok=True)
                path.parent.rmdir()
                path.parent.write_bytes(keep)
        elif path.parent.is_file():
            keep = path.parent.read_bytes()
            path.parent.unlink()
            path.parent.mkdir()
            path.write_bytes(keep)

    return SinkCase(JSONLinesSink(path, on_error=lambda: errors.append(1)), delivered, fail, errors)


class _Alertmanager(http.server.ThreadingHTTPServer):
    """A real HTTP endpoint on a free loopback port: records posted alert ids, or answers 500."""

    def __init__(self) -> None:
        self.posted: list[str] = []
        self.broken = False
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if server.broken:
                    self.send_response(500)
                else:
                    server.posted += [a["labels"]["alert_id"] for a in json.loads(body)]
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


@pytest.fixture
def alertmanager():
    server = _Alertmanager()
    yield server
    server.shutdown()
    server.server_close()


def _alertmanager_case(_tmp: Path, server: _Alertmanager) -> SinkCase:
    errors: list[int] = []
    sink = AlertmanagerSink(f"http://127.0.0.1:{server.server_address[1]}", on_error=lambda: errors.append(1))
    return SinkCase(sink, lambda: server.posted, lambda b: setattr(server, "broken", b), errors)


def _memory_case(_tmp: Path) -> SinkCase:
    sink = MemorySink()
    return SinkCase(sink, lambda: [a.alert_id for a in sink.alerts], None, reports_errors=False)


SINKS = ["mqtt", "log", "file", "alertmanager", "memory"]


@pytest.fixture(params=SINKS)
def sink_case(request, tmp_path):
    factories = {"mqtt": _mqtt_case, "log": _log_case, "file": _jsonl_case, "memory": _memory_case}
    if request.param == "alertmanager":
        case = _alertmanager_case(tmp_path, request.getfixturevalue("alertmanager"))
    else:
        case = factories[request.param](tmp_path)
    yield case
    case.sink.close()


def test_sink_declares_the_interface(sink_case):
    assert isinstance(sink_case.sink, Sink) and sink_case.sink.name


def test_sink_delivers_firing_and_resolved_alerts_in_order(sink_case):
    sink_case.sink.send(_alert("firing", 1))
    sink_case.sink.send(_alert("resolved", 1))
    sink_case.sink.send(_alert("firing", 2))
    wait_until(lambda: len(sink_case.delivered()) >= 3, timeout=10, what="three alerts delivered")
    assert sink_case.delivered() == ["a1", "a1", "a2"]
    assert sink_case.errors == []


def test_sink_survives_a_failing_downstream_counts_it_and_delivers_after_recovery(sink_case, caplog):
    if sink_case.fail is None:
        pytest.skip(f"{sink_case.sink.name}: no downstream that can fail")
    sink_case.sink.send(_alert("firing", 1))
    wait_until(lambda: sink_case.delivered() == ["a1"], timeout=10, what="first alert")
    sink_case.fail(True)
    sink_case.sink.send(_alert("firing", 2))  # must not raise
    if sink_case.reports_errors:
        wait_until(lambda: sink_case.errors, timeout=10, what="the failure counted")
        assert getattr(sink_case.sink, "failures", 0) + getattr(sink_case.sink, "dropped", 0) >= 1
    sink_case.fail(False)
    sink_case.sink.send(_alert("firing", 3))
    wait_until(lambda: "a3" in sink_case.delivered(), timeout=10, what="delivery after recovery")
    got = sink_case.delivered()
    # a2, sent while the downstream failed: lost and counted, or (a sink that retries, such as
    # Alertmanager's) delivered once after the recovery; never twice, never out of order
    assert got[0] == "a1" and got.count("a2") <= 1 and got.count("a3") == 1
    assert "a2" not in got or got.index("a2") < got.index("a3")


def test_sink_close_is_idempotent_and_send_after_close_does_not_raise(sink_case):
    sink_case.sink.send(_alert("firing", 1))
    wait_until(lambda: sink_case.delivered(), timeout=10, what="delivered before close")
    sink_case.sink.close()
    sink_case.sink.close()
    sink_case.sink.send(_alert("resolved", 1))


def test_alert_json_is_what_every_mqtt_consumer_reads():
    body = json.loads(alert_json(_alert()))
    assert body == _alert().to_dict()


# =========================================================================== Source

RULES = [TopicRule(template="contract/{stream}/{channel}", format="auto", qos=1)]


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    if mosquitto_binary() is None:
        pytest.skip("the mosquitto binary is not installed")
    with Mosquitto(tmp_path_factory.mktemp("contract-broker")) as b:
        yield b


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory):
    if nats_server_binary() is None:
        pytest.skip("the nats-server binary is not installed")
    with NatsServer(tmp_path_factory.mktemp("contract-nats"), partitions=1, rules=RULES) as server:
        yield server


@dataclass
class SourceCase:
    source: Source
    queue: queue.Queue[Ingested]
    send: Callable[[int], None]  # publish N readings the source should deliver
    ready: Callable[[], bool]
    holds: bool = False  # a full queue: the broker's log holds the rest (True) or it is dropped and counted
    close: Callable[[], None] = lambda: None


_client_ids = iter(range(10**6))


def _mqtt_source(broker: Mosquitto, fast: bool, monkeypatch, maxsize: int) -> SourceCase:
    monkeypatch.setattr(mqtt_fast, "_FAST_PUBLISH", fast)
    q: queue.Queue[Ingested] = queue.Queue(maxsize=maxsize)
    cfg = MQTTConfig(
        host=broker.host,
        port=broker.port,
        client_id=f"contract-{next(_client_ids)}",
        reconnect_min_seconds=0.05,
        reconnect_max_seconds=0.2,
    )
    ingest = MQTTIngest(cfg, RULES, Codec(RULES), q)
    assert (type(ingest.client) is mqtt_fast._FastClient) is fast
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"contract-pub-{next(_client_ids)}")
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    sent = [0]

    def send(n: int) -> None:
        infos = [pub.publish("contract/s1/temp", str(sent[0] + i).encode(), qos=1) for i in range(n)]
        for info in infos:
            info.wait_for_publish(5)
        sent[0] += n

    return SourceCase(ingest, q, send, lambda: ingest.subscribed, close=lambda: (pub.disconnect(), pub.loop_stop()))


def _nats_source(server: NatsServer, maxsize: int) -> SourceCase:
    """A NATSIngest owning the one partition, on a stream and consumer of its own."""
    n = next(_client_ids)
    cfg = NATSConfig(
        servers=[server.url], partitions=1, stream=f"CONTRACT{n}", durable_prefix=f"c{n}", reconnect_seconds=0.1
    )
    q: queue.Queue[Ingested] = queue.Queue(maxsize=maxsize)
    ingest = NATSIngest(cfg, RULES, Codec(RULES), q)
    sent = [0]

    def send(n: int) -> None:
        publish_nats(server.url, [("contract/s1/temp", str(sent[0] + i).encode()) for i in range(n)])
        sent[0] += n

    def delete_stream() -> None:  # the next case's stream captures the same subjects
        async def go() -> None:
            nc = await nats.connect(server.url)
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await nc.jetstream().delete_stream(cfg.stream)
            await nc.close()

        asyncio.run(go())

    return SourceCase(ingest, q, send, lambda: ingest.subscribed, holds=True, close=delete_stream)


SOURCES = ["mqtt-fast", "mqtt-paho", "nats"]


@pytest.fixture(params=SOURCES)
def source_factory(request, monkeypatch):
    made: list[SourceCase] = []

    def make(maxsize: int = 1000) -> SourceCase:
        if request.param == "nats":
            case = _nats_source(request.getfixturevalue("nats_server"), maxsize)
        else:
            broker = request.getfixturevalue("broker")
            case = _mqtt_source(broker, request.param == "mqtt-fast", monkeypatch, maxsize)
        made.append(case)
        return case

    yield make
    for case in made:
        case.source.stop()
        case.close()


def _values(q: queue.Queue[Ingested]) -> list[float]:
    out = []
    while True:
        try:
            item = q.get_nowait()
        except queue.Empty:
            return out
        out += [r.value for r in item.readings]


def _started(case: SourceCase) -> SourceCase:
    case.source.start()
    wait_until(case.ready, timeout=10, what="source ready")
    return case


def test_source_declares_the_interface(source_factory):
    case = source_factory()
    assert isinstance(case.source, Source) and case.source.name
    assert {"messages", "readings", "dropped_messages", "dropped_readings"} <= case.source.stats.keys()


def test_source_delivers_every_reading_in_order_and_counts_it(source_factory):
    case = _started(source_factory())
    case.send(50)
    wait_until(lambda: case.source.stats["readings"] >= 50, timeout=10, what="50 readings")
    assert _values(case.queue) == [float(i) for i in range(50)]
    assert case.source.stats["messages"] == case.source.stats["readings"] == 50


def test_source_counts_what_a_full_queue_cannot_take_without_blocking(source_factory):
    case = _started(source_factory(maxsize=5))
    case.send(20)
    if case.holds:  # the log keeps what the queue cannot take: nothing dropped, all of it later
        wait_until(lambda: case.queue.full(), timeout=10, what="the queue filled")
        time.sleep(0.3)  # a source that overfilled or dropped would show it now
        assert case.queue.qsize() == 5 and case.source.stats["dropped_messages"] == 0
        got: list[float] = []
        wait_until(lambda: got.extend(_values(case.queue)) or len(got) >= 20, timeout=10, what="the rest")
        assert got == [float(i) for i in range(20)] and case.source.stats["dropped_readings"] == 0
        return
    wait_until(lambda: case.source.stats["messages"] >= 20, timeout=10, what="20 messages seen")
    assert case.queue.qsize() == 5
    assert case.source.stats["dropped_messages"] == 15 and case.source.stats["dropped_readings"] == 15
    assert _values(case.queue) == [0.0, 1.0, 2.0, 3.0, 4.0]


def _broker_has_them(case: SourceCase, request) -> None:
    """Publish 2 while the source is stopped, and see the broker took them (not the source)."""
    if isinstance(case.source, NATSIngest):
        before = stream_messages(case.source.cfg.servers[0], case.source.cfg.stream)
        case.send(2)
        wait_until(
            lambda: stream_messages(case.source.cfg.servers[0], case.source.cfg.stream) == before + 2,
            what="the stream stored them",
        )
        return
    broker = request.getfixturevalue("broker")
    watcher = paho.Client(paho.CallbackAPIVersion.VERSION2)
    seen, subscribed = threading.Event(), threading.Event()
    watcher.on_message = lambda *a: seen.set()
    watcher.on_subscribe = lambda *a: subscribed.set()
    watcher.connect(broker.host, broker.port)
    watcher.loop_start()
    watcher.subscribe("contract/#", qos=1)
    try:
        assert subscribed.wait(5)
        case.send(2)
        assert seen.wait(5)  # the broker delivered those messages to subscribers
    finally:
        watcher.disconnect()
        watcher.loop_stop()


def test_source_stops_cleanly_delivers_nothing_after_stop_and_restarts(source_factory, request):
    case = source_factory()
    case.source.stop()  # before start: a no-op
    _started(case)
    case.send(3)
    wait_until(lambda: case.queue.qsize() >= 3, timeout=10, what="3 readings")
    taken = [case.queue.get_nowait() for _ in range(3)]
    case.source.ack_many(taken)  # handled: a source that keeps unacked messages (NATS) would redeliver them
    started = time.monotonic()
    case.source.stop(timeout=5.0)
    assert time.monotonic() - started < 5.0
    case.source.stop()  # twice: a no-op
    before = case.source.stats["messages"]
    _broker_has_them(case, request)
    time.sleep(0.2)  # a source still delivering would show it now
    assert case.source.stats["messages"] == before and _values(case.queue) == []
    assert [r.value for item in taken for r in item.readings] == [0.0, 1.0, 2.0]
    _started(case)  # start after stop delivers again
    case.send(1)
    got: list[float] = []
    wait_until(lambda: got.extend(_values(case.queue)) or 5.0 in got, timeout=10, what="delivery after restart")
    assert got in ([5.0], [3.0, 4.0, 5.0])  # what was published while stopped: per the session setting
