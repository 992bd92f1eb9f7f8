"""The model manifest: one typed, versioned record of what a bundle holds.

Every reader of a bundle's ``manifest.json`` (loading, the pipeline, ``monitor models``,
metrics, the CLI's summaries) goes through `Manifest`; nothing else knows the JSON layout.

Format versions (``format_version``):

* **1** (until the model registry): flat; ``weights_file``, ``weights_sha256``,
  ``weights_bytes`` and ``tensors`` at the top level; ``alignment``, ``context`` and
  ``filters`` optional (bundles from before those features lack them); no data span.
* **2**: the weights' facts in one ``weights`` object (``file``, ``sha256``, ``bytes``,
  ``tensors``); ``alignment``, ``context``, ``filters`` and ``created_at`` always written;
  ``data_span`` (``start``/``end`` in Unix seconds of the training data, or null).
  Optional, absent in bundles from before them: ``adapters``, ``sensor_limits``, ``latent``
  (code size, 2-D map, operating states: `monitor.core.model.latent`).

`migrate` turns a version-1 object into version 2 (in memory; files on disk are never
rewritten, so their sha256 and an older monitor can still read them). A version newer than
`FORMAT_VERSION` is refused: it may hold facts this code would silently ignore.
Keys this code does not know (added by a newer minor change or by hand) are kept in
`Manifest.extra` and written back unchanged.

Pure: no torch, no I/O, so ``monitor models list`` answers without importing torch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from monitor.core.config import ALIGNMENTS, CONTEXT_FEATURES
from monitor.core.model.latent import LatentModel

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_V1_WEIGHT_KEYS = {"weights_file": "file", "weights_sha256": "sha256", "weights_bytes": "bytes", "tensors": "tensors"}
REQUIRED_KEYS = (
    "format_version",
    "version",
    "channels",
    "window_size",
    "stride",
    "period_seconds",
    "scaler",
    "architecture",
    "threshold",
    "weights",
)


class ManifestError(ValueError):
    """A manifest is malformed or of an unreadable format version; the message says which key and why."""


@dataclass(frozen=True)
class Weights:
    """The weights file a manifest vouches for."""

    file: str
    sha256: str
    bytes: int | None = None  # size, so a truncated file is named as such; absent in hand-made bundles
    tensors: dict[str, Any] = field(default_factory=dict)  # name -> {"shape": [...], "dtype": "float32"}


@dataclass(frozen=True)
class DataSpan:
    """First and last timestamp (Unix seconds) of the training data."""

    start: float
    end: float


@dataclass(frozen=True)
class Manifest:
    """A bundle's manifest (format `FORMAT_VERSION`); build with `from_json`, write with `to_json`."""

    version: str
    channels: list[str]
    period_seconds: float
    window_size: int
    stride: int
    scaler_mean: list[float]
    scaler_std: list[float]
    architecture: dict[str, Any]
    threshold_info: dict[str, Any]  # {"threshold": float, "method": str, ...} as calibration fitted it
    weights: Weights
    created_at: str | None = None  # ISO 8601, UTC
    streams: list[str] = field(default_factory=list)
    alignment: str = "bucket"
    context: list[str] = field(default_factory=list)
    filters: list[dict[str, Any]] = field(default_factory=list)
    calibration: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str | None = None
    data_sources: list[str] = field(default_factory=list)
    data_span: DataSpan | None = None
    frames: dict[str, Any] = field(default_factory=dict)
    # per-stream adapters file: {file, sha256, bytes, streams, fallback}; None without adapters
    adapters: dict[str, Any] | None = None
    sensor_limits: dict[str, Any] | None = None  # {"file", "sha256"} of the learned sensor limits; None: none
    # codes' size, 2-D map and operating states (`monitor.core.model.latent`); None: older bundles
    latent: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys this code does not know, kept verbatim
    format_version: int = FORMAT_VERSION
    migrated_from: int | None = None  # the on-disk format_version when it was older (not written)

    @property
    def threshold(self) -> float:
        return float(self.threshold_info["threshold"])

    @property
    def latent_model(self) -> LatentModel | None:
        """The bundle's codes, map and states; None for bundles from before them."""
        return None if self.latent is None else LatentModel.from_json(self.latent)

    @property
    def threshold_method(self) -> str:
        return str(self.threshold_info.get("method", "?"))

    @property
    def created_unix(self) -> float | None:
        """`created_at` as Unix time, None when absent or unreadable."""
        if not self.created_at:
            return None
        try:
            return datetime.fromisoformat(self.created_at.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str = "manifest") -> Manifest:
        """Validate (and migrate, if older) a decoded ``manifest.json``; `where` prefixes errors."""
        if not isinstance(obj, Mapping):
            raise ManifestError(f"{where}: expected a JSON object")
        original = obj.get("format_version")
        data = migrate(obj, where)
        _validate(data, where)
        known = {
            "format_version",
            "version",
            "channels",
            "period_seconds",
            "window_size",
            "stride",
            "scaler",
            "architecture",
            "threshold",
            "weights",
            "created_at",
            "streams",
            "alignment",
            "context",
            "filters",
            "calibration",
            "training",
            "validation",
            "data_fingerprint",
            "data_sources",
            "data_span",
            "frames",
            "adapters",
            "sensor_limits",
            "latent",
        }
        w = data["weights"]
        span = data.get("data_span")
        return cls(
            version=str(data["version"]),
            channels=list(data["channels"]),
            period_seconds=float(data["period_seconds"]),
            window_size=int(data["window_size"]),
            stride=int(data["stride"]),
            scaler_mean=[float(v) for v in data["scaler"]["mean"]],
            scaler_std=[float(v) for v in data["scaler"]["std"]],
            architecture=dict(data["architecture"]),
            threshold_info=dict(data["threshold"]),
            weights=Weights(str(w["file"]), str(w["sha256"]), w.get("bytes"), dict(w.get("tensors") or {})),
            created_at=data.get("created_at"),
            streams=[str(s) for s in data.get("streams") or []],
            alignment=str(data.get("alignment", "bucket")),
            context=list(data.get("context", [])),
            filters=[dict(f) for f in data.get("filters") or []],
            calibration=dict(data.get("calibration") or {}),
            training=dict(data.get("training") or {}),
            validation=dict(data.get("validation") or {}),
            data_fingerprint=data.get("data_fingerprint"),
            data_sources=[str(s) for s in data.get("data_sources") or []],
            data_span=DataSpan(float(span["start"]), float(span["end"])) if span else None,
            frames=dict(data.get("frames") or {}),
            adapters=data.get("adapters"),
            sensor_limits=dict(data["sensor_limits"]) if data.get("sensor_limits") else None,
            latent=dict(data["latent"]) if data.get("latent") else None,
            extra={k: v for k, v in data.items() if k not in known},
            migrated_from=original if original != FORMAT_VERSION else None,
        )

    def to_json(self) -> dict[str, Any]:
        """The format-`FORMAT_VERSION` JSON object (unknown keys from `extra` included)."""
        out: dict[str, Any] = dict(self.extra)
        out.update(
            {
                "format_version": FORMAT_VERSION,
                "version": self.version,
                "created_at": self.created_at,
                "streams": list(self.streams),
                "channels": list(self.channels),
                "period_seconds": self.period_seconds,
                "alignment": self.alignment,
                "context": list(self.context),
                "window_size": self.window_size,
                "stride": self.stride,
                "filters": [dict(f) for f in self.filters],
                "scaler": {"mean": list(self.scaler_mean), "std": list(self.scaler_std)},
                "architecture": dict(self.architecture),
                "threshold": dict(self.threshold_info),
                "calibration": dict(self.calibration),
                "training": dict(self.training),
                "validation": dict(self.validation),
                "data_fingerprint": self.data_fingerprint,
                "data_sources": list(self.data_sources),
                "data_span": None if self.data_span is None else asdict(self.data_span),
                "frames": dict(self.frames),
                **({} if self.adapters is None else {"adapters": self.adapters}),
                "sensor_limits": None if self.sensor_limits is None else dict(self.sensor_limits),
                **({} if self.latent is None else {"latent": self.latent}),
                "weights": {
                    "file": self.weights.file,
                    "sha256": self.weights.sha256,
                    "bytes": self.weights.bytes,
                    "tensors": dict(self.weights.tensors),
                },
            }
        )
        return out


