"""Log lines under journald carry their syslog priority (sd-daemon(3)); elsewhere they are unchanged."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.io.logs import basic_logging, journal_priority, setup_logging, under_journald

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def restore_root_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _journal_stream(path: Path) -> str:
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}"


def _log_four(name: str) -> None:
    log = logging.getLogger(name)
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")


@pytest.mark.parametrize("json_lines", [True, False])
def test_lines_carry_their_priority_when_the_stream_is_the_journal(
    tmp_path, monkeypatch, restore_root_logging, json_lines
):
    out = tmp_path / "stderr"
    with open(out, "w") as stream:
        monkeypatch.setenv("JOURNAL_STREAM", _journal_stream(out))
        setup_logging("DEBUG", json_lines=json_lines, stream=stream)
        _log_four("test.journal")
    lines = out.read_text().splitlines()
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>"]
    if json_lines:  # after the prefix, each line is still one JSON object
        assert [json.loads(line[3:])["message"] for line in lines] == ["d", "i", "w", "e"]


def test_every_line_of_a_traceback_is_prefixed(tmp_path, monkeypatch, restore_root_logging):
    out = tmp_path / "stderr"
    with open(out, "w") as stream:
        monkeypatch.setenv("JOURNAL_STREAM", _journal_stream(out))
        setup_logging("INFO", json_lines=False, stream=stream)
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("test.journal").exception("failed")
    lines = out.read_text().splitlines()
    assert len(lines) > 3 and all(line.startswith("<3>") for line in lines)


def test_lines_are_unchanged_off_the_journal(tmp_path, monkeypatch, restore_root_logging):
    out, other = tmp_path / "stderr", tmp_path / "other"
    other.write_text("")
    with open(out, "w") as stream:
        # JOURNAL_STREAM names another file: a child whose stderr was redirected, for instance
        monkeypatch.setenv("JOURNAL_STREAM", _journal_stream(other))
        setup_logging("INFO", json_lines=False, stream=stream)
        logging.getLogger("test.journal").warning("w")
        monkeypatch.delenv("JOURNAL_STREAM")
        setup_logging("INFO", json_lines=True, stream=stream)
        logging.getLogger("test.journal").warning("w2")
    first, second = out.read_text().splitlines()
    assert not first.startswith("<") and first.endswith("WARNING test.journal: w")
    assert json.loads(second)["message"] == "w2"


def test_priorities_follow_sd_daemon():
    levels = [logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG, 5]
    assert [journal_priority(level) for level in levels] == [2, 3, 4, 6, 7, 7]
    assert not under_journald(environ={"JOURNAL_STREAM": "garbage"})
    assert not under_journald(environ={})


def test_basic_logging_leaves_existing_handlers_alone(restore_root_logging):
    root = logging.getLogger()
    mine = logging.NullHandler()
    root.handlers[:] = [mine]
    basic_logging("DEBUG")
    assert root.handlers == [mine]


def test_a_command_under_journald_prefixes_its_lines(tmp_path):
    """The commands' own logging (`cli.main`, not only `run`'s), in a process whose stderr is the journal file."""
    out, cfg = tmp_path / "stderr", tmp_path / "c.yaml"
    cfg.write_text("topics: [{template: 'a/{stream}/{channel}'}]\n")
    code = (
        "import logging, sys; from monitor.app.cli import main; "
        "main(['--log-level', 'INFO', 'check-config', sys.argv[1]]); logging.getLogger('monitor').warning('after')"
    )
    with open(out, "w") as stream:
        env = {**os.environ, "JOURNAL_STREAM": _journal_stream(out), "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-c", code, str(cfg)], stderr=stream, env=env, check=True, timeout=60)
    assert out.read_text().splitlines()[-1].startswith("<4>")
