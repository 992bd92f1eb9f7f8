"""Wide CSV files (one timestamp column, one column per channel) for training and backtests.

`read_csv` reads the whole file into numpy arrays. Empty cells become NaN (the pipeline
treats NaN as a missing reading), and so do non-finite cells ("nan", "inf"), matching
the live codec, which drops non-finite readings. Anything else that is not a number is
a `DataError` naming the file, line and column. Timestamps are not required to be
increasing; ordering is the caller's business.

Two parsers give the same arrays. A plain numeric file (epoch timestamps, every cell a
number, no quotes, no empty cells) is read by `np.loadtxt` in C: about 15x faster and a
tenth of the memory on a million rows (bench/csv_read.py). Anything else, and any file
the fast parser refuses, is read by the careful parser, which knows the line and column
of every bad cell; so errors are the same either way. `CsvData.parser` says which ran.
"""

from __future__ import annotations

import csv
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitor.core.config import DataConfig
from monitor.io.codec import MS_THRESHOLD, parse_iso

__all__ = ["CsvData", "DataError", "detect_separator", "read_csv"]

SEPARATORS = (",", ";", "\t", "|")


class DataError(ValueError):
    """A data file cannot be read; `path`, `line` (1-based) and `column` say where."""

    def __init__(self, path: str | Path, message: str, line: int | None = None, column: str | None = None):
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line
        self.column = column


@dataclass
class CsvData:
    """A CSV file as arrays: row i is `values[i]` (raw units, NaN = missing) at `timestamps[i]`."""

    path: str
    timestamps: np.ndarray  # (N,) float64 epoch seconds
    channels: list[str]
    values: np.ndarray  # (N, C) float64
    labels: np.ndarray | None  # (N,) float64, or None without a label column
    n_rows: int
    parser: str = "careful"  # "fast" (np.loadtxt) or "careful" (csv module, per-cell errors)


def detect_separator(header: str) -> str:
    """The candidate separator that occurs most often outside quotes in `header` (default ",")."""
    counts = dict.fromkeys(SEPARATORS, 0)
    quoted = False
    for ch in header:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(SEPARATORS, key=lambda s: counts[s])
    return best if counts[best] else ","


def _not_text(path: Path, exc: UnicodeDecodeError) -> str:
    """Why a "CSV" file did not decode, and what to do: a gzip file is not a text problem."""
    try:
        with open(path, "rb") as fh:
            gzipped = fh.read(2) == b"\x1f\x8b"
    except OSError:
        gzipped = False
    if gzipped:
        return (
            "gzip-compressed, not CSV text: a recording (.jsonl.gz) goes to `monitor replay --offline` or "
            "`monitor train --data`; a compressed CSV file must be unpacked first (gunzip -k)"
        )
    return f"not UTF-8 text (byte {exc.start}); save the file as UTF-8"


