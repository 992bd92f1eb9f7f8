"""The autoencoder's bottleneck as a product: codes, a 2-D map of them, operating states.

Pure numpy (no torch, no I/O), so the pipeline, ``monitor models show`` and the reports
read a bundle's latent facts without importing torch. Decision 0020 states the rules:

* **A window's code** is the encoder's output of that same forward pass (no second pass):
  the dense code as it is, ``(code_size,)``; the conv1d code ``(code_size, W)`` averaged
  over time, so every architecture gives ``code_size`` numbers per window (`pool_codes`).
* **The map** is the code itself when ``code_size`` is 2, else the first two principal
  axes of the training codes (numpy SVD); ``explained`` is their share of the variance.
* **Operating states** are a seeded k-means (k-means++ initialisation, Lloyd iterations)
  on the training codes standardized per dimension. ``model.states: auto`` takes the k of
  2..6 with the largest mean silhouette (on a seeded subsample of at most 1 000 codes).
  States are numbered, and named, by the mean standardized level of the first channel
  over their training windows, lowest first, so the numbering does not depend on the
  order k-means found them in. ``radius`` is the 99th percentile of the training codes'
  distance to their nearest centroid: ``novelty = distance / radius`` (1.0: as far out as
  the farthest 1 % of training windows). Novelty is exported and measured; no alarm
  decision uses it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from monitor.core.types import FloatArray

AUTO_K = range(2, 7)  # the k that `states: auto` chooses among
SILHOUETTE_SAMPLE = 1000  # codes the silhouette of `auto` is computed on (O(n^2) distances)
RADIUS_QUANTILE = 0.99
_LEVEL_NAMES = {1: ["normal"], 2: ["low", "high"], 3: ["low", "mid", "high"]}


def pool_codes(code: NDArray[Any]) -> NDArray[np.float32]:
    """``(B, code_size)`` of an encoder's output: dense codes as they are, conv1d codes
    ``(B, code_size, W)`` averaged over time."""
    c = np.asarray(code, dtype=np.float32)
    if c.ndim == 3:
        return np.ascontiguousarray(c.mean(axis=2, dtype=np.float32))
    if c.ndim != 2:
        raise ValueError(f"codes must be shaped (B, k) or (B, k, W), got {c.shape}")
    return c


@dataclass(frozen=True)
class Projection:
    """The 2-D map of codes: ``(codes - mean) @ components.T``."""

    mean: FloatArray  # (k,)
    components: FloatArray  # (2, k)
    explained: float  # share of the codes' variance on the two axes (1.0 when k <= 2)
    method: str  # "code" (k <= 2: the code itself) or "pca"

    def __call__(self, codes: NDArray[Any]) -> FloatArray:
        return np.asarray((np.asarray(codes, dtype=np.float64) - self.mean) @ self.components.T)


def fit_projection(codes: NDArray[Any]) -> Projection:
    """The code itself for ``code_size <= 2`` (padded with a zero axis for 1), else a PCA."""
    x = np.asarray(codes, dtype=np.float64)
    k = x.shape[1]
    if k <= 2:
        comps = np.zeros((2, k))
        comps[0, 0] = 1.0
        if k == 2:
            comps[1, 1] = 1.0
        return Projection(np.zeros(k), comps, 1.0, "code")
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    total = float((s**2).sum())
    explained = float((s[:2] ** 2).sum() / total) if total > 0 else 1.0
    # sign fixed so the largest loading of each axis is positive: the same map every run
    signs = np.sign(vt[:2][np.arange(2), np.abs(vt[:2]).argmax(axis=1)])
    signs[signs == 0] = 1.0
    return Projection(mean, vt[:2] * signs[:, None], explained, "pca")


def kmeans(x: FloatArray, k: int, seed: int, iterations: int = 100) -> tuple[FloatArray, NDArray[np.intp]]:
    """(centroids (k, d), labels (n,)): k-means++ from ``default_rng(seed)``, then Lloyd
    iterations until no label changes. An empty cluster takes the point farthest from its
    centroid."""
    rng = np.random.default_rng(seed)
    n = len(x)
    k = min(k, n)
    centroids = np.empty((k, x.shape[1]))
    centroids[0] = x[rng.integers(n)]
    d2 = ((x - centroids[0]) ** 2).sum(axis=1)
    for j in range(1, k):
        total = d2.sum()
        i = int(rng.choice(n, p=d2 / total)) if total > 0 else int(rng.integers(n))
        centroids[j] = x[i]
        d2 = np.minimum(d2, ((x - centroids[j]) ** 2).sum(axis=1))
    labels = np.full(n, -1, dtype=np.intp)
    for _ in range(iterations):
        dist = _sq_dist(x, centroids)
        new = dist.argmin(axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            members = labels == j
            if members.any():
                centroids[j] = x[members].mean(axis=0)
            else:
                far = int(dist[np.arange(n), labels].argmax())
                centroids[j] = x[far]
                labels[far] = j
    return centroids, labels


def _sq_dist(x: FloatArray, c: FloatArray) -> FloatArray:
    """Squared Euclidean distances (n, k), non-negative."""
    d = (x * x).sum(axis=1)[:, None] - 2.0 * x @ c.T + (c * c).sum(axis=1)[None, :]
    return np.asarray(np.maximum(d, 0.0))


def silhouette(x: FloatArray, labels: NDArray[np.intp]) -> float:
    """Mean silhouette coefficient (-1..1; higher: tighter, better separated clusters)."""
    d = np.sqrt(_sq_dist(x, x))
    ks = np.unique(labels)
    if len(ks) < 2:
        return -1.0
    n = len(x)
    a = np.zeros(n)
    b = np.full(n, np.inf)
    for j in ks:
        members = labels == j
        size = int(members.sum())
        mean_to = d[:, members].sum(axis=1)
        own = members
        a[own] = mean_to[own] / max(size - 1, 1)
        other = ~members
        b[other] = np.minimum(b[other], mean_to[other] / size)
    s = (b - a) / np.maximum(np.maximum(a, b), 1e-12)
    return float(s.mean())


@dataclass(frozen=True)
class States:
    """Operating states: k-means centroids of standardized codes, named by first-channel level."""

    scale_mean: FloatArray  # (k_code,) the codes' standardization
    scale_std: FloatArray  # (k_code,)
    centroids: FloatArray  # (n_states, k_code), standardized code units, in state order
    names: list[str]
    radius: float  # RADIUS_QUANTILE of training distances to the nearest centroid
    rule: str  # how k was chosen: "config" or "silhouette"
    silhouette: float | None  # mean silhouette of the chosen k (None when not computed)

    @property
    def k(self) -> int:
        return len(self.centroids)

    @cached_property
    def _f32(self) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32], np.float32]:
        """(1 / std, mean / std, centroids, 1 / radius) in float32, for `assign`."""
        inv = (1.0 / self.scale_std).astype(np.float32)
        shift = (self.scale_mean / self.scale_std).astype(np.float32)
        return inv, shift, self.centroids.astype(np.float32)[None, :, :], np.float32(1.0 / self.radius)

    def assign(self, codes: NDArray[Any]) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
        """(state index (B,), novelty = distance to the nearest centroid / radius (B,)).

        On the scoring path (every batch of a bundle with states): float32, a handful of
        numpy calls whatever the batch (about 25 us for 256 windows, 6 states)."""
        inv, shift, cents, inv_radius = self._f32
        z = np.asarray(codes, dtype=np.float32) * inv - shift
        diff = z[:, None, :] - cents
        d = np.einsum("ijk,ijk->ij", diff, diff)
        return d.argmin(axis=1), np.sqrt(d.min(axis=1)) * inv_radius

    def describe(self, i: int) -> str:
        """``state 2 of 4 (high-flow)``, numbered from 1 for people."""
        return f"state {i + 1} of {self.k} ({self.names[i]})"


def fit_states(codes: NDArray[Any], level: NDArray[Any], states: int | str, seed: int, channel: str) -> States | None:
    """`States` of training `codes` (n, k); `level` (n,) is each window's mean of the first
    channel (what names the states); `states` an int, "auto" or "off" (None)."""
    if states == "off":
        return None
    x = np.asarray(codes, dtype=np.float64)
    n = len(x)
    if n < 2:
        return None
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std > 1e-9, std, 1.0)
    z = (x - mean) / std
    rng = np.random.default_rng(seed)
    sample = rng.choice(n, size=min(n, SILHOUETTE_SAMPLE), replace=False) if n > SILHOUETTE_SAMPLE else np.arange(n)
    sil: float | None = None
    if states == "auto":
        rule = "silhouette"
        best: tuple[float, int] | None = None
        for k in AUTO_K:
            if k >= n:
                break
            _, labels = kmeans(z, k, seed)
            s = silhouette(z[sample], labels[sample])
            if best is None or s > best[0]:
                best = (s, k)
        if best is None:
            return None
        sil, chosen = best
    else:
        rule, chosen = "config", min(int(states), n)
    centroids, labels = kmeans(z, chosen, seed)
    lv = np.asarray(level, dtype=np.float64)
    levels = np.array([lv[labels == j].mean() if (labels == j).any() else math.inf for j in range(len(centroids))])
    order = np.argsort(levels, kind="stable")
    centroids = centroids[order]
    dist = np.sqrt(_sq_dist(z, centroids).min(axis=1))
    radius = float(np.quantile(dist, RADIUS_QUANTILE))
    return States(mean, std, centroids, state_names(len(centroids), channel), max(radius, 1e-9), rule, sil)


def state_names(k: int, channel: str) -> list[str]:
    """Names by rank of the first channel's mean level: low/high, low/mid/high, else level-i."""
    words = _LEVEL_NAMES.get(k) or [f"level{i + 1}" for i in range(k)]
    return [f"{w}-{channel}" for w in words]


