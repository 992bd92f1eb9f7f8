"""Per-stream adapters of a group bundle: each stream's own scaler and offline threshold.

Fifty pumps of one type share one model, but each runs at its own operating point: one
pump's normal flow is another's fault, and a quiet pump's fault is lost in a loud one's
noise. An adapter gives a stream its own standardization (mean and std per channel, so
every stream reaches the shared model as deviations from its own normal) and its own
threshold (fitted on its own held-out normal windows' errors).

The rule (decision 0010): training gives a stream an adapter when it has at least
``model.adapter_min_windows`` windows of its own to fit the threshold on (its held-out
windows; all of its windows with ``calibration.source: all``). Every other stream, and any
stream never seen in training, uses the group's scaler and threshold, exactly as a
bundle without adapters does.

Stored as ``adapters.json`` inside the bundle (JSON: data, never code), named with its
sha256 and counts in the manifest's ``adapters`` entry; `monitor.core.model.bundle`
checks the hash before `StreamAdapters.from_json` parses and validates it. Pure: no
torch, no I/O.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from monitor.core.types import FloatArray

ADAPTERS_FILE = "adapters.json"
ADAPTERS_FORMAT = 1
MAX_ADAPTERS_BYTES = 64 * 1024 * 1024


class AdapterError(ValueError):
    """An adapters file is not valid for its bundle; the message says what and where."""


def has_enough(n_windows: int, min_windows: int) -> bool:
    """The adapter rule: a stream gets its own adapter with >= `min_windows` fit windows."""
    return n_windows >= min_windows


class StreamAdapters:
    """The adapters of one bundle: row i of `mean`, `std`, `threshold` is `streams[i]`'s.

    `fallback` names the streams training saw that did not have enough windows (their
    window counts): they use the group's, like streams never seen.
    """

    __slots__ = ("fallback", "index", "inv_std", "mean", "min_windows", "n_windows", "std", "streams", "threshold")

    def __init__(
        self,
        streams: Sequence[str],
        mean: FloatArray,
        std: FloatArray,
        threshold: FloatArray,
        n_windows: Sequence[int],
        min_windows: int,
        fallback: Mapping[str, int] | None = None,
    ):
        self.streams = tuple(streams)
        self.mean = np.asarray(mean, dtype=np.float64).reshape(len(self.streams), -1)
        self.std = np.asarray(std, dtype=np.float64).reshape(len(self.streams), -1)
        self.inv_std = 1.0 / self.std
        self.threshold = np.asarray(threshold, dtype=np.float64).reshape(len(self.streams))
        self.n_windows: NDArray[np.int64] = np.asarray(n_windows, dtype=np.int64).reshape(len(self.streams))
        self.min_windows = int(min_windows)
        self.fallback = dict(fallback or {})
        self.index = {s: i for i, s in enumerate(self.streams)}
        if len(self.index) != len(self.streams):
            raise AdapterError("a stream is listed twice among the adapters")

    def __len__(self) -> int:
        return len(self.streams)

    def summary(self) -> dict[str, int]:
        """How many streams got their own adapter, and how many fell back to the group's."""
        return {"own": len(self.streams), "fallback": len(self.fallback), "min_windows": self.min_windows}

    # ------------------------------------------------------------------ storage

    def to_json(self, channels: Sequence[str]) -> bytes:
        """The adapters file's bytes (streams sorted, so equal adapters give equal bytes)."""
        body = {
            "format_version": ADAPTERS_FORMAT,
            "channels": list(channels),
            "min_windows": self.min_windows,
            "streams": {
                s: {
                    "mean": self.mean[i].tolist(),
                    "std": self.std[i].tolist(),
                    "threshold": float(self.threshold[i]),
                    "n_windows": int(self.n_windows[i]),
                }
                for i, s in sorted(enumerate(self.streams), key=lambda p: p[1])
            },
            "fallback": {s: int(n) for s, n in sorted(self.fallback.items())},
        }
        return json.dumps(body, indent=1, allow_nan=False).encode()

    @classmethod
    def from_json(cls, data: bytes, channels: Sequence[str]) -> StreamAdapters:
        """Parse and validate an adapters file for a model with `channels`."""
        try:
            body = json.loads(data)
        except ValueError as exc:
            raise AdapterError(f"not valid JSON ({exc})") from None
        if not isinstance(body, dict):
            raise AdapterError("expected a JSON object")
        if body.get("format_version") != ADAPTERS_FORMAT:
            raise AdapterError(
                f"unsupported format_version {body.get('format_version')!r}; this monitor reads {ADAPTERS_FORMAT}"
            )
        if body.get("channels") != list(channels):
            raise AdapterError(f"channels {body.get('channels')!r} differ from the model's {list(channels)}")
        min_windows = body.get("min_windows")
        if isinstance(min_windows, bool) or not isinstance(min_windows, int) or min_windows < 1:
            raise AdapterError(f"min_windows must be an integer >= 1, got {min_windows!r}")
        streams = body.get("streams")
        fallback = body.get("fallback", {})
        if not isinstance(streams, dict) or not isinstance(fallback, dict):
            raise AdapterError("streams and fallback must be objects keyed by stream")
        c = len(channels)
        names, means, stds, thresholds, counts = [], [], [], [], []
        for name, a in streams.items():
            where = f"streams[{name!r}]"
            if not isinstance(a, dict):
                raise AdapterError(f"{where}: expected an object")
            means.append(_numbers(a.get("mean"), c, f"{where}.mean"))
            std = _numbers(a.get("std"), c, f"{where}.std")
            if any(v <= 0 for v in std):
                raise AdapterError(f"{where}.std: must be > 0")
            stds.append(std)
            thr = a.get("threshold")
            if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not (math.isfinite(thr) and thr > 0):
                raise AdapterError(f"{where}.threshold: must be a finite number > 0, got {thr!r}")
            thresholds.append(float(thr))
            n = a.get("n_windows")
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise AdapterError(f"{where}.n_windows: must be an integer >= 0, got {n!r}")
            counts.append(n)
            names.append(str(name))
        for name, n in fallback.items():
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise AdapterError(f"fallback[{name!r}]: must be a window count >= 0, got {n!r}")
        overlap = sorted(set(names) & set(fallback))
        if overlap:
            raise AdapterError(f"stream(s) {overlap[:3]} both have an adapter and fall back")
        shape = (len(names), c)
        return cls(
            names,
            np.asarray(means, dtype=np.float64).reshape(shape),
            np.asarray(stds, dtype=np.float64).reshape(shape),
            np.asarray(thresholds, dtype=np.float64),
            counts,
            min_windows,
            {str(k): int(v) for k, v in fallback.items()},
        )

    def manifest_entry(self, data: bytes) -> dict[str, Any]:
        """What the manifest says of the adapters file (`data` its bytes): the bundle's hash check covers it."""
        return {
            "file": ADAPTERS_FILE,
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "streams": len(self.streams),
            "fallback": len(self.fallback),
        }


def _numbers(values: Any, n: int, where: str) -> list[float]:
    if not isinstance(values, list) or len(values) != n:
        got = len(values) if isinstance(values, list) else values
        raise AdapterError(f"{where}: must list one number per channel ({n}), got {got!r}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise AdapterError(f"{where}: must hold finite numbers")
    return [float(v) for v in values]
