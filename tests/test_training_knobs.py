"""Training knobs used by the SKAB configuration: per-channel scale floors and the calibration source."""
import numpy as np
import pytest

from monitor.config import CalibrationConfig, Config, ConfigError, ModelConfig, StreamConfig, load_config
from monitor.synthetic import CHANNELS, pump
from monitor.training import StreamData, scaler_std, train_bundle


def test_channel_min_std_floors_only_the_named_channels():
    rows = np.array([[0.0, 10.0, 5.0], [0.002, 10.4, 5.0], [0.004, 10.8, 5.0]])
    cfg = Config(model=ModelConfig(min_std=1e-3, channel_min_std={"b": 2.0, "absent": 9.0}))
    std = scaler_std(rows, cfg, ["a", "b", "c"])
    raw = rows.std(axis=0)
    assert std[0] == pytest.approx(max(raw[0], 1e-3))
    assert std[1] == 2.0  # raised to the per-channel floor
    assert std[2] == 1e-3  # constant column: the global floor
    # A floor below the data's own spread changes nothing; without names only min_std applies.
    assert scaler_std(rows, Config(model=ModelConfig(channel_min_std={"b": 0.01})), ["a", "b", "c"])[1] == pytest.approx(raw[1])
    assert scaler_std(rows, cfg)[1] == pytest.approx(raw[1])


@pytest.mark.parametrize(
    "text,key",
    [
        ("model: {channel_min_std: {Temperature: -1}}", "model.channel_min_std.Temperature"),
        ("model: {channel_min_std: {Temperature: hot}}", "model.channel_min_std.Temperature"),
        ("model: {channel_min_std: [1, 2]}", "model.channel_min_std"),
        ("calibration: {source: newest}", "calibration.source"),
    ],
)
def test_bad_knob_values_name_the_key(tmp_path, text, key):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert err.value.key == key


def test_knob_defaults_keep_previous_behaviour():
    assert ModelConfig().channel_min_std == {}
    assert CalibrationConfig().source == "holdout"


def _cfg(source: str) -> Config:
    return Config(
        stream=StreamConfig(period_seconds=1.0, max_gap_seconds=5.0),
        model=ModelConfig(architecture="conv1d", window_size=10, conv_channels=[8], code_size=3, epochs=3,
                          patience=3, seed=0, channel_min_std={"temperature": 50.0}),
        calibration=CalibrationConfig(method="quantile", quantile=0.99, holdout_fraction=0.2, source=source),
    )


def test_calibration_source_all_fits_on_training_and_holdout_windows(tmp_path):
    t, v, _ = pump(300, seed=1, steps_per_hour=0)
    data = [StreamData("p", list(CHANNELS), t, v)]
    hold = train_bundle(data, _cfg("holdout"), tmp_path / "h", write_plots=False).manifest
    both = train_bundle(data, _cfg("all"), tmp_path / "a", write_plots=False).manifest
    n_hold = hold["threshold"]["n_windows"]
    assert hold["threshold"]["source"] == "holdout" and both["threshold"]["source"] == "all"
    assert n_hold == hold["validation"]["calibration_windows"]
    assert both["threshold"]["n_windows"] == n_hold + hold["training"]["n_train_windows"] + hold["training"]["n_val_windows"]
    # The per-channel floor reached the bundle's scaler.
    assert both["scaler"]["std"][CHANNELS.index("temperature")] == 50.0
