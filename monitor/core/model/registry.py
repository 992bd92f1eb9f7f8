"""A models directory as a registry: versions, the `current` pointer and its history.

Layout (one directory per model group; `monitor/core/model/bundle.py` writes the bundles)::

    models/
      20260101T120000Z-1a2b3c4d/   one bundle per version (manifest.json, weights.pt, ...)
      current -> 20260101T120000Z-1a2b3c4d   symlink, swapped atomically (a pointer file is read too)
      .history.jsonl               one line per pointer move: {"at", "version", "action"}
      .tmp-*, .current-*           a save or a pointer move in progress: never listed

**Rollback rule.** The history is a stack: ``train`` and ``promote`` push the version they
make current, ``rollback`` pops one. ``rollback`` goes to the entry below the top that
still exists, so a second rollback goes one further back (it never toggles between two
versions). A move that finds `current` pointing somewhere the history does not end at (a
models directory from before the registry) first logs that version as ``found``, so it is
on the stack too. When the history does not end at the version `current` points at (the
pointer was moved by hand), the stack is unknown and the rollback target is the newest
bundle created before the current one.
``prune`` never deletes the current version, the rollback target nor the shadow candidate
(``shadow -> VERSION``: scored live beside `current`, decision 0021).

Torch-free on purpose: ``monitor models list`` reads manifests without importing torch.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from monitor.core.model.manifest import Manifest, ManifestError

MANIFEST = "manifest.json"
CURRENT = "current"
SHADOW = "shadow"  # a candidate the daemon scores beside `current` (docs/decisions/0021)
SHADOW_REPORT = "shadow.json"  # the daemon's running comparison, then its verdict
HISTORY = ".history.jsonl"
TMP_PREFIX = ".tmp-"
# the daemon's and the CLI's state beside the bundles (calibration, alarm, shadow, drift,
# silences: monitor.io.calib_state.STATE_DIR): never a version, never pruned
STATE = "state"
ACTIONS = ("train", "promote", "rollback", "found")
_MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_MAX_HISTORY_BYTES = 4 * 1024 * 1024
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class BundleError(Exception):
    """A bundle cannot be written or is not safe/valid to use; the message says which file and why."""


class BundleNotFound(BundleError):
    """No bundle where one was asked for (a missing path, no `current` pointer, a dangling one):
    nothing was refused, there was nothing to check."""


class BundleInfo(NamedTuple):
    version: str
    path: Path
    created_at: str | None
    is_current: bool
    error: str | None  # why the manifest could not be read, else None
    manifest: Manifest | None = None  # None when `error` says why


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_version_name(version: str) -> None:
    if not isinstance(version, str) or not _VERSION_RE.match(version) or version in (CURRENT, SHADOW):
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


def set_current(models_dir: Path, version: str, action: str = "promote") -> None:
    """Atomically point ``models_dir/current`` at bundle `version` and log it in the history.

    `action` ("train", "promote" or "rollback") decides how the move enters the rollback
    stack (see the module docstring).
    """
    models_dir = Path(models_dir)
    _check_version_name(version)
    if not (models_dir / version / MANIFEST).is_file():
        raise BundleError(f"{models_dir / version} is not a bundle (no {MANIFEST})")
    before = current_bundle_path(models_dir)
    if before is not None and before.parent == models_dir.resolve():
        stack = _stack(read_history(models_dir))
        if not stack or stack[-1] != before.name:
            _append_history(models_dir, before.name, "found")
    link = models_dir / f".current-{secrets.token_hex(4)}"
    os.symlink(version, link)  # relative: the models dir can be moved or mounted elsewhere
    try:
        os.replace(link, models_dir / CURRENT)
    except OSError as exc:
        os.unlink(link)
        raise BundleError(f"cannot replace {models_dir / CURRENT}: {exc.strerror}") from None
    _fsync_dir(models_dir)
    _append_history(models_dir, version, action)


def set_shadow(models_dir: Path, version: str) -> None:
    """Atomically point ``models_dir/shadow`` at bundle `version`: the daemon scores it beside
    `current` (no alerts) and promotes or rejects it (`monitor.core.shadow`). Not a pointer
    move of the rollback stack: only the promotion, if it comes, is."""
    models_dir = Path(models_dir)
    _check_version_name(version)
    if not (models_dir / version / MANIFEST).is_file():
        raise BundleError(f"{models_dir / version} is not a bundle (no {MANIFEST})")
    link = models_dir / f".shadow-{secrets.token_hex(4)}"
    os.symlink(version, link)
    try:
        os.replace(link, models_dir / SHADOW)
    except OSError as exc:
        os.unlink(link)
        raise BundleError(f"cannot replace {models_dir / SHADOW}: {exc.strerror}") from None
    _fsync_dir(models_dir)


def clear_shadow(models_dir: Path) -> bool:
    """Remove the shadow pointer (its bundle stays); True when there was one."""
    try:
        os.unlink(Path(models_dir) / SHADOW)
    except FileNotFoundError:
        return False
    _fsync_dir(Path(models_dir))
    return True


def shadow_bundle_path(models_dir: Path) -> Path | None:
    """The resolved directory `shadow` points at, or None."""
    return current_bundle_path(models_dir, SHADOW)


def current_bundle_path(models_dir: Path, pointer_name: str = CURRENT) -> Path | None:
    """The resolved directory `current` (or `pointer_name`) points at, or None when there is no valid pointer."""
    models_dir = Path(models_dir)
    pointer = models_dir / pointer_name
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
        if entry.name.startswith(".") or entry.name in (CURRENT, STATE) or entry.is_symlink() or not entry.is_dir():
            continue
        manifest, error = None, None
        try:
            manifest = read_manifest(entry)
        except BundleError as exc:
            error = str(exc)
        created = manifest.created_at if manifest else None
        infos.append(BundleInfo(entry.name, entry, created, entry.resolve() == current, error, manifest))
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


def read_manifest(bundle_dir: Path) -> Manifest:
    """The typed manifest of one bundle directory (migrated when older), weights not checked."""
    path = Path(bundle_dir) / MANIFEST
    try:
        return Manifest.from_json(_read_manifest(Path(bundle_dir)), str(path))
    except ManifestError as exc:
        raise BundleError(str(exc)) from None


# --------------------------------------------------------------------------- history and registry moves


class HistoryEntry(NamedTuple):
    at: str  # ISO 8601 UTC
    version: str
    action: str


def _append_history(models_dir: Path, version: str, action: str) -> None:
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    at = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    line = json.dumps({"at": at, "version": version, "action": action}) + "\n"
    # one write(2) of one short line with O_APPEND: concurrent appenders do not interleave
    fd = os.open(models_dir / HISTORY, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_history(models_dir: Path) -> list[HistoryEntry]:
    """Pointer moves, oldest first; unreadable lines are skipped (the history only advises)."""
    path = Path(models_dir) / HISTORY
    try:
        if path.stat().st_size > _MAX_HISTORY_BYTES:
            return []
        text = path.read_text(errors="replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("version"), str) and obj.get("action") in ACTIONS:
            out.append(HistoryEntry(str(obj.get("at", "")), obj["version"], obj["action"]))
    return out


def _stack(history: list[HistoryEntry]) -> list[str]:
    stack: list[str] = []
    for entry in history:
        if entry.action == "rollback":
            if stack:
                stack.pop()
            while stack and stack[-1] != entry.version and entry.version in stack:
                stack.pop()  # it skipped versions deleted since
            if not stack or stack[-1] != entry.version:  # a rollback by the created-time rule
                stack.append(entry.version)
        else:
            stack.append(entry.version)
    return stack


def rollback_target(models_dir: Path) -> str | None:
    """The version `rollback` would make current (module docstring), None when there is none."""
    models_dir = Path(models_dir)
    current = current_bundle_path(models_dir)
    if current is None:
        return None
    bundles = [b for b in list_bundles(models_dir) if b.error is None]
    usable = {b.version for b in bundles}
    stack = _stack(read_history(models_dir))
    if stack and stack[-1] == current.name:
        for version in reversed(stack[:-1]):
            if version in usable and version != current.name:
                return version
        return None
    now = next((b for b in bundles if b.path.resolve() == current), None)
    if now is None or now.created_at is None:
        return None
    older = [b for b in bundles if b.created_at is not None and b.created_at < now.created_at]
    return older[-1].version if older else None


def rollback(models_dir: Path) -> tuple[str, str]:
    """Move `current` to `rollback_target`; returns ``(from_version, to_version)``."""
    models_dir = Path(models_dir)
    current = current_bundle_path(models_dir)
    if current is None:
        raise BundleError(f"{models_dir}: no current model to roll back from")
    target = rollback_target(models_dir)
    if target is None:
        raise BundleError(
            f"{models_dir}: nothing to roll back to (no earlier usable version than {current.name}); "
            "use `monitor models promote VERSION`"
        )
    set_current(models_dir, target, action="rollback")
    return current.name, target


def promote(models_dir: Path, version: str) -> str | None:
    """Make `version` current (it must load as a manifest); returns the version it replaced."""
    models_dir = Path(models_dir)
    _check_version_name(version)
    if not (models_dir / version).is_dir():
        known = ", ".join(b.version for b in list_bundles(models_dir)) or "none"
        raise BundleError(f"{models_dir}: no version {version!r} (versions: {known})")
    read_manifest(models_dir / version)  # refuse an unreadable or future-format bundle before the move
    current = current_bundle_path(models_dir)
    set_current(models_dir, version, action="promote")
    return current.name if current else None


def prune(models_dir: Path, keep: int, dry_run: bool = False) -> list[str]:
    """Delete all but the newest `keep` versions, never the current one nor the rollback target.

    Protected versions count towards `keep`. Unreadable bundle directories are versions too
    (oldest, as they have no created time) and go first, if they hold a manifest file at
    all; `state/` and directories without one are never deleted. Returns the deleted versions.
    """
    models_dir = Path(models_dir)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"keep must be an integer >= 1, got {keep!r}")
    bundles = list_bundles(models_dir)
    current = current_bundle_path(models_dir)
    protected = {b.version for b in bundles if current is not None and b.path.resolve() == current}
    target = rollback_target(models_dir)
    if target is not None:
        protected.add(target)
    shadow = shadow_bundle_path(models_dir)
    protected |= {b.version for b in bundles if shadow is not None and b.path.resolve() == shadow}
    kept = set(protected)
    for b in reversed(bundles):  # newest first
        if len(kept) >= keep:
            break
        kept.add(b.version)
    # a directory without a manifest file is not a bundle this registry wrote (bundles are
    # renamed into place whole): listed as unreadable, never deleted
    doomed = [b for b in bundles if b.version not in kept and (b.path / MANIFEST).is_file()]
    if not dry_run:
        for b in doomed:
            shutil.rmtree(b.path)
        if doomed:
            _fsync_dir(models_dir)
    return [b.version for b in doomed]
