"""What `monitor retrain` leaves out of training, and the past episodes it replays.

The alert log (`monitor.io.alertlog`: ``alerts.ndjson`` beside the recordings, or the
``--exclude-alerts`` files) gives the alert episodes; the operators' labels beside it
say what each was:

* ``confirmed``: a real fault. Left out of training (and of the held-out normal data),
  and every candidate must raise the alarm on it again (a past episode).
* ``false_alarm``: normal operation. Kept in training and in the held-out data.
* unlabelled: treated as a fault until someone says otherwise: left out, and replayed
  as a past episode.

Left out means the episode's span plus one window before it (the window that led up to
the alert). A ``regime_change`` event (the stream's calibration re-baselined on a
sustained change, so no anomaly episode covers the rest of it) leaves out the regime it
started, up to the stream's next regime change (`exclude.regime_spans_from_alerts`),
unless it is labelled ``false_alarm`` (a new normal: trained on). Regimes are not
replayed as past episodes: the anomaly episode at their onset is. Recorded data (a
folder or a recording file) is expected to come with an
alert log; when none is found the gate's ``alert_log`` check fails, so a model trained
on unfiltered faults is not promoted, unless ``--no-exclusions`` says that is intended.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from monitor.app.exclude import count_in_spans, episodes_from_alerts, exclude_spans, regime_spans_from_alerts
from monitor.app.gates import Episode, time_slice
from monitor.app.training import StreamData
from monitor.core.config import Config
from monitor.io.alertlog import ALERTS_FILE, alert_log_folders, find_alert_log, labels_path, read_labels

log = logging.getLogger(__name__)

_RECORDING_SUFFIXES = (".jsonl", ".jsonl.gz", ".gz")


@dataclass
class Exclusions:
    info: dict = field(default_factory=dict)  # the verdict's "excluded"
    labels: dict = field(default_factory=dict)  # the verdict's "labels": what they changed
    episodes: list[Episode] = field(default_factory=list)
    spans: list[tuple[float, float, str | None]] = field(default_factory=list)  # left out
    check: dict = field(default_factory=dict)  # the gate's "alert_log" check
    pad_seconds: float = 0.0


def _is_recorded(path: Path) -> bool:
    return path.is_dir() or path.name.endswith(_RECORDING_SUFFIXES)


def exclude_for_retrain(
    data: list[StreamData],
    cfg: Config,
    data_paths: Sequence[str | Path],
    alert_files: Sequence[str | Path] | None,
    no_exclusions: bool,
) -> Exclusions:
    """Find the alert log(s) and labels, cut out the past episodes' data, then leave out
    confirmed and unlabelled spans of `data` (in place)."""
    period = cfg.stream.period_seconds if cfg.stream.period_seconds != "auto" else 1.0
    pad = cfg.model.window_size * float(period)
    out = Exclusions(pad_seconds=pad)
    if no_exclusions:
        out.info = {"alert_files": [], "spans": 0, "removed": 0, "disabled": "--no-exclusions"}
        out.check = {"check": "alert_log", "passed": True, "detail": "skipped: --no-exclusions (nothing left out)"}
        return out
    files = _alert_files(data_paths, alert_files)
    folders = alert_log_folders(data_paths)
    recorded = [str(p) for p in data_paths if _is_recorded(Path(p))]
    if files:
        out.check = {"check": "alert_log", "passed": True, "detail": f"alert log(s): {', '.join(map(str, files))}"}
    elif recorded:
        where = ", ".join(str(d / ALERTS_FILE) for d in folders)
        out.check = {
            "check": "alert_log",
            "passed": False,
            "detail": f"no alert log found ({where}) for recorded data {', '.join(recorded)}: past faults cannot "
            f"be left out of training; write it there (`monitor replay {folders[0]} --config ... --offline "
            f"--alerts-out {folders[0] / ALERTS_FILE}`), name it with --exclude-alerts, or pass --no-exclusions "
            "to train on everything on purpose",
        }
    else:
        out.check = {"check": "alert_log", "passed": True, "detail": "no alert log (CSV data: none expected)"}

    labels: dict[str, dict] = {}
    for f in files:
        labels.update(read_labels(labels_path(f)))
    episodes = episodes_from_alerts(files)
    by_label: dict[str, list[tuple[str, float, float, str | None]]] = {"confirmed": [], "false_alarm": [], "": []}
    for ep in episodes:
        by_label[labels.get(ep[0], {}).get("label", "")].append(ep)

    # the past episodes' own data, before it is left out of training
    for alert_id, start, end, stream in by_label["confirmed"] + by_label[""]:
        lo, hi = _replay_span(start, end, pad)
        cut = [time_slice(sd, lo, hi) for sd in data if stream in (None, sd.stream)]
        cut = [sd for sd in cut if len(sd.readings) or (sd.timestamps is not None and len(sd.timestamps))]
        label = "confirmed" if alert_id in labels else "unlabelled"
        out.episodes.append(Episode(alert_id, stream, start, min(end, hi), label, cut))

    def spans(eps: list) -> list[tuple[float, float, str | None]]:
        return [(s, e, stream) for _, s, e, stream in eps]

    regimes = regime_spans_from_alerts(files)
    new_normal = [r for r in regimes if labels.get(r[0], {}).get("label", "") == "false_alarm"]
    left_out = [r for r in regimes if r not in new_normal]
    kept = count_in_spans(data, spans(by_label["false_alarm"]), pad)
    removed_confirmed = exclude_spans(data, spans(by_label["confirmed"]), pad_seconds=pad)
    removed_unlabelled = exclude_spans(data, spans(by_label[""]), pad_seconds=pad)
    removed_regimes = exclude_spans(data, spans(left_out), pad_seconds=pad)
    out.spans = spans(by_label["confirmed"]) + spans(by_label[""]) + spans(left_out)
    out.info = {
        "alert_files": [str(f) for f in files],
        "spans": len(out.spans),
        "removed": removed_confirmed + removed_unlabelled + removed_regimes,
        "regimes": len(left_out),
        "removed_regimes": removed_regimes,
        "regimes_kept_as_normal": len(new_normal),
    }
    out.labels = {
        "files": [str(labels_path(f)) for f in files if labels_path(f).is_file()],
        "confirmed": len(by_label["confirmed"]),
        "false_alarm": len(by_label["false_alarm"]),
        "unlabelled": len(by_label[""]),
        "removed_confirmed": removed_confirmed,
        "removed_unlabelled": removed_unlabelled,
        "kept_as_normal": kept,  # in false-alarm spans: left out without the labels
        "unknown_ids": sorted(set(labels) - {ep[0] for ep in episodes} - {r[0] for r in regimes}),
    }
    if labels:
        log.info(
            "labels: %d confirmed (%d readings left out), %d false alarms (%d readings kept as normal)",
            len(by_label["confirmed"]),
            removed_confirmed,
            len(by_label["false_alarm"]),
            kept,
        )
    return out


def _alert_files(data_paths: Sequence[str | Path], alert_files: Sequence[str | Path] | None) -> list[Path]:
    """The --exclude-alerts files (each must exist), else the alert log found beside the data."""
    files = [Path(f) for f in alert_files or []]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"--exclude-alerts: no such file {', '.join(missing)}")
    if not files:
        files = [f for f in (find_alert_log(d) for d in alert_log_folders(data_paths)) if f is not None]
    return files


def _replay_span(start: float, end: float, pad: float) -> tuple[float, float]:
    """The data an episode's replay takes: from three windows before it to one after."""
    return start - 3 * pad, (end if end != float("inf") else start + 8 * pad) + pad


def replay_spans(
    cfg: Config, data_paths: Sequence[str | Path], alert_files: Sequence[str | Path] | None, no_exclusions: bool
) -> list[tuple[float, float]]:
    """The spans `exclude_for_retrain` will replay as past episodes (confirmed and
    unlabelled alerts), before any data is read: a thinned read (`monitor.app.readplan`)
    must still read their files."""
    if no_exclusions:
        return []
    files = _alert_files(data_paths, alert_files)
    labels: dict[str, dict] = {}
    for f in files:
        labels.update(read_labels(labels_path(f)))
    period = cfg.stream.period_seconds if cfg.stream.period_seconds != "auto" else 1.0
    pad = cfg.model.window_size * float(period)
    return [
        _replay_span(start, end, pad)
        for alert_id, start, end, _ in episodes_from_alerts(files)
        if labels.get(alert_id, {}).get("label", "") != "false_alarm"
    ]


def exclude_spans_of(data: list[StreamData], ex: Exclusions) -> int:
    """Leave the same spans out of other data (the --holdout files)."""
    return exclude_spans(data, ex.spans, pad_seconds=ex.pad_seconds)
