"""The CSV reader's np.loadtxt fast path: taken for plain numeric files, never changing
what is read, and refused for anything irregular so errors stay the careful parser's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from monitor.core.config import DataConfig
from monitor.io.files import DataError, read_csv

SKAB = Path(__file__).resolve().parents[2] / "shared" / "data" / "skab"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data.csv"
    path.write_bytes(text.encode("utf-8"))
    return path


def same(a, b) -> None:
    assert a.channels == b.channels and a.n_rows == b.n_rows
    np.testing.assert_array_equal(a.timestamps, b.timestamps)
    np.testing.assert_array_equal(a.values, b.values)
    if a.labels is None:
        assert b.labels is None
    else:
        np.testing.assert_array_equal(a.labels, b.labels)


PLAIN = [
    # (text, config)
    ("ts,a,b\n1700000000,1.5,2\n1700000001,3,4.25\n", DataConfig()),
    ("ts;a;b\r\n1700000000;1.5;2\r\n1700000001;3;4.25\r\n", DataConfig()),  # CRLF, semicolons
    ("ts,a,anomaly\n1700000000000,1.5,0\n1700000001000,nan,1\n", DataConfig()),  # ms by magnitude, a label
    ("ts,a\n1700000000000,1e3\n1700000001000,-inf\n", DataConfig(timestamp_format="epoch_ms")),
    ("ts,a\n5,1\n6,2\n", DataConfig(timestamp_format="epoch_s")),
    ("a,ts,skip,b\n1,1700000000,9,2\n\n3,1700000001,9,4\n", DataConfig(timestamp_column="ts", ignore_columns=["skip"])),
    ("ts\ta\n 1700000000 \t 7 \n", DataConfig()),  # padded cells
]


@pytest.mark.parametrize("text,config", PLAIN)
def test_plain_numeric_files_take_the_fast_path_and_read_the_same(tmp_path: Path, text: str, config: DataConfig):
    path = write(tmp_path, text)
    fast = read_csv(path, config)
    careful = read_csv(path, config, fast=False)
    assert fast.parser == "fast"
    assert careful.parser == "careful"
    same(fast, careful)
    assert np.isnan(fast.values[~np.isfinite(fast.values)]).all()  # non-finite cells are NaN (missing)


IRREGULAR = [
    "ts,a\n1700000000,1.5\n1700000001,\n",  # an empty cell: NaN, careful parser
    'ts,a\n1700000000,"1.5"\n',  # quoted number
    "ts,a\n2020-03-09 10:14:33,1\n",  # ISO timestamps
    "ts,a\n1700000000,1_000\n",  # Python float() reads it, C does not
    '"ts","a"\n1700000000,2\n',  # a quoted header
]


@pytest.mark.parametrize("text", IRREGULAR)
def test_irregular_but_valid_files_fall_back_to_the_careful_parser(tmp_path: Path, text: str):
    path = write(tmp_path, text)
    data = read_csv(path, DataConfig())
    assert data.parser == "careful"
    same(data, read_csv(path, DataConfig(), fast=False))


BAD = [
    ("ts,a\n1700000000,1\n1700000001,oops\n", "line 3, column 'a': not a number"),
    ("ts,a\n1700000000,1\n1700000001,2,3\n", "line 3: 3 fields, the header has 2"),
    ("ts,a\n1700000000,1\nnan,2\n", "line 3, column 'ts': cannot parse timestamp"),
    ("ts,a\n1700000000,1\n#comment,2\n", "line 3, column 'ts'"),  # not a comment
    ("ts,a,b\n1700000000,1\n1700000001,2\n", "line 2: 2 fields, the header has 3"),  # every row short
    ("ts,a\n", "no data rows"),
]


@pytest.mark.parametrize("text,message", BAD)
def test_bad_rows_get_the_careful_parsers_error_either_way(tmp_path: Path, text: str, message: str):
    path = write(tmp_path, text)
    errors = []
    for fast in (True, False):
        with pytest.raises(DataError) as err:
            read_csv(path, DataConfig(), fast=fast)
        errors.append(str(err.value))
    assert errors[0] == errors[1]
    assert message in errors[0], errors[0]


def test_a_large_plain_file_is_read_by_the_fast_path(tmp_path: Path):
    rng = np.random.default_rng(0)
    n = 20_000
    table = np.column_stack([1_700_000_000 + np.arange(n), rng.normal(size=(n, 3)).round(6)])
    path = tmp_path / "big.csv"
    np.savetxt(path, table, delimiter=",", header="ts,a,b,c", comments="", fmt=["%d", "%.6f", "%.6f", "%.6f"])
    fast = read_csv(path, DataConfig())
    assert fast.parser == "fast" and fast.n_rows == n
    same(fast, read_csv(path, DataConfig(), fast=False))


@pytest.mark.skipif(not SKAB.is_dir(), reason="SKAB data not present")
def test_the_real_skab_files_read_the_same_either_way():
    # SKAB stamps rows with ISO times: the careful parser reads them, fast or not
    path = SKAB / "valve1" / "0.csv"
    config = DataConfig(ignore_columns=["changepoint"])
    data = read_csv(path, config)
    assert data.parser == "careful"
    same(data, read_csv(path, config, fast=False))
