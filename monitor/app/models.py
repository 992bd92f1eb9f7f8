"""`monitor models list | show | promote | rollback | prune`: the model registry of each group.

A group's models directory (``models.dir``, or ``models.dir/<group>`` with ``groups:``) holds
one bundle per version and a `current` pointer. ``promote`` and ``rollback`` move the
pointer atomically (a symlink swapped with rename); a running daemon's watcher notices it
within ``models.poll_seconds``, verifies and test-scores the bundle, and swaps it in
between batches (a refused bundle leaves the old one serving). The rollback rule and what
``prune`` protects are in `monitor.core.model.registry`.

Exit codes: 0 done; 1 unknown version, empty registry, nothing to roll back to, or a
refused bundle; 2 unknown group or ``--group`` missing where the config has several; 78
bad configuration. No torch import: manifests are read as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from monitor.app import shadow_report
from monitor.app.cliargs import add_config
from monitor.core.config import load_config
from monitor.core.model import registry
from monitor.core.model.manifest import Manifest
from monitor.core.model.registry import BundleError, BundleInfo

EXIT_FAILED = 1
EXIT_USAGE = 2


class RegistryCommandError(Exception):
    """A registry command cannot do what was asked; `code` is the exit status."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


def _groups(config: str, group: str | None, *, one: bool) -> list[tuple[str, Path]]:
    """(group, models dir) pairs the command acts on: `group`, else every group (or the only one)."""
    cfg = load_config(config)
    names = [g.name for g in cfg.fleet()]
    if group is not None:
        if group not in names:
            raise RegistryCommandError(f"no group named {group!r} in {config}; groups: {', '.join(names)}", EXIT_USAGE)
        names = [group]
    elif one and len(names) > 1:
        raise RegistryCommandError(f"{config} has groups {', '.join(names)}: give --group", EXIT_USAGE)
    return [(n, cfg.group_models_dir(n)) for n in names]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _span(m: Manifest | None) -> str:
    if m is None or m.data_span is None:
        return "-"
    return f"{_iso(m.data_span.start)} +{_duration(m.data_span.end - m.data_span.start)}"


def _validation(m: Manifest) -> str:
    parts = []
    for key, label in (("calibration_exceedance_rate", "exceed"), ("best_val_loss", "val_loss")):
        value = m.validation.get(key)
        if isinstance(value, (int, float)):
            parts.append(f"{label} {value:.4g}")
    return ", ".join(parts) or "-"


def _row(info: BundleInfo, rollback_to: str | None) -> dict[str, Any]:
    m = info.manifest
    state = "current" if info.is_current else ("rollback" if info.version == rollback_to else "")
    return {
        "version": info.version,
        "state": state,
        "created_at": info.created_at,
        "data_span": None if m is None or m.data_span is None else [m.data_span.start, m.data_span.end],
        "threshold": None if m is None else m.threshold,
        "threshold_method": None if m is None else m.threshold_method,
        "validation": None if m is None else m.validation,
        "format_version": None if m is None else (m.migrated_from or m.format_version),
        "error": info.error,
    }


def list_versions(models_dir: Path) -> list[dict[str, Any]]:
    """One row per version, oldest first (what ``monitor models list --json`` prints)."""
    rollback_to = registry.rollback_target(models_dir)
    return [_row(b, rollback_to) for b in registry.list_bundles(models_dir)]


def _print_table(group: str, models_dir: Path, out: TextIO) -> None:
    infos = registry.list_bundles(models_dir)
    rollback_to = registry.rollback_target(models_dir)
    print(f"group {group}: {models_dir}", file=out)
    header = ("", "VERSION", "CREATED", "DATA SPAN", "THRESHOLD", "VALIDATION")
    rows = [header]
    for info in infos:
        m = info.manifest
        mark = "*" if info.is_current else ("<" if info.version == rollback_to else "")
        if m is None:
            rows.append((mark, info.version, "-", "-", "-", f"UNREADABLE: {info.error}"))
            continue
        created = (m.created_at or "-")[:19].replace("T", " ")
        threshold = f"{m.threshold:.6g} ({m.threshold_method})"
        rows.append((mark, info.version, created, _span(m), threshold, _validation(m)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    for r in rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1], file=out)
    print("  (* current, < where `monitor models rollback` goes)", file=out)


def cmd_list(args: argparse.Namespace) -> int:
    targets = _groups(args.config, args.group, one=False)
    listed = {g: d for g, d in targets if registry.list_bundles(d)}
    if not listed:
        where = ", ".join(f"{g} ({d})" for g, d in targets)
        raise RegistryCommandError(f"no model versions in {where}: run `monitor train --config {args.config}`")
    if args.json:
        json.dump({g: list_versions(d) for g, d in targets}, sys.stdout, indent=2)
        print()
        return 0
    for group, models_dir in targets:
        if group not in listed:
            print(f"group {group}: {models_dir}\n  no versions (run `monitor train --group {group}`)")
            continue
        _print_table(group, models_dir, sys.stdout)
    return 0


