"""Shapes and spec round-trips of the autoencoders."""

import pytest
import torch

from monitor.core.config import ModelConfig
from monitor.core.model.nets import (
    ConvAutoencoder,
    DenseAutoencoder,
    architecture_spec,
    build_autoencoder,
    build_from_spec,
)

torch.set_num_threads(1)

SHAPES = [(2, 1), (7, 3), (30, 2), (33, 5)]  # (window_size, n_channels), odd W included


def _cfg(arch: str, window_size: int) -> ModelConfig:
    return ModelConfig(
        architecture=arch, window_size=window_size, hidden=[16, 8], code_size=4, conv_channels=[6, 5], kernel_size=5
    )


@pytest.mark.parametrize("window_size,n_channels", SHAPES)
def test_dense_recon_and_code_shapes(window_size, n_channels):
    module = build_autoencoder(_cfg("dense", window_size), n_channels)
    assert isinstance(module, DenseAutoencoder)
    x = torch.randn(4, window_size, n_channels)
    recon, code = module(x)
    assert recon.shape == x.shape
    assert code.shape == (4, 4)


@pytest.mark.parametrize("window_size,n_channels", SHAPES)
def test_conv1d_recon_and_code_shapes(window_size, n_channels):
    module = build_autoencoder(_cfg("conv1d", window_size), n_channels)
    assert isinstance(module, ConvAutoencoder)
    x = torch.randn(3, window_size, n_channels)
    recon, code = module(x)
    assert recon.shape == x.shape
    assert code.shape == (3, 4, window_size)


@pytest.mark.parametrize("window_size", range(2, 12))
def test_conv1d_reconstructs_exactly_w_steps_for_any_w(window_size):
    module = build_autoencoder(_cfg("conv1d", 8), 2)  # built for W=8, applied to other W
    recon, _ = module(torch.randn(2, window_size, 2))
    assert recon.shape == (2, window_size, 2)


@pytest.mark.parametrize("arch", ["dense", "conv1d"])
def test_empty_batch_gives_empty_recon(arch):
    module = build_autoencoder(_cfg(arch, 9), 3)
    recon, _ = module(torch.zeros(0, 9, 3))
    assert recon.shape == (0, 9, 3)


@pytest.mark.parametrize("arch", ["dense", "conv1d"])
def test_build_from_spec_rebuilds_identical_module(arch):
    cfg = _cfg(arch, 11)
    torch.manual_seed(0)
    original = build_autoencoder(cfg, 3)
    spec = architecture_spec(cfg, 3)
    assert original.describe() == spec
    rebuilt = build_from_spec(spec)
    rebuilt.load_state_dict(original.state_dict(), strict=True)
    x = torch.randn(5, 11, 3)
    assert torch.equal(original(x)[0], rebuilt(x)[0])


@pytest.mark.parametrize(
    "change,message",
    [
        ({"kind": "lstm"}, "architecture.kind"),
        ({"hidden": [0]}, "architecture.hidden"),
        ({"activation": "tanh"}, "architecture.activation"),
        ({"window_size": 1}, "architecture.window_size"),
        ({"extra": 1}, "unknown key"),
    ],
)
def test_build_from_spec_rejects_malformed_spec_naming_the_key(change, message):
    spec = architecture_spec(_cfg("dense", 8), 2) | change
    with pytest.raises(ValueError, match=message):
        build_from_spec(spec)


def test_build_from_spec_rejects_missing_key():
    spec = architecture_spec(_cfg("conv1d", 8), 2)
    del spec["kernel_size"]
    with pytest.raises(ValueError, match=r"missing key.*kernel_size"):
        build_from_spec(spec)
