"""Write a synthetic pump dataset: normal.csv (training) and faulty.csv (with a labelled fault).

.venv/bin/python scripts/make_sample.py --out out/sample [--rows 3600] [--seed 0]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.core.synthetic import Fault, pump, write_csv


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out/sample")
    ap.add_argument("--rows", type=int, default=3600, help="rows of the faulty file (1 s apart)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n = args.rows
    t, v, _ = pump(2 * n, seed=args.seed, steps_per_hour=0)
    write_csv(out / "normal.csv", t, v)
    start = int(n * 0.7)
    t2, v2, lab = pump(
        n,
        seed=args.seed + 1,
        start_time=t[-1] + 1,
        steps_per_hour=0,
        faults=[Fault(start, start + n // 12, "cavitation")],
    )
    write_csv(out / "faulty.csv", t2, v2, lab)
    print(
        f"wrote {out / 'normal.csv'} ({2 * n} rows) and {out / 'faulty.csv'} "
        f"({n} rows, fault at rows {start}..{start + n // 12})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
