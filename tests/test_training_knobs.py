"""Training knobs used by the SKAB configuration: per-channel scale floors and the calibration source."""

import numpy as np
import pytest

from monitor.app.training import StreamData, scaler_std, train_bundle
from monitor.core.config import CalibrationConfig, Config, ConfigError, ModelConfig, StreamConfig, load_config
from monitor.core.model.bundle import load_bundle
from monitor.core.model.nets import architecture_spec, build_from_spec
from monitor.core.model.scorer import Scorer
from monitor.core.synthetic import CHANNELS, pump


def test_channel_min_std_floors_only_the_named_channels():
    rows = np.array([[0.0, 10.0, 5.0], [0.002, 10.4, 5.0], [0.004, 10.8, 5.0]])
    cfg = Config(model=ModelConfig(min_std=1e-3, channel_min_std={"b": 2.0, "absent": 9.0}))
    std = scaler_std(rows, cfg, ["a", "b", "c"])
    raw = rows.std(axis=0)
    assert std[0] == pytest.approx(max(raw[0], 1e-3))
    assert std[1] == 2.0  # raised to the per-channel floor
    assert std[2] == 1e-3  # constant column: the global floor
    # A floor below the data's own spread changes nothing; without names only min_std applies.
    assert scaler_std(rows, Config(model=ModelConfig(channel_min_std={"b": 0.01})), ["a", "b", "c"])[
        1
    ] == pytest.approx(raw[1])
    assert scaler_std(rows, cfg)[1] == pytest.approx(raw[1])


@pytest.mark.parametrize(
    "text,key",
    [
        ("model: {channel_min_std: {Temperature: -1}}", "model.channel_min_std.Temperature"),
        ("model: {channel_min_std: {Temperature: hot}}", "model.channel_min_std.Temperature"),
        ("model: {channel_min_std: [1, 2]}", "model.channel_min_std"),
        ("calibration: {source: newest}", "calibration.source"),
        ("model: {score_reduction: median}", "model.score_reduction"),
        ("model: {max_train_windows: -1}", "model.max_train_windows"),
        ("model: {max_calibration_windows: 1.5}", "model.max_calibration_windows"),
    ],
)
def test_bad_knob_values_name_the_key(tmp_path, text, key):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert err.value.key == key


def _tiny(tmp_path, name: str, **model_knobs) -> tuple[dict, dict]:
    """Train a small seeded conv1d and return (state dict as numpy, manifest)."""
    t, v, _ = pump(300, seed=1, steps_per_hour=0)
    cal = model_knobs.pop("calibration", {})
    cfg = Config(
        stream=StreamConfig(period_seconds=1.0, max_gap_seconds=5.0),
        model=ModelConfig(
            architecture="conv1d", window_size=10, conv_channels=[4], code_size=2, epochs=2, seed=0, **model_knobs
        ),
        calibration=CalibrationConfig(method="quantile", quantile=0.99, holdout_fraction=0.2, **cal),
    )
    outcome = train_bundle([StreamData("p", list(CHANNELS), t, v)], cfg, tmp_path / name, write_plots=False)
    bundle = load_bundle(outcome.bundle_path)
    return {k: w.numpy().copy() for k, w in bundle.module.state_dict().items()}, outcome.manifest.to_json()


def test_knob_defaults_keep_previous_behaviour(tmp_path):
    """Training with the knobs left out is bit for bit training with their pre-knob behaviour spelled out.

    Before the knobs: no per-channel floors, the threshold fitted on the hold-out windows,
    the mean of the channels' errors (and no `score_reduction` in the bundle's spec, so
    older readers load it).
    """
    weights, manifest = _tiny(tmp_path, "default")
    old_w, old_m = _tiny(tmp_path, "old", channel_min_std={}, score_reduction="mean", calibration={"source": "holdout"})
    assert weights.keys() == old_w.keys() and "channel_error_scale" not in weights
    for name, w in weights.items():
        assert np.array_equal(w, old_w[name]), name
    assert manifest["threshold"] == old_m["threshold"] and manifest["scaler"] == old_m["scaler"]
    assert manifest["threshold"]["source"] == "holdout"
    assert manifest["threshold"]["n_windows"] == manifest["validation"]["calibration_windows"]
    assert "score_reduction" not in manifest["architecture"]
    # The comparison can tell knobs apart: one per-channel floor changes both weights and threshold.
    floored_w, floored_m = _tiny(tmp_path, "floored", channel_min_std={"temperature": 50.0})
    assert floored_m["threshold"]["threshold"] != manifest["threshold"]["threshold"]
    assert any(not np.array_equal(w, floored_w[name]) for name, w in weights.items())


def _cfg(source: str) -> Config:
    return Config(
        stream=StreamConfig(period_seconds=1.0, max_gap_seconds=5.0),
        model=ModelConfig(
            architecture="conv1d",
            window_size=10,
            conv_channels=[8],
            code_size=3,
            epochs=3,
            patience=3,
            seed=0,
            channel_min_std={"temperature": 50.0},
        ),
        calibration=CalibrationConfig(method="quantile", quantile=0.99, holdout_fraction=0.2, source=source),
    )


