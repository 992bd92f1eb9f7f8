"""Declared interfaces of the pure core: what the pipeline needs of a scorer.

`Scorer` is the contract every window scorer keeps (tests/test_contracts.py checks it
against each implementation, as River's estimator checks do):

* ``errors(x)`` takes standardized windows shaped ``(B, W, C_in)`` (float32) and returns
  ``(raw (B,), per_channel (B, C), recon_last (B, C))``, float32, where ``C`` is the number
  of *scored* channels (``C_in`` minus any context channels); higher raw = more anomalous;
  every value is finite and ``raw``/``per_channel`` are >= 0 for finite input;
* it is a pure function of its input: scoring never changes the scorer, the same windows
  give the same numbers, a window scores the same alone as inside any batch (to float32
  rounding: a batched matrix product may sum in another order), and ``B == 0`` is allowed;
* a window of the wrong shape raises `ValueError` naming the expected shape.

The I/O-side interfaces (`Source`, `Sink`) mention io types and live in
`monitor.io.sources` and `monitor.io.sinks`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from monitor.core.types import Float32Array, Floats

__all__ = ["LatentScorer", "Scorer"]


@runtime_checkable
class Scorer(Protocol):
    """Raw reconstruction errors of standardized windows (see the module docstring)."""

    def errors(self, x_std: Float32Array) -> tuple[Floats, Floats, Floats]:
        """(raw (B,), per_channel (B, C), recon_last_std (B, C)) of (B, W, C_in) windows."""
        ...


@runtime_checkable
class LatentScorer(Scorer, Protocol):
    """A scorer that can also return each window's code from the same forward pass."""

    def errors_and_codes(self, x_std: Float32Array) -> tuple[Floats, Floats, Floats, Float32Array]:
        """`errors` plus the codes ``(B, code_size)`` of the same pass (decision 0020)."""
        ...
