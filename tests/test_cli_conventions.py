"""Conventions users' tools expect of the CLI and the checkout (issue 13): a MONITOR_CONFIG
default, usage errors exit 2, the same --config everywhere, quiet exit on a closed pipe,
messages that say what is wrong, ignored output folders."""

from __future__ import annotations

import argparse
import gzip
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_support import train_small_model

from monitor.app import cli
from monitor.app.lifecycle import ModelWatcher
from monitor.core import synthetic
from monitor.io.files import DataError, read_csv

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_the_readme_output_folders_are_ignored_by_git():
    paths = ["recordings/x.jsonl.gz", "out/models/current", "models/current", "out/sample/normal.csv"]
    done = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=ROOT, capture_output=True, text=True)
    assert sorted(done.stdout.split()) == sorted(paths)


# --------------------------------------------------------------------------- --config / MONITOR_CONFIG


#: Every command that reads a config, with the other arguments it needs to parse.
CONFIG_COMMANDS = {
    "check-config": [],
    "train": ["--data", "x.csv"],
    "backtest": ["--data", "x.csv", "--out", "s.csv"],
    "run": [],
    "nats-server-config": [],
    "nats-stream": [],
    "record": [],
    "replay": ["recordings/", "--offline"],
    "retrain": ["--data", "recordings/"],
    "models list": [],
    "models show": ["v1"],
    "models promote": ["v1"],
    "models rollback": [],
    "models prune": ["--keep", "2"],
    "models shadow-report": [],
    "label": ["--list"],
    "silence": ["--list"],
}


def _subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = _subcommands(sub, f"{prefix}{name} ")
                found.update(nested or {f"{prefix}{name}": sub})
    return found


def _reads_config(sub: argparse.ArgumentParser) -> bool:
    return any("--config" in a.option_strings for a in sub._actions)


def test_every_command_that_reads_a_config_takes_the_same_config_option():
    commands = _subcommands(cli.build_parser())
    with_config = {name for name, sub in commands.items() if _reads_config(sub)}
    assert with_config == set(CONFIG_COMMANDS)
    assert set(commands) - with_config == {"demo"}  # the demo writes its own config


@pytest.mark.parametrize("command", sorted(CONFIG_COMMANDS))
def test_monitor_config_is_the_default_of_config(monkeypatch, command):
    monkeypatch.setenv("MONITOR_CONFIG", "/etc/monitor/from-env.yaml")
    args = cli.build_parser().parse_args([*command.split(), *CONFIG_COMMANDS[command]])
    assert args.config == "/etc/monitor/from-env.yaml"
    given = cli.build_parser().parse_args([*command.split(), *CONFIG_COMMANDS[command], "--config", "mine.yaml"])
    assert given.config == "mine.yaml"  # the option wins over the environment


@pytest.mark.parametrize("command", ["train", "backtest", "run", "record", "models list", "retrain"])
def test_no_config_and_no_monitor_config_is_a_usage_error(monkeypatch, capsys, command):
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)
    with pytest.raises(SystemExit) as exc:
        cli.main([*command.split(), *CONFIG_COMMANDS[command]])
    assert exc.value.code == 2
    assert "--config" in capsys.readouterr().err


def test_check_config_takes_the_path_the_option_or_the_environment(monkeypatch, capsys):
    pump = str(ROOT / "configs" / "pump.yaml")
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)
    assert cli.main(["check-config", pump]) == 0
    assert cli.main(["check-config", "--config", pump]) == 0
    assert cli.main(["check-config"]) == 2
    got = capsys.readouterr()
    assert "MONITOR_CONFIG" in got.err and got.out.count(f"{pump}: OK") == 2
    monkeypatch.setenv("MONITOR_CONFIG", pump)
    assert cli.main(["check-config"]) == 0
    assert capsys.readouterr().out == f"{pump}: OK\n"


# --------------------------------------------------------------------------- usage errors exit 2


