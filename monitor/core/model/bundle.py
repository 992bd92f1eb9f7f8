"""Model bundles: a directory holding a manifest and weights, written atomically.

Layout of a models directory::

    models/
      20260101T120000Z-1a2b3c4d/   one bundle per version
        manifest.json               format_version, version, channels, scaler, architecture,
                                    threshold, weights_file, weights_sha256, tensors, ...
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
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from monitor.core.config import ALIGNMENTS, CONTEXT_FEATURES
from monitor.core.model.adapters import ADAPTERS_FILE, MAX_ADAPTERS_BYTES, AdapterError, StreamAdapters
from monitor.core.model.nets import build_from_spec
from monitor.core.types import FloatArray

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.pt"
CURRENT = "current"
TMP_PREFIX = ".tmp-"
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
    "weights_file",
    "weights_sha256",
)
_MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class BundleError(Exception):
    """A bundle cannot be written or is not safe/valid to use; the message says which file and why."""


@dataclass(frozen=True)
class Bundle:
    path: Path  # the bundle directory (resolved, so a moved `current` is a different path)
    manifest: dict[str, Any]
    module: nn.Module  # cpu, eval mode
    version: str
    adapters: StreamAdapters | None = None  # per-stream scaler and threshold (adapters.json), if any

    @property
    def channels(self) -> list[str]:
        return list(self.manifest["channels"])

    @property
    def window_size(self) -> int:
        return int(self.manifest["window_size"])

    @property
    def threshold(self) -> float:
        return float(self.manifest["threshold"]["threshold"])

    @property
    def scaler_mean(self) -> FloatArray:
        return np.asarray(self.manifest["scaler"]["mean"], dtype=np.float64)

    @property
    def scaler_std(self) -> FloatArray:
        return np.asarray(self.manifest["scaler"]["std"], dtype=np.float64)


class BundleInfo(NamedTuple):
    version: str
    path: Path
    created_at: str | None
    is_current: bool
    error: str | None  # why the manifest could not be read, else None


# --------------------------------------------------------------------------- saving


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def _check_version_name(version: str) -> None:
    if not isinstance(version, str) or not _VERSION_RE.match(version) or version == CURRENT:
        raise BundleError(
            f"bundle version {version!r} is not a safe directory name; use letters, digits, '.', '_', '-'"
        )


def remove_stale_temp_dirs(models_dir: Path, max_age_seconds: float = 3600.0) -> list[Path]:
    """Delete ``.tmp-*`` directories older than `max_age_seconds` (left by crashed saves)."""
    removed = []
    now = time.time()
    for entry in Path(models_dir).glob(TMP_PREFIX + "*"):
        try:
            if entry.is_dir() and not entry.is_symlink() and now - entry.stat().st_mtime > max_age_seconds:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
        except OSError:
            continue
    return removed


def save_bundle(
    models_dir: Path,
    manifest: dict[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    extra_files: dict[str, bytes] | None = None,
    make_current: bool = True,
) -> Path:
    """Write a bundle atomically (temp dir, fsync, rename) and optionally point `current` at it."""
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
            "weights_file": WEIGHTS,
            "weights_sha256": sha,
            "weights_bytes": len(weights),
            "tensors": {
                k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")} for k, v in tensors.items()
            },
        }
    )
    manifest_data = _manifest_bytes(full)

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
        set_current(models_dir, version)
    return final


def set_current(models_dir: Path, version: str) -> None:
    """Atomically point ``models_dir/current`` at bundle `version` (promote / roll back)."""
    models_dir = Path(models_dir)
    _check_version_name(version)
    if not (models_dir / version / MANIFEST).is_file():
        raise BundleError(f"{models_dir / version} is not a bundle (no {MANIFEST})")
    link = models_dir / f".current-{secrets.token_hex(4)}"
    os.symlink(version, link)  # relative: the models dir can be moved or mounted elsewhere
    try:
        os.replace(link, models_dir / CURRENT)
    except OSError as exc:
        os.unlink(link)
        raise BundleError(f"cannot replace {models_dir / CURRENT}: {exc.strerror}") from None
    _fsync_dir(models_dir)


# --------------------------------------------------------------------------- loading


def current_bundle_path(models_dir: Path) -> Path | None:
    """The resolved directory `current` points at, or None when there is no valid pointer."""
    models_dir = Path(models_dir)
    pointer = models_dir / CURRENT
    if pointer.is_symlink():
        target = pointer.resolve()
    elif pointer.is_file():  # pointer file holding a version name
        try:
            name = pointer.read_text().strip()
        except OSError:
            return None
        if not _VERSION_RE.match(name):
            return None
        target = (models_dir / name).resolve()
    else:
        return None
    return target if target.is_dir() else None


def list_bundles(models_dir: Path) -> list[BundleInfo]:
    """Bundles in `models_dir` (temp dirs and the pointer excluded), oldest first."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    current = current_bundle_path(models_dir)
    infos = []
    for entry in models_dir.iterdir():
        if entry.name.startswith(".") or entry.name == CURRENT or entry.is_symlink() or not entry.is_dir():
            continue
        created, error = None, None
        try:
            created = _read_manifest(entry).get("created_at")
        except BundleError as exc:
            error = str(exc)
        infos.append(BundleInfo(entry.name, entry, created, entry.resolve() == current, error))
    return sorted(infos, key=lambda i: (i.created_at or "", i.version))


