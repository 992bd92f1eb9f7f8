"""Config of availability, Home Assistant discovery and the Alertmanager sink: validation, secrets."""

from __future__ import annotations

import pytest
from daemon_support import config_from

from monitor.core.config import SECRET_FIELDS, ConfigError, load_config


def test_defaults_availability_on_homeassistant_off_no_alertmanager():
    cfg = config_from({})
    assert cfg.availability.enabled and cfg.availability.topic == "monitor/status"
    assert cfg.availability.state_topic == "monitor/{stream}/state"
    assert not cfg.homeassistant.enabled and cfg.homeassistant.discovery_prefix == "homeassistant"
    assert cfg.alertmanager.urls == []


def test_homeassistant_needs_availability():
    with pytest.raises(ConfigError, match=r"^homeassistant\.enabled: needs availability"):
        config_from({"homeassistant": {"enabled": True}, "availability": {"enabled": False}})


def test_expire_after_must_exceed_the_state_interval():
    with pytest.raises(ConfigError, match=r"^homeassistant\.expire_after_seconds"):
        config_from(
            {
                "homeassistant": {"enabled": True, "expire_after_seconds": 5},
                "availability": {"state_interval_seconds": 10},
            }
        )


@pytest.mark.parametrize(
    ("section", "values", "key"),
    [
        ("availability", {"topic": "monitor/#"}, "availability.topic"),
        ("availability", {"state_topic": "monitor/state"}, "availability.state_topic"),
        ("homeassistant", {"node_id": "my node"}, "homeassistant.node_id"),
        ("homeassistant", {"discovery_prefix": "ha/"}, "homeassistant.discovery_prefix"),
        ("alertmanager", {"urls": ["ftp://am:21"]}, "alertmanager.urls[0]"),
        ("alertmanager", {"urls": ["http://a:9093", "http://a:9093"]}, "alertmanager.urls"),
        ("alertmanager", {"labels": {"alertname": "X"}}, "alertmanager.labels.alertname"),
        ("alertmanager", {"labels": {"bad-name": "x"}}, "alertmanager.labels.bad-name"),
        ("alertmanager", {"max_attempts": 0}, "alertmanager.max_attempts"),
        ("alertmanager", {"retry_initial_seconds": 5, "retry_max_seconds": 1}, "alertmanager.retry_max_seconds"),
    ],
)
def test_bad_values_name_their_key(section, values, key):
    with pytest.raises(ConfigError) as err:
        config_from({section: values})
    assert err.value.key == key


def test_alertmanager_url_is_folded_into_the_url_list():
    cfg = config_from({"alerts": {"alertmanager_url": "http://b:9093"}, "alertmanager": {"urls": ["http://a:9093"]}})
    assert cfg.alertmanager.urls == ["http://a:9093", "http://b:9093"]


def test_alertmanager_secrets_are_secret_fields_and_never_echoed(tmp_path):
    assert {"alertmanager.password", "alertmanager.bearer_token"} <= set(SECRET_FIELDS)
    secret = tmp_path / "am-password"
    secret.write_text("hunter2-0123\n")
    conf = tmp_path / "c.yaml"
    conf.write_text(f"alertmanager:\n  urls: [http://am:9093]\n  username: monitor\n  password_file: {secret}\n")
    cfg = load_config(conf, environ={})
    assert cfg.alertmanager.password == "hunter2-0123"
    assert cfg.to_dict()["alertmanager"]["password"] == "***"
    assert "hunter2" not in repr(cfg.alertmanager)
    # a URL carrying credentials is refused without quoting them
    conf.write_text("alertmanager:\n  urls: ['http://monitor:s3cr3t-pw@am:9093']\n")
    with pytest.raises(ConfigError) as err:
        load_config(conf, environ={})
    assert err.value.key == "alertmanager.urls[0]" and "s3cr3t" not in str(err.value)
    # a numeric-looking token from the environment stays its exact text and is never shown
    env = {
        "MONITOR_ALERTMANAGER__BEARER_TOKEN": "00123",
        "MONITOR_ALERTMANAGER__USERNAME": "u",
        "MONITOR_ALERTMANAGER__PASSWORD": "20250101",
    }
    with pytest.raises(ConfigError) as err:
        load_config(None, environ=env)
    assert err.value.key == "alertmanager.bearer_token"
    assert "00123" not in str(err.value) and "20250101" not in str(err.value)
