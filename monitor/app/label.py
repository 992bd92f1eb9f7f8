"""`monitor label ALERT_ID --confirmed | --false-alarm [--note TEXT]`: an operator's verdict on an alert.

``monitor label --list`` prints the alerts of the log (id, kind, stream, start, end, label).

The label goes into ``alert-labels.json`` beside the alert log (`monitor.io.alertlog`):
``--alerts FILE``, or ``record.dir/alerts.ndjson`` of ``--config``. `monitor retrain`
then leaves confirmed faults out of training and requires every candidate to detect
them, and trains on false-alarm spans as normal data. A ``regime_change`` event's id can
be labelled as well: ``--false-alarm`` says the regime it started is a new normal (trained
on); unlabelled or ``--confirmed`` it is left out of training up to the stream's return.

Exit codes: 0 labelled; 1 unknown alert id or no alert log; 78 bad configuration.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from monitor.app.cliargs import CONFIG_ENV, add_config
from monitor.app.exclude import alert_kinds, episodes_from_alerts, regime_spans_from_alerts
from monitor.core.config import load_config
from monitor.io.alertlog import ALERTS_FILE, find_alert_log, labels_path, read_labels, write_label


def run_label(args: argparse.Namespace) -> int:
    if args.alerts:
        found: Path | None = Path(args.alerts) if Path(args.alerts).is_file() else None
        missing = f"no alert log {args.alerts}"
    else:
        folder = Path(load_config(args.config).record.dir)
        found = find_alert_log(folder)
        missing = f"no alert log {folder / ALERTS_FILE} (record.dir of {args.config}); name one with --alerts"
    if found is None:
        sys.stderr.write(f"error: {missing}\n")
        return 1
    log_path = found
    episodes = {ep[0]: ep for ep in episodes_from_alerts([log_path])}
    # a regime_change event is labelled too: --false-alarm says its regime is a new normal
    regimes = regime_spans_from_alerts([log_path])
    episodes.update({ep[0]: ep for ep in regimes})
    messages = alert_kinds([log_path])
    if args.list:
        labels = read_labels(labels_path(log_path))
        sys.stdout.write("alert_id\tkind\tstream\tstarted_at\tended_at\tlabel\n")
        for a, start, end, stream in sorted(episodes.values(), key=lambda e: e[1]):
            label = labels.get(a, {}).get("label", "-")
            kind = messages.get(a, {}).get("kind", "anomaly")
            sys.stdout.write(f"{a}\t{kind}\t{stream}\t{_iso(start)}\t{_iso(end)}\t{label}\n")
        return 0
    if args.alert_id is None or not (args.confirmed or args.false_alarm):
        sys.stderr.write("error: give ALERT_ID and one of --confirmed / --false-alarm (or --list)\n")
        return 2
    ep = episodes.get(args.alert_id)
    closing = messages.get(args.alert_id, {})
    if ep is None and closing.get("kind") == "regime_change":  # the event that closed a regime
        closed_at = closing.get("ended_at")
        ended = next((e for e in regimes if e[3] == closing.get("stream") and e[2] == closed_at), None)
        sys.stderr.write(
            f"error: {args.alert_id} is the regime_change event that ended a regime (the stream's errors "
            "came back to their level before it): it opens no regime of its own, so there is nothing to "
            "label; label the event that started the regime"
            + (f" (e.g. {ended[0]}, `monitor label --list`)" if ended else "")
            + "\n"
        )
        return 1
    if ep is None:
        newest = sorted(episodes.values(), key=lambda e: e[1])[-5:]
        hint = ", ".join(e[0] for e in reversed(newest)) or "none"
        sys.stderr.write(
            f"error: no alert {args.alert_id!r} in {log_path} ({len(episodes)} alerts; newest: {hint}). "
            "Alert ids are the `alert_id` of the alert messages.\n"
        )
        return 1
    label = "confirmed" if args.confirmed else "false_alarm"
    alert = {"stream": ep[3], "started_at": ep[1], "ended_at": ep[2] if ep[2] != float("inf") else None}
    path = labels_path(log_path)
    before = read_labels(path).get(args.alert_id, {}).get("label")
    write_label(path, args.alert_id, label, note=args.note, alert=alert)
    was = f" (was {before})" if before is not None and before != label else ""
    sys.stdout.write(f"labelled {args.alert_id} as {label}{was} in {path}\n")
    return 0


def _iso(ts: float) -> str:
    if not math.isfinite(ts):
        return "-"
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds")


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``monitor label`` to the CLI's subparsers."""
    p = subparsers.add_parser("label", help="mark an alert as a confirmed fault or a false alarm (used by retrain)")
    p.add_argument("alert_id", nargs="?", help="the alert_id of the alert message (see --list)")
    p.add_argument("--list", action="store_true", help="list the alerts of the log with their labels")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--confirmed", action="store_true", help="a real fault: never trained on, must be detected")
    which.add_argument("--false-alarm", action="store_true", help="normal operation: trained on as normal data")
    p.add_argument("--note", help="free text kept with the label")
    src = p.add_mutually_exclusive_group(required=not os.environ.get(CONFIG_ENV))
    add_config(src, required=False, help="find the alert log in record.dir of this config")
    src.add_argument("--alerts", help=f"the alert log ({ALERTS_FILE}); labels go beside it")
    p.set_defaults(func=run_label)
    return p
