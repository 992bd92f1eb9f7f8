"""Write a small file atomically: a temp file beside it, fsync, then rename over the old one.

A crash mid-write leaves the old file (or none) and a stray ``.<name>.*`` temp file, never
a torn one: `os.replace` is atomic on POSIX. Used for the alert labels, the retrain status
textfile and the calibrator state.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str, mode: int | None = 0o644) -> None:
    """Replace `path` with `text` atomically; `mode` (None: mkstemp's 0600) set before the rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
