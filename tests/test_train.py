"""Training loop: learns, stops early, restores the best weights, is reproducible."""

import numpy as np
import pytest
import torch

from monitor.core.config import ModelConfig
from monitor.core.model.scorer import Scorer
from monitor.core.model.train import MIN_WINDOWS, train_autoencoder

torch.set_num_threads(1)

W = 16


def sine_windows(n_windows: int = 60, seed: int = 0) -> np.ndarray:
    """Standardized two-channel periodic signal cut into overlapping windows (stride 2)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_windows * 2 + W)
    x = np.stack([np.sin(2 * np.pi * t / 20), np.cos(2 * np.pi * t / 13)], 1)
    x += 0.05 * rng.normal(size=x.shape)
    x = (x - x.mean(0)) / x.std(0)
    return np.stack([x[i : i + W] for i in range(0, 2 * n_windows, 2)]).astype(np.float32)


def small_cfg(**overrides) -> ModelConfig:
    base = dict(
        window_size=W,
        hidden=[32],
        code_size=4,
        conv_channels=[8],
        kernel_size=3,
        epochs=20,
        batch_size=16,
        learning_rate=3e-3,
        patience=20,
        noise_std=0.05,
        mask_prob=0.02,
    )
    return ModelConfig(**(base | overrides))


@pytest.mark.parametrize("arch", ["dense", "conv1d"])
def test_training_loss_decreases(arch):
    result = train_autoencoder(sine_windows(), small_cfg(architecture=arch))
    train, val = result.history["train_loss"], result.history["val_loss"]
    assert train[-1] < 0.5 * train[0]
    assert min(val) < 0.5 * val[0]
    assert result.n_train + result.n_val == 60 and result.n_val == 12
    assert result.device == "cpu" and not result.module.training


def test_early_stopping_stops_before_max_epochs_on_plateau():
    # A tiny learning rate changes the validation loss by far less than the 1e-4 relative margin.
    result = train_autoencoder(sine_windows(), small_cfg(epochs=50, learning_rate=1e-7, patience=3))
    assert result.stopped_reason == "early_stopping"
    assert result.best_epoch == 1
    assert result.epochs_run == 4 < 50
    assert len(result.history["val_loss"]) == 4


def test_early_stopping_restores_best_weights():
    # Over-fitting pure noise: validation loss bottoms out, then rises until patience runs out.
    windows = np.random.default_rng(5).normal(size=(40, W, 2)).astype(np.float32)
    cfg = small_cfg(
        hidden=[64], code_size=16, epochs=40, learning_rate=0.03, patience=3, batch_size=8, noise_std=0.0, mask_prob=0.0
    )
    result = train_autoencoder(windows, cfg)
    val = result.history["val_loss"]
    assert result.stopped_reason == "early_stopping"
    assert result.best_epoch < result.epochs_run
    assert val[-1] > val[result.best_epoch - 1]
    # The returned module's clean validation MSE is the best epoch's, not the last one's.
    raw, _, _ = Scorer(result.module).errors(windows[result.n_train :])
    assert float(raw.mean()) == pytest.approx(val[result.best_epoch - 1], rel=1e-5)


@pytest.mark.parametrize("arch", ["dense", "conv1d"])
def test_same_seed_gives_identical_weights(arch):
    cfg = small_cfg(architecture=arch, epochs=3)
    a = train_autoencoder(sine_windows(), cfg).module.state_dict()
    b = train_autoencoder(sine_windows(), cfg).module.state_dict()
    c = train_autoencoder(sine_windows(), small_cfg(architecture=arch, epochs=3, seed=1)).module.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the seed matters, so the check can fail


def test_training_does_not_disturb_global_torch_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_autoencoder(sine_windows(n_windows=10), small_cfg(epochs=1))
    assert torch.equal(torch.rand(3), expected)


def test_too_few_windows_is_a_clear_error():
    windows = sine_windows()[: MIN_WINDOWS - 1]
    with pytest.raises(ValueError, match=rf"at least {MIN_WINDOWS} windows, got {MIN_WINDOWS - 1}"):
        train_autoencoder(windows, small_cfg())


def test_window_size_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"model\.window_size"):
        train_autoencoder(sine_windows(), small_cfg(window_size=8))


def test_nonfinite_windows_are_refused():
    windows = sine_windows()
    windows[3, 2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        train_autoencoder(windows, small_cfg())


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="no CUDA device"):
        train_autoencoder(sine_windows(), small_cfg(device="cuda"))


def test_progress_reports_every_epoch():
    events = []
    result = train_autoencoder(sine_windows(), small_cfg(epochs=3), progress=events.append)
    assert [e["epoch"] for e in events] == [1, 2, 3] == list(range(1, result.epochs_run + 1))
    for key in ("epochs", "train_loss", "val_loss", "seconds_elapsed", "seconds_left_estimate"):
        assert key in events[0]
    assert events[-1]["seconds_left_estimate"] == 0
