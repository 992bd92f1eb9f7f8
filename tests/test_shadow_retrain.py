"""`monitor retrain` with retrain.shadow_hours > 0: a candidate that passes the gate is
registered as `shadow` (the daemon judges it live), not promoted; without a serving model
there is nothing to compare with and it is promoted at once."""

from __future__ import annotations

import pytest

from monitor.app import retrain
from monitor.core.model.registry import current_bundle_path, prune, shadow_bundle_path
from tests.test_retrain_gates import _config, _record, _verdict

pytestmark = pytest.mark.slow


def test_a_passing_candidate_goes_to_shadow_and_the_serving_model_stays(tmp_path, capsys):
    cfg = _config(tmp_path)
    cfg.write_text(cfg.read_text() + "retrain: {shadow_hours: 24}\n")
    _record(tmp_path / "rec", 1500, 5)
    args = ["--config", str(cfg), "--data", str(tmp_path / "rec"), "--no-plots", "--no-exclusions"]
    assert retrain.main(args) == 0
    first = _verdict(capsys)
    assert first["promoted"] is True and "shadow" not in first  # nothing serving: promoted at once
    serving = current_bundle_path(tmp_path / "models")

    assert retrain.main(args) == 0
    second = _verdict(capsys)
    assert second["passed"] is True and second["promoted"] is False
    assert second["shadow"] == {"version": second["candidate"]["version"], "hours": 24}
    assert current_bundle_path(tmp_path / "models") == serving
    shadow = shadow_bundle_path(tmp_path / "models")
    assert shadow is not None and shadow.name == second["candidate"]["version"]
    assert (shadow / "gate.json").is_file()
    # prune keeps the candidate in shadow (and the serving one)
    assert prune(tmp_path / "models", keep=1) == []
