"""Scorer: reconstruction errors agree with a hand computation; empty batches work."""

import numpy as np
import pytest
import torch
from torch import nn

from monitor.core.config import ModelConfig
from monitor.core.model.nets import build_autoencoder
from monitor.core.model.scorer import Scorer

torch.set_num_threads(1)


class Halve(nn.Module):
    """A known module: the reconstruction is half the input."""

    def forward(self, x):
        return 0.5 * x, x.mean(dim=1)


def test_errors_match_hand_computation_for_halving_module():
    x = np.random.default_rng(0).normal(size=(6, 5, 3)).astype(np.float32)
    raw, per_channel, last = Scorer(Halve()).errors(x)
    # recon - x = -x/2, so the squared error is x**2 / 4
    expected_pc = (x.astype(np.float64) ** 2 / 4).mean(axis=1)
    np.testing.assert_allclose(per_channel, expected_pc, rtol=1e-6)
    np.testing.assert_allclose(raw, expected_pc.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(last, 0.5 * x[:, -1, :], rtol=1e-6)
    assert raw.shape == (6,) and per_channel.shape == (6, 3) and last.shape == (6, 3)


def _numpy_dense_forward(module, x):
    """Independent forward pass of a DenseAutoencoder (Linear + ReLU) in numpy."""
    h = x.reshape(x.shape[0], -1).astype(np.float64)
    for seq in (module.encoder, module.decoder):
        for layer in seq:
            if isinstance(layer, nn.Linear):
                h = h @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()
            else:
                h = np.maximum(h, 0.0)
    return h.reshape(x.shape)


def test_errors_match_numpy_forward_of_dense_autoencoder():
    torch.manual_seed(1)
    module = build_autoencoder(ModelConfig(window_size=7, hidden=[10], code_size=3), 2)
    x = np.random.default_rng(1).normal(size=(9, 7, 2)).astype(np.float32)
    recon = _numpy_dense_forward(module, x)
    sq = (recon - x) ** 2
    raw, per_channel, last = Scorer(module).errors(x)
    np.testing.assert_allclose(per_channel, sq.mean(axis=1), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(raw, sq.mean(axis=(1, 2)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(last, recon[:, -1, :], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(raw, per_channel.mean(axis=1), rtol=1e-6)


@pytest.mark.parametrize("arch", ["dense", "conv1d"])
def test_empty_batch_returns_empty_arrays(arch):
    module = build_autoencoder(ModelConfig(architecture=arch, window_size=8, conv_channels=[4]), 3)
    raw, per_channel, last = Scorer(module).errors(np.zeros((0, 8, 3), dtype=np.float32))
    assert raw.shape == (0,) and per_channel.shape == (0, 3) and last.shape == (0, 3)


def test_batch_scores_equal_one_by_one_scores():
    torch.manual_seed(2)
    scorer = Scorer(build_autoencoder(ModelConfig(architecture="conv1d", window_size=10, conv_channels=[4]), 2))
    x = np.random.default_rng(2).normal(size=(5, 10, 2)).astype(np.float32)
    raw, _, _ = scorer.errors(x)
    single = np.concatenate([scorer.errors(x[i : i + 1])[0] for i in range(5)])
    np.testing.assert_allclose(raw, single, rtol=1e-5)


def test_wrong_window_shape_is_a_clear_error():
    scorer = Scorer(build_autoencoder(ModelConfig(window_size=8), 2))
    with pytest.raises(ValueError, match="model expects"):
        scorer.errors(np.zeros((1, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="shaped"):
        scorer.errors(np.zeros((8, 2), dtype=np.float32))


def test_scoring_leaves_input_unchanged():
    scorer = Scorer(build_autoencoder(ModelConfig(window_size=4), 1))
    x = np.random.default_rng(3).normal(size=(3, 4, 1)).astype(np.float32)
    before = x.copy()
    scorer.errors(x)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("arch", ["dense", "conv1d"])
def test_a_big_batch_scored_in_pieces_equals_scoring_each_piece(arch):
    cfg = ModelConfig(architecture=arch, window_size=8, hidden=[16], code_size=4, conv_channels=[4], kernel_size=3)
    torch.manual_seed(0)
    module = build_autoencoder(cfg, 3)
    x = np.random.default_rng(1).normal(size=(3000, 8, 3)).astype(np.float32)
    pieces = Scorer(module, chunk_values=8 * 3 * 300)  # 300 windows per pass: 10 passes, the last short
    whole = Scorer(module, chunk_values=10**9)
    got = pieces.errors(x)
    expected = whole.errors(x)
    single = [whole.errors(x[i : i + 1]) for i in (0, 299, 300, 2999)]
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape and g.dtype == np.float32
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    for i, one in zip((0, 299, 300, 2999), single, strict=True):
        for g, e in zip(got, one, strict=True):
            np.testing.assert_allclose(g[i], e[0], rtol=1e-5, atol=1e-6)
