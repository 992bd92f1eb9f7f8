"""Wide CSV reading: separators, timestamp formats, labels, errors, and the real SKAB files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from monitor.core.config import DataConfig
from monitor.io.files import DataError, detect_separator, read_csv

SKAB = Path(__file__).resolve().parents[2] / "shared" / "data" / "skab"


def write(tmp_path: Path, text: str, name: str = "data.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_separator_is_detected_from_the_header(tmp_path: Path, sep: str) -> None:
    rows = ["ts,a,b", "1700000000,1.5,2", "1700000001,3,4.25"]
    data = read_csv(write(tmp_path, "\n".join(r.replace(",", sep) for r in rows) + "\n"), DataConfig())
    assert data.channels == ["a", "b"]
    np.testing.assert_array_equal(data.timestamps, [1700000000.0, 1700000001.0])
    np.testing.assert_array_equal(data.values, [[1.5, 2.0], [3.0, 4.25]])
    assert data.labels is None and data.n_rows == 2


def test_detect_separator_ignores_quoted_text() -> None:
    assert detect_separator('"a;b;c",x,y') == ","
    assert detect_separator("single") == ","


def test_explicit_separator_wins(tmp_path: Path) -> None:
    path = write(tmp_path, "ts;a,b\n1;2.5\n")
    data = read_csv(path, DataConfig(separator=";"))
    assert data.channels == ["a,b"]


@pytest.mark.parametrize(
    "fmt,cells,expected",
    [
        ("auto", ["1700000000", "1700000000.5"], [1700000000.0, 1700000000.5]),
        ("auto", ["1700000000000", "1700000000500"], [1700000000.0, 1700000000.5]),
        ("epoch_s", ["1700000000", "1700000001"], [1700000000.0, 1700000001.0]),
        ("epoch_ms", ["1000", "2500"], [1.0, 2.5]),
        ("auto", ["2023-11-14T22:13:20Z", "2023-11-14T23:13:21+01:00"], [1700000000.0, 1700000001.0]),
        ("iso", ["2023-11-14 22:13:20", "2023-11-14T22:13:20.25"], [1700000000.0, 1700000000.25]),
    ],
)
def test_timestamp_formats(tmp_path: Path, fmt: str, cells: list[str], expected: list[float]) -> None:
    text = "time,a\n" + "".join(f"{c},{i}\n" for i, c in enumerate(cells))
    data = read_csv(write(tmp_path, text), DataConfig(timestamp_format=fmt))  # type: ignore[arg-type]
    np.testing.assert_allclose(data.timestamps, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "cells",
    [
        ["2020-03-09 10:14:33", "2020-03-09 10:14:34"],  # vectorized path
        ["2020-03-09 10:14:33", " 2020-03-09T10:14:34"],  # per-cell path
    ],
)
def test_naive_iso_applies_utc_offset(tmp_path: Path, cells: list[str]) -> None:
    text = "datetime;a\n" + "".join(f"{c};1\n" for c in cells)
    data = read_csv(write(tmp_path, text), DataConfig(utc_offset_hours=3.0))
    # 10:14:33 local at UTC+3 is 07:14:33 UTC
    np.testing.assert_array_equal(data.timestamps, [1583738073.0, 1583738074.0])


def test_crlf_bom_quoted_header_blank_lines_and_label(tmp_path: Path) -> None:
    text = '"ts";"temp C";"anomaly";"changepoint"\r\n1;20.5;0;0\r\n\r\n2;;1;1\r\n3;nan;0.0;0\r\n\r\n\r\n'
    path = write(tmp_path, "\ufeff" + text)
    data = read_csv(path, DataConfig(ignore_columns=["changepoint"]))
    assert data.channels == ["temp C"]
    assert data.n_rows == 3
    np.testing.assert_array_equal(data.timestamps, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(data.values[:, 0], [20.5, np.nan, np.nan])  # empty and nan: missing
    np.testing.assert_array_equal(data.labels, [0.0, 1.0, 0.0])
    assert data.values.dtype == np.float64 and data.values.shape == (3, 1)


def test_named_timestamp_column_need_not_be_first(tmp_path: Path) -> None:
    data = read_csv(write(tmp_path, "a,when,b\n1,100,2\n"), DataConfig(timestamp_column="when", label_column=None))
    assert data.channels == ["a", "b"]
    np.testing.assert_array_equal(data.timestamps, [100.0])


@pytest.mark.parametrize(
    "text,config,match",
    [
        ("ts,a\n1,2\n2,x\n", DataConfig(), r"data\.csv, line 3, column 'a': not a number: 'x'"),
        ("ts,a\n1,2\n\nsoon,3\n", DataConfig(), r"line 4, column 'ts': cannot parse timestamp 'soon'"),
        ("ts,a\n2023-01-01,2\nlater,3\n", DataConfig(), r"line 3, column 'ts': cannot parse timestamp 'later'"),
        ("ts,a\n1,2\n,3\n", DataConfig(), r"line 3, column 'ts'"),
        ("ts,a\n1,2,3\n", DataConfig(), r"line 2: 3 fields, the header has 2"),
        ("ts,a\n1,2\n", DataConfig(timestamp_column="time"), r"line 1: no timestamp column 'time'"),
        ("ts,anomaly,changepoint\n1,0,0\n", DataConfig(ignore_columns=["changepoint"]), r"no channel columns"),
        ("ts,a\n", DataConfig(), r"no data rows"),
        ("", DataConfig(), r"no header line"),
        ("ts,a,a\n1,2,3\n", DataConfig(), r"column 'a' appears twice"),
    ],
)
def test_errors_name_file_line_and_column(tmp_path: Path, text: str, config: DataConfig, match: str) -> None:
    with pytest.raises(DataError, match=match) as info:
        read_csv(write(tmp_path, text), config)
    assert isinstance(info.value, ValueError) and info.value.path.endswith("data.csv")


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        read_csv(tmp_path / "absent.csv", DataConfig())


def test_large_file_is_vectorized(tmp_path: Path) -> None:
    n = 20_000
    t = 1_600_000_000 + np.arange(n)
    stamps = t.astype("datetime64[s]").astype(str)
    lines = [f"{s},{i * 0.5},{-i}" for i, s in enumerate(stamps)]
    data = read_csv(write(tmp_path, "datetime,a,b\n" + "\n".join(lines)), DataConfig())
    np.testing.assert_array_equal(data.timestamps, t.astype(np.float64))
    np.testing.assert_array_equal(data.values[:, 1], -np.arange(n, dtype=np.float64))


@pytest.mark.skipif(not SKAB.is_dir(), reason=f"SKAB data not found at {SKAB} (shared/data/skab next to the repo)")
def test_real_skab_file() -> None:
    path = SKAB / "valve1" / "0.csv"
    data = read_csv(path, DataConfig(ignore_columns=["changepoint"]))
    header = path.read_text(encoding="utf-8-sig").splitlines()[0].split(";")
    n_lines = sum(1 for line in path.read_text().splitlines() if line.strip())
    assert data.channels == header[1:9] and len(data.channels) == 8
    assert data.n_rows == n_lines - 1 == data.values.shape[0] == data.timestamps.shape[0]
    assert data.labels is not None and data.labels.sum() > 0
    assert np.isfinite(data.values).all()
    assert np.all(np.diff(data.timestamps) > 0)


@pytest.mark.skipif(not SKAB.is_dir(), reason=f"SKAB data not found at {SKAB} (shared/data/skab next to the repo)")
def test_real_skab_anomaly_free_has_no_labels() -> None:
    data = read_csv(SKAB / "anomaly-free" / "anomaly-free.csv", DataConfig(ignore_columns=["changepoint"]))
    assert data.labels is None and len(data.channels) == 8 and data.n_rows > 1000