@dataclass(frozen=True)
class LatentModel:
    """What a bundle knows about its codes: their size, the map and the operating states."""

    code_size: int
    pooling: str  # "none" (dense) or "time_mean" (conv1d)
    projection: Projection
    states: States | None = None

    def to_json(self) -> dict[str, Any]:
        p, s = self.projection, self.states
        out: dict[str, Any] = {
            "code_size": self.code_size,
            "pooling": self.pooling,
            "map": {
                "method": p.method,
                "mean": p.mean.tolist(),
                "components": p.components.tolist(),
                "explained_variance": p.explained,
            },
            "states": None,
        }
        if s is not None:
            out["states"] = {
                "k": s.k,
                "rule": s.rule,
                "silhouette": s.silhouette,
                "names": list(s.names),
                "code_mean": s.scale_mean.tolist(),
                "code_std": s.scale_std.tolist(),
                "centroids": s.centroids.tolist(),
                "radius": s.radius,
                "radius_quantile": RADIUS_QUANTILE,
            }
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str = "latent") -> LatentModel:
        """Validate a manifest's ``latent`` object; ValueError naming the key otherwise."""
        if not isinstance(obj, Mapping):
            raise ValueError(f"{where}: expected an object")
        k = obj.get("code_size")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"{where}.code_size: expected an integer >= 1, got {k!r}")
        pooling = obj.get("pooling")
        if pooling not in ("none", "time_mean"):
            raise ValueError(f"{where}.pooling: expected none or time_mean, got {pooling!r}")
        m = obj.get("map")
        if not isinstance(m, Mapping):
            raise ValueError(f"{where}.map: expected an object")
        mean = _array(m.get("mean"), (k,), f"{where}.map.mean")
        comps = _array(m.get("components"), (2, k), f"{where}.map.components")
        explained: Any = m.get("explained_variance")
        if not _finite(explained) or not 0 <= explained <= 1.0 + 1e-9:
            raise ValueError(f"{where}.map.explained_variance: expected a number in [0, 1], got {explained!r}")
        projection = Projection(mean, comps, float(explained), str(m.get("method", "pca")))
        s = obj.get("states")
        states = None if s is None else _states_from_json(s, k, f"{where}.states")
        return cls(k, str(pooling), projection, states)


