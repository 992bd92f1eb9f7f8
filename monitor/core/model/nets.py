"""Denoising autoencoders over windows of standardized channels.

Every module takes ``x`` shaped (batch, window_size, n_channels), float32, and returns
``(recon, code)`` with ``recon`` shaped like ``x``. A module is fully described by a
plain-data *spec* (``architecture_spec``) so a model bundle can rebuild exactly the same
module from its manifest (``build_from_spec``) before loading weights into it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from monitor.core.config import ModelConfig

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU}
_KINDS = ("dense", "conv1d")


class DenseAutoencoder(nn.Module):
    """Flatten W*C -> hidden layers -> code -> mirrored hidden layers -> W*C (linear output)."""

    def __init__(self, window_size: int, n_channels: int, hidden: list[int], code_size: int, activation: str = "relu"):
        super().__init__()
        self.window_size = window_size
        self.n_channels = n_channels
        self.spec: dict[str, Any] = {
            "kind": "dense",
            "window_size": window_size,
            "n_channels": n_channels,
            "hidden": list(hidden),
            "code_size": code_size,
            "activation": activation,
        }
        act = _ACTIVATIONS[activation]
        width = window_size * n_channels
        enc: list[nn.Module] = []
        prev = width
        for size in hidden:
            enc += [nn.Linear(prev, size), act()]
            prev = size
        enc.append(nn.Linear(prev, code_size))
        dec: list[nn.Module] = []
        prev = code_size
        for size in reversed(hidden):
            dec += [nn.Linear(prev, size), act()]
            prev = size
        dec.append(nn.Linear(prev, width))
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = x.shape[0]
        # Explicit sizes (not -1) so an empty batch still reshapes.
        code = self.encoder(x.reshape(batch, self.window_size * self.n_channels))
        recon = self.decoder(code).reshape(batch, self.window_size, self.n_channels)
        return recon, code

    def describe(self) -> dict[str, Any]:
        return dict(self.spec, hidden=list(self.spec["hidden"]))


class ConvAutoencoder(nn.Module):
    """Conv1d over time, same padding, no downsampling: any W >= 1 comes back as W steps.

    Encoder: C -> conv_channels (kernel k) -> 1x1 conv to ``code_size`` channels (the code,
    shaped (batch, code_size, W)). Decoder mirrors it with a linear output layer.
    """

    def __init__(
        self,
        window_size: int,
        n_channels: int,
        conv_channels: list[int],
        kernel_size: int,
        code_size: int,
        activation: str = "relu",
    ):
        super().__init__()
        self.window_size = window_size
        self.n_channels = n_channels
        self.spec: dict[str, Any] = {
            "kind": "conv1d",
            "window_size": window_size,
            "n_channels": n_channels,
            "conv_channels": list(conv_channels),
            "kernel_size": kernel_size,
            "code_size": code_size,
            "activation": activation,
        }
        act = _ACTIVATIONS[activation]
        pad = kernel_size // 2
        enc: list[nn.Module] = []
        prev = n_channels
        for ch in conv_channels:
            enc += [nn.Conv1d(prev, ch, kernel_size, padding=pad), act()]
            prev = ch
        enc.append(nn.Conv1d(prev, code_size, 1))
        dec: list[nn.Module] = []
        prev = code_size
        for ch in reversed(conv_channels):
            dec += [nn.Conv1d(prev, ch, kernel_size, padding=pad), act()]
            prev = ch
        dec.append(nn.Conv1d(prev, n_channels, kernel_size, padding=pad))
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.encoder(x.transpose(1, 2))
        recon = self.decoder(code).transpose(1, 2)
        return recon, code

    def describe(self) -> dict[str, Any]:
        return dict(self.spec, conv_channels=list(self.spec["conv_channels"]))


_REDUCTIONS = ("mean", "channel_max")


def architecture_spec(cfg: ModelConfig, n_channels: int) -> dict[str, Any]:
    """The plain-data description of the module `build_autoencoder(cfg, n_channels)` makes.

    `n_channels` counts the data channels; with `cfg.context` the module takes two more
    input channels per feature (spec ``n_channels`` is the total, ``n_context`` the extra
    ones, which the scorer reconstructs but does not score).
    """
    n_context = 2 * len(cfg.context)
    common: dict[str, Any] = {
        "kind": cfg.architecture,
        "window_size": int(cfg.window_size),
        "n_channels": int(n_channels) + n_context,
    }
    if cfg.score_reduction != "mean":  # absent = "mean": specs of older bundles stay valid
        common["score_reduction"] = cfg.score_reduction
    if n_context:  # absent = 0: specs of older bundles stay valid
        common["n_context"] = n_context
    if cfg.architecture == "dense":
        return {**common, "hidden": [int(h) for h in cfg.hidden], "code_size": int(cfg.code_size), "activation": "relu"}
    if cfg.architecture == "conv1d":
        return {
            **common,
            "conv_channels": [int(c) for c in cfg.conv_channels],
            "kernel_size": int(cfg.kernel_size),
            "code_size": int(cfg.code_size),
            "activation": "relu",
        }
    raise ValueError(f"model.architecture: unknown {cfg.architecture!r}; use one of {', '.join(_KINDS)}")


def build_autoencoder(cfg: ModelConfig, n_channels: int) -> nn.Module:
    """A freshly initialised autoencoder for `n_channels` channels (uses torch's global RNG)."""
    return build_from_spec(architecture_spec(cfg, n_channels))


_SPEC_KEYS = {
    "dense": {"kind", "window_size", "n_channels", "hidden", "code_size", "activation"},
    "conv1d": {"kind", "window_size", "n_channels", "conv_channels", "kernel_size", "code_size", "activation"},
}


def _int(spec: dict[str, Any], key: str, minimum: int = 1) -> int:
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"architecture.{key}: expected an integer >= {minimum}, got {value!r}")
    return value


