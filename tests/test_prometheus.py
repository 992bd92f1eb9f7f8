"""Alert rules and dashboard queries against promtool and a real Prometheus.

* ``promtool check rules`` and ``promtool test rules`` on deploy/prometheus.
* A real Prometheus (the Debian package's server binary) on a free loopback port scrapes a
  running daemon (in-process `Service`, private Mosquitto) every second and evaluates the
  real rules file: every dashboard panel query and every metric selector of every alert
  expression must return data, every alert expression must be valid, and the anomaly
  alert must go pending/firing when a fault is fed.

Needs promtool/prometheus and mosquitto (scripts/ci-deps.sh installs them); skips with
the reason when a binary is truly absent.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from broker import Mosquitto, free_port, mosquitto_binary
from daemon_support import Publisher, daemon_config, feed_rows, http_get, train_small_model, wait_until
from prometheus_client import CollectorRegistry

from monitor.app.service import Service
from monitor.io.retrain_status import write_textfile

ROOT = Path(__file__).resolve().parents[1]
PROM_DIR = ROOT / "deploy" / "prometheus"
RULES = PROM_DIR / "rules" / "monitor.rules.yml"
RULE_TESTS = sorted((PROM_DIR / "tests").glob("*.test.yml"))
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "monitor.json"


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/bin", "/usr/sbin", "/usr/local/bin"):
        if Path(d, name).is_file():
            return str(Path(d, name))
    return None


PROMTOOL = _binary("promtool")
PROMETHEUS = _binary("prometheus")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (apt-get install prometheus; scripts/ci-deps.sh)"
)


# --------------------------------------------------------------------------- promtool


@needs_promtool
def test_promtool_check_rules():
    out = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


@pytest.mark.slow  # promtool subprocesses
@needs_promtool
def test_promtool_rule_unit_tests():
    assert RULE_TESTS
    out = subprocess.run(
        [PROMTOOL, "test", "rules", *map(str, RULE_TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROM_DIR / "tests",
    )
    assert out.returncode == 0, out.stdout + out.stderr


NATS_ONLY = "monitor_nats_"  # metrics of source: nats workers only; this test scrapes an MQTT daemon


def _rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_every_alert_has_for_severity_and_annotations():
    rules = _rules()
    names = {r["alert"] for r in rules}
    # the list: anomaly per stream, daemon down, not consuming, dropping messages,
    # model reload failures, model stale, retrain overdue
    for required in (
        "MonitorAnomaly",
        "MonitorDown",
        "MonitorNotConsuming",
        "MonitorDroppingMessages",
        "MonitorModelReloadFailed",
        "MonitorModelStale",
        "MonitorRetrainOverdue",
    ):
        assert required in names
    for r in rules:
        assert "for" in r, r["alert"]
        assert r["labels"]["severity"] in ("critical", "warning", "info"), r["alert"]
        assert r["annotations"].get("summary") and r["annotations"].get("description"), r["alert"]
    anomaly = next(r for r in rules if r["alert"] == "MonitorAnomaly")
    assert "stream" in anomaly["expr"]  # one alert per stream


def test_rule_tests_cover_every_alert():
    tested = {
        t["alertname"]
        for f in RULE_TESTS
        for case in yaml.safe_load(f.read_text())["tests"]
        for t in case.get("alert_rule_test", [])
    }
    assert {r["alert"] for r in _rules()} <= tested


# --------------------------------------------------------------------------- live Prometheus


class Prometheus:
    """The real server on a free loopback port with a tmp storage dir."""

    def __init__(self, tmp: Path, target: str):
        tmp.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        deploy_cfg = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
        jobs = [j for j in deploy_cfg["scrape_configs"] if j["job_name"] == "monitor"]
        assert jobs, "deploy/prometheus/prometheus.yml has no job named monitor (the rules need it)"
        job = dict(jobs[0], static_configs=[{"targets": [target]}], scrape_interval="1s", scrape_timeout="1s")
        cfg = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [job],
        }
        self.config = tmp / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(cfg))
        with open(tmp / "prometheus.log", "wb") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={tmp / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.log_path = tmp / "prometheus.log"

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.proc.returncode}:\n{self.log_path.read_text()}")
            if http_get(self.port, "/-/ready")[0] == 200:
                return
            time.sleep(0.1)
        raise RuntimeError(f"prometheus not ready:\n{self.log_path.read_text()}")

    def api(self, path: str, **params) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 400 on a bad query: the body says why
            return json.loads(exc.read())

    def query(self, expr: str) -> dict:
        return self.api("query", query=expr)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _substitute(expr: str) -> str:
    """Grafana's variables as the dashboard would send them."""
    return (
        expr.replace("$__rate_interval", "30s")
        .replace("${__rate_interval}", "30s")
        .replace('"$stream"', '".*"')
        .replace("$stream", ".*")
    )


