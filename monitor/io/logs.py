"""Logging for the daemon and the commands: JSON lines (journald / Loki) or plain text.

Under journald (systemd sets ``JOURNAL_STREAM`` to the device and inode of the stream it
connected to the journal, and that is the stream we log to), every line starts with its
syslog priority, ``<3>`` error, ``<4>`` warning, ``<6>`` info, ``<7>`` debug (``<2>``
critical), as sd-daemon(3) describes: journald stores it as the entry's PRIORITY, so
``journalctl -p warning`` and coloured output work. Anywhere else (a terminal, a file, a
pipe, Docker) the lines are unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TextIO

__all__ = ["JSONFormatter", "basic_logging", "journal_priority", "setup_logging", "under_journald"]

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def journal_priority(levelno: int) -> int:
    """The syslog priority of a logging level (sd-daemon(3) prefixes)."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class _JournalPrefix(logging.Formatter):
    """Another formatter's text with ``<priority>`` before each line (a traceback's lines
    too: journald starts an entry at each newline)."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{journal_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in self.inner.format(record).split("\n"))


def under_journald(stream: TextIO | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """Is `stream` (default stderr) the journal stream systemd named in ``JOURNAL_STREAM``?"""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat((sys.stderr if stream is None else stream).fileno())
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError, AttributeError):  # no descriptor (a StringIO), a bad value
        return False


def _handler(json_lines: bool, stream: TextIO | None) -> logging.Handler:
    out = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(out)
    formatter: logging.Formatter = JSONFormatter() if json_lines else logging.Formatter(PLAIN_FORMAT)
    handler.setFormatter(_JournalPrefix(formatter) if under_journald(out) else formatter)
    return handler


def setup_logging(level: str = "INFO", json_lines: bool = True, stream: TextIO | None = None) -> None:
    """The daemon's logging: one handler on the root logger (replacing any)."""
    root = logging.getLogger()
    root.handlers[:] = [_handler(json_lines, stream)]
    root.setLevel(level)


def basic_logging(level: str = "WARNING", stream: TextIO | None = None) -> None:
    """The commands' plain-text logging, like `logging.basicConfig`: nothing if the root
    logger has handlers already (a test's, an embedding program's)."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(_handler(False, stream))
        root.setLevel(level)
