"""A candidate promoted from shadow serves with the drift summary of its shadow period
(`ShadowManager`, decision 0021 addendum 6), through the manager's own hand-over, a save
before the swap (a restart then) and a failed promotion; no broker needed."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitor.app.shadowing import ShadowManager, drift_state_path
from monitor.core.fleet import Fleet
from monitor.core.model.bundle import load_bundle
from monitor.core.model.registry import current_bundle_path
from monitor.core.scoring_model import ScoringModel
from monitor.core.shadow import Shadow
from monitor.core.synthetic import pump
from tests.daemon_support import daemon_config, train_small_model

# promoted on any traffic once 60 s of data are scored (the budgets are not what is tested)
RETRAIN = {
    "shadow_hours": 60 / 3600,
    "shadow_min_windows": 30,
    "shadow_alert_margin": 100,
    "shadow_max_alert_episodes": 100,
    "shadow_max_quantile_ratio": 1000.0,
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    models = tmp_path_factory.mktemp("drift-models") / "models"
    train_small_model(models)
    return models


def _manager(models: Path) -> tuple[ShadowManager, Fleet, ScoringModel]:
    cfg = daemon_config(1, models, retrain=RETRAIN)  # no broker is reached
    serving = ScoringModel.from_bundle(load_bundle(current_bundle_path(models)))
    fleet = Fleet.from_config(cfg)
    fleet.install("default", serving)
    mgr = ShadowManager(cfg, fleet, CollectorRegistry())
    mgr.on_model("default", serving)
    return mgr, fleet, serving


def _shadow_period(mgr: ShadowManager, fleet: Fleet, serving: ScoringModel) -> tuple[ScoringModel, int]:
    """A candidate (the same bundle under another version) in shadow until its verdict."""
    cand = dataclasses.replace(serving, version="cand")
    pipe = fleet.pipeline("default")
    assert pipe is not None
    pipe.shadow = Shadow(cand, serving, mgr.cfg.alarm, mgr.settings)
    t, v, _ = pump(200, seed=3, steps_per_hour=0)
    for i in range(200):
        pipe.push_row("site1/pump1", float(t[i]), v[i])
    pipe.flush()
    windows = pipe.shadow.windows
    mgr.after_batch(snapshot=True)
    assert pipe.shadow is None and mgr._decided[-1][1]["state"] == "promoted"
    return cand, windows


def test_the_promoted_candidate_serves_with_its_shadow_drift_also_after_a_restart_before_the_swap(tmp_path, trained):
    models = tmp_path / "models"
    shutil.copytree(trained, models, symlinks=True)
    mgr, fleet, serving = _manager(models)
    own = mgr.drift["default"]
    assert own is not None and own.seen == 0
    cand, windows = _shadow_period(mgr, fleet, serving)
    assert windows == 200 - serving.window_size + 1
    # saved before the swap: under the candidate's version, with its shadow windows
    mgr.save_drift()
    saved = json.loads(drift_state_path(models).read_text())
    assert saved["model"] == "cand" and saved["seen"] == windows
    # a restart now: the promoted model is installed at start and adopts that file
    again, _, _ = _manager(models)
    again.on_model("default", cand)
    restored = again.drift["default"]
    assert restored is not None and restored.seen == windows
    # no restart: the swap hands the shadow's tracker over
    mgr.on_model("default", cand)
    seeded = mgr.drift["default"]
    assert seeded is not None and seeded is not own and seeded.seen == windows
    assert seeded.shares() == restored.shares()


def test_a_model_installed_otherwise_or_a_failed_promotion_starts_the_statistic_empty(tmp_path, trained):
    models = tmp_path / "models"
    shutil.copytree(trained, models, symlinks=True)
    mgr, fleet, serving = _manager(models)
    cand, _ = _shadow_period(mgr, fleet, serving)
    other = dataclasses.replace(serving, version="manual")  # e.g. `monitor models promote` of another bundle
    mgr.on_model("default", other)
    fresh = mgr.drift["default"]
    assert fresh is not None and fresh.seen == 0 and math.isnan(fresh.value())
    mgr.on_model("default", cand)  # the hand-over was for the promotion that did not happen
    assert mgr.drift["default"].seen == 0  # type: ignore[union-attr]
    # a promotion that fails (here: no bundle named "cand" to point at) keeps the serving
    # model's summary in drift.json, not the candidate's
    mgr2, fleet2, serving2 = _manager(models)
    _shadow_period(mgr2, fleet2, serving2)
    mgr2.poll()  # the main thread acts on the verdict
    assert mgr2.verdicts[-1]["state"] == "rejected" and "promotion failed" in mgr2.verdicts[-1]["error"]
    mgr2.save_drift()
    assert json.loads(drift_state_path(models).read_text())["model"] == serving2.version
