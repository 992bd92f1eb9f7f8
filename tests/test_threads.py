"""Torch threads set deliberately: `model.threads` (a count or "auto"), `--threads`, one setter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from monitor.app.cli import _override_threads, build_parser
from monitor.app.training import StreamData, train_bundle
from monitor.core.config import Config, ConfigError, ModelConfig, StreamConfig, load_config
from monitor.core.model.threads import AUTO_MAX, resolve_threads, use_threads
from monitor.core.synthetic import CHANNELS, pump

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_default_to_one_and_accept_a_count_or_auto(tmp_path):
    assert ModelConfig().threads == 1
    path = tmp_path / "c.yaml"
    for value, expected in (("auto", "auto"), ("3", 3)):
        path.write_text(f"model: {{threads: {value}}}\n")
        assert load_config(path, environ={}).model.threads == expected


@pytest.mark.parametrize("value", ["0", "-2", "many", "true", "1.5", "[1]"])
def test_bad_threads_name_the_key(tmp_path, value):
    path = tmp_path / "c.yaml"
    path.write_text(f"model: {{threads: {value}}}\n")
    with pytest.raises(ConfigError, match=r'^model\.threads: must be a whole number >= 1 or "auto"') as err:
        load_config(path, environ={})
    assert err.value.key == "model.threads"


def test_auto_is_at_most_two_and_never_more_than_the_cores():
    assert AUTO_MAX == 2 and [resolve_threads("auto", c) for c in (1, 2, 16, None)] == [1, 2, 2, 1]
    assert resolve_threads(3, 2) == 3  # an explicit count is taken as given
    with pytest.raises(ValueError, match="threads"):
        resolve_threads(0, 2)


def test_use_threads_sets_torchs_thread_count(restore_threads):
    assert use_threads(2) == 2 and torch.get_num_threads() == 2
    assert use_threads(1) == 1 and torch.get_num_threads() == 1


@pytest.mark.slow  # trains a model
def test_training_runs_with_the_configured_threads(tmp_path, restore_threads):
    torch.set_num_threads(1)
    t, v, _ = pump(200, seed=1, steps_per_hour=0)
    cfg = Config(
        stream=StreamConfig(period_seconds=1.0, max_gap_seconds=5.0),
        model=ModelConfig(architecture="dense", window_size=8, hidden=[4], code_size=2, epochs=1, threads=2),
    )
    outcome = train_bundle([StreamData("p", list(CHANNELS), t, v)], cfg, tmp_path, write_plots=False)
    assert torch.get_num_threads() == 2
    assert outcome.manifest.training["threads"] == 2 and outcome.manifest.training["threads_used"] == 2


@pytest.mark.parametrize("command", ["train", "backtest", "retrain", "demo"])
def test_threads_option_on_the_training_commands(command):
    required = {
        "train": ["--config", "c", "--data", "d"],
        "backtest": ["--config", "c", "--data", "d", "--out", "o"],
        "retrain": ["--config", "c", "--data", "d"],
        "demo": [],
    }[command]
    parser = build_parser()
    assert parser.parse_args([command, *required, "--threads", "2"]).threads == 2
    assert parser.parse_args([command, *required, "--threads", "auto"]).threads == "auto"
    assert parser.parse_args([command, *required]).threads is None  # model.threads applies


@pytest.mark.slow  # a subprocess
def test_a_bad_threads_option_is_a_usage_error():
    res = subprocess.run(
        [sys.executable, "-m", "monitor", "train", "--config", "c", "--data", "d", "--threads", "0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert res.returncode == 2
    assert 'expected a whole number >= 1 or "auto"' in res.stderr


def test_the_override_reaches_every_group(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "model: {threads: 1}\n"
        "groups:\n  - {name: a, streams: ['a/*']}\n  - {name: b, streams: ['b/*'], model: {threads: 2}}\n"
    )
    cfg = load_config(path, environ={})
    assert [cfg.for_group(g).model.threads for g in ("a", "b")] == [1, 2]
    _override_threads(cfg, 3)
    assert cfg.model.threads == 3 and [cfg.for_group(g).model.threads for g in ("a", "b")] == [3, 3]
