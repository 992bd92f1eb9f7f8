"""Readings as columns (`monitor.app.columns`): what retrain reads long recordings into."""

from __future__ import annotations

import json

import numpy as np

from monitor.app.columns import ReadingColumns, load_recording_columns
from monitor.core.config import TopicRule
from monitor.core.types import RawMessage, Reading
from monitor.io.codec import Codec
from monitor.io.recording import RecordingWriter


def test_columns_hold_the_same_readings_and_sort_stably_like_sorted():
    readings = [Reading("s", "b", 2.0, 1.0), Reading("s", "a", 1.0, 2.0), Reading("s", "b", 1.0, 3.0)]
    cols = ReadingColumns.from_readings(readings)
    assert list(cols) == readings and len(cols) == 3
    assert list(cols.ordered()) == sorted(readings, key=lambda r: r.timestamp)  # ties keep read order
    ordered = cols.ordered()
    part = ordered.between(1.0, 2.0)
    assert list(part) == [readings[1], readings[2]]
    assert np.shares_memory(part.times, ordered.times)  # a view of the sorted columns, not a copy
    assert list(cols.channel_index(["a", "b"])) == [1, 0, 1]


def test_recordings_load_into_per_stream_columns_file_by_file(tmp_path):
    for k in range(2):
        with RecordingWriter(tmp_path / f"rec-{k}.jsonl.gz") as w:
            for i in range(3):
                t = 100.0 + 10 * k + i
                for s in ("p1", "p2"):
                    body = json.dumps({"ts": t, "x": i + k, "y": -i})
                    w.write(RawMessage(t, f"plant/{s}", body.encode(), 1, False))
    codec = Codec([TopicRule(template="plant/{asset}", format="json_multi", stream="{asset}")], 65536, 1e12)
    cols, rejected = load_recording_columns([tmp_path], codec)
    assert rejected == 0 and sorted(cols) == ["p1", "p2"]
    p1 = cols["p1"]
    assert len(p1) == 12 and p1.is_sorted and sorted(p1.names) == ["x", "y"]
    xs = [(r.timestamp, r.value) for r in p1 if r.channel == "x"]
    assert xs == [(100.0, 0.0), (101.0, 1.0), (102.0, 2.0), (110.0, 1.0), (111.0, 2.0), (112.0, 3.0)]