def migrate(obj: Mapping[str, Any], where: str = "manifest") -> dict[str, Any]:
    """A copy of `obj` in format `FORMAT_VERSION`; refuses versions this code cannot read."""
    version = obj.get("format_version")
    if "format_version" not in obj:
        raise ManifestError(f"{where}: missing key(s) format_version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        newer = isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION
        raise ManifestError(
            f"{where}: unsupported format_version {version!r}; this monitor reads "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
            + (" (the bundle was written by a newer monitor: upgrade monitor)" if newer else " (retrain)")
        )
    data = dict(obj)
    if version == 1:
        weights = {new: data.pop(old) for old, new in _V1_WEIGHT_KEYS.items() if old in data}
        if "sha256" in weights:  # else the required-key check names `weights`
            data["weights"] = weights
        data.setdefault("alignment", "bucket")  # v1 bundles before the alignment choices
        data.setdefault("context", [])  # ... before model.context
        data.setdefault("filters", [])
        data.setdefault("data_span", None)  # v1 never recorded it
        data["format_version"] = FORMAT_VERSION
    return data


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _validate(m: dict[str, Any], path: str) -> None:
    missing = [k for k in REQUIRED_KEYS if k not in m]
    if missing:
        raise ManifestError(f"{path}: missing key(s) {', '.join(missing)}")
    if not isinstance(m["version"], str) or not m["version"]:
        raise ManifestError(f"{path}: version must be a non-empty string")
    channels = m["channels"]
    if not isinstance(channels, list) or not channels or not all(isinstance(c, str) for c in channels):
        raise ManifestError(f"{path}: channels must be a non-empty list of names")
    scaler = m["scaler"]
    if not isinstance(scaler, dict):
        raise ManifestError(f"{path}: scaler must be an object with mean and std")
    for key in ("mean", "std"):
        values = scaler.get(key)
        if not isinstance(values, list) or len(values) != len(channels):
            raise ManifestError(
                f"{path}: scaler.{key} must list one number per channel ({len(channels)}), "
                f"got {len(values) if isinstance(values, list) else values!r}"
            )
        if not all(_number(v) for v in values):
            raise ManifestError(f"{path}: scaler.{key} must hold finite numbers")
    if any(v <= 0 for v in scaler["std"]):
        raise ManifestError(f"{path}: scaler.std must be > 0")
    for key, minimum in (("window_size", 2), ("stride", 1)):
        value = m[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ManifestError(f"{path}: {key} must be an integer >= {minimum}, got {value!r}")
    if not _number(m["period_seconds"]) or not m["period_seconds"] > 0:
        raise ManifestError(f"{path}: period_seconds must be a number > 0, got {m['period_seconds']!r}")
    threshold = m["threshold"]
    value = threshold.get("threshold") if isinstance(threshold, dict) else None
    if not _number(value) or not value > 0:  # type: ignore[operator]  # a number once _number holds
        raise ManifestError(f"{path}: threshold.threshold must be a finite number > 0, got {value!r}")
    _validate_architecture(m, path)
    _validate_weights(m["weights"], path)
    span = m.get("data_span")
    if span is not None and not (isinstance(span, dict) and _number(span.get("start")) and _number(span.get("end"))):
        raise ManifestError(f"{path}: data_span must be null or an object with numeric start and end")
    for key in ("streams", "data_sources", "filters"):
        if not isinstance(m.get(key) or [], list):
            raise ManifestError(f"{path}: {key} must be a list")
    limits = m.get("sensor_limits")
    if limits is not None:
        file = limits.get("file") if isinstance(limits, dict) else None
        if not isinstance(file, str) or not file or "/" in file or "\\" in file or file.startswith("."):
            raise ManifestError(f"{path}: sensor_limits must be null or name a plain file inside the bundle")
        if not isinstance(limits.get("sha256"), str) or not _SHA256_RE.fullmatch(limits["sha256"]):
            raise ManifestError(f"{path}: sensor_limits.sha256 must be 64 lowercase hex digits")
    for key in ("calibration", "training", "validation", "frames"):
        if not isinstance(m.get(key) or {}, dict):
            raise ManifestError(f"{path}: {key} must be an object")
    latent = m.get("latent")
    if latent is not None:
        try:
            parsed = LatentModel.from_json(latent, f"{path}: latent")
        except ValueError as exc:
            raise ManifestError(str(exc)) from None
        if parsed.code_size != m["architecture"].get("code_size"):
            raise ManifestError(
                f"{path}: latent.code_size {parsed.code_size} != architecture.code_size "
                f"{m['architecture'].get('code_size')!r}"
            )


def _validate_architecture(m: dict[str, Any], path: str) -> None:
    arch, channels = m["architecture"], m["channels"]
    if not isinstance(arch, dict):
        raise ManifestError(f"{path}: architecture must be an object")
    context = m.get("context", [])
    if not isinstance(context, list) or not all(c in CONTEXT_FEATURES for c in context):
        raise ManifestError(f"{path}: context must list features of {', '.join(CONTEXT_FEATURES)}, got {context!r}")
    if arch.get("n_context", 0) != 2 * len(context):
        raise ManifestError(
            f"{path}: architecture.n_context is {arch.get('n_context', 0)!r} but context lists "
            f"{len(context)} feature(s) (two channels each)"
        )
    if arch.get("n_channels") != len(channels) + 2 * len(context):
        raise ManifestError(
            f"{path}: architecture.n_channels is {arch.get('n_channels')!r} but channels lists {len(channels)}"
            + (f" and context adds {2 * len(context)}" if context else "")
        )
    if m.get("alignment", "bucket") not in ALIGNMENTS:
        raise ManifestError(f"{path}: alignment must be bucket, nearest or interpolate, got {m.get('alignment')!r}")
    if arch.get("window_size") != m["window_size"]:
        raise ManifestError(
            f"{path}: architecture.window_size {arch.get('window_size')!r} != window_size {m['window_size']}"
        )


def _validate_weights(w: Any, path: str) -> None:
    if not isinstance(w, dict):
        raise ManifestError(f"{path}: weights must be an object with file and sha256")
    file = w.get("file")
    if not isinstance(file, str) or not file or "/" in file or "\\" in file or file.startswith("."):
        raise ManifestError(f"{path}: weights.file must be a plain file name inside the bundle, got {file!r}")
    if not isinstance(w.get("sha256"), str) or not _SHA256_RE.fullmatch(w["sha256"]):
        raise ManifestError(f"{path}: weights.sha256 must be 64 lowercase hex digits")
    size = w.get("bytes")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ManifestError(f"{path}: weights.bytes must be a byte count, got {size!r}")
    if not isinstance(w.get("tensors") or {}, dict):
        raise ManifestError(f"{path}: weights.tensors must be an object")