def read_csv(path: str | Path, data: DataConfig | None = None, *, fast: bool = True) -> CsvData:
    """Read a wide CSV file as configured by `data` (see DataConfig).

    `fast` False skips the np.loadtxt attempt (the bench compares the two parsers).
    """
    data = data or DataConfig()
    path = Path(path)
    if fast:
        found = _fast_read(path, data)
        if found is not None:
            return found
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            text = fh.read()
    except OSError as exc:
        raise DataError(path, f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise DataError(path, _not_text(path, exc)) from None

    first_line = text.split("\n", 1)[0].rstrip("\r")
    if not first_line.strip():
        raise DataError(path, "no header line (the file or its first line is empty)", line=1)
    sep = data.separator or detect_separator(first_line)
    reader = csv.reader(io.StringIO(text), delimiter=sep)
    header = [name.strip() for name in next(reader)]
    columns = _assign_columns(path, header, data)
    ts_index, label_index, channel_indices = columns

    rows: list[list[str]] = []
    line_numbers: list[int] = []
    width = len(header)
    try:
        for row in reader:
            if len(row) != width:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                raise DataError(
                    path, f"{len(row)} fields, the header has {width} (separator {sep!r})", line=reader.line_num
                )
            rows.append(row)
            line_numbers.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(path, f"bad CSV: {exc}", line=reader.line_num) from None
    if not rows:
        raise DataError(path, "no data rows after the header")

    # column-major: cells[j] is column j as a tuple of strings (every row has the header's width)
    cells = list(zip(*rows, strict=True))
    timestamps = _timestamps(path, cells[ts_index], header[ts_index], line_numbers, data)
    values = np.empty((len(rows), len(channel_indices)), dtype=np.float64)
    for k, j in enumerate(channel_indices):
        values[:, k] = _numbers(path, cells[j], header[j], line_numbers)
    labels = None if label_index is None else _numbers(path, cells[label_index], header[label_index], line_numbers)
    return CsvData(
        path=str(path),
        timestamps=timestamps,
        channels=[header[j] for j in channel_indices],
        values=values,
        labels=labels,
        n_rows=len(rows),
    )


def _fast_read(path: Path, data: DataConfig) -> CsvData | None:
    """The file read by np.loadtxt when every cell is a plain number, else None.

    np.loadtxt streams the file in chunks (no whole-file string, no per-cell objects). It
    refuses empty cells, quotes, rows of another width, bytes that are not UTF-8 and text
    that Python's float() reads but its C parser does not ("1_000"); None sends all of
    those, and unreadable files, to the careful parser, which reports them. comments=None:
    a '#' is a bad cell here, as it is there. A header error is the careful parser's own
    (`_assign_columns` on the same names).
    """
    if data.timestamp_format == "iso":
        return None
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            first_line = fh.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError):
        return None
    if not first_line.strip() or '"' in first_line:
        return None
    sep = data.separator or detect_separator(first_line)
    header = [name.strip() for name in first_line.split(sep)]
    columns = _assign_columns(path, header, data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data": the careful parser says so
            table = np.loadtxt(
                path, delimiter=sep, skiprows=1, dtype=np.float64, comments=None, ndmin=2, encoding="utf-8-sig"
            )
    except (ValueError, TypeError, IndexError, OSError):
        return None
    if table.shape[0] == 0 or table.shape[1] != len(header):
        return None
    return _from_table(path, table, header, columns, data)


def _from_table(
    path: Path, table: np.ndarray, header: list[str], columns: tuple[int, int | None, list[int]], data: DataConfig
) -> CsvData | None:
    """CsvData from a loadtxt table, or None when a timestamp is not finite (the careful
    parser then names its line)."""
    ts_index, label_index, channel_indices = columns
    stamps = table[:, ts_index]
    if not np.isfinite(stamps).all():
        return None
    fmt = data.timestamp_format
    if fmt == "epoch_ms":
        timestamps = stamps / 1000.0
    elif fmt == "epoch_s":
        timestamps = stamps.copy()
    else:
        timestamps = np.where(stamps > MS_THRESHOLD, stamps / 1000.0, stamps)
    values = np.ascontiguousarray(table[:, channel_indices])
    values[~np.isfinite(values)] = np.nan
    labels = None
    if label_index is not None:
        labels = table[:, label_index].copy()
        labels[~np.isfinite(labels)] = np.nan
    return CsvData(
        path=str(path),
        timestamps=timestamps,
        channels=[header[j] for j in channel_indices],
        values=values,
        labels=labels,
        n_rows=len(table),
        parser="fast",
    )


def _assign_columns(path: Path, header: list[str], data: DataConfig) -> tuple[int, int | None, list[int]]:
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise DataError(path, f"column {name!r} appears twice in the header", line=1)
        seen.add(name)
    if data.timestamp_column is None:
        ts_index = 0
    elif data.timestamp_column in seen:
        ts_index = header.index(data.timestamp_column)
    else:
        raise DataError(
            path,
            f"no timestamp column {data.timestamp_column!r} (data.timestamp_column); the header has {header}",
            line=1,
        )
    label_index = header.index(data.label_column) if data.label_column in seen else None
    ignored = set(data.ignore_columns)
    channel_indices = [j for j, name in enumerate(header) if j != ts_index and j != label_index and name not in ignored]
    if not channel_indices:
        raise DataError(
            path, f"no channel columns: the header {header} has only the timestamp, label and ignored columns", line=1
        )
    return ts_index, label_index, channel_indices


def _numbers(path: Path, column: tuple[str, ...], name: str, line_numbers: list[int]) -> np.ndarray:
    """Column of numeric strings -> float64; empty and non-finite cells -> NaN."""
    try:
        out = np.array(column, dtype=np.float64)
    except ValueError:
        out = np.empty(len(column), dtype=np.float64)
        for i, cell in enumerate(column):
            text = cell.strip()
            if not text:
                out[i] = np.nan
                continue
            try:
                out[i] = float(text)
            except ValueError:
                raise DataError(
                    path,
                    f"not a number: {cell[:40]!r} (leave the cell empty for a missing value)",
                    line=line_numbers[i],
                    column=name,
                ) from None
    out[~np.isfinite(out)] = np.nan
    return out


def _timestamps(
    path: Path, column: tuple[str, ...], name: str, line_numbers: list[int], data: DataConfig
) -> np.ndarray:
    fmt: str = data.timestamp_format  # "auto" resolves to "epoch" or "iso"
    if fmt == "auto":
        try:
            float(column[0])
            fmt = "epoch"
        except ValueError:
            fmt = "iso"
    if fmt == "iso":
        return _iso_column(path, column, name, line_numbers, data.utc_offset_hours * 3600.0)
    try:
        out = np.array(column, dtype=np.float64)
        bad = ~np.isfinite(out)
    except ValueError:
        out, bad = None, None
    if out is None or bad is None or bad.any():
        for i, cell in enumerate(column):
            try:
                number = float(cell)
            except ValueError:
                number = float("nan")
            if number - number != 0.0:
                raise DataError(
                    path,
                    f"cannot parse timestamp {cell[:40]!r} as an epoch number "
                    f"(data.timestamp_format={data.timestamp_format!r})",
                    line=line_numbers[i],
                    column=name,
                )
    assert out is not None  # else a cell failed float() above and raised
    if fmt == "epoch_ms":
        return out / 1000.0
    if fmt == "epoch_s":
        return out
    return np.where(out > MS_THRESHOLD, out / 1000.0, out)


def _iso_column(
    path: Path, column: tuple[str, ...], name: str, line_numbers: list[int], naive_offset_seconds: float
) -> np.ndarray:
    """ISO 8601 strings -> epoch seconds; naive times are UTC + `naive_offset_seconds`."""
    fast = _naive_iso_numpy(column)
    if fast is not None:
        return fast - naive_offset_seconds
    out = np.empty(len(column), dtype=np.float64)
    cache: dict[str, float] = {}  # date-and-hour prefix -> epoch of that hour
    for i, cell in enumerate(column):
        text = cell.strip()
        try:
            out[i] = _iso_cached(text, cache, naive_offset_seconds)
        except (ValueError, OverflowError, TypeError, IndexError):
            raise DataError(
                path,
                f"cannot parse timestamp {cell[:40]!r}: expected ISO 8601 such as "
                "'2020-03-09 10:14:33' or '2020-03-09T10:14:33+01:00', or epoch seconds",
                line=line_numbers[i],
                column=name,
            ) from None
    return out


def _iso_cached(text: str, cache: dict[str, float], naive_offset_seconds: float) -> float:
    # "YYYY-MM-DD?hh:mm:ss" with nothing after: epoch of the hour from the cache + mm:ss.
    if len(text) == 19 and text[13] == ":" and text[16] == ":" and text[10] in " T":
        prefix = text[:13]
        base = cache.get(prefix)
        if base is None:
            base = cache[prefix] = parse_iso(prefix + ":00:00", naive_offset_seconds)
        minutes, seconds = text[14:16], text[17:19]
        if minutes.isdigit() and seconds.isdigit() and int(minutes) < 60 and int(seconds) < 60:
            return base + int(minutes) * 60 + int(seconds)
    return parse_iso(text, naive_offset_seconds)


def _naive_iso_numpy(column: tuple[str, ...]) -> np.ndarray | None:
    """Vectorized parse of naive ISO times (as UTC), or None when the column needs the slow path."""
    if not all(cell[:4].isdigit() and cell[4:5] == "-" for cell in column):
        return None  # numpy also reads "now", "today", "NaT"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy warns (deprecated) on time zones: slow path
            parsed = np.array(column, dtype="datetime64[us]")
    except (ValueError, TypeError, OverflowError, Warning):
        return None
    if np.isnat(parsed).any():
        return None
    return parsed.astype(np.int64) / 1e6
