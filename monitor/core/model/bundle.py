"""Model bundles: a directory holding a manifest and weights, written atomically.

Layout of a models directory::

    models/
      20260101T120000Z-1a2b3c4d/   one bundle per version
        manifest.json               a `Manifest` (monitor/core/model/manifest.py): format_version,
                                    version, channels, scaler, architecture, threshold, weights, ...
        weights.pt                  torch.save of a plain {name: tensor} state dict
        adapters.json               optional per-stream adapters (scaler, threshold); the
                                    manifest's "adapters" entry holds its sha256 and counts
        report.json, *.png          optional extra files
      current -> 20260101T120000Z-1a2b3c4d   (symlink; a pointer file holding the name is read too)
      .tmp-*                        a save in progress or one that crashed: never loaded

Weights are data, never code: the sha256 is checked on the bytes in memory *before* they
are deserialized, and deserialization is ``torch.load(weights_only=True)`` from those same
bytes (no second read of the file between check and use).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from monitor.core.model.adapters import ADAPTERS_FILE, MAX_ADAPTERS_BYTES, AdapterError, StreamAdapters
from monitor.core.model.manifest import FORMAT_VERSION, Manifest, ManifestError
from monitor.core.model.nets import build_from_spec
from monitor.core.model.registry import (
    _VERSION_RE,
    CURRENT,
    MANIFEST,
    TMP_PREFIX,
    BundleError,
    BundleInfo,
    BundleNotFound,
    _check_version_name,
    _fsync_dir,
    current_bundle_path,
    list_bundles,
    read_manifest,
    remove_stale_temp_dirs,
    set_current,
)
from monitor.core.sensor_health import SensorLimits, SensorLimitsError
from monitor.core.types import FloatArray

WEIGHTS = "weights.pt"
__all__ = [
    "CURRENT",
    "MANIFEST",
    "Bundle",
    "BundleError",
    "BundleInfo",
    "BundleNotFound",
    "current_bundle_path",
    "list_bundles",
    "load_bundle",
    "read_manifest",
    "remove_stale_temp_dirs",
    "save_bundle",
    "set_current",
]


@dataclass(frozen=True)
class Bundle:
    path: Path  # the bundle directory (resolved, so a moved `current` is a different path)
    manifest: Manifest
    module: nn.Module  # cpu, eval mode
    version: str
    adapters: StreamAdapters | None = None  # per-stream scaler and threshold (adapters.json), if any
    sensor_limits: SensorLimits | None = None  # learned sensor limits; None in bundles without them

    @property
    def channels(self) -> list[str]:
        return list(self.manifest.channels)

    @property
    def window_size(self) -> int:
        return self.manifest.window_size

    @property
    def threshold(self) -> float:
        return self.manifest.threshold

    @property
    def scaler_mean(self) -> FloatArray:
        return np.asarray(self.manifest.scaler_mean, dtype=np.float64)

    @property
    def scaler_std(self) -> FloatArray:
        return np.asarray(self.manifest.scaler_std, dtype=np.float64)


# --------------------------------------------------------------------------- saving


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _finite_json(obj: Any) -> Any:
    """NaN/inf are not JSON; they become null (e.g. a validation figure that could not be computed)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_json(v) for v in obj]
    return obj


def _manifest_bytes(manifest: dict[str, Any]) -> bytes:
    plain = json.loads(json.dumps(manifest, default=_json_default))  # numpy -> python first
    return json.dumps(_finite_json(plain), indent=2, sort_keys=True, allow_nan=False).encode() + b"\n"


def _plain_state_dict(state_dict: Mapping[Any, Any]) -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in state_dict.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise BundleError(f"state_dict entry {name!r} is not a named tensor; only tensors can be saved")
        out[name] = tensor.detach().to("cpu").contiguous().clone()
    return out


