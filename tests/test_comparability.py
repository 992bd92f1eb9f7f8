"""The comparability bar on a few of bench/comparability.py's series, trained for real:
the p99 of normal-time scores lies within [0.5, 2] threshold units on every one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import comparability  # noqa: E402

from monitor.core.config import load_config  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny_gauss", "huge_gauss", "student_t", "quantized", "on_off"])
def test_normal_time_p99_is_inside_the_bar_whatever_the_series(name):
    torch.set_num_threads(1)
    cfg = load_config(ROOT / "configs" / "univariate.yaml", environ={})
    r = comparability.p99_scores(name, 0, cfg)
    assert comparability.LOW <= r["online"] <= comparability.HIGH, r
