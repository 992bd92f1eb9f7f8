"""The Alertmanager sink against real HTTP servers on free loopback ports (http.server in a
thread, standing in for the members of an Alertmanager HA pair) and, where installed, the
real Alertmanager: the shipped inhibit rule keeps the sink's alert and the Prometheus
``MonitorAnomaly`` rule's alert from notifying twice."""

from __future__ import annotations

import base64
import http.server
import json
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from broker import free_port
from daemon_support import wait_until

from monitor.core.types import Alert
from monitor.io.alertmanager import alerts_url, payload
from monitor.io.sinks import AlertmanagerSink

ROOT = Path(__file__).resolve().parents[1]
AM = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def _alert(state: str = "firing", n: int = 1) -> Alert:
    now = time.time()
    return Alert(
        f"a{n}", "site1/pump1", state, now - 30, now if state == "resolved" else None, 4.2, 3.1, 0.05, "v1",
        [{"channel": "flow", "score": 3.0, "observed": 80.0, "reconstructed": 104.0}],
    )  # fmt: skip


class Member(http.server.ThreadingHTTPServer):
    """One Alertmanager stand-in: records (alert_id, state, labels, auth) of posted alerts;
    answers `fail_next` posts with 500 first."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, str, dict, str | None]] = []
        self.requests = 0
        self.fail_next = 0
        self.paths: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.requests += 1
                server.paths.append(self.path)
                if server.fail_next > 0:
                    server.fail_next -= 1
                    self.send_response(500)
                else:
                    for a in json.loads(body):
                        state = "resolved" if "endsAt" in a else "firing"
                        server.posted.append(
                            (a["labels"]["alert_id"], state, a["labels"], self.headers["Authorization"])
                        )
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def members():
    made = [Member(), Member()]
    yield made
    for m in made:
        m.close()


def test_every_alert_goes_to_every_member_with_configured_labels(members):
    sink = AlertmanagerSink([m.url for m in members], labels={"team": "ops", "severity": "page"})
    try:
        sink.send(_alert("firing"))
        sink.send(_alert("resolved"))
        for m in members:
            wait_until(lambda m=m: [(i, s) for i, s, _, _ in m.posted] == [("a1", "firing"), ("a1", "resolved")])
            labels = m.posted[0][2]
            assert labels["team"] == "ops" and labels["severity"] == "page"  # configured; severity overridden
            assert labels["alertname"] == "MonitorAnomaly" and labels["source"] == "monitor"
            assert m.paths == ["/api/v2/alerts"] * len(m.paths)
    finally:
        sink.close()
    assert sink.failures == 0 and sink.dropped == 0


def test_one_member_down_still_delivers_to_the_other_without_delay(members):
    up = members[0]
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused, retried
    errors: list[int] = []
    sink = AlertmanagerSink(
        [down, up.url], on_error=lambda: errors.append(1), retry_initial_seconds=0.05, retry_max_seconds=0.1
    )
    try:
        for n in range(1, 4):
            sink.send(_alert("firing", n))
        wait_until(lambda: {i for i, *_ in up.posted} == {"a1", "a2", "a3"}, timeout=5, what="delivered to up")
        wait_until(lambda: sink.dropped >= 3, timeout=10, what="down member gives up after max_attempts")
        assert sink.targets[0].failures == sink.max_attempts  # 5 tries with backoff, then dropped and counted
        assert sink.targets[1].failures == 0 and sink.targets[1].dropped == 0
        assert errors
    finally:
        sink.close()


def test_a_transient_500_is_retried_with_backoff_and_delivered_once(members):
    m = members[0]
    m.fail_next = 2
    sink = AlertmanagerSink([m.url], retry_initial_seconds=0.05, retry_max_seconds=0.2)
    try:
        sink.send(_alert("firing"))
        wait_until(lambda: m.posted, timeout=5, what="delivered after the 500s")
        assert m.requests == 3 and [i for i, *_ in m.posted] == ["a1"]
        assert sink.failures == 2 and sink.dropped == 0
        # a resolve that arrives while a post is being retried replaces its firing (latest state wins)
        m.fail_next = 1
        sink.send(_alert("firing", 2))
        sink.send(_alert("resolved", 2))
        wait_until(lambda: ("a2", "resolved") in [(i, s) for i, s, *_ in m.posted], timeout=5, what="resolved")
    finally:
        sink.close()


def test_a_400_is_not_retried_and_is_counted(members):
    m = members[0]

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            m.requests += 1
            self.send_response(400)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    m.RequestHandlerClass = Refuse
    sink = AlertmanagerSink([m.url], retry_initial_seconds=0.05)
    try:
        sink.send(_alert())
        wait_until(lambda: sink.dropped == 1, timeout=5, what="refused alert counted")
        time.sleep(0.3)
        assert m.requests == 1 and sink.failures == 1
    finally:
        sink.close()


def test_send_never_blocks_while_every_member_is_down():
    sink = AlertmanagerSink(
        [f"http://10.255.255.1:{free_port()}"], timeout_seconds=5, queue_size=10, retry_initial_seconds=5
    )
    try:
        started = time.monotonic()
        for n in range(50):
            sink.send(_alert("firing", n))
        assert time.monotonic() - started < 0.5  # the scoring thread only enqueues
        assert sink.dropped >= 30  # a full queue drops and counts
    finally:
        sink.close(timeout=0.5)


def test_basic_auth_goes_in_the_header_only(members):
    m = members[0]
    sink = AlertmanagerSink([m.url + "/api/v2/alerts"], username="mon", password="pa55-word")
    try:
        sink.send(_alert())
        wait_until(lambda: m.posted, timeout=5)
        assert m.posted[0][3] == "Basic " + base64.b64encode(b"mon:pa55-word").decode()
        assert m.paths == ["/api/v2/alerts"]  # a URL given with the API path is not doubled
    finally:
        sink.close()


def test_alerts_url_appends_the_api_path_once():
    assert alerts_url("http://am:9093") == "http://am:9093/api/v2/alerts"
    assert alerts_url("http://am:9093/") == "http://am:9093/api/v2/alerts"
    assert alerts_url("http://am:9093/api/v2/alerts") == "http://am:9093/api/v2/alerts"
    assert payload(_alert(), {"team": "ops"})["labels"]["team"] == "ops"


@pytest.mark.slow
@pytest.mark.skipif(AM is None, reason="alertmanager is not installed (apt-get install prometheus-alertmanager)")
def test_shipped_inhibit_rule_suppresses_the_prometheus_rules_duplicate(tmp_path):
    """The sink's MonitorAnomaly (source="monitor") and the Prometheus rule's MonitorAnomaly for
    the same stream: with deploy/alertmanager/alertmanager.yml only the sink's one notifies."""
    shipped = yaml.safe_load((ROOT / "deploy/alertmanager/alertmanager.yml").read_text())
    conf = tmp_path / "am.yml"
    shipped["receivers"] = [{"name": r["name"]} for r in shipped["receivers"]]  # no webhooks to call
    conf.write_text(yaml.safe_dump(shipped))
    port = free_port()
    proc = subprocess.Popen(
        [
            AM,
            f"--config.file={conf}",
            f"--storage.path={tmp_path}/data",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"

    def alerts():
        try:
            with urllib.request.urlopen(f"{base}/api/v2/alerts", timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            return None

    try:
        wait_until(lambda: alerts() is not None, timeout=20, what="alertmanager up")
        sink = AlertmanagerSink([base])
        sink.send(_alert())
        # what Prometheus posts for the shipped rule (labels of the rule + the series)
        rule_alert = {
            "labels": {
                "alertname": "MonitorAnomaly",
                "stream": "site1/pump1",
                "severity": "critical",
                "job": "monitor",
                "instance": "127.0.0.1:9108",
            },
            "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        req = urllib.request.Request(
            f"{base}/api/v2/alerts", json.dumps([rule_alert]).encode(), {"Content-Type": "application/json"}
        )
        urllib.request.urlopen(req, timeout=5).read()

        def states():
            got = alerts() or []
            return {a["labels"].get("source", "prometheus"): a["status"]["state"] for a in got}

        wait_until(lambda: states() == {"monitor": "active", "prometheus": "suppressed"}, what="inhibited")
        sink.close()
    finally:
        proc.terminate()
        proc.wait(10)