def save_bundle(
    models_dir: Path,
    manifest: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    extra_files: dict[str, bytes] | None = None,
    make_current: bool = True,
) -> Path:
    """Write a bundle atomically (temp dir, fsync, rename) and optionally point `current` at it.

    `manifest` holds what training knows (channels, scaler, architecture, threshold, ...,
    as `Manifest.to_json` names them); the version, created time and the weights' facts
    are filled in here, and the result must pass `Manifest.from_json` before anything is written.
    """
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(models_dir)
    tensors = _plain_state_dict(state_dict)
    buf = io.BytesIO()
    torch.save(tensors, buf)
    weights = buf.getvalue()
    sha = hashlib.sha256(weights).hexdigest()

    now = datetime.now(timezone.utc)
    version = manifest.get("version")
    if version:
        _check_version_name(version)
        if (models_dir / version).exists():
            raise BundleError(f"{models_dir / version} already exists; choose another version")
    else:
        base = f"{now:%Y%m%dT%H%M%SZ}-{sha[:8]}"
        version, n = base, 1
        while (models_dir / version).exists():
            n += 1
            version = f"{base}-{n}"

    extra_files = dict(extra_files or {})
    for name in extra_files:
        if name in (MANIFEST, WEIGHTS) or not _VERSION_RE.match(name) or name.startswith("."):
            raise BundleError(f"extra file name {name!r} is reserved or not a plain file name")

    full = dict(manifest)
    full.update(
        {
            "format_version": FORMAT_VERSION,
            "version": version,
            "created_at": now.isoformat().replace("+00:00", "Z"),
            "weights": {
                "file": WEIGHTS,
                "sha256": sha,
                "bytes": len(weights),
                "tensors": {
                    k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")} for k, v in tensors.items()
                },
            },
        }
    )
    plain = json.loads(json.dumps(full, default=_json_default))  # numpy -> python first
    try:
        typed = Manifest.from_json(_finite_json(plain), "manifest to save")
    except ManifestError as exc:
        raise BundleError(str(exc)) from None
    manifest_data = _manifest_bytes(typed.to_json())

    tmp = models_dir / f"{TMP_PREFIX}{version}-{secrets.token_hex(4)}"
    final = models_dir / version
    tmp.mkdir()
    try:
        _write_file(tmp / WEIGHTS, weights)
        for name, data in extra_files.items():
            _write_file(tmp / name, bytes(data))
        _write_file(tmp / MANIFEST, manifest_data)  # last: a manifest implies complete weights
        _fsync_dir(tmp)
        os.rename(tmp, final)
        _fsync_dir(models_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if make_current:
        set_current(models_dir, version, action="train")
    return final


# --------------------------------------------------------------------------- loading


def _resolve_bundle_dir(path: Path) -> Path:
    path = Path(path)
    if (path / MANIFEST).exists():
        return path.resolve()
    pointer = path / CURRENT
    if pointer.is_symlink() or pointer.exists():
        target = current_bundle_path(path)
        if target is None:
            raise BundleNotFound(f"{pointer}: does not point at an existing bundle directory")
        return target
    if not path.exists():
        raise BundleNotFound(f"{path}: no such bundle or models directory (`monitor train` makes one)")
    raise BundleNotFound(f"{path}: neither a bundle (no {MANIFEST}) nor a models directory (no {CURRENT} pointer)")


def load_bundle(path: Path) -> Bundle:
    """Verify and load a bundle directory, or the bundle `current` selects in a models directory."""
    bundle_dir = _resolve_bundle_dir(path)
    manifest_path = bundle_dir / MANIFEST
    manifest = read_manifest(bundle_dir)

    weights_path = bundle_dir / manifest.weights.file
    try:
        data = weights_path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{weights_path}: missing") from None
    except OSError as exc:
        raise BundleError(f"{weights_path}: cannot read: {exc.strerror}") from None
    expected_size = manifest.weights.bytes
    if expected_size is not None and len(data) != expected_size:
        raise BundleError(
            f"{weights_path}: {len(data)} bytes but the manifest says {expected_size} "
            f"({'truncated' if len(data) < expected_size else 'replaced or appended to'}); re-copy or retrain"
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != manifest.weights.sha256:
        raise BundleError(
            f"{weights_path}: sha256 mismatch (file {digest[:16]}..., manifest "
            f"{manifest.weights.sha256[:16]}...); the weights were changed or corrupted"
        )
    try:
        tensors = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        # torch's message goes on to suggest weights_only=False; keep only the reason.
        reason = re.search(r"WeightsUnpickler error: ([^\n]*)", str(exc))
        detail = reason.group(1) if reason else f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise BundleError(
            f"{weights_path}: refused to load, not a plain tensor state dict ({detail}); "
            "do not load it, retrain or restore the bundle from a trusted copy"
        ) from None
    if not isinstance(tensors, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()
    ):
        raise BundleError(f"{weights_path}: expected a mapping of names to tensors")

    try:
        module = build_from_spec(manifest.architecture)
    except ValueError as exc:
        raise BundleError(f"{manifest_path}: {exc}") from None
    _check_shapes(module, tensors, weights_path)
    module.load_state_dict(tensors, strict=True)
    module.float().eval()
    for p in module.parameters():
        p.requires_grad_(False)
    adapters = _load_adapters(bundle_dir, manifest)
    return Bundle(
        path=bundle_dir,
        manifest=manifest,
        module=module,
        version=manifest.version,
        adapters=adapters,
        sensor_limits=_load_sensor_limits(bundle_dir, manifest),
    )


def _load_adapters(bundle_dir: Path, manifest: Manifest) -> StreamAdapters | None:
    """The bundle's per-stream adapters, checked against the manifest's sha256 and counts
    before they are parsed; None for a bundle without an "adapters" entry (bundles before
    adapters, or trained with model.adapters: off)."""
    entry = manifest.adapters
    if entry is None:
        return None
    where = bundle_dir / MANIFEST
    if not isinstance(entry, dict) or entry.get("file") != ADAPTERS_FILE:
        raise BundleError(f"{where}: adapters must be an object naming the file {ADAPTERS_FILE!r}, got {entry!r}")
    sha = entry.get("sha256")
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise BundleError(f"{where}: adapters.sha256 must be 64 lowercase hex digits")
    path = bundle_dir / ADAPTERS_FILE
    try:
        if path.stat().st_size > MAX_ADAPTERS_BYTES:
            raise BundleError(f"{path}: larger than {MAX_ADAPTERS_BYTES} bytes; not an adapters file")
        data = path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{path}: missing, but the manifest lists adapters; re-copy or retrain") from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot read: {exc.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha:
        raise BundleError(
            f"{path}: sha256 mismatch (file {digest[:16]}..., manifest {sha[:16]}...); "
            "the adapters were changed or corrupted"
        )
    try:
        adapters = StreamAdapters.from_json(data, manifest.channels)
    except AdapterError as exc:
        raise BundleError(f"{path}: {exc}") from None
    if entry.get("streams") != len(adapters) or entry.get("fallback") != len(adapters.fallback):
        raise BundleError(
            f"{path}: holds {len(adapters)} adapter(s) and {len(adapters.fallback)} fallback stream(s), "
            f"the manifest says {entry.get('streams')!r} and {entry.get('fallback')!r}"
        )
    return adapters


def _load_sensor_limits(bundle_dir: Path, manifest: Manifest) -> SensorLimits | None:
    """The bundle's sensor_limits.json, checked against the manifest's sha256; None if it has none."""
    ref = manifest.sensor_limits
    if ref is None:
        return None
    path = bundle_dir / str(ref["file"])
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{path}: cannot read: {exc.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != ref["sha256"]:
        raise BundleError(f"{path}: sha256 mismatch (file {digest[:16]}...); the file was changed or corrupted")
    try:
        limits = SensorLimits.from_bytes(data, str(path))
    except SensorLimitsError as exc:
        raise BundleError(str(exc)) from None
    if limits.channels != list(manifest.channels):
        raise BundleError(f"{path}: channels {limits.channels} differ from the manifest's {list(manifest.channels)}")
    return limits


def _check_shapes(module: nn.Module, tensors: dict[str, torch.Tensor], weights_path: Path) -> None:
    expected = module.state_dict()
    missing = sorted(expected.keys() - tensors.keys())
    unexpected = sorted(tensors.keys() - expected.keys())
    if missing or unexpected:
        raise BundleError(
            f"{weights_path}: tensors do not match the architecture: missing {missing or 'none'}, "
            f"unexpected {unexpected or 'none'}"
        )
    for name, ref in expected.items():
        got = tensors[name]
        if tuple(got.shape) != tuple(ref.shape):
            raise BundleError(
                f"{weights_path}: shape mismatch for {name}: file has {tuple(got.shape)}, "
                f"architecture needs {tuple(ref.shape)}"
            )
        if not got.is_floating_point():
            raise BundleError(f"{weights_path}: tensor {name} has dtype {got.dtype}, expected floating point")
