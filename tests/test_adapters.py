"""Per-stream adapters (decision 0010): streams of one group at different operating points
share one model; each gets its own scaler and threshold when it has enough windows, the
group's otherwise, and an unseen stream the group's. Real torch training on tiny data."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

from monitor.app.training import StreamData, train_bundle
from monitor.core.config import ConfigError
from monitor.core.fleet import Fleet
from monitor.core.model.adapters import ADAPTERS_FILE, StreamAdapters
from monitor.core.model.bundle import BundleError, load_bundle
from monitor.core.pipeline import Pipeline
from monitor.core.runner import Runner
from monitor.core.scoring_model import ScoringModel
from monitor.core.types import FrameBlock, Reading
from tests.daemon_support import config_from, load_yaml

CHANNELS = ["a", "b"]
# name: (level, scale): one model for all, operating points from 10 to 1000, spreads 0.1 to 10
STREAMS = {"p/quiet": (10.0, 0.1), "p/mid": (50.0, 1.0), "p/loud": (200.0, 10.0), "p/high": (1000.0, 3.0)}
SHORT = "p/short"  # too few windows of its own: falls back to the group's
FAULT = (300, 400)  # rows of the test feed with a level shift in p/quiet's channel a
YAML = """
stream: {channels: [a, b], period_seconds: 1.0, max_gap_seconds: 5}
model: {architecture: dense, window_size: 16, hidden: [32], code_size: 4, epochs: 8, patience: 3, seed: 1,
        adapter_min_windows: 100}
calibration: {method: quantile, quantile: 0.999, factor: 1.5, holdout_fraction: 0.25}
alarm: {k: 3, n: 5, resolve_m: 10}
"""


def series(level, scale, n, seed, start=1_700_000_000.0, fault=None):
    """Two channels: a slow cycle around `level` with amplitude and noise in proportion to `scale`."""
    rng = np.random.default_rng(seed)
    t = start + np.arange(n, dtype=np.float64)
    phase = 2 * np.pi * np.arange(n) / 60.0
    a = level + scale * (np.sin(phase) + rng.normal(0, 0.05, n))
    b = 0.5 * level + scale * (np.cos(phase) + rng.normal(0, 0.05, n))
    v = np.column_stack([a, b])
    if fault is not None:
        v[fault[0] : fault[1], 0] += 10 * scale  # ten times the stream's own spread
    return t, v


def training_data() -> list[StreamData]:
    data = []
    for i, (name, (level, scale)) in enumerate(STREAMS.items()):
        t, v = series(level, scale, 900, seed=i)
        data.append(StreamData(name, list(CHANNELS), t, v))
    t, v = series(50.0, 1.0, 80, seed=9)
    data.append(StreamData(SHORT, list(CHANNELS), t, v))
    return data


def cfg(**model):
    raw = load_yaml(YAML)
    raw["model"].update(model)
    return config_from(raw)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """The same data trained twice: with adapters (auto) and without (off)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("adapters")
    data = training_data()
    auto = train_bundle(data, cfg(), root / "auto", write_plots=False)
    off = train_bundle(data, cfg(adapters="off"), root / "off", write_plots=False)
    return auto, off


def test_the_switch_and_the_rule_are_validated():
    assert cfg().model.adapters == "auto"
    assert config_from({"model": {"adapters": False}}).model.adapters == "off"  # YAML's bare `off`
    with pytest.raises(ConfigError, match=r"model\.adapters: must be one of 'auto', 'off'"):
        cfg(adapters="sometimes")
    with pytest.raises(ConfigError, match=r"model\.adapter_min_windows: must be >= 20"):
        cfg(adapter_min_windows=5)


