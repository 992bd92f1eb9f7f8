"""Training loop for the denoising autoencoders.

Inputs are corrupted (Gaussian noise, then masking to zero) and the loss is measured
against the *clean* input, plus an optional L1 penalty on the code. The newest
``validation_fraction`` of the windows (in the order given) is held out; early stopping
watches the clean validation MSE and the best weights are restored. A run is seeded:
the same windows and config give bit-identical weights on CPU.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from monitor.core.config import ModelConfig
from monitor.core.model.nets import architecture_spec, build_from_spec

MIN_WINDOWS = 8
# A validation loss counts as an improvement only if it beats the best by this share.
MIN_RELATIVE_IMPROVEMENT = 1e-4
_EVAL_BATCH = 4096


@dataclass
class TrainResult:
    module: nn.Module  # on cpu, eval mode, best weights
    history: dict[str, list[float]]  # train_loss (objective incl. sparsity), val_loss (clean MSE)
    best_epoch: int  # 1-based epoch whose weights were kept
    epochs_run: int
    seconds: float
    n_train: int
    n_val: int
    device: str
    spec: dict[str, Any] = field(default_factory=dict)  # architecture spec, for the bundle manifest
    stopped_reason: str = "max_epochs"  # "max_epochs" | "early_stopping" | "non_finite_loss"


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError('model.device is "cuda" but no CUDA device is available; use "cpu" or "auto"')
    if device not in ("cpu", "cuda"):
        raise ValueError(f'model.device: expected "auto", "cpu" or "cuda", got {device!r}')
    return torch.device(device)


@contextlib.contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic kernels for the duration of training; the global setting is restored."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


def _check_windows(windows: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    windows = np.asarray(windows, dtype=np.float32)
    if windows.ndim != 3:
        raise ValueError(f"windows must be shaped (n_windows, window_size, n_channels), got shape {windows.shape}")
    n = windows.shape[0]
    if n < MIN_WINDOWS:
        raise ValueError(
            f"training needs at least {MIN_WINDOWS} windows, got {n}; record more normal data "
            "or lower model.window_size / model.stride"
        )
    if windows.shape[1] != cfg.window_size:
        raise ValueError(f"windows have {windows.shape[1]} steps but model.window_size is {cfg.window_size}")
    if windows.shape[2] < 1:
        raise ValueError("windows have no channels")
    if not np.isfinite(windows).all():
        raise ValueError("windows contain NaN or infinite values; drop or fill them before training")
    return windows


def dae_step(
    module: torch.nn.Module,
    x: torch.Tensor,
    cfg: ModelConfig,
    noise_gen: torch.Generator,
    optimizer: torch.optim.Optimizer,
) -> torch.Tensor:
    """One denoising step on batch `x`: corrupt it, reconstruct, mean squared error against
    the clean batch (plus the code's L1 sparsity), one optimizer update; returns the loss."""
    recon, code = module(_corrupt(x, cfg, noise_gen))
    loss = torch.mean((recon - x) ** 2)
    if cfg.sparsity > 0:
        loss = loss + cfg.sparsity * code.abs().mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def _corrupt(x: torch.Tensor, cfg: ModelConfig, gen: torch.Generator) -> torch.Tensor:
    noisy = x
    if cfg.noise_std > 0:
        noisy = x + cfg.noise_std * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    if cfg.mask_prob > 0:
        mask = torch.rand(x.shape, generator=gen, device=x.device) < cfg.mask_prob
        noisy = noisy.masked_fill(mask, 0.0)
    return noisy


def _clean_mse(module: nn.Module, data: torch.Tensor) -> float:
    """Mean squared reconstruction error of uncorrupted windows."""
    total = 0.0
    with torch.inference_mode():
        for start in range(0, data.shape[0], _EVAL_BATCH):
            x = data[start : start + _EVAL_BATCH]
            recon, _ = module(x)
            total += float(((recon - x) ** 2).sum())
    return total / data.numel()


def train_autoencoder(
    windows: np.ndarray,
    cfg: ModelConfig,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train a denoising autoencoder on standardized windows (N, W, C); see the module doc."""
    windows = _check_windows(windows, cfg)
    device = resolve_device(cfg.device)
    n = windows.shape[0]
    n_val = min(n - 1, max(1, round(n * cfg.validation_fraction)))
    n_train = n - n_val
    spec = architecture_spec(cfg, windows.shape[2] - 2 * len(cfg.context))  # context channels come last

    started = time.monotonic()
    with _deterministic(device):
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
            torch.manual_seed(cfg.seed)
            module = build_from_spec(spec)
        module.to(device)
        data = torch.from_numpy(windows).to(device)
        train, val = data[:n_train], data[n_train:]
        shuffle_gen = torch.Generator().manual_seed(cfg.seed)
        noise_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
        optimizer = torch.optim.Adam(module.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)

        history: dict[str, list[float]] = {"train_loss": [], "val_loss": []}
        best_val, best_epoch, best_state = math.inf, 0, None
        since_best = 0
        stopped = "max_epochs"
        epoch = 0
        for epoch in range(1, cfg.epochs + 1):
            module.train()
            order = torch.randperm(n_train, generator=shuffle_gen).to(device)
            total, count = 0.0, 0
            for start in range(0, n_train, cfg.batch_size):
                x = train[order[start : start + cfg.batch_size]]
                loss = dae_step(module, x, cfg, noise_gen, optimizer)
                total += float(loss.detach()) * x.shape[0]
                count += x.shape[0]
            module.eval()
            train_loss = total / count
            val_loss = _clean_mse(module, val)
            history["train_loss"].append(train_loss)
            history["val_loss"].append(val_loss)

            # MSE is >= 0, so a relative margin is well defined; the first finite loss always wins.
            if math.isfinite(val_loss) and (best_state is None or val_loss < best_val * (1 - MIN_RELATIVE_IMPROVEMENT)):
                best_val, best_epoch, since_best = val_loss, epoch, 0
                best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            else:
                since_best += 1

            if progress is not None:
                elapsed = time.monotonic() - started
                progress(
                    {
                        "epoch": epoch,
                        "epochs": cfg.epochs,
                        "train_loss": train_loss,
                        "val_loss": val_loss,
                        "best_epoch": best_epoch,
                        "seconds_elapsed": elapsed,
                        "seconds_left_estimate": elapsed / epoch * (cfg.epochs - epoch),
                    }
                )
            if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                stopped = "non_finite_loss"
                break
            if since_best >= max(1, cfg.patience):
                stopped = "early_stopping"
                break

    if best_state is None:
        raise ValueError(
            "training diverged: the validation loss was never finite; lower model.learning_rate "
            "and check that the windows are standardized"
        )
    module.load_state_dict(best_state)
    module.to("cpu").eval()
    return TrainResult(
        module=module,
        history=history,
        best_epoch=best_epoch,
        epochs_run=epoch,
        seconds=time.monotonic() - started,
        n_train=n_train,
        n_val=n_val,
        device=str(device),
        spec=spec,
        stopped_reason=stopped,
    )
