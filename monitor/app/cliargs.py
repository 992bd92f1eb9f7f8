"""What every `monitor` command shares on its command line: ``--config`` with a
``MONITOR_CONFIG`` default, usage errors (exit 2) and a quiet exit on a closed pipe.

Exit codes of every command (the CLI's contract; docs/operations.md):
0 success, 1 a failure (bad data, a refused or missing model bundle), 2 bad usage
(argparse's own, and `UsageError`), 3 retrain: the gate refused the candidate,
78 bad configuration (the message names the key), 141 stdout closed early
(``monitor models show X | head``: the reader left; nothing is printed).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

__all__ = ["CONFIG_ENV", "EXIT_PIPE", "EXIT_USAGE", "UsageError", "add_config", "quiet_broken_pipe"]

CONFIG_ENV = "MONITOR_CONFIG"
EXIT_USAGE = 2
EXIT_PIPE = 141  # 128 + SIGPIPE: what a program killed by the signal reports, as `yes | head` does


class UsageError(Exception):
    """The command line asks for something impossible (exit 2, as argparse's own errors)."""


def add_config(
    parser: argparse.ArgumentParser | argparse._ActionsContainer,
    *,
    required: bool = True,
    help: str = "the config file",
    environ: Mapping[str, str] | None = None,
) -> None:
    """``--config PATH``, defaulting to ``$MONITOR_CONFIG``; required (exit 2) when neither is there."""
    env = (os.environ if environ is None else environ).get(CONFIG_ENV) or None
    parser.add_argument(
        "--config",
        default=env,
        required=required and env is None,
        metavar="PATH",
        help=f"{help} (default: ${CONFIG_ENV}" + (f", now {env})" if env else ")"),
    )


def quiet_broken_pipe() -> int:
    """After a `BrokenPipeError` on stdout: point stdout at /dev/null, so that the flush
    at exit cannot raise again ("Exception ignored ... BrokenPipeError"), and say nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout without a descriptor (a test's capture)
        pass
    return EXIT_PIPE