def _read_manifest(bundle_dir: Path) -> dict[str, Any]:
    path = bundle_dir / MANIFEST
    try:
        size = path.stat().st_size
        if size > _MAX_MANIFEST_BYTES:
            raise BundleError(f"{path}: {size} bytes is too large for a manifest")
        manifest = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise BundleError(f"{path}: missing; {bundle_dir} is not a complete bundle") from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{path}: expected a JSON object")
    return manifest


def _validate_manifest(manifest: dict[str, Any], path: Path) -> None:
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise BundleError(f"{path}: missing key(s) {', '.join(missing)}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise BundleError(
            f"{path}: unsupported format_version {manifest['format_version']!r}; this monitor reads "
            f"{FORMAT_VERSION} (retrain, or upgrade monitor)"
        )
    channels = manifest["channels"]
    if not isinstance(channels, list) or not channels or not all(isinstance(c, str) for c in channels):
        raise BundleError(f"{path}: channels must be a non-empty list of names")
    scaler = manifest["scaler"]
    if not isinstance(scaler, dict):
        raise BundleError(f"{path}: scaler must be an object with mean and std")
    for key in ("mean", "std"):
        values = scaler.get(key)
        if not isinstance(values, list) or len(values) != len(channels):
            raise BundleError(
                f"{path}: scaler.{key} must list one number per channel ({len(channels)}), "
                f"got {len(values) if isinstance(values, list) else values!r}"
            )
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise BundleError(f"{path}: scaler.{key} must hold finite numbers")
    if any(v <= 0 for v in scaler["std"]):
        raise BundleError(f"{path}: scaler.std must be > 0")
    for key, minimum in (("window_size", 2), ("stride", 1)):
        value = manifest[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise BundleError(f"{path}: {key} must be an integer >= {minimum}, got {value!r}")
    period = manifest["period_seconds"]
    if isinstance(period, bool) or not isinstance(period, (int, float)) or not period > 0:
        raise BundleError(f"{path}: period_seconds must be a number > 0, got {period!r}")
    threshold = manifest["threshold"]
    value = threshold.get("threshold") if isinstance(threshold, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise BundleError(f"{path}: threshold.threshold must be a finite number > 0, got {value!r}")
    arch = manifest["architecture"]
    if not isinstance(arch, dict):
        raise BundleError(f"{path}: architecture must be an object")
    context = manifest.get("context", [])  # absent in bundles before model.context
    if not isinstance(context, list) or not all(c in CONTEXT_FEATURES for c in context):
        raise BundleError(f"{path}: context must list features of {', '.join(CONTEXT_FEATURES)}, got {context!r}")
    if arch.get("n_context", 0) != 2 * len(context):
        raise BundleError(
            f"{path}: architecture.n_context is {arch.get('n_context', 0)!r} but context lists "
            f"{len(context)} feature(s) (two channels each)"
        )
    if arch.get("n_channels") != len(channels) + 2 * len(context):
        raise BundleError(
            f"{path}: architecture.n_channels is {arch.get('n_channels')!r} but channels lists {len(channels)}"
            + (f" and context adds {2 * len(context)}" if context else "")
        )
    alignment = manifest.get("alignment", "bucket")
    if alignment not in ALIGNMENTS:
        raise BundleError(f"{path}: alignment must be bucket, nearest or interpolate, got {alignment!r}")
    if arch.get("window_size") != manifest["window_size"]:
        raise BundleError(
            f"{path}: architecture.window_size {arch.get('window_size')!r} != window_size {manifest['window_size']}"
        )
    weights_file = manifest["weights_file"]
    if not isinstance(weights_file, str) or "/" in weights_file or "\\" in weights_file or weights_file.startswith("."):
        raise BundleError(f"{path}: weights_file must be a plain file name inside the bundle, got {weights_file!r}")
    if not isinstance(manifest["weights_sha256"], str) or not re.fullmatch(r"[0-9a-f]{64}", manifest["weights_sha256"]):
        raise BundleError(f"{path}: weights_sha256 must be 64 lowercase hex digits")


def _resolve_bundle_dir(path: Path) -> Path:
    path = Path(path)
    if (path / MANIFEST).exists():
        return path.resolve()
    pointer = path / CURRENT
    if pointer.is_symlink() or pointer.exists():
        target = current_bundle_path(path)
        if target is None:
            raise BundleError(f"{pointer}: does not point at an existing bundle directory")
        return target
    if not path.exists():
        raise BundleError(f"{path}: no such bundle or models directory")
    raise BundleError(f"{path}: neither a bundle (no {MANIFEST}) nor a models directory (no {CURRENT} pointer)")


def load_bundle(path: Path) -> Bundle:
    """Verify and load a bundle directory, or the bundle `current` selects in a models directory."""
    bundle_dir = _resolve_bundle_dir(path)
    manifest_path = bundle_dir / MANIFEST
    manifest = _read_manifest(bundle_dir)
    _validate_manifest(manifest, manifest_path)

    weights_path = bundle_dir / manifest["weights_file"]
    try:
        data = weights_path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{weights_path}: missing") from None
    except OSError as exc:
        raise BundleError(f"{weights_path}: cannot read: {exc.strerror}") from None
    expected_size = manifest.get("weights_bytes")
    if isinstance(expected_size, int) and len(data) != expected_size:
        raise BundleError(
            f"{weights_path}: {len(data)} bytes but the manifest says {expected_size} "
            f"({'truncated' if len(data) < expected_size else 'replaced or appended to'}); re-copy or retrain"
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != manifest["weights_sha256"]:
        raise BundleError(
            f"{weights_path}: sha256 mismatch (file {digest[:16]}..., manifest "
            f"{manifest['weights_sha256'][:16]}...); the weights were changed or corrupted"
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
        module = build_from_spec(manifest["architecture"])
    except ValueError as exc:
        raise BundleError(f"{manifest_path}: {exc}") from None
    _check_shapes(module, tensors, weights_path)
    module.load_state_dict(tensors, strict=True)
    module.float().eval()
    for p in module.parameters():
        p.requires_grad_(False)
    adapters = _load_adapters(bundle_dir, manifest)
    return Bundle(
        path=bundle_dir, manifest=manifest, module=module, version=str(manifest["version"]), adapters=adapters
    )


def _load_adapters(bundle_dir: Path, manifest: dict[str, Any]) -> StreamAdapters | None:
    """The bundle's per-stream adapters, checked against the manifest's sha256 and counts
    before they are parsed; None for a bundle without an "adapters" entry (bundles before
    adapters, or trained with model.adapters: off)."""
    entry = manifest.get("adapters")
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
        adapters = StreamAdapters.from_json(data, manifest["channels"])
    except AdapterError as exc:
        raise BundleError(f"{path}: {exc}") from None
    if entry.get("streams") != len(adapters) or entry.get("fallback") != len(adapters.fallback):
        raise BundleError(
            f"{path}: holds {len(adapters)} adapter(s) and {len(adapters.fallback)} fallback stream(s), "
            f"the manifest says {entry.get('streams')!r} and {entry.get('fallback')!r}"
        )
    return adapters


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
