"""The raw-message recording format: gzip-compressed JSON Lines, one object per message.

::

    {"format": "monitor-recording", "version": 1, "created_at": "2024-05-01T12:00:00+00:00"}
    {"t": 1714564800.25, "topic": "sensors/pump1/temp", "qos": 1, "retain": false, "payload": "21.5"}
    {"t": 1714564800.26, "topic": "sensors/pump1/raw", "qos": 0, "retain": false, "payload_b64": "AAEC"}

`payload` holds the bytes decoded as UTF-8 when they are valid UTF-8, `payload_b64` their
base64 otherwise, so a round trip is byte-for-byte. Each flushed batch is written as its
own gzip member (gzip files may be concatenated), so after a crash the file reads up to
its last complete batch: the reader stops at a truncated final member with a counted,
logged warning instead of an exception. Plain uncompressed ``.jsonl`` files read too.
Malformed lines are skipped and counted in `RecordingStats`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from monitor.core.types import RawMessage

try:
    import orjson as _orjson

    _dumps: Callable[[Any], bytes] = _orjson.dumps
    _loads: Callable[[bytes], Any] = _orjson.loads
except ImportError:  # pragma: no cover - exercised only without orjson

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    _loads = json.loads

__all__ = [
    "ALERTS_FILE",
    "FORMAT",
    "LEGACY_ALERTS_FILES",
    "VERSION",
    "RecordingStats",
    "RecordingWriter",
    "iter_recordings",
    "read_recording",
    "recording_files",
]

log = logging.getLogger(__name__)

FORMAT = "monitor-recording"
VERSION = 1
SUFFIXES = (".jsonl", ".jsonl.gz", ".gz")  # what a directory listing picks up
#: The alert log (JSON lines) in record.dir, beside the recordings: the daemon appends to
#: it, ``replay --offline --alerts-out`` writes it, retraining on that folder reads it
#: (`monitor.io.alertlog`). ``.ndjson``, so `recording_files` skips it.
ALERTS_FILE = "alerts.ndjson"
#: Older names of the alert log: still found (with a warning), never read as recordings.
LEGACY_ALERTS_FILES = ("alerts.jsonl",)
_NOT_RECORDINGS = {ALERTS_FILE, *LEGACY_ALERTS_FILES}
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK_BYTES = 256 * 1024

PathLike = str | os.PathLike


def encode_message(msg: RawMessage) -> bytes:
    """One JSON line (with its newline) for a message."""
    record: dict[str, Any] = {
        "t": float(msg.received_at),
        "topic": msg.topic,
        "qos": int(msg.qos),
        "retain": bool(msg.retain),
    }
    payload = bytes(msg.payload)
    try:
        record["payload"] = payload.decode("utf-8")
    except UnicodeDecodeError:
        record["payload_b64"] = base64.b64encode(payload).decode("ascii")
    return _dumps(record) + b"\n"


def decode_line(line: bytes) -> RawMessage | None:
    """The message of one JSON line; None for a header line; ValueError when malformed."""
    try:
        obj = _loads(line)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if type(obj) is not dict:
        raise ValueError("not a JSON object")
    if "format" in obj and "topic" not in obj:
        if obj.get("format") != FORMAT:
            raise ValueError(f"unknown header format {obj.get('format')!r}")
        return None
    t: Any  # a JSON value: its type is checked below
    t, topic = obj.get("t"), obj.get("topic")
    if type(t) not in (int, float) or t - t != 0:
        raise ValueError(f"bad time {t!r}")
    if type(topic) is not str:
        raise ValueError("no topic")
    qos, retain = obj.get("qos", 0), obj.get("retain", False)
    if type(qos) is not int or qos not in (0, 1, 2) or type(retain) is not bool:
        raise ValueError(f"bad qos/retain {qos!r}/{retain!r}")
    if type(obj.get("payload")) is str:
        try:
            payload = obj["payload"].encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("payload is not valid Unicode") from None
    elif type(obj.get("payload_b64")) is str:
        try:
            payload = base64.b64decode(obj["payload_b64"], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("payload_b64 is not base64") from None
    else:
        raise ValueError("no payload or payload_b64")
    return RawMessage(float(t), topic, payload, qos, retain)


# --------------------------------------------------------------------------- writing


class RecordingWriter:
    """Appends messages to a new recording file, one gzip member per flushed batch.

    A batch is flushed when `flush_every` messages are buffered or, on the next `write`,
    when `flush_seconds` have passed since the last flush (call `flush()` from a timer
    for an idle feed). The file must not exist yet: appending to a file that a crashed
    writer left with a truncated member would hide everything written after it.
    Thread-safe.
    """

    def __init__(
        self,
        path: PathLike,
        flush_every: int = 1000,
        flush_seconds: float = 1.0,
        *,
        compresslevel: int = 6,
        fsync: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ):
        if flush_every < 1:
            raise ValueError(f"flush_every must be >= 1, got {flush_every}")
        if flush_seconds < 0:
            raise ValueError(f"flush_seconds must be >= 0, got {flush_seconds}")
        self.path = Path(path)
        self.flush_every = int(flush_every)
        self.flush_seconds = float(flush_seconds)
        self.compresslevel = compresslevel
        self.fsync = fsync
        self._clock = clock
        self._lock = threading.Lock()
        self._buffer: list[bytes] = []
        self.messages_written = 0  # flushed to the file
        self.bytes_written = 0  # compressed bytes in the file
        try:
            self._file: BinaryIO | None = open(self.path, "xb")  # noqa: SIM115  # the writer owns it until close()
        except FileExistsError:
            raise FileExistsError(f"recording {self.path} already exists; record into a new file") from None
        created = datetime.fromtimestamp(wall_clock(), tz=timezone.utc).isoformat()
        header = _dumps({"format": FORMAT, "version": VERSION, "created_at": created}) + b"\n"
        self._write_member(header)
        self._last_flush = clock()

    def write(self, msg: RawMessage) -> None:
        """Buffer one message; flushes when the batch is full or old enough."""
        line = encode_message(msg)
        with self._lock:
            if self._file is None:
                raise ValueError(f"recording {self.path} is closed")
            self._buffer.append(line)
            if len(self._buffer) >= self.flush_every or self._clock() - self._last_flush >= self.flush_seconds:
                self._flush_locked()

    def flush(self) -> None:
        """Write buffered messages as one complete gzip member."""
        with self._lock:
            if self._file is not None:
                self._flush_locked()

    def close(self) -> None:
        """Flush and close; idempotent."""
        with self._lock:
            if self._file is None:
                return
            try:
                self._flush_locked()
            finally:
                self._file.close()
                self._file = None

    @property
    def closed(self) -> bool:
        return self._file is None

    @property
    def pending(self) -> int:
        """Messages buffered but not yet in the file."""
        return len(self._buffer)

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _flush_locked(self) -> None:
        self._last_flush = self._clock()
        if not self._buffer:
            return
        count = len(self._buffer)
        data = b"".join(self._buffer)
        self._buffer.clear()
        self._write_member(data)
        self.messages_written += count

    def _write_member(self, data: bytes) -> None:
        compressor = zlib.compressobj(self.compresslevel, zlib.DEFLATED, 31)  # 31: gzip container
        member = compressor.compress(data) + compressor.flush()
        file = self._file
        assert file is not None  # callers checked, under the lock, that the writer is open
        file.write(member)  # one write per member keeps a crash to the last member
        file.flush()
        if self.fsync:
            os.fsync(file.fileno())
        self.bytes_written += len(member)


# --------------------------------------------------------------------------- reading


@dataclass
class RecordingStats:
    """What reading skipped: counted so a caller can log or export it."""

    files: int = 0
    messages: int = 0
    headers: int = 0
    malformed_lines: int = 0
    truncated_files: int = 0  # ended inside a gzip member (a writer crashed mid-write)
    corrupt_files: int = 0  # compressed data that could not be decoded; read up to there


def read_recording(path: PathLike, stats: RecordingStats | None = None) -> Iterator[RawMessage]:
    """Messages of one recording file (gzip members or plain JSON Lines), in file order."""
    stats = stats if stats is not None else RecordingStats()
    path = Path(path)
    stats.files += 1
    for line in _lines(path, stats):
        try:
            msg = decode_line(line)
        except ValueError as exc:
            stats.malformed_lines += 1
            if stats.malformed_lines <= 10:
                log.warning("%s: skipping malformed line: %s", path, exc)
            continue
        if msg is None:
            stats.headers += 1
            continue
        stats.messages += 1
        yield msg


def recording_files(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    """Files named in `paths`, with directories expanded to their recordings sorted by name
    (an alert log in the directory, `ALERTS_FILE` or an old name of it, is not one)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for item in paths:
        item = Path(item)
        if item.is_dir():
            files.extend(
                sorted(
                    p
                    for p in item.iterdir()
                    if p.is_file() and p.name.endswith(SUFFIXES) and p.name not in _NOT_RECORDINGS
                )
            )
        elif item.exists():
            files.append(item)
        else:
            raise FileNotFoundError(f"no recording file or directory {item}")
    return files


