"""`monitor --version` prints the installed version, and the changelog knows it."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import monitor

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # a subprocess
def test_version_flag_prints_the_installed_package_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "monitor", "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == f"monitor {version('monitor')}"
    assert version("monitor") == monitor.__version__


def test_changelog_has_a_section_for_the_current_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    released = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", text, flags=re.M)
    assert "## [Unreleased]" in text
    assert monitor.__version__ in released, f"CHANGELOG.md has no section for {monitor.__version__}"