def test_training_gives_streams_with_enough_windows_their_own_adapter_and_the_rest_fall_back(bundles):
    auto, off = bundles
    adapters = load_bundle(auto.bundle_path).adapters
    assert adapters is not None
    assert sorted(adapters.streams) == sorted(STREAMS)
    assert adapters.fallback.keys() == {SHORT} and adapters.fallback[SHORT] < 100
    assert all(n >= 100 for n in adapters.n_windows)
    assert auto.report["adapters"] == {
        "mode": "auto",
        "min_windows": 100,
        "streams": 5,
        "own": 4,
        "fallback": 1,
        "fallback_streams": [SHORT],
    }
    entry = auto.manifest.adapters
    data = (auto.bundle_path / ADAPTERS_FILE).read_bytes()
    assert entry == {
        "file": ADAPTERS_FILE,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "streams": 4,
        "fallback": 1,
    }
    # each stream's own scaler is its own operating point, not the pooled one
    for name, (level, scale) in STREAMS.items():
        i = adapters.index[name]
        assert adapters.mean[i][0] == pytest.approx(level, abs=scale)
        assert adapters.std[i][0] == pytest.approx(scale * np.sqrt(0.5), rel=0.2)
    # off: no adapters file, no manifest entry: a bundle as before adapters
    on_disk = json.loads((off.bundle_path / "manifest.json").read_text())
    assert off.manifest.adapters is None and "adapters" not in on_disk
    assert not (off.bundle_path / ADAPTERS_FILE).exists()
    assert load_bundle(off.bundle_path).adapters is None
    assert off.report["adapters"]["own"] == 0 and off.report["adapters"]["fallback"] == 5


def feed(n=600, fault_in="p/quiet"):
    """Test feed: every stream at its operating point, one fault; a 1-row FrameBlock per stream and step."""
    streams = {}
    for i, (name, (level, scale)) in enumerate(STREAMS.items()):
        streams[name] = series(
            level, scale, n, seed=100 + i, start=1_700_100_000.0, fault=FAULT if name == fault_in else None
        )
    items = []
    for step in range(n):
        for name, (t, v) in streams.items():
            items.append(FrameBlock(name, tuple(CHANNELS), t[step : step + 1], v[step : step + 1]))
    return items


def run_fleet(model: ScoringModel, items, batch=64):
    fleet = Fleet.single(model, cfg().fleet()[0])
    alerts, scores = [], []
    runner = Runner(fleet, on_alert=alerts.append, on_scores=lambda r: scores.append(r.scores))
    for i in range(0, len(items), batch):
        runner.feed(items[i : i + batch])
    runner.finish()
    return alerts, scores


def test_with_adapters_the_quiet_streams_fault_is_caught_and_the_others_stay_quiet(bundles):
    auto, off = bundles
    items = feed()
    start = 1_700_100_000.0
    # without adapters the pooled scaler (levels 10 to 1000) hides a shift of 10x p/quiet's spread
    missed, _ = run_fleet(ScoringModel.from_bundle(load_bundle(off.bundle_path)), items)
    assert not [a for a in missed if a.stream == "p/quiet"]
    alerts, _ = run_fleet(ScoringModel.from_bundle(load_bundle(auto.bundle_path)), items)
    firing = [a for a in alerts if a.state == "firing"]
    assert [a.stream for a in firing] == ["p/quiet"]
    assert FAULT[0] <= firing[0].started_at - start <= FAULT[1]
    adapters = load_bundle(auto.bundle_path).adapters
    assert firing[0].threshold == float(adapters.threshold[adapters.index["p/quiet"]])
    assert firing[0].threshold != auto.manifest.threshold


def test_a_stream_never_seen_in_training_and_a_short_one_use_the_groups_scaler_and_threshold(bundles):
    auto, _ = bundles
    model = ScoringModel.from_bundle(load_bundle(auto.bundle_path))
    bare = dataclasses.replace(model, adapters=None)  # the same network and group scaler/threshold
    pipe, ref = Pipeline(model, cfg().stream, cfg().alarm), Pipeline(bare, cfg().stream, cfg().alarm)
    for name in ("p/new", SHORT):
        assert pipe.threshold_for(name) == model.threshold
        mean, inv_std = pipe.scaler_for(name)
        np.testing.assert_array_equal(mean, model.mean)
        np.testing.assert_array_equal(inv_std, 1.0 / model.std)
    assert pipe.threshold_for("p/mid") != model.threshold
    t, v = series(300.0, 5.0, 200, seed=7, start=1_700_200_000.0)
    for p in (pipe, ref):
        for name in ("p/new", SHORT):
            p.push_batch([FrameBlock(name, tuple(CHANNELS), t, v)])
    got, want = pipe.flush()[0], ref.flush()[0]
    assert len(got) == len(want) > 0
    np.testing.assert_array_equal(got.score, want.score)
    np.testing.assert_array_equal(got.channel_scores, want.channel_scores)
    np.testing.assert_array_equal(got.reconstructed, want.reconstructed)


