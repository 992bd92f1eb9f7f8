"""The raw-message recorder: rotating, compressed, append-only recording files.

`Recorder.tap(msg)` is cheap and never blocks or raises (it runs on paho's network
thread): it appends to a bounded in-memory buffer. A writer thread moves the buffer into
a `RecordingWriter`, which compresses and writes each flushed block as its own gzip
member. Files rotate by size and by age; a new file name is used every time.

Crash bound: at most the messages of the block not yet flushed are lost — no more than
`flush_seconds` of traffic (default 1 s) or `flush_every` messages, whichever comes first;
every earlier block, and every finished file, stays readable. Write errors (disk full,
permissions) are counted and logged; the daemon goes on scoring. Messages the buffer
cannot hold are counted as dropped.

Retention (`max_age_seconds`, `max_bytes`; 0: unbounded) runs on the writer thread at every
rotation and at least every `retention_every_seconds`: the oldest recordings go first and
the open file never (`monitor.io.retention`); what it deleted is counted in `stats` and
reported through `on_deleted(files, bytes)`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from monitor.core.types import RawMessage
from monitor.io.recording import RecordingWriter
from monitor.io.retention import enforce

log = logging.getLogger(__name__)


class Recorder:
    def __init__(
        self,
        directory: str | Path,
        *,
        rotate_bytes: int = 64 * 1024 * 1024,
        rotate_seconds: float = 3600.0,
        flush_every: int = 1000,
        flush_seconds: float = 1.0,
        buffer_size: int = 200_000,
        prefix: str = "rec",
        on_error: Callable[[str], None] | None = None,
        max_age_seconds: float = 0.0,
        max_bytes: int = 0,
        retention_every_seconds: float = 60.0,
        on_deleted: Callable[[int, int], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.dir = Path(directory)
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self.buffer_size = buffer_size
        self.prefix = prefix
        self.on_error = on_error
        self.max_age_seconds = max_age_seconds
        self.max_bytes = max_bytes
        self.retention_every_seconds = retention_every_seconds
        self.on_deleted = on_deleted
        self._wall = wall_clock
        self._retained_at = -float("inf")
        self.stats = {
            "recorded": 0,
            "dropped": 0,
            "write_errors": 0,
            "files": 0,
            "deleted_files": 0,
            "deleted_bytes": 0,
        }
        self._buf: deque[RawMessage] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._writer: RecordingWriter | None = None
        self._opened_at = 0.0
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self.files: list[Path] = []

    def start(self) -> Recorder:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    # ---------------------------------------------------------------- producer side

    def tap(self, msg: RawMessage) -> None:
        """Queue one message for recording (called from the network thread)."""
        if len(self._buf) >= self.buffer_size:
            self.stats["dropped"] += 1
            return
        self._buf.append(msg)
        if len(self._buf) >= self.flush_every:
            self._wake.set()

    # ---------------------------------------------------------------- writer thread

    def _new_path(self) -> Path:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        while True:
            self._seq += 1
            path = self.dir / f"{self.prefix}-{stamp}-{self._seq:04d}.jsonl.gz"
            if not path.exists():
                return path

    def _error(self, what: str, exc: BaseException) -> None:
        self.stats["write_errors"] += 1
        log.error("recorder: %s: %s (scoring continues; these messages are not recorded)", what, exc)
        if self.on_error:
            with contextlib.suppress(Exception):  # a failing error hook must not stop the recorder
                self.on_error(what)

    def _writer_for_now(self) -> RecordingWriter | None:
        w = self._writer
        now = time.monotonic()
        if w is not None and (w.bytes_written >= self.rotate_bytes or now - self._opened_at >= self.rotate_seconds):
            self._close_writer()
            w = None
        if w is None:
            path = self._new_path()
            try:
                w = RecordingWriter(path, flush_every=10**9, flush_seconds=10**9)
            except OSError as exc:
                self._error(f"cannot open {path}", exc)
                return None
            self._writer = w
            self._opened_at = now
            self.files.append(path)
            self.stats["files"] += 1
            self._retain()
        return w

    def _retain(self) -> None:
        """Apply retention now (never to the open file)."""
        self._retained_at = time.monotonic()
        if self.max_age_seconds <= 0 and self.max_bytes <= 0:
            return
        keep = {self._writer.path} if self._writer is not None else set()
        try:
            res = enforce(
                self.dir, max_age_seconds=self.max_age_seconds, max_bytes=self.max_bytes, keep=keep, now=self._wall()
            )
        except OSError as exc:
            self._error("applying retention", exc)
            return
        self.stats["write_errors"] += res.errors
        if self.on_error is not None:
            for _ in range(res.errors):
                with contextlib.suppress(Exception):
                    self.on_error("deleting an old recording")
        if res.deleted_files:
            self.stats["deleted_files"] += res.deleted_files
            self.stats["deleted_bytes"] += res.deleted_bytes
            if self.on_deleted:
                with contextlib.suppress(Exception):
                    self.on_deleted(res.deleted_files, res.deleted_bytes)

    def _close_writer(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except OSError as exc:
                self._error("closing a recording", exc)
            self._writer = None

    def _drain(self) -> None:
        if not self._buf:
            return
        w = self._writer_for_now()
        n = len(self._buf)
        batch = [self._buf.popleft() for _ in range(n)]
        if w is None:
            self.stats["dropped"] += n
            return
        try:
            for msg in batch:
                w.write(msg)
            w.flush()
            self.stats["recorded"] += n
        except OSError as exc:
            self.stats["dropped"] += n
            self._error(f"writing {n} messages", exc)
            self._close_writer()  # start a fresh file once the disk recovers

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self._drain()
            if self._writer is not None and time.monotonic() - self._opened_at >= self.rotate_seconds:
                self._close_writer()
            if time.monotonic() - self._retained_at >= self.retention_every_seconds:
                self._retain()
        self._drain()
        self._close_writer()

    def close(self, timeout: float = 5.0) -> None:
        """Write everything buffered and close the current file."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