def _panel_targets(dashboard: dict):
    def walk(panels):
        for p in panels:
            yield p
            yield from walk(p.get("panels", []))

    for p in walk(dashboard["panels"]):
        for t in p.get("targets", []):
            if t.get("expr"):
                yield p["title"], t["expr"]


_SELECTOR = re.compile(r"\b((?:monitor_[a-z0-9_]+)|up|ALERTS)\b(\s*\{[^}]*\})?")


def _selectors(expr: str) -> list[str]:
    return sorted({m.group(1) + (m.group(2) or "") for m in _SELECTOR.finditer(expr)})


@pytest.mark.slow
@pytest.mark.skipif(
    PROMETHEUS is None,
    reason="the prometheus server binary is not installed (apt-get install prometheus; scripts/ci-deps.sh)",
)
@pytest.mark.skipif(mosquitto_binary() is None, reason="the mosquitto binary is not installed")
def test_dashboard_and_alerts_against_real_prometheus(tmp_path):
    models = tmp_path / "models"
    train_small_model(models)
    now = time.time()
    write_textfile(
        models / "retrain.prom",
        {
            "monitor_retrain_last_run_timestamp_seconds": now - 60,
            "monitor_retrain_last_success_timestamp_seconds": now - 3600,
            "monitor_retrain_gate_passed": 1.0,
            "monitor_retrain_candidate_false_alarm_rate": 0.002,
            "monitor_retrain_current_false_alarm_rate": 0.004,
            "monitor_retrain_last_exit_code": 0.0,
        },
    )
    with Mosquitto(tmp_path / "broker") as broker:
        registry = CollectorRegistry()
        service = Service(daemon_config(broker.port, models), registry=registry)
        service.start()
        loop = threading.Thread(target=service.run_forever, kwargs={"install_signals": False}, daemon=True)
        loop.start()
        prom = pub = None
        try:
            prom = Prometheus(tmp_path / "prom", f"127.0.0.1:{service.http.port}")
            wait_until(lambda: service.ready()[0], 20, what="daemon ready")
            prom.wait_ready()

            def scraped_up():
                r = prom.query('up{job="monitor"}')["data"]["result"]
                return r and r[0]["value"][1] == "1"

            wait_until(scraped_up, 20, what="Prometheus scraping the daemon")
            # normal rows, then a cavitation fault that is still going on when the feed ends
            t, v, _ = feed_rows(n=800, fault=(700, 800))
            pub = Publisher(broker.port, client_id="prom-feed")
            pub.publish_rows("plant/site1/pump1", t, v)

            def anomaly_alert():
                alerts = prom.api("alerts")["data"]["alerts"]
                return [
                    a
                    for a in alerts
                    if a["labels"].get("alertname") == "MonitorAnomaly"
                    and a["labels"].get("stream") == "site1/pump1"
                    and a["state"] in ("pending", "firing")
                ]

            found = wait_until(anomaly_alert, 40, interval=0.5, what="MonitorAnomaly pending or firing")
            assert found[0]["labels"]["severity"] == "critical"
            time.sleep(2.5)  # a few more scrapes after the feed, so every rate() has two samples

            # every dashboard panel query: valid and returning data
            dashboard = json.loads(DASHBOARD.read_text())
            failures = []
            for title, expr in _panel_targets(dashboard):
                res = prom.query(_substitute(expr))
                if res.get("status") != "success":
                    failures.append(f"{title}: {expr}: {res.get('error')}")
                elif not res["data"]["result"]:
                    failures.append(f"{title}: {expr}: no data")
            # every alert expression: valid; every metric selector in it: has data
            for rule in _rules():
                res = prom.query(rule["expr"])
                if res.get("status") != "success":
                    failures.append(f"alert {rule['alert']}: {res.get('error')}")
                for sel in _selectors(rule["expr"]):
                    if sel.startswith(NATS_ONLY):
                        continue  # a NATS worker's: tests/test_nats_operations.py checks it is exported
                    r = prom.query(sel)
                    if r.get("status") != "success" or not r["data"]["result"]:
                        failures.append(f"alert {rule['alert']}: selector {sel} returns no data")
            assert not failures, "\n".join(failures)

            # the rules Prometheus loaded are ours, and it evaluates them without errors
            groups = prom.api("rules")["data"]["groups"]
            loaded = {r["name"]: r for g in groups for r in g["rules"]}
            assert {r["alert"] for r in _rules()} <= set(loaded)
            assert all(r.get("health") == "ok" for r in loaded.values()), {
                n: r.get("lastError") for n, r in loaded.items() if r.get("health") != "ok"
            }
        finally:
            if pub is not None:
                pub.close()
            if prom is not None:
                prom.stop()
            service.request_stop()
            loop.join(15)
