"""Recording format: round trips, crash tolerance, concatenation, malformed lines."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest

from monitor.core.types import RawMessage
from monitor.io.recording import (
    RecordingStats,
    RecordingWriter,
    iter_recordings,
    read_recording,
    recording_files,
)

MESSAGES = [
    RawMessage(1700000000.125, "sensors/p1/temp", b"21.5", 1, False),
    RawMessage(1700000000.25, "sensors/p1/json", '{"value": 1, "unit": "°C"}'.encode(), 0, True),
    RawMessage(1700000000.5, "sensors/p1/raw", bytes(range(256)), 1, False),  # not UTF-8
    RawMessage(1700000001.0, "sensors/p1/empty", b"", 0, False),
    RawMessage(1700000001.5, "sensors/ü/x", b"\xff\xfe\x00line\nbreak", 1, True),
]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(path: Path, messages: list[RawMessage], **kwargs: object) -> None:
    with RecordingWriter(path, **kwargs) as writer:  # type: ignore[arg-type]
        for msg in messages:
            writer.write(msg)


def test_round_trip_is_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl.gz"
    record(path, MESSAGES, flush_every=2)
    stats = RecordingStats()
    assert list(read_recording(path, stats)) == MESSAGES
    assert stats == RecordingStats(files=1, messages=5, headers=1)


def test_file_is_gzip_json_lines_with_header(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl.gz"
    record(path, MESSAGES[:3])
    lines = [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]
    assert lines[0]["format"] == "monitor-recording" and lines[0]["version"] == 1 and "created_at" in lines[0]
    assert lines[1] == {"t": 1700000000.125, "topic": "sensors/p1/temp", "qos": 1, "retain": False, "payload": "21.5"}
    assert "payload_b64" in lines[3] and "payload" not in lines[3]


def test_each_flush_is_a_separate_gzip_member(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl.gz"
    clock = FakeClock()
    writer = RecordingWriter(path, flush_every=3, flush_seconds=10.0, clock=clock)
    sizes = [path.stat().st_size]  # the header member is written at once
    for msg in MESSAGES[:3]:
        writer.write(msg)
    sizes.append(path.stat().st_size)  # flush_every reached
    writer.write(MESSAGES[3])
    assert writer.pending == 1 and path.stat().st_size == sizes[-1]
    clock.now = 10.0
    writer.write(MESSAGES[4])  # flush_seconds passed
    assert writer.pending == 0 and writer.messages_written == 5
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        writer.write(MESSAGES[0])
    assert sizes[0] > 0 and sizes[1] > sizes[0]
    assert list(read_recording(path)) == MESSAGES


def test_existing_file_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl.gz"
    path.write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="new file"):
        RecordingWriter(path)
    assert path.read_bytes() == b"keep"


@pytest.mark.parametrize("cut", [1, 10, 25, "mid"])
def test_truncated_final_member_keeps_earlier_messages(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, cut: object
) -> None:
    path = tmp_path / "rec.jsonl.gz"
    with RecordingWriter(path, flush_every=1000) as writer:
        for msg in MESSAGES[:2]:
            writer.write(msg)
        writer.flush()
        complete = path.stat().st_size
        for msg in MESSAGES[2:] * 50:
            writer.write(msg)
    data = path.read_bytes()
    end = complete + (len(data) - complete) // 2 if cut == "mid" else len(data) - int(cut)  # type: ignore[call-overload]
    path.write_bytes(data[:end])  # the writer "crashed" inside its last member
    stats = RecordingStats()
    with caplog.at_level(logging.WARNING):
        got = list(read_recording(path, stats))
    assert got[:2] == MESSAGES[:2]
    assert got[2:] == (MESSAGES[2:] * 50)[: len(got) - 2]  # any complete lines of the cut member are genuine
    assert stats.truncated_files == 1 and stats.corrupt_files == 0
    assert "ends inside a gzip member" in caplog.text


def test_concatenated_members_and_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    record(a, MESSAGES[:2])
    record(b, MESSAGES[2:])
    joined = tmp_path / "joined.jsonl.gz"
    joined.write_bytes(a.read_bytes() + b.read_bytes())  # like `cat a b > joined`
    stats = RecordingStats()
    assert list(read_recording(joined, stats)) == MESSAGES
    assert stats.headers == 2 and stats.truncated_files == 0


def test_zero_padding_after_last_member_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl.gz"
    record(path, MESSAGES)
    path.write_bytes(path.read_bytes() + b"\x00" * 4096)
    stats = RecordingStats()
    assert list(read_recording(path, stats)) == MESSAGES
    assert stats.truncated_files == 0 and stats.corrupt_files == 0


def test_corrupt_member_stops_reading_without_raising(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl.gz"
    record(path, MESSAGES[:2])
    path.write_bytes(path.read_bytes() + b"\x1f\x8b\x08\x00garbage-garbage-garbage")
    stats = RecordingStats()
    assert list(read_recording(path, stats)) == MESSAGES[:2]
    assert stats.corrupt_files == 1


def test_malformed_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    good = [
        json.dumps(
            {"t": m.received_at, "topic": m.topic, "qos": m.qos, "retain": m.retain, "payload": m.payload.decode()}
        )
        for m in MESSAGES[:2]
    ]
    bad = [
        "{not json",
        "[1, 2]",
        json.dumps({"t": 1.0, "topic": "x"}),  # no payload
        json.dumps({"t": "now", "topic": "x", "payload": ""}),
        json.dumps({"t": 1.0, "topic": "x", "payload_b64": "@@@"}),
        json.dumps({"t": 1.0, "topic": "x", "qos": 7, "payload": ""}),
        json.dumps({"format": "something-else"}),
    ]
    text = "\n".join([good[0], *bad, "", good[1]]) + "\n"
    plain = tmp_path / "rec.jsonl"
    plain.write_text(text)
    packed = tmp_path / "rec2.jsonl.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    for path in (plain, packed):
        stats = RecordingStats()
        assert list(read_recording(path, stats)) == MESSAGES[:2]
        assert stats.malformed_lines == len(bad) and stats.messages == 2


def test_plain_jsonl_without_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    path.write_text('{"t": 5, "topic": "a/b", "payload": "1"}')
    assert list(read_recording(path)) == [RawMessage(5.0, "a/b", b"1", 0, False)]


def test_iter_recordings_accepts_files_and_directories_sorted_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "recordings"
    folder.mkdir()
    for i, name in enumerate(["2024-01-02.jsonl.gz", "2024-01-01.jsonl.gz", "2024-01-03.jsonl"]):
        if name.endswith(".gz"):
            record(folder / name, [MESSAGES[i]])
        else:
            (folder / name).write_text(
                json.dumps(
                    {
                        "t": MESSAGES[i].received_at,
                        "topic": MESSAGES[i].topic,
                        "qos": 0,
                        "retain": False,
                        "payload_b64": "",
                    }
                )
                + "\n"
            )
    (folder / "notes.txt").write_text("not a recording")
    extra = tmp_path / "extra.bin"
    record(extra, [MESSAGES[4]])
    assert [p.name for p in recording_files(folder)] == [
        "2024-01-01.jsonl.gz",
        "2024-01-02.jsonl.gz",
        "2024-01-03.jsonl",
    ]
    stats = RecordingStats()
    topics = [m.topic for m in iter_recordings([folder, extra], stats)]
    assert topics == [MESSAGES[1].topic, MESSAGES[0].topic, MESSAGES[2].topic, MESSAGES[4].topic]
    assert stats.files == 4 and stats.messages == 4
    with pytest.raises(FileNotFoundError, match="absent"):
        list(iter_recordings(tmp_path / "absent"))
