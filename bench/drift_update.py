"""What `monitor_model_drift` costs the live path: `DriftTracker.update` per scored batch
of 256 raw errors (and `add` per batch with a `value` every 20 batches, as the daemon
does: queued on the scoring path, binned at the export), medians of `--repeats` runs of
2 000 batches each. `--against REV` also times the `DriftTracker` of that git revision
(its `monitor/core/drift.py`, loaded on the side) in the same run, for a ratio.

    OMP_NUM_THREADS=1 .venv/bin/python bench/drift_update.py --against main
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.core import drift  # noqa: E402

BATCH, BATCHES = 256, 2000


def load_revision(rev: str):
    text = subprocess.run(
        ["git", "show", f"{rev}:monitor/core/drift.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "drift_old.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("drift_old", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def per_batch_us(module, batches: list[np.ndarray], queued: bool) -> float:
    rng = np.random.default_rng(0)
    tracker = module.DriftTracker(module.error_quantiles(rng.gamma(2.0, 1.0, 10_000)))
    start = time.perf_counter()
    for i, b in enumerate(batches):
        if queued:
            tracker.add(b)
            if i % 20 == 19:
                tracker.value()
        else:
            tracker.update(b)
    return (time.perf_counter() - start) / len(batches) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--against", help="a git revision whose DriftTracker to time too")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    batches = [rng.gamma(2.0, 1.0, BATCH).astype(np.float32) for _ in range(BATCHES)]
    modules = [("this tree", drift)] + ([(args.against, load_revision(args.against))] if args.against else [])
    results: dict[tuple[str, bool], list[float]] = {}
    for _ in range(args.repeats):
        for name, module in modules:
            for queued in (False, True):
                results.setdefault((name, queued), []).append(per_batch_us(module, batches, queued))
    print(f"us per batch of {BATCH} raw errors, median of {args.repeats} x {BATCHES} batches")
    base = {q: float(np.median(results[(modules[-1][0], q)])) for q in (False, True)}
    for (name, queued), values in results.items():
        med = float(np.median(values))
        what = "add, value every 20" if queued else "update"
        print(f"  {name:12s} {what:20s} {med:7.1f} us  (x{med / base[queued]:.2f} of {modules[-1][0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
