"""Secrets are strings exactly as written, on every route, and never echoed.

Routes: a YAML plain scalar, a quoted YAML string, an environment override
(``MONITOR_MQTT__PASSWORD``), a ``${VAR}`` reference, a ``<key>_file`` and its environment
form (``MONITOR_MQTT__PASSWORD_FILE``). Outputs that
must never show a secret: any `ConfigError` (so ``check-config`` and ``run``'s exit-78
message), ``check-config --show``, and the logs (``test_mqtt_ingest`` checks paho's).
"""

from __future__ import annotations

import dataclasses
import re
import typing

import pytest

from monitor.app.cli import main
from monitor.core.config import SECRET_FIELDS, Config, ConfigError, load_config

# values a YAML parser would turn into something else: int, octal int, bool, float, int with _
TRICKY = ["20250101", "0123", "true", "1.5e3", "1_000", "s3cr3t-pa55"]
ROUTES = ["yaml_plain", "yaml_quoted", "env", "env_ref", "file", "env_file"]


def _all_fields(cls: type, prefix: str = "") -> list[str]:
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        out.append(prefix + f.name)
        tp = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            out += _all_fields(tp, f"{prefix}{f.name}.")
    return out


def test_every_secret_looking_field_is_registered_as_secret():
    # *_file fields are paths (tls.key_file: where the key is), not secret values
    looks_secret = re.compile(r"password|passwd|token|secret|credential|api_key|(^|_)key$")
    found = {k for k in _all_fields(Config) if looks_secret.search(k.rsplit(".", 1)[-1])}
    assert found == set(SECRET_FIELDS)
    assert SECRET_FIELDS == ("mqtt.password", "nats.password", "alertmanager.password", "alertmanager.bearer_token")


def _write(tmp_path, secret_key: str, value: str, route: str) -> tuple[object, dict[str, str]]:
    section, leaf = secret_key.split(".")
    env: dict[str, str] = {}
    # a password needs its user (mqtt.username, nats.user)
    extra = {
        "mqtt.password": "  username: monitor\n",
        "nats.password": "  user: monitor\n",
        "alertmanager.password": "  username: monitor\n",
    }.get(secret_key, "")
    if route == "yaml_plain":
        body = f"  {leaf}: {value}\n"
    elif route == "yaml_quoted":
        body = f"  {leaf}: '{value}'\n"
    elif route == "env":
        body = ""
        env["MONITOR_" + secret_key.upper().replace(".", "__")] = value
    elif route == "env_ref":
        body = f"  {leaf}: ${{THE_SECRET}}\n"
        env["THE_SECRET"] = value
    elif route == "file":
        (tmp_path / "secret.txt").write_text(value + "\n")
        body = f"  {leaf}_file: secret.txt\n"
    else:  # env_file: MONITOR_MQTT__PASSWORD_FILE (systemd LoadCredential, a Kubernetes Secret)
        (tmp_path / "secret.txt").write_text(value + "\n")
        body = ""
        env["MONITOR_" + secret_key.upper().replace(".", "__") + "_FILE"] = str(tmp_path / "secret.txt")
    path = tmp_path / "c.yaml"
    path.write_text(f"{section}:\n{extra}{body}")
    return path, env


def _get(cfg: Config, dotted: str) -> object:
    node: object = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


@pytest.mark.parametrize("secret_key", SECRET_FIELDS)
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("value", TRICKY)
def test_a_secret_is_the_exact_string_on_every_route(tmp_path, secret_key, route, value):
    path, env = _write(tmp_path, secret_key, value, route)
    cfg = load_config(path, environ=env)
    assert _get(cfg, secret_key) == value and type(_get(cfg, secret_key)) is str
    assert value not in str(cfg) and value not in str(cfg.to_dict())


@pytest.mark.parametrize("secret_key", SECRET_FIELDS)
@pytest.mark.parametrize("route", ROUTES)
def test_no_config_error_shows_the_secret(tmp_path, secret_key, route):
    value = "20250101"
    path, env = _write(tmp_path, secret_key, value, route)
    path.write_text(path.read_text() + "metrics:\n  port: 99999\n")  # an unrelated mistake
    with pytest.raises(ConfigError) as err:
        load_config(path, environ=env)
    assert err.value.key == "metrics.port" and value not in str(err.value)
    # the same value used in another key (a shared ${VAR}): that key's error must not show it
    env2 = {**env, "OTHER": value}
    path.write_text(path.read_text().replace("port: 99999", "port: 9108") + "stream:\n  alignment: ${OTHER}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ=env2)
    assert err.value.key == "stream.alignment" and value not in str(err.value) and "***" in str(err.value)


@pytest.mark.parametrize("secret_key", SECRET_FIELDS)
def test_a_secret_of_the_wrong_shape_is_refused_without_quoting_it(tmp_path, secret_key):
    section, leaf = secret_key.split(".")
    path = tmp_path / "c.yaml"
    path.write_text(f"{section}:\n  {leaf}: [hunter2, 20250101]\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert err.value.key == secret_key
    assert "hunter2" not in str(err.value) and "20250101" not in str(err.value)


def test_a_yaml_syntax_error_does_not_quote_the_line_of_the_secret(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("mqtt:\n  username: u\n  password: hunter2: oops\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert "line 3" in str(err.value) and "hunter2" not in str(err.value)


@pytest.mark.parametrize("route", ROUTES)
def test_check_config_show_and_its_errors_never_print_the_secret(tmp_path, monkeypatch, capsys, route):
    value = "20250101"
    path, env = _write(tmp_path, "mqtt.password", value, route)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    assert main(["check-config", str(path), "--show"]) == 0
    out = capsys.readouterr()
    assert value not in out.out + out.err and "password: '***'" in out.out
    path.write_text(path.read_text() + "metrics:\n  port: 99999\n")
    assert main(["check-config", str(path)]) == 78
    out = capsys.readouterr()
    assert "metrics.port" in out.err and value not in out.out + out.err
