"""The shadow candidate's dense network with the re-standardization folded into it.

A shadow (`monitor.core.shadow`) scores the serving model's windows, standardized with the
serving model's scaler: ``z_l = (v - m_l) / s_l``. The candidate expects its own,
``z_c = (v - m_c) / s_c = z_l * a + b`` with ``a = s_l / s_c`` and ``b = (m_l - m_c) / s_c``
per channel (the same for every step of the window). Instead of mapping every batch, the
map is folded once into a copy of the candidate's weights:

* first layer: ``W1 z_c + b1 = (W1 diag(a)) z_l + (W1 b + b1)``;
* last layer: it returns ``r_l = (r_c - b) / a``, the candidate's reconstruction in the
  serving model's units, so ``r_c - z_c = a * (r_l - z_l)``;
* error: the candidate's mean over time and channels of ``(r_c - z_c)^2`` is the mean of
  ``a^2 (r_l - z_l)^2``, one matrix-vector product with the weights ``a^2 / (W C)``
  ("channel_max": the per-channel means times ``a^2 / channel_error_scale``, their maximum).

The same scores as the candidate scoring its own windows, up to float32 rounding (the
order of the sums and the folded weights; `tests/test_shadow.py` holds it to the
candidate serving alone). A cold batch needs only the raw errors: the per-channel errors
and the last step's reconstruction (`details`) are worked out only for a batch the
candidate's alarm looks at.

Only for the dense network on the CPU without context channels (`fold_dense` returns None
otherwise): a convolution's zero padding makes the shift ``b`` position-dependent at the
window's ends, and the shadow keeps the in-place affine map for it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from monitor.core.model.nets import DenseAutoencoder
from monitor.core.types import Float32Array, FloatArray


class FoldedDense:
    """The candidate's dense autoencoder taking the serving model's standardized windows."""

    def __init__(self, scorer: Any, a: FloatArray, b: FloatArray):
        module = scorer.module
        window, channels = module.window_size, module.n_channels
        af = np.tile(np.asarray(a, dtype=np.float64), window)  # flattened (W * C,), step-major
        bf = np.tile(np.asarray(b, dtype=np.float64), window)
        first, last = module.encoder[0], module.decoder[-1]
        # new first and last layers (float64 arithmetic, float32 weights); those between are the candidate's own
        w1, b1 = _array(first.weight), _array(first.bias)
        wl, bl = _array(last.weight), _array(last.bias)
        self.w1, self.b1 = _tensor(w1 * af), _tensor(w1 @ bf + b1)
        self.wl, self.bl = _tensor(wl / af[:, None]), _tensor((bl - bf) / af)
        self.middle = torch.nn.Sequential(*module.encoder[1:], *module.decoder[:-1])
        self.window, self.channels, self.width = window, channels, window * channels
        a2 = np.asarray(a, dtype=np.float64) ** 2
        scale = scorer.channel_scale
        self.max_reduction = scale is not None
        if scale is not None:
            a2 = a2 / _array(scale)
        self.channel_weights = torch.from_numpy(a2.astype(np.float32))  # (C,): per-channel means -> candidate's
        self.weights = torch.from_numpy((np.tile(a2, window) / self.width).astype(np.float32))  # (W * C,)
        self.a = np.asarray(a, dtype=np.float64)
        self.b = np.asarray(b, dtype=np.float64)
        self.chunk = min(8192, max(256, scorer.chunk_values // self.width))

    def raw(self, x: Float32Array) -> tuple[Float32Array, Any]:
        """The candidate's raw errors of `x` (B, W, C), standardized with the serving
        model's scaler, and what `details` needs for the same batch."""
        n = len(x)
        if n > self.chunk:  # big batches in pieces that stay in cache, as the scorer does
            raws, kept = zip(*(self.raw(x[i : i + self.chunk]) for i in range(0, n, self.chunk)), strict=True)
            return np.concatenate(raws), [k for part in kept for k in part]
        with torch.inference_mode():
            xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).reshape(n, self.width)
            # the candidate's forward (DenseAutoencoder.forward, flattened), first and last layer folded
            recon = F.linear(self.middle(F.linear(xt, self.w1, self.b1)), self.wl, self.bl)
            d = recon - xt  # recon is kept for `details`
            d.square_()
            if self.max_reduction:
                per_channel = d.reshape(n, self.window, self.channels).mean(dim=1).mul_(self.channel_weights)
                raw = per_channel.max(dim=1).values
            else:
                raw = d @ self.weights
        return raw.numpy(), [(d, recon)]

    def details(self, kept: Any) -> tuple[Float32Array, Float32Array]:
        """``(per_channel_error (B, C), recon_last (B, C))`` as the candidate's scorer gives
        them (its units: recon_last standardized with the candidate's scaler)."""
        pcs, lasts = [], []
        with torch.inference_mode():
            for d, recon in kept:
                n = len(d)
                pc = d.reshape(n, self.window, self.channels).mean(dim=1).mul_(self.channel_weights)
                pcs.append(pc.numpy())
                last = recon[:, self.width - self.channels :].numpy()  # the window's last step
                lasts.append(last.astype(np.float64) * self.a + self.b)
        pc_all = np.concatenate(pcs) if len(pcs) > 1 else pcs[0]
        last = np.concatenate(lasts) if len(lasts) > 1 else lasts[0]
        return pc_all, last.astype(np.float32)


def _array(p: torch.Tensor) -> np.ndarray:
    return p.detach().cpu().numpy().astype(np.float64)


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def fold_dense(scorer: Any, a: FloatArray, b: FloatArray) -> FoldedDense | None:
    """The folded network when `scorer` runs a dense autoencoder on the CPU without context
    channels; None: keep mapping the windows."""
    module = getattr(scorer, "module", None)
    if not isinstance(module, DenseAutoencoder) or getattr(scorer, "n_scored", 0) is not None:
        return None
    if getattr(scorer, "device", None) != torch.device("cpu"):
        return None
    return FoldedDense(scorer, a, b)