@pytest.mark.parametrize(
    "argv",
    [
        ["backtest", "--data", "x.csv", "--out", "s.csv", "--model", "models", "--train-rows", "10"],
        ["replay", "recordings/", "--offline", "--to-broker"],
        ["replay", "recordings/"],
    ],
)
def test_conflicting_options_exit_2_with_the_command_named(capsys, argv):
    code = cli.main([*argv, "--config", str(ROOT / "configs" / "pump.yaml")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"monitor {argv[0]}: error: ")


def test_config_errors_keep_exit_78(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {window_size: 1}\n")
    assert cli.main(["check-config", "--config", str(bad)]) == 78
    assert "model.window_size" in capsys.readouterr().err


# --------------------------------------------------------------------------- a closed pipe


def test_a_closed_stdout_exits_quietly(tmp_path):
    """`monitor ... | head`: the reader is gone before the output; no "error: BrokenPipeError"."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to the pipe now fails with EPIPE
    try:
        done = subprocess.run(
            [sys.executable, "-m", "monitor", "check-config", "--show", str(ROOT / "configs" / "pump.yaml")],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.stderr.decode() == ""
    assert done.returncode == 141


# --------------------------------------------------------------------------- messages that say what is wrong


def test_a_gzip_file_given_as_csv_is_named_gzip_not_bad_utf8(tmp_path):
    path = tmp_path / "part-0001.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"topic": "a/b", "payload": "1"}\n' * 50))
    with pytest.raises(DataError) as exc:
        read_csv(path)
    message = str(exc.value)
    assert "gzip-compressed" in message and "monitor replay --offline" in message
    assert "UTF-8" not in message
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("timestamp,temp\n1,20\n2,21 \xb0C\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):  # a real encoding problem keeps its advice
        read_csv(latin1)


def test_a_missing_model_directory_is_not_found_not_refused(tmp_path, capsys):
    code = cli.main(
        [
            "backtest",
            "--config",
            str(ROOT / "configs" / "pump.yaml"),
            "--data",
            str(_sample_csv(tmp_path)),
            "--model",
            str(tmp_path / "nowhere"),
            "--out",
            str(tmp_path / "s.csv"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "model not found" in err and "nowhere" in err and "refused" not in err


def _sample_csv(tmp_path: Path, rows: int = 200) -> Path:
    path = tmp_path / "rows.csv"
    t, v, _ = synthetic.pump(rows, seed=3, steps_per_hour=0)
    synthetic.write_csv(path, t, v)
    return path


@pytest.mark.slow  # trains a small model
def test_backtest_and_replay_refuse_a_model_trained_on_other_channels(tmp_path, capsys):
    models = tmp_path / "models"
    train_small_model(models)  # on the pump's five channels
    cfg = tmp_path / "two.yaml"
    cfg.write_text(
        "topics: [{template: 'plant/{site}/{asset}/{channel}', stream: '{site}/{asset}', channel: '{channel}'}]\n"
        f"stream: {{period_seconds: 1.0, channels: [flow, pressure]}}\n"
        f"data: {{stream: site1/pump1}}\nmodels: {{dir: {models}}}\n"
    )
    data = _sample_csv(tmp_path, rows=400)
    backtest = ["backtest", "--config", str(cfg), "--data", str(data), "--out", str(tmp_path / "s.csv")]
    replay = ["replay", str(ROOT / "monitor" / "data" / "demo-pump.jsonl.gz"), "--config", str(cfg), "--offline"]
    for argv in (backtest, replay, [*replay, "--model", str(models)]):
        assert cli.main(argv) == 1, argv
        err = capsys.readouterr().err
        assert "model bundle refused" in err and "trained on channels" in err and "['flow', 'pressure']" in err
    assert not (tmp_path / "s.csv").exists()
    # the same model with the channels it was trained on: scored
    cfg.write_text(cfg.read_text().replace("channels: [flow, pressure]", f"channels: {synthetic.CHANNELS}"))
    assert cli.main(backtest) == 0
    assert (tmp_path / "s.csv").exists()


def test_a_first_refused_bundle_does_not_claim_a_previous_model_serves(tmp_path, caplog):
    models = tmp_path / "models"
    (models / "v1").mkdir(parents=True)
    (models / "v1" / "manifest.json").write_text("{}")
    (models / "current").symlink_to("v1")
    watcher = ModelWatcher(models)
    with caplog.at_level(logging.ERROR, logger="monitor.app.lifecycle"):
        result = watcher.poll()
    assert result is not None and result.error
    assert "no model is serving yet" in caplog.text
    assert "previous model keeps serving" not in caplog.text


def test_replay_of_a_recording_whose_every_message_is_rejected_fails_and_says_why(tmp_path, capsys):
    """A user replaying with the wrong config saw `replayed 3600 messages (0 readings ...)`
    and exit code 0."""
    cfg = tmp_path / "other.yaml"
    cfg.write_text(
        "topics: [{template: 'elsewhere/{site}/{asset}/{channel}', stream: '{site}/{asset}', channel: '{channel}'}]\n"
        f"stream: {{period_seconds: 1.0}}\nmodels: {{dir: {tmp_path / 'models'}}}\n"
    )
    replay = ["replay", str(ROOT / "monitor" / "data" / "demo-pump.jsonl.gz"), "--config", str(cfg), "--offline"]
    assert cli.main(replay) == 1
    err = capsys.readouterr().err
    assert "0 readings" in err and "none of the" in err and "unmatched_topic" in err