def _states_from_json(s: Any, k: int, where: str) -> States:
    if not isinstance(s, Mapping):
        raise ValueError(f"{where}: expected an object or null")
    n = s.get("k")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{where}.k: expected an integer >= 1, got {n!r}")
    names = s.get("names")
    if not isinstance(names, list) or len(names) != n or not all(isinstance(x, str) for x in names):
        raise ValueError(f"{where}.names: expected {n} names")
    std = _array(s.get("code_std"), (k,), f"{where}.code_std")
    if (std <= 0).any():
        raise ValueError(f"{where}.code_std: must be > 0")
    radius: Any = s.get("radius")
    if not _finite(radius) or radius <= 0:
        raise ValueError(f"{where}.radius: expected a number > 0, got {radius!r}")
    sil: Any = s.get("silhouette")
    return States(
        _array(s.get("code_mean"), (k,), f"{where}.code_mean"),
        std,
        _array(s.get("centroids"), (n, k), f"{where}.centroids"),
        list(names),
        float(radius),
        str(s.get("rule", "config")),
        float(sil) if _finite(sil) else None,
    )


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _array(v: Any, shape: tuple[int, ...], where: str) -> FloatArray:
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected numbers shaped {shape}") from None
    if a.shape != shape or not np.isfinite(a).all():
        raise ValueError(f"{where}: expected finite numbers shaped {shape}, got {a.shape}")
    return a
