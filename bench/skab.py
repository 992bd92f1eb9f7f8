"""SKAB outlier-detection benchmark through the project's own pipeline.

Protocol (../shared/data/skab/README.md): for each of the 34 labelled files, train on the
first 400 rows, stream the whole file through the pipeline, and score the rows from 400
on against the `anomaly` column, pointwise, no point adjustment; TP/FP/FN/TN summed over
all files. One configuration for every file.

    .venv/bin/python bench/skab.py [--config configs/skab.yaml] [--files valve1/0 other/3 ...]
                                   [--jobs 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from monitor.app.backtest import run_backtest  # noqa: E402
from monitor.app.training import StreamData, train_bundle  # noqa: E402
from monitor.core.config import load_config  # noqa: E402
from monitor.core.evaluate import Quality  # noqa: E402
from monitor.core.model.bundle import load_bundle  # noqa: E402
from monitor.core.scoring_model import ScoringModel  # noqa: E402
from monitor.io.files import read_csv  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "skab"
TRAIN_ROWS = 400

LEADERBOARD = [  # upstream README, test set only (F1, FAR %, MAR %)
    ("Perfect detector", 1.0, 0.0, 0.0),
    ("Conv-AE", 0.78, 13.55, 28.02),
    ("MSET", 0.78, 39.73, 14.13),
    ("T-squared+Q (PCA-based)", 0.76, 26.62, 24.92),
    ("LSTM-AE", 0.74, 29.96, 25.92),
    ("T-squared", 0.66, 19.21, 42.6),
    ("LSTM-VAE", 0.56, 9.13, 55.03),
    ("Vanilla LSTM", 0.54, 12.54, 59.53),
    ("Vanilla AE", 0.39, 2.59, 75.15),
    ("MSCRED", 0.36, 49.94, 69.88),
    ("Isolation forest", 0.29, 2.56, 82.89),
    ("Null detector", 0.0, 0.0, 100.0),
    ("(always alarm, measured)", 0.70, 100.0, 0.0),
]


def labelled_files(data_dir: Path) -> list[Path]:
    files = []
    for sub in ("valve1", "valve2", "other"):
        files += sorted((data_dir / sub).glob("*.csv"), key=lambda p: int(p.stem))
    return files


def run_file(args: tuple[str, str, int]) -> dict:
    """Train on the first rows of one file and backtest it; returns counts and timings."""
    path, config_path, threads = args
    torch.set_num_threads(threads)
    cfg = load_config(config_path, environ={})
    data = read_csv(path, cfg.data)
    channels = list(cfg.stream.channels or data.channels)  # stream.channels selects columns, as `monitor train` does
    values = data.values[:, [list(data.channels).index(c) for c in channels]]
    sd = StreamData(cfg.data.stream, channels, data.timestamps[:TRAIN_ROWS], values[:TRAIN_ROWS])
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        outcome = train_bundle([sd], cfg, Path(tmp), write_plots=False)
        model = ScoringModel.from_bundle(load_bundle(outcome.bundle_path))
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    res = run_backtest(
        cfg, data.timestamps, data.values, data.channels, model, labels=data.labels, train_rows=TRAIN_ROWS
    )
    score_s = time.perf_counter() - started
    q = res.quality
    return {
        "file": str(Path(path).relative_to(Path(path).parents[1])),
        "tp": q.tp,
        "fp": q.fp,
        "fn": q.fn,
        "tn": q.tn,
        "delays": q.delays,
        "segments": q.segments,
        "missed": q.missed_segments,
        "train_seconds": train_s,
        "score_seconds": score_s,
        "rows": int(data.n_rows),
        "epochs": outcome.manifest.training["epochs_run"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "skab.yaml"))
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--files", nargs="*", help="subset, e.g. valve1/0 other/13 (default: all 34)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--json", help="write per-file results here")
    args = ap.parse_args(argv)

    data_dir = Path(args.data)
    files = labelled_files(data_dir)
    if not files:
        print(f"no SKAB files under {data_dir}", file=sys.stderr)
        return 2
    if args.files:
        wanted = {f.strip("/") for f in args.files}
        files = [f for f in files if f"{f.parent.name}/{f.stem}" in wanted]
    started = time.perf_counter()
    jobs = [(str(f), args.config, 1) for f in files]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(run_file, jobs))
    else:
        results = [run_file(j) for j in jobs]
    wall = time.perf_counter() - started

    total = Quality()
    print(f"{'file':<12} {'F1':>6} {'FAR%':>7} {'MAR%':>7} {'delay s':>8} {'train s':>8} {'epochs':>6}")
    for r in results:
        q = Quality(r["tp"], r["fp"], r["fn"], r["tn"], r["delays"], r["segments"], r["missed"])
        total = total + q
        d = "-" if q.mean_delay is None else f"{q.mean_delay:.0f}"
        print(
            f"{r['file']:<12} {q.f1:6.3f} {q.far:7.2f} {q.mar:7.2f} {d:>8} {r['train_seconds']:8.1f} {r['epochs']:6d}"
        )
    train_times = sorted(r["train_seconds"] for r in results)
    median_train = train_times[len(train_times) // 2]
    print()
    print(
        f"SKAB outlier detection, {len(results)} files, train on first {TRAIN_ROWS} rows, "
        f"config {os.path.relpath(args.config, ROOT)}"
    )
    print(f"{'Algorithm':<28} {'F1':>5} {'FAR, %':>8} {'MAR, %':>8}  mean delay")
    delay = "n/a" if total.mean_delay is None else f"{total.mean_delay:.1f} s"
    print(
        f"{'monitor (this run)':<28} {total.f1:5.2f} {total.far:8.2f} {total.mar:8.2f}  {delay} "
        f"({total.segments - total.missed_segments}/{total.segments} segments detected)"
    )
    for name, f1, far, mar in LEADERBOARD:
        print(f"{name:<28} {f1:5.2f} {far:8.2f} {mar:8.2f}")
    print(f"\ntraining time per file: median {median_train:.1f} s; wall {wall:.0f} s with {args.jobs} job(s)")
    print(
        f"command: .venv/bin/python bench/skab.py --config {os.path.relpath(args.config, ROOT)}"
        + (f" --files {' '.join(args.files)}" if args.files else "")
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"total": total.as_dict(), "files": results, "wall_seconds": wall}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