def test_batched_scoring_equals_reading_by_reading_with_adapters(bundles):
    auto, _ = bundles
    model = ScoringModel.from_bundle(load_bundle(auto.bundle_path))
    items = [*feed(n=450), FrameBlock("p/new", tuple(CHANNELS), *series(20.0, 1.0, 40, 3, 1_700_100_000.0))]
    batched, single = Pipeline(model, cfg().stream, cfg().alarm), Pipeline(model, cfg().stream, cfg().alarm)
    got, want = {}, {}
    alerts_b, alerts_s = [], []
    for i in range(0, len(items), 97):
        chunk = items[i : i + 97]
        batched.push_batch(chunk)
        for item in chunk:
            for r in item:
                single.push_reading(Reading(*r))
        for pipe, out, alerts in ((batched, got, alerts_b), (single, want, alerts_s)):
            scores, new = pipe.flush()
            alerts += new
            for s in scores:
                out.setdefault(s.stream, []).append(
                    (s.timestamp, s.score, s.raw_error, tuple(s.channel_scores), tuple(s.reconstructed))
                )
    assert got.keys() == want.keys() == {*STREAMS, "p/new"}
    assert got == want
    assert sorted(a.alert_id for a in alerts_b) == sorted(a.alert_id for a in alerts_s)
    assert [a.stream for a in alerts_b if a.state == "firing"] == ["p/quiet"]


def test_a_compatible_swap_gives_carried_over_streams_the_new_models_scalers(bundles):
    auto, off = bundles
    with_adapters = ScoringModel.from_bundle(load_bundle(auto.bundle_path))
    pipe = Pipeline(ScoringModel.from_bundle(load_bundle(off.bundle_path)), cfg().stream, cfg().alarm)
    pipe.push_batch(feed(n=20))
    assert pipe.streams["p/quiet"].mean is pipe.model.mean
    pipe.swap_model(with_adapters)
    i = with_adapters.adapters.index["p/quiet"]
    assert len(pipe.streams) == 4  # same geometry: stream state carried over
    np.testing.assert_array_equal(pipe.streams["p/quiet"].mean, with_adapters.adapters.mean[i])
    np.testing.assert_array_equal(pipe.streams["p/quiet"].inv_std, 1.0 / with_adapters.adapters.std[i])


def test_a_bundle_without_adapters_entry_loads_and_scores_exactly_as_before(bundles, tmp_path):
    auto, _ = bundles
    old = tmp_path / "old"
    shutil.copytree(auto.bundle_path, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["adapters"]  # the shape of every bundle written before adapters
    (old / "manifest.json").write_text(json.dumps(manifest))
    (old / ADAPTERS_FILE).unlink()
    model = ScoringModel.from_bundle(load_bundle(old))
    assert model.adapters is None
    pipe = Pipeline(model, cfg().stream, cfg().alarm)
    pipe.push_batch(feed(n=60))
    scores, _ = pipe.flush()
    np.testing.assert_array_equal(scores.score, scores.raw * (1.0 / model.threshold))
    assert pipe.threshold_for("p/quiet") == model.threshold  # one threshold for every stream


@pytest.mark.parametrize(
    "damage,words",
    [
        (
            lambda d: (d / ADAPTERS_FILE).write_bytes((d / ADAPTERS_FILE).read_bytes().replace(b"1", b"2", 1)),
            "sha256 mismatch",
        ),
        (lambda d: (d / ADAPTERS_FILE).unlink(), "missing, but the manifest lists adapters"),
    ],
)
def test_changed_or_missing_adapters_refuse_the_bundle(bundles, tmp_path, damage, words):
    auto, _ = bundles
    copy = tmp_path / "b"
    shutil.copytree(auto.bundle_path, copy)
    damage(copy)
    with pytest.raises(BundleError, match=words):
        load_bundle(copy)


def test_an_adapters_file_that_does_not_fit_its_model_is_refused():
    ok = StreamAdapters(["s"], np.zeros((1, 2)), np.ones((1, 2)), np.array([0.5]), [30], 20)
    data = ok.to_json(CHANNELS)
    assert StreamAdapters.from_json(data, CHANNELS).index == {"s": 0}
    with pytest.raises(ValueError, match="channels"):
        StreamAdapters.from_json(data, ["a", "b", "c"])
    body = json.loads(data)
    body["streams"]["s"]["std"] = [1.0, 0.0]
    with pytest.raises(ValueError, match=r"streams\['s'\].std: must be > 0"):
        StreamAdapters.from_json(json.dumps(body).encode(), CHANNELS)
