"""Conventions users' tools expect of the CLI and the checkout (issue 13): a MONITOR_CONFIG
default, usage errors exit 2, the same --config everywhere, quiet exit on a closed pipe,
messages that say what is wrong, ignored output folders."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_the_readme_output_folders_are_ignored_by_git():
    paths = ["recordings/x.jsonl.gz", "out/models/current", "models/current", "out/sample/normal.csv"]
    done = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=ROOT, capture_output=True, text=True)
    assert sorted(done.stdout.split()) == sorted(paths)