def test_calibration_source_all_fits_on_training_and_holdout_windows(tmp_path):
    t, v, _ = pump(300, seed=1, steps_per_hour=0)
    data = [StreamData("p", list(CHANNELS), t, v)]
    hold = train_bundle(data, _cfg("holdout"), tmp_path / "h", write_plots=False).manifest.to_json()
    both = train_bundle(data, _cfg("all"), tmp_path / "a", write_plots=False).manifest.to_json()
    n_hold = hold["threshold"]["n_windows"]
    assert hold["threshold"]["source"] == "holdout" and both["threshold"]["source"] == "all"
    assert n_hold == hold["validation"]["calibration_windows"]
    assert (
        both["threshold"]["n_windows"]
        == n_hold + hold["training"]["n_train_windows"] + hold["training"]["n_val_windows"]
    )
    # The per-channel floor reached the bundle's scaler.
    assert both["scaler"]["std"][CHANNELS.index("temperature")] == 50.0


def test_score_reduction_channel_max_scales_each_channel_and_takes_the_max(tmp_path):
    t, v, _ = pump(300, seed=1, steps_per_hour=0)
    cfg = _cfg("all")
    cfg.model.score_reduction = "channel_max"
    outcome = train_bundle([StreamData("p", list(CHANNELS), t, v)], cfg, tmp_path, write_plots=False)
    assert outcome.manifest.architecture["score_reduction"] == "channel_max"
    bundle = load_bundle(outcome.bundle_path)  # the scale travels with the weights
    scale = bundle.module.channel_error_scale.numpy()
    assert scale.shape == (len(CHANNELS),) and np.all(scale > 0) and not np.allclose(scale, 1.0)
    x = np.random.default_rng(0).normal(size=(16, 10, len(CHANNELS))).astype(np.float32)
    raw, per_channel, _ = Scorer(bundle.module).errors(x)
    # The same weights with the plain mean reduction give the unscaled per-channel errors.
    spec = dict(bundle.manifest.architecture)
    del spec["score_reduction"]
    plain = build_from_spec(spec)
    plain.load_state_dict({k: w for k, w in bundle.module.state_dict().items() if k != "channel_error_scale"})
    raw_mean, pc_mean, _ = Scorer(plain).errors(x)
    np.testing.assert_allclose(per_channel, pc_mean / scale, rtol=1e-5)
    np.testing.assert_allclose(raw, (pc_mean / scale).max(axis=1), rtol=1e-5)
    np.testing.assert_allclose(raw_mean, pc_mean.mean(axis=1), rtol=1e-5)
    # The threshold was fitted on the channel-max errors: training windows sit mostly below it.
    assert outcome.manifest.validation["training_exceedance_rate"] < 0.05


def test_unknown_score_reduction_in_a_bundle_spec_is_rejected():
    spec = dict(architecture_spec(ModelConfig(architecture="conv1d"), 3), score_reduction="median")
    with pytest.raises(ValueError, match="score_reduction"):
        build_from_spec(spec)


def test_window_bounds_sample_evenly_and_the_manifest_says_how_many_of_how_many(tmp_path):
    from monitor.app.training import FrameSet, prepare_windows  # noqa: PLC0415

    # two streams, one twice as long: each keeps its share; the hold-out stays the newest part
    frames = []
    for name, n in (("a", 1200), ("b", 2400)):
        t = np.arange(n, dtype=float)
        values = np.column_stack([t, -t])  # a window's first value is its first frame's time
        frames.append(FrameSet(name, t, values, np.zeros(n, dtype=bool)))
    knobs = {"window_size": 4, "adapters": "off"}  # one scaler: a window's first value gives back its time
    cfg = Config(model=ModelConfig(**knobs, max_train_windows=300, max_calibration_windows=90))
    full = prepare_windows(frames, Config(model=ModelConfig(**knobs, max_train_windows=0)), 4, 1)
    prep = prepare_windows(frames, cfg, 4, 1)
    s = prep.sampled
    assert s["train_windows_available"] == len(full.train_windows) > 300 >= s["train_windows_used"] >= 298
    assert s["calibration_windows_available"] == len(full.calib_windows) > 90 >= s["calibration_windows_used"]
    (_, a_train, a_cal), (_, b_train, b_cal) = prep.counts
    # each stream its share of the bound: b has twice a's frames, so twice its windows
    assert 99 <= a_train <= 100 and 199 <= b_train <= 200 and 29 <= a_cal <= 30 and 59 <= b_cal <= 60

    # evenly over the older part of stream a: starts spread from its first to its last window
    def start(w):  # the frame time each window starts at
        return np.rint(w[:, 0, 0] * prep.std[0] + prep.mean[0])

    starts = start(prep.train_windows[:a_train])
    all_starts = start(full.train_windows[: full.counts[0][1]])
    assert starts[0] == all_starts[0] == 0 and starts[-1] == all_starts[-1]
    assert np.ptp(np.diff(starts)) <= 1  # equal steps
    first_calib = start(full.calib_windows[:1])[0]
    assert start(prep.calib_windows[:a_cal]).min() >= first_calib > all_starts[-1]  # only the newest part


def test_train_reports_windows_used_of_available(tmp_path):
    _, manifest = _tiny(tmp_path, "bounded", max_train_windows=60, max_calibration_windows=25)
    sampled = manifest["calibration"]["windows_sampled"]
    assert sampled["train_windows_used"] <= 60 < sampled["train_windows_available"]
    assert sampled["calibration_windows_used"] <= 25 < sampled["calibration_windows_available"]
    assert (
        manifest["training"]["n_train_windows"] + manifest["training"]["n_val_windows"] == sampled["train_windows_used"]
    )
    assert manifest["calibration"]["n_train_windows"] == sampled["train_windows_available"]