def iter_recordings(paths: PathLike | Iterable[PathLike], stats: RecordingStats | None = None) -> Iterator[RawMessage]:
    """Messages of several recordings (files or directories), one file after the other."""
    stats = stats if stats is not None else RecordingStats()
    for path in recording_files(paths):
        yield from read_recording(path, stats)


def _lines(path: Path, stats: RecordingStats) -> Iterator[bytes]:
    """Complete lines of a file.

    Lines of a truncated final member that decompressed completely are kept (deflate
    output is a true prefix); its cut-off last line is dropped and counted as malformed.
    """
    with open(path, "rb") as fh:
        head = fh.read(2)
        fh.seek(0)
        if head != _GZIP_MAGIC:
            for line in fh:
                if line.strip():
                    yield line
            return
        pending = b""
        for chunk, complete in _gunzip_chunks(fh, path, stats):
            pending += chunk
            if b"\n" in pending:
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield line
            if not complete:
                if pending.strip():
                    stats.malformed_lines += 1  # the cut-off line of a truncated member
                return
        if pending.strip():
            yield pending


def _gunzip_chunks(fh: Any, path: Path, stats: RecordingStats) -> Iterator[tuple[bytes, bool]]:
    """Decompressed data of concatenated gzip members: (data, True) ... then (b"", False) on a cut."""
    decomp = zlib.decompressobj(31)
    in_member = False  # bytes of the current member have been fed
    while True:
        data = fh.read(_CHUNK_BYTES)
        if not data:
            break
        while data:
            if not in_member:
                data = data.lstrip(b"\x00")  # zero padding a filesystem may leave after a crash
                if not data:
                    break
            try:
                out = decomp.decompress(data)
            except zlib.error as exc:
                stats.corrupt_files += 1
                log.warning("%s: corrupt compressed data (%s); read up to the last complete batch", path, exc)
                yield b"", False
                return
            in_member = True
            if out:
                yield out, True
            if decomp.eof:
                data = decomp.unused_data
                decomp = zlib.decompressobj(31)
                in_member = False
            else:
                data = b""
    if in_member:
        stats.truncated_files += 1
        log.warning("%s: ends inside a gzip member (writer crashed?); read up to the last complete batch", path)
        yield b"", False