def _int_list(spec: dict[str, Any], key: str) -> list[int]:
    value = spec[key]
    if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value):
        raise ValueError(f"architecture.{key}: expected a list of integers >= 1, got {value!r}")
    return list(value)


def build_from_spec(spec: dict[str, Any]) -> nn.Module:
    """Rebuild the module a spec describes; a malformed spec raises ValueError naming the key."""
    if not isinstance(spec, dict):
        raise ValueError(f"architecture: expected a mapping, got {type(spec).__name__}")
    kind = spec.get("kind")
    if kind not in _SPEC_KEYS:
        raise ValueError(f"architecture.kind: unknown {kind!r}; expected one of {', '.join(_KINDS)}")
    missing = _SPEC_KEYS[kind] - spec.keys()
    extra = spec.keys() - _SPEC_KEYS[kind] - {"score_reduction", "n_context"}
    if missing:
        raise ValueError(f"architecture: missing key(s) {', '.join(sorted(missing))} for kind {kind!r}")
    if extra:
        raise ValueError(f"architecture: unknown key(s) {', '.join(sorted(extra))} for kind {kind!r}")
    activation = spec["activation"]
    if activation not in _ACTIVATIONS:
        raise ValueError(f"architecture.activation: unknown {activation!r}; expected one of {', '.join(_ACTIVATIONS)}")
    window_size = _int(spec, "window_size", 2)
    n_channels = _int(spec, "n_channels")
    code_size = _int(spec, "code_size")
    n_context = _int(spec, "n_context", 0) if "n_context" in spec else 0
    if n_context >= n_channels:
        raise ValueError(f"architecture.n_context: {n_context} leaves no scored channel of n_channels {n_channels}")
    reduction = spec.get("score_reduction", "mean")
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"architecture.score_reduction: unknown {reduction!r}; expected one of {', '.join(_REDUCTIONS)}"
        )
    module: nn.Module
    if kind == "dense":
        module = DenseAutoencoder(window_size, n_channels, _int_list(spec, "hidden"), code_size, activation)
    else:
        kernel_size = _int(spec, "kernel_size")
        if kernel_size % 2 == 0:
            raise ValueError(f"architecture.kernel_size: must be odd for same padding, got {kernel_size}")
        module = ConvAutoencoder(
            window_size, n_channels, _int_list(spec, "conv_channels"), kernel_size, code_size, activation
        )
    if n_context:
        module.spec["n_context"] = n_context
    if reduction != "mean":
        # Per-channel error scale of the scored channels for the scorer (set after
        # training, saved with the weights).
        module.spec["score_reduction"] = reduction
        module.register_buffer("channel_error_scale", torch.ones(n_channels - n_context))
    return module
