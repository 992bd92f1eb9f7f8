"""CSV reading: the np.loadtxt fast path against the careful csv-module parser, same file, same run.

One generated wide CSV (epoch-second timestamps, `--channels` float channels and a 0/1
label column, `--rows` rows). Each measurement runs `monitor.io.files.read_csv` in a
fresh interpreter, so peak memory is that parse's alone: the child reports the wall time
of the call and its peak resident memory above the resident memory just before it
(ru_maxrss minus VmRSS). Parsers alternate, `--repeats` times; medians are quoted.

    .venv/bin/python bench/csv_read.py                 # 1M rows x 5 channels, 3 repeats
    .venv/bin/python bench/csv_read.py --rows 100000   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, time
from monitor.core.config import DataConfig
from monitor.io.files import read_csv

def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0

path, fast = sys.argv[1], sys.argv[2] == "fast"
before = rss_kib()
t0 = time.perf_counter()
data = read_csv(path, DataConfig(), fast=fast)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
print(json.dumps({"seconds": seconds, "peak_mib": (peak - before) / 1024, "parser": data.parser, "rows": data.n_rows}))
"""


def make_csv(path: Path, rows: int, channels: int) -> None:
    rng = np.random.default_rng(0)
    ts = 1_700_000_000 + np.arange(rows)
    values = rng.normal(size=(rows, channels)).round(6)
    labels = (rng.random(rows) < 0.01).astype(int)
    header = ",".join(["ts", *(f"c{i}" for i in range(channels)), "anomaly"])
    table = np.column_stack([ts, values, labels])
    np.savetxt(path, table, delimiter=",", header=header, comments="", fmt=["%d", *["%.6f"] * channels, "%d"])


def measure(path: Path, parser: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), parser], check=True, capture_output=True, text=True, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--channels", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(
        f"# .venv/bin/python bench/csv_read.py --rows {args.rows} --channels {args.channels} --repeats {args.repeats}"
    )
    print(f"# cores: {os.cpu_count()}, numpy {np.__version__}, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wide.csv"
        make_csv(path, args.rows, args.channels)
        print(f"# file: {args.rows} rows x {args.channels + 2} columns, {path.stat().st_size / 2**20:.1f} MiB")
        runs: dict[str, list[dict]] = {"careful": [], "fast": []}
        for rep in range(args.repeats):
            for parser in ("careful", "fast"):
                result = measure(path, parser)
                assert result["parser"] == parser and result["rows"] == args.rows, result
                runs[parser].append(result)
                print(f"  rep {rep + 1} {parser:8s} {result['seconds']:7.2f} s  peak +{result['peak_mib']:7.1f} MiB")
    med = {
        p: (statistics.median(r["seconds"] for r in rs), statistics.median(r["peak_mib"] for r in rs))
        for p, rs in runs.items()
    }
    print(f"medians of {args.repeats}:")
    for p, (sec, mib) in med.items():
        print(f"  {p:8s} {sec:7.2f} s  peak +{mib:7.1f} MiB")
    (cs, cm), (fs, fm) = med["careful"], med["fast"]
    print(f"  fast/careful: time {fs / cs:.3f}x ({cs / fs:.1f}x faster), peak memory {fm / cm:.3f}x")


if __name__ == "__main__":
    main()
