"""deploy/nats/ and deploy/k8s/nats/: valid for the real tools, and consistent with the config."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from monitor.core.config import load_config, shard_partitions
from monitor.io.nats import partition_mappings
from tests.nats_server import nats_server_binary
from tests.test_deploy import _tool

ROOT = Path(__file__).resolve().parents[1]
NATS = ROOT / "deploy" / "nats"
K8S = ROOT / "deploy" / "k8s" / "nats"
CONFS = sorted(p for p in NATS.glob("*.conf") if not p.name.startswith("mosquitto"))  # nats-server files


def _manifests() -> dict[str, dict]:
    files = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(files) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    return {f: yaml.safe_load((K8S / f).read_text()) for f in files}


def _worker_config_text() -> str:
    return _manifests()["configmap.yaml"]["data"]["monitor.yaml"]


def _worker_config():
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as fh:
        fh.write(_worker_config_text())
        fh.flush()
        return load_config(fh.name, environ={})


@pytest.mark.skipif(nats_server_binary() is None, reason="nats-server is not installed")
@pytest.mark.parametrize("conf", CONFS, ids=[c.name for c in CONFS])
def test_nats_server_accepts_the_config(conf):
    out = subprocess.run([nats_server_binary(), "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "is valid" in out.stdout + out.stderr, out.stdout + out.stderr


def test_server_mappings_are_the_workers_partitions():
    cfg = _worker_config()
    expected = partition_mappings(cfg.topics, cfg.nats.partitions, cfg.nats.subject_prefix)
    assert len(CONFS) == 4  # one node, and the 3-node cluster
    for conf in CONFS:
        found = dict(re.findall(r'^\s+"([^"]+)": "([^"]+)"$', conf.read_text(), re.M))
        assert found == expected, conf.name


def test_worker_config_is_the_deploy_config_plus_the_nats_source():
    worker = yaml.safe_load(_worker_config_text())
    shared = yaml.safe_load((ROOT / "deploy" / "config" / "monitor.yaml").read_text())
    assert worker.pop("source") == "nats" and "nats" in worker and "nats" not in shared
    worker.pop("nats")
    # availability (status topic, last will) rides the MQTT connection, which a NATS worker has not
    assert worker.pop("availability")["enabled"] is False and shared.pop("availability")["enabled"] is True
    assert worker == shared
    cfg = _worker_config()
    assert cfg.nats.replicas == 3 and len(cfg.nats.servers) == 3


def test_statefulset_ordinals_cover_every_partition_once():
    m = _manifests()
    sts = m["statefulset.yaml"]
    pod = sts["spec"]["template"]["spec"]
    c = pod["containers"][0]
    replicas = sts["spec"]["replicas"]
    shard = c["args"][c["args"].index("--shard") + 1]
    assert shard == f"$(POD_INDEX)/{replicas}"
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    total = _worker_config().nats.partitions
    owned = [p for i in range(replicas) for p in shard_partitions(f"{i}/{replicas}", total)]
    assert sorted(owned) == list(range(total))
    assert sts["spec"]["selector"]["matchLabels"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["config"]["configMap"]["name"] == m["configmap.yaml"]["metadata"]["name"]
    assert vols["nats-secret"]["secret"]["secretName"] == m["secret.yaml"]["metadata"]["name"]
    assert vols["models"]["persistentVolumeClaim"]["claimName"] == m["pvc.yaml"]["metadata"]["name"]
    key = Path(env["MONITOR_NATS__PASSWORD_FILE"]["value"]).name
    assert key in m["secret.yaml"]["stringData"]
    svc = m["service.yaml"]
    assert svc["spec"]["clusterIP"] == "None" and sts["spec"]["serviceName"] == svc["metadata"]["name"]
    assert svc["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()


def test_kubernetes_schema_validation_of_the_workers():
    tool = _tool("kubernetes-validate")
    if tool is None:
        pytest.skip("kubernetes-validate is not installed (pip install kubernetes-validate; scripts/ci-deps.sh)")
    files = [str(K8S / f) for f in _manifests()]
    out = subprocess.run([tool, "--strict", *files], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("passed") == len(files), out.stdout
