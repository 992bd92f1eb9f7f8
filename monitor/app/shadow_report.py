"""`monitor models shadow-report`: the shadow candidate beside the serving model.

Reads ``models/<group>/shadow.json`` (written by the daemon every few seconds while a
candidate is in shadow, then with the verdict; `monitor.app.shadowing`) and prints one
table (candidate | serving: windows, would-alert episodes, p50 and p99 score) with the
verdict's checks, and draws both score histograms into a PNG (``--png``, default
``models/<group>/shadow-report.png``; needs the `plots` extra). Exit 1 when the group has
no shadow report yet.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from monitor.app.plots import png_bytes, pyplot
from monitor.core.model.registry import SHADOW_REPORT as REPORT_FILE

PNG_FILE = "shadow-report.png"


def table(report: dict[str, Any], out: TextIO) -> None:
    s = report.get("summary") or {}
    eps = s.get("episodes", {})
    qs = s.get("quantiles", {})
    cand, cur = qs.get("candidate", {}), qs.get("current", {})
    tail = next((k for k in cand if k != "p50"), "p99")
    out.write(
        f"shadow: {report.get('state', '?')}"
        + (f" ({report['error']})" if report.get("error") else "")
        + f"; {s.get('elapsed_seconds', 0):.0f} s of {s.get('shadow_seconds', 0):.0f} s, "
        f"{s.get('windows', 0)} windows\n"
    )
    rows = [
        ("", "candidate", "serving"),
        ("version", str(s.get("candidate", report.get("candidate", "?"))), str(s.get("current", "?"))),
        ("alert episodes", str(eps.get("candidate", "-")), str(eps.get("current", "-"))),
        ("score p50", _f(cand.get("p50")), _f(cur.get("p50"))),
        (f"score {tail}", _f(cand.get(tail)), _f(cur.get(tail))),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
    for c in report.get("checks", []):
        out.write(f"  {'PASS' if c['passed'] else 'FAIL'} {c['check']}: {c['detail']}\n")


def _f(x: Any) -> str:
    return "-" if x is None else f"{float(x):.4g}"


def png(report: dict[str, Any]) -> bytes | None:
    """Both models' score histograms on one log axis, the alarm threshold (1.0) marked."""
    plt = pyplot()
    hist = (report.get("summary") or {}).get("histogram")
    if plt is None or not hist:
        return None
    edges = hist["log10_edges"]
    fig, ax = plt.subplots(figsize=(8, 4))
    centers = [edges[0] - 0.05] + [(a + b) / 2 for a, b in itertools.pairwise(edges)] + [edges[-1] + 0.05]
    for name, color in (("current", "tab:blue"), ("candidate", "tab:orange")):
        counts = hist[name]
        total = sum(counts) or 1
        ax.step([10**c for c in centers], [n / total for n in counts], where="mid", label=name, color=color)
    ax.set_xscale("log")
    ax.axvline(1.0, color="red", linestyle="--", label="threshold (1.0)")
    s = report["summary"]
    ax.set_title(f"shadow {s.get('candidate')} vs serving {s.get('current')}: {report.get('state')}")
    ax.set_xlabel("score (threshold units)")
    ax.set_ylabel("share of windows")
    ax.legend()
    fig.tight_layout()
    return png_bytes(fig)


def run(models_dir: Path, group: str, png_path: str | None, as_json: bool, out: TextIO = sys.stdout) -> int:
    path = models_dir / REPORT_FILE
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        sys.stderr.write(f"error: group {group}: no shadow report ({path}); none has been scored in shadow\n")
        return 1
    if as_json:
        out.write(json.dumps(report) + "\n")
        return 0
    out.write(f"group {group}\n")
    table(report, out)
    data = png(report)
    if data is not None:
        target = Path(png_path) if png_path else models_dir / PNG_FILE
        target.write_bytes(data)
        out.write(f"  plot: {target}\n")
    return 0


def add_arguments(c: argparse.ArgumentParser) -> None:
    c.add_argument("--png", help=f"PNG to write (default: <models dir>/{PNG_FILE})")
    c.add_argument("--json", action="store_true", help="print the report as JSON instead")
