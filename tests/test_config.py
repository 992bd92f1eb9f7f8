"""Config validation: errors name the key; environment overrides; secrets from files."""

import subprocess
import sys
from pathlib import Path

import pytest

from monitor.core.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "text,key,words",
    [
        ("alarm: {k: 9, n: 5}", "alarm.k", "between 1 and alarm.n"),
        ("model: {architecture: lstm}", "model.architecture", "'dense', 'conv1d'"),
        ("modle: {}", "modle", "unknown key"),
        ("stream: {period_seconds: -1}", "stream.period_seconds", "> 0"),
        ("stream: {period_seconds: fast}", "stream.period_seconds", '"auto"'),
        ("mqtt: {port: 70000}", "mqtt.port", "1..65535"),
        ("mqtt: {port: '1883'}", "mqtt.port", "integer"),
        (
            "topics: [{template: 'a/{stream}/{channel}'}, {template: 'b/{stream}/{channel}', qos: 2}]",
            "topics[1].qos",
            "0 or 1",
        ),
        ("topics: [{template: 'a/#'}]", "topics[0].template", "placeholders"),
        ("topics: [{template: 'a/{asset}/{channel}', stream: '{site}'}]", "topics[0].stream", "not a placeholder"),
        ("filters: [{type: median, size: 0}]", "filters[0].size", ">= 1"),
        ("calibration: {quantile: 1.5}", "calibration.quantile", "(0, 1)"),
        ("model: {kernel_size: 4}", "model.kernel_size", "odd"),
        ("mqtt: {tls: {cert_file: a.pem}}", "mqtt.tls.cert_file", "together"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(tmp_path, text, key, words):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), environ={})
    assert err.value.key == key
    assert words in str(err.value)


def test_environment_overrides_nested_keys_with_yaml_scalars(tmp_path):
    cfg = load_config(
        write(tmp_path, "mqtt: {host: broker, port: 1883}\nalarm: {k: 2, n: 4}"),
        environ={"MONITOR_MQTT__PORT": "8883", "MONITOR_MQTT__TLS__ENABLED": "true", "MONITOR_ALARM__K": "3"},
    )
    assert cfg.mqtt.port == 8883 and cfg.mqtt.host == "broker"
    assert cfg.mqtt.tls.enabled is True
    assert cfg.alarm.k == 3 and cfg.alarm.n == 4


def test_env_override_of_unknown_key_is_an_error_naming_it():
    with pytest.raises(ConfigError) as err:
        load_config(None, environ={"MONITOR_ALARM__KK": "1"})
    assert err.value.key == "alarm.kk"


def test_env_references_and_secret_files(tmp_path):
    (tmp_path / "pw").write_text("s3cret\n")
    cfg = load_config(
        write(tmp_path, "mqtt: {host: '${BROKER}', username: mon, password_file: pw}"), environ={"BROKER": "b.local"}
    )
    assert cfg.mqtt.host == "b.local" and cfg.mqtt.password == "s3cret"
    assert cfg.to_dict()["mqtt"]["password"] == "***"
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "mqtt: {host: '${NOPE}'}"), environ={})
    assert err.value.key == "mqtt.host" and "NOPE" in str(err.value)


def test_shipped_configs_are_valid():
    files = sorted((ROOT / "configs").glob("*.yaml"))
    assert {"skab.yaml", "univariate.yaml"} <= {f.name for f in files}
    for f in files:
        load_config(f, environ={})


@pytest.mark.slow  # two subprocesses
def test_check_config_cli_exit_codes(tmp_path):
    good = ROOT / "configs" / "univariate.yaml"
    bad = write(tmp_path, "alarm: {k: 0}")
    ok = subprocess.run([sys.executable, "-m", "monitor", "check-config", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    res = subprocess.run([sys.executable, "-m", "monitor", "check-config", str(bad)], capture_output=True, text=True)
    assert res.returncode == 78
    assert "alarm.k" in res.stderr
