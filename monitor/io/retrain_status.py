"""The retrain job's verdict as a Prometheus textfile, and its re-export by the daemon.

`monitor retrain` writes ``<models.dir>/retrain.prom`` (`write_textfile`, atomically);
the daemon re-exports it at scrape time through `RetrainStatusCollector`, and
node_exporter's textfile collector can read it too. Shared by `monitor.app.retrain`
and `monitor.app.service`, so neither imports the other.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily

from monitor.io.atomic import write_atomic

log = logging.getLogger(__name__)

TEXTFILE_NAME = "retrain.prom"

#: The textfile's metrics (all gauges).
METRICS = {
    "monitor_retrain_last_run_timestamp_seconds": "When `monitor retrain` last finished (Unix time).",
    "monitor_retrain_last_success_timestamp_seconds": "When `monitor retrain` last promoted a model (Unix time).",
    "monitor_retrain_gate_passed": "1 if the last retrain's candidate passed the validation gate, else 0.",
    "monitor_retrain_candidate_false_alarm_rate": "False-alarm rate of the last candidate on held-out normal data.",
    "monitor_retrain_current_false_alarm_rate": "False-alarm rate of the serving model on the same data (NaN: none).",
    "monitor_retrain_last_exit_code": "Exit code of the last retrain (0 promoted, 3 gate failed, 78 config, 1 error).",
    "monitor_retrain_candidate_canary_detection_rate": "Share of the canary faults the last candidate detected.",
    "monitor_retrain_current_canary_detection_rate": "Share of those canaries the serving model detected (NaN: none).",
    "monitor_retrain_threshold_ratio": "Last candidate's threshold / the serving model's (NaN: no serving model).",
    "monitor_retrain_past_episodes": "Past alert episodes (not marked false alarm) the last candidate replayed.",
    "monitor_retrain_past_episodes_missed": "Of those, how many the last candidate did not flag.",
}
#: One sample per gate check: 1 passed, 0 failed (label `check`).
CHECK_METRIC = "monitor_retrain_check_passed"
CHECK_HELP = "1 if the last retrain's gate check (label check) passed, else 0."


def read_textfile(path: Path) -> dict[str, float]:
    """Samples of an earlier textfile (name -> value); {} when absent or unreadable."""
    out: dict[str, float] = {}
    try:
        text = Path(path).read_text()
    except OSError:
        return out
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition(" ")
        try:
            out[name.strip()] = float(value.split()[0])
        except (ValueError, IndexError):
            continue
    return out


def write_textfile(path: Path, values: dict[str, float], checks: dict[str, float] | None = None) -> None:
    """Write the Prometheus text format atomically (temp file in the same dir, fsync, rename);
    `checks`: check name -> 1/0 as ``monitor_retrain_check_passed{check="..."}``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, help_text in METRICS.items():
        if name not in values:
            continue
        v = values[name]
        lines += [
            f"# HELP {name} {help_text}",
            f"# TYPE {name} gauge",
            f"{name} {'NaN' if v is None or not math.isfinite(v) else repr(float(v))}",
        ]
    if checks:
        lines += [f"# HELP {CHECK_METRIC} {CHECK_HELP}", f"# TYPE {CHECK_METRIC} gauge"]
        lines += [f'{CHECK_METRIC}{{check="{name}"}} {float(v)!r}' for name, v in checks.items()]
    write_atomic(path, "\n".join(lines) + "\n")


class RetrainStatusCollector:
    """Re-export the retrain textfile from the daemon's /metrics (read at scrape time).

    Register once: ``registry.register(RetrainStatusCollector(models_dir / "retrain.prom"))``.
    Exports the file's ``monitor_retrain_*`` gauges, on the scrape after the file changed;
    before any retrain there is no file and no series (absent, not 0).
    ``monitor_retrain_last_success_timestamp_seconds`` is the one "last promoted by
    retraining" series (the daemon's own gauge of the same fact, which read 0 until a
    retrain and lagged a scrape behind this one, is gone: decision 0017).
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._sig: tuple | None = None
        self._values: dict[str, float] = {}

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
            sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            sig = None
        if sig == self._sig:
            return
        self._sig = sig
        self._values = read_textfile(self.path) if sig else {}

    def collect(self):
        try:
            self._refresh()
        except Exception:
            log.debug("reading %s failed", self.path, exc_info=True)
        for name, help_text in METRICS.items():
            if name in self._values:
                yield GaugeMetricFamily(name, help_text, value=self._values[name])
        prefix = CHECK_METRIC + '{check="'
        checks = [
            (k[len(prefix) : -2], v) for k, v in self._values.items() if k.startswith(prefix) and k.endswith('"}')
        ]
        if checks:
            family = GaugeMetricFamily(CHECK_METRIC, CHECK_HELP, labels=["check"])
            for name, v in checks:
                family.add_metric([name], v)
            yield family

    def describe(self):
        return []  # values depend on a file: do not collect at registration time