def _known_version(models_dir: Path, version: str) -> BundleInfo:
    infos = registry.list_bundles(models_dir)
    if not infos:
        raise RegistryCommandError(f"no model versions in {models_dir}: run `monitor train`")
    for info in infos:
        if info.version == version:
            return info
    known = ", ".join(i.version for i in infos)
    raise RegistryCommandError(f"no version {version!r} in {models_dir}; versions: {known}")


def latent_text(m: Manifest) -> str:
    """Code size, the map's explained variance and the state centroids (code units), for people."""
    try:
        latent = m.latent_model
    except ValueError as exc:
        return f"latent: unreadable ({exc})"
    if latent is None:
        return f"latent: code_size {m.architecture.get('code_size')}; no map or states (trained before them)"
    p, s = latent.projection, latent.states
    lines = [
        f"latent: code_size {latent.code_size} (pooling {latent.pooling}); map {p.method} explains "
        f"{100 * p.explained:.1f} % of the code variance"
    ]
    if s is None:
        lines.append("operating states: off")
        return "\n".join(lines)
    rule = f"silhouette {s.silhouette:.3f}" if s.silhouette is not None else s.rule
    lines.append(f"operating states: {s.k} ({rule}), novelty radius {s.radius:.4g} (p99 training distance)")
    cents = s.centroids * s.scale_std + s.scale_mean
    for i, c in enumerate(cents):
        lines.append(f"  {i + 1}: {s.names[i]:<16} centroid [" + ", ".join(f"{v:.4g}" for v in c) + "]")
    return "\n".join(lines)


def cmd_show(args: argparse.Namespace) -> int:
    ((group, models_dir),) = _groups(args.config, args.group, one=True)
    info = _known_version(models_dir, args.version)
    if info.manifest is None:
        raise RegistryCommandError(f"{info.path}: {info.error}")
    m = info.manifest
    note = f"group {group}, {info.path}" + (", current" if info.is_current else "")
    if m.migrated_from is not None:
        note += f"; stored as format {m.migrated_from}, shown migrated to {m.format_version}"
    print(note, file=sys.stderr)
    print(latent_text(m), file=sys.stderr)  # stdout stays the manifest's JSON
    json.dump(m.to_json(), sys.stdout, indent=2, sort_keys=True)
    print()
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    ((group, models_dir),) = _groups(args.config, args.group, one=True)
    _known_version(models_dir, args.version)
    before = registry.promote(models_dir, args.version)
    print(f"group {group}: current {before or '(none)'} -> {args.version}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    ((group, models_dir),) = _groups(args.config, args.group, one=True)
    if not registry.list_bundles(models_dir):
        raise RegistryCommandError(f"no model versions in {models_dir}: nothing to roll back")
    before, after = registry.rollback(models_dir)
    print(f"group {group}: current {before} -> {after} (rolled back)")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    targets = _groups(args.config, args.group, one=False)
    if not any(registry.list_bundles(d) for _, d in targets):
        raise RegistryCommandError("no model versions to prune in " + ", ".join(str(d) for _, d in targets))
    for group, models_dir in targets:
        gone = registry.prune(models_dir, args.keep, dry_run=args.dry_run)
        verb = "would delete" if args.dry_run else "deleted"
        print(f"group {group}: {verb} {len(gone)} version(s)" + (": " + ", ".join(gone) if gone else ""))
    return 0


def _keep(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--keep needs a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("--keep must be at least 1 (the current version is always kept)")
    return value


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``monitor models ...`` to the CLI's subparsers (``build_parser`` in cli.py)."""
    p = subparsers.add_parser("models", help="list, show, promote, roll back and prune model versions")
    sub = p.add_subparsers(dest="models_command", required=True)

    def command(name: str, help_text: str, func: Any) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_text)
        add_config(c)
        c.add_argument("--group", help="the model group (needed for show/promote/rollback with several groups)")
        c.set_defaults(func=_guarded(func))
        return c

    ls = command("list", "every version with created time, data span, threshold, validation, current", cmd_list)
    ls.add_argument("--json", action="store_true", help="machine-readable rows")
    show = command("show", "print a version's manifest (JSON)", cmd_show)
    show.add_argument("version")
    promote = command("promote", "make VERSION current (the daemon picks it up)", cmd_promote)
    promote.add_argument("version")
    command("rollback", "make the previous current version current again", cmd_rollback)
    prune = command("prune", "delete old versions, never the current one nor the rollback target", cmd_prune)
    prune.add_argument("--keep", type=_keep, required=True, metavar="N", help="versions to keep (>= 1)")
    prune.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
    report = command("shadow-report", "the shadow candidate beside the serving model: table and PNG", cmd_shadow_report)
    shadow_report.add_arguments(report)
    return p


def cmd_shadow_report(args: argparse.Namespace) -> int:
    code = 0
    for group, models_dir in _groups(args.config, args.group, one=bool(args.png)):
        code = max(code, shadow_report.run(Path(models_dir), group, args.png, args.json))
    return code


def _guarded(func: Any) -> Any:
    """Registry errors become a message on stderr and their exit status (config errors: cli.main)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except RegistryCommandError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.code
        except BundleError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED

    return run
