"""`monitor train` wall time on the demo data: torch's default threads against `model.threads`.

Runs `monitor train` on the bundled demo recording with the demo's model config, each
setting in turn (interleaved, so load changes hit all alike), and prints the median of
`--repeats` runs per setting and the ratio to torch's default. "torch default" is
`--threads` left to torch (one per core; OMP_NUM_THREADS unset), which is what the code
did before `model.threads` existed.

    .venv/bin/python bench/threads.py --repeats 3              # default, 1, 2 threads
    .venv/bin/python bench/threads.py --repeats 3 --epochs 10  # shorter
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.app.demo import DATA, DEMO_CONFIG  # noqa: E402

_TORCH_DEFAULT = (
    "import sys, torch; n = torch.get_num_threads(); "
    "from monitor.core.model import threads; threads.use_threads = lambda t: n; "  # leave torch's own count
    "from monitor.app.cli import main; sys.exit(main(sys.argv[1:]))"
)


def run(setting: str, config: Path, out: Path) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    args = ["train", "--config", str(config), "--data", str(DATA), "--out", str(out), "--quiet", "--no-promote"]
    if setting == "default":
        cmd = [sys.executable, "-c", _TORCH_DEFAULT, *args]
    else:
        cmd = [sys.executable, "-m", "monitor", *args, "--threads", setting]
    started = time.monotonic()
    res = subprocess.run(cmd, check=True, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    epochs = re.search(r"(\d+) epochs in ([\d.]+)s", res.stdout)
    if epochs:
        print(f"    ({epochs[1]} epochs, {epochs[2]} s training)", flush=True)
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--settings", nargs="+", default=["default", "1", "2"])
    ap.add_argument("--epochs", type=int, help="training epochs (default: the demo config's 25)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as tmp:
        config = Path(tmp) / "demo.yaml"
        model = {**DEMO_CONFIG["model"], **({"epochs": args.epochs} if args.epochs else {})}
        config.write_text(yaml.safe_dump({**DEMO_CONFIG, "model": model, "models": {"dir": str(Path(tmp) / "models")}}))
        times: dict[str, list[float]] = {s: [] for s in args.settings}
        for i in range(args.repeats):
            for s in args.settings:
                times[s].append(run(s, config, Path(tmp) / f"m-{s}-{i}"))
                print(f"run {i + 1} {s:>7}: {times[s][-1]:.1f} s", flush=True)
    base = statistics.median(times[args.settings[0]])
    print(f"\ncpu cores: {os.cpu_count()}; load average at the end: {os.getloadavg()[0]:.1f}")
    for s in args.settings:
        med = statistics.median(times[s])
        print(f"threads {s:>7}: median {med:.1f} s of {[round(t, 1) for t in times[s]]}, {med / base:.2f}x default")


if __name__ == "__main__":
    main()
