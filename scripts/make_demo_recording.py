"""Generate the demo's bundled recording, monitor/data/demo-pump.jsonl.gz.

A pump on a load cycle (flow, pressure, motor current, vibration, temperature; correlated,
noisy, a first-order thermal lag) recorded as MQTT messages on plant/demo/pump1: 40 min of
normal operation, then 12 min with a cavitation fault from minute 46 to 49. Deterministic:
the same seed writes the same readings.

    .venv/bin/python scripts/make_demo_recording.py [--out monitor/data/demo-pump.jsonl.gz]
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.core.synthetic import CHANNELS, Fault, pump  # noqa: E402
from monitor.core.types import RawMessage  # noqa: E402
from monitor.io.recording import RecordingWriter  # noqa: E402

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
NORMAL_ROWS = 40 * 60
TOTAL_ROWS = 52 * 60
FAULT = (46 * 60, 49 * 60)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "monitor" / "data" / "demo-pump.jsonl.gz"))
    args = ap.parse_args()
    out = Path(args.out)
    if out.exists():
        out.unlink()
    t, v, _ = pump(TOTAL_ROWS, seed=7, start_time=START, steps_per_hour=0, faults=[Fault(*FAULT, "cavitation")])
    with RecordingWriter(out, flush_every=10_000, flush_seconds=1e9, wall_clock=lambda: START) as w:
        for i in range(TOTAL_ROWS):
            body = {"ts": round(float(t[i]), 3), **{c: round(float(x), 4) for c, x in zip(CHANNELS, v[i], strict=True)}}
            w.write(RawMessage(float(t[i]) + 0.05, "plant/demo/pump1", json.dumps(body).encode(), 1, False))
    print(
        f"wrote {out} ({out.stat().st_size} bytes, {TOTAL_ROWS} messages; normal until row {NORMAL_ROWS}, "
        f"fault rows {FAULT[0]}..{FAULT[1]})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
