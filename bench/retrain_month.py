"""`monitor retrain` on long 1 Hz recordings of 20 streams: wall time and peak memory.

Synthetic data generated on the fly: 20 pumps (5 channels, `monitor.core.synthetic.pump`,
one seed each), one json_multi message per stream per second, written by the recorder's
own `RecordingWriter` into hourly files whose mtimes are set to their last message (as
the recorder leaves them), plus an empty alert log. For each span in ``--hours`` a fresh
folder is written and ``monitor retrain --threads 1 --max-age-hours SPAN`` runs in a child
process (OMP_NUM_THREADS=1); its wall time and peak RSS (``wait4`` rusage) are printed.

``--window`` also runs retrain on the longest recording with ``--max-age-hours WINDOW``:
files older than the window are not opened (`window_files`), so time and memory follow
the window, not the retention.

    .venv/bin/python bench/retrain_month.py --hours 1 3 6          # minutes on 2 cores
    .venv/bin/python bench/retrain_month.py --hours 24 168 720     # a day, a week, a month

``--dir DIR`` writes the recordings into DIR instead of a temporary folder and keeps them:
a later run with the same DIR reuses a span's folder that was written completely (a month
of recordings takes long to write and ~GiB of disk; delete DIR afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.core.synthetic import CHANNELS, pump  # noqa: E402
from monitor.core.types import RawMessage  # noqa: E402
from monitor.io.recording import RecordingWriter  # noqa: E402

STREAMS = 20
START = 1_700_000_000.0
CONFIG = """
stream: {channels: [flow, pressure, current, vibration, temperature], period_seconds: 1.0, max_gap_seconds: 5}
model: {architecture: dense, window_size: 16, hidden: [32], code_size: 6, epochs: 5, patience: 2, seed: 1, threads: 1}
calibration: {method: quantile, quantile: 0.999, factor: 1.5, holdout_fraction: 0.25}
alarm: {k: 3, n: 5, resolve_m: 10}
topics:
  - {template: "plant/{site}/{asset}", format: json_multi, stream: "{site}/{asset}"}
models: {dir: MODELS}
"""


def write_recording(folder: Path, hours: float) -> int:
    """Hourly recording files of STREAMS pumps at 1 Hz; returns the messages written (a
    folder already written completely, marked by its ``.complete`` file, is reused)."""
    done = folder / ".complete"
    if done.exists():
        return int(done.read_text())
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "alerts.ndjson").write_text("")
    rows = int(hours * 3600)
    data = [pump(rows, seed=100 + s, steps_per_hour=0, start_time=START) for s in range(STREAMS)]
    n = 0
    for h0 in range(0, rows, 3600):
        path = folder / f"rec-{int(START) + h0}.jsonl.gz"
        with RecordingWriter(path) as w:
            for i in range(h0, min(rows, h0 + 3600)):
                for s, (t, v, _) in enumerate(data):
                    body = json.dumps({"ts": float(t[i]), **dict(zip(CHANNELS, v[i].tolist(), strict=True))})
                    w.write(RawMessage(float(t[i]), f"plant/site1/pump{s}", body.encode(), 1, False))
                    n += 1
        last = START + min(rows, h0 + 3600)
        os.utime(path, (last, last))
    done.write_text(str(n))
    return n


def retrain(
    cfg: Path, data: Path, models: Path, max_age_hours: float, max_read_hours: float | None = None
) -> tuple[float, float, int, str]:
    """(wall seconds, peak RSS MiB, exit code, files read) of one `monitor retrain` child."""
    cmd = [sys.executable, "-m", "monitor", "retrain", "--config", str(cfg), "--data", str(data), "--out", str(models)]
    cmd += ["--no-plots", "--threads", "1", "--max-age-hours", f"{max_age_hours:g}"]
    if max_read_hours is not None:
        cmd += ["--max-read-hours", f"{max_read_hours:g}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    out = models.parent / f"{models.name}.verdict.json"
    started = time.monotonic()
    with open(out, "wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.monotonic() - started, usage.ru_maxrss / 1024.0, proc.returncode, _window(out)


def _window(verdict: Path) -> str:
    """Files read / in the window (thinned) from the verdict's ``window``."""
    lines = [line for line in verdict.read_text().splitlines() if line.startswith("{")]
    w = json.loads(lines[-1]).get("window", {}) if lines else {}
    read, thinned = w.get("files_read", 0), w.get("files_thinned", 0)
    return f"{read}/{read + thinned}" + (f" (1 in {w.get('read_every')} older)" if thinned else "")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--hours", type=float, nargs="+", default=[1.0, 3.0, 6.0])
    p.add_argument("--window", type=float, help="also retrain the longest recording with this --max-age-hours")
    p.add_argument("--max-read-hours", type=float, help="pass --max-read-hours (default: retrain.max_read_hours)")
    p.add_argument("--dir", help="write (and reuse) the recordings here instead of a temporary folder")
    p.add_argument("--write-only", action="store_true", help="only write the recordings (with --dir)")
    a = p.parse_args()
    print(
        f"command: .venv/bin/python bench/retrain_month.py --hours {' '.join(f'{h:g}' for h in a.hours)}"
        + (f" --window {a.window:g}" if a.window else "")
        + (f" --max-read-hours {a.max_read_hours:g}" if a.max_read_hours is not None else "")
        + (f" --dir {a.dir}" if a.dir else "")
    )
    print(f"{STREAMS} streams x 5 channels at 1 Hz, dense DAE window 16, 5 epochs, torch threads 1")
    print("hours  messages  write_s  retrain_wall_s  peak_rss_MiB  exit  files_read")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data_root = Path(a.dir) if a.dir else root
        longest = None
        for hours in a.hours:
            folder = data_root / f"rec-{hours:g}h"
            started = time.monotonic()
            n = write_recording(folder, hours)
            written = time.monotonic() - started
            if a.write_only:
                print(f"{hours:5g}  {n:8d}  {written:7.1f}  (written to {folder})", flush=True)
                continue
            cfg = root / f"monitor-{hours:g}.yaml"
            cfg.write_text(CONFIG.replace("MODELS", str(root / f"models-{hours:g}")))
            wall, rss, code, files = retrain(cfg, folder, root / f"models-{hours:g}", hours, a.max_read_hours)
            print(f"{hours:5g}  {n:8d}  {written:7.1f}  {wall:14.1f}  {rss:12.0f}  {code:4d}  {files}", flush=True)
            longest = (hours, folder, cfg)
        if a.window and longest is not None:
            hours, folder, cfg = longest
            wall, rss, code, files = retrain(cfg, folder, root / "models-window", a.window, a.max_read_hours)
            print(
                f"window {a.window:g} h of the {hours:g} h recording: {wall:.1f} s, {rss:.0f} MiB, exit {code}, {files}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
