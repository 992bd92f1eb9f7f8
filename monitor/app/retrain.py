"""`monitor retrain`: train a candidate bundle and promote it only if it passes a gate.

    monitor retrain --config C --data PATH... [--holdout PATH...] [--holdout-fraction 0.2]
                    [--max-age-hours N] [--max-read-hours 168] [--max-false-alarm-rate 0.01] [--margin 0.1]
                    [--exclude-alerts FILE... | --no-exclusions] [--allow-threshold-jump]
                    [--textfile PATH]

1. Training data: the given CSV files / recordings (a recorder's directory), the newest
   ``--max-age-hours`` of it (older recording files are not read: `window_files`); a
   window longer than ``--max-read-hours`` is read thinned, by whole files
   (`monitor.app.readplan`).
   Alert episodes from the alert log beside the recordings are left out, unless an
   operator labelled them false alarms (`monitor.app.exclusions`). Without
   ``--holdout`` the newest ``--holdout-fraction`` of each stream (by time) is held out
   and the candidate trains on the older part only; with ``--holdout`` it trains on all
   of ``--data`` and is judged on the holdout files.
2. The candidate is trained with ``train_bundle(make_current=False)``.
3. The candidate and the current bundle (if any) score the held-out slice through the
   same runner the daemon drives (``run_backtest`` for wide CSV rows; the `Runner`
   fed in time order for recordings). The held-out slice is taken to be normal
   operation, so every alerting row/window counts as a false alarm.
4. The gate passes when every check passes:
   * ``alert_log``: recorded data comes with its alert log (or ``--no-exclusions``);
   * ``finite_scores``, ``enough_data``: every score and per-channel contribution of the
     candidate is finite and it scored at least ``--min-windows`` windows;
   * ``false_alarm_budget``: the candidate's false-alarm rate (share of scored
     rows/windows while its alarm is firing) is <= ``--max-false-alarm-rate``;
   * ``not_worse_than_current``: ``candidate_far <= current_far + margin *
     max_false_alarm_rate`` (with the defaults, at most 0.001 more of the time alerting);
   * ``canary_detection``, ``threshold_jump``, ``past_episodes``: detection power
     (`monitor.app.gates`; a blind model passes every false-alarm check).
   A current bundle that cannot score the data (other channels, unreadable) is not
   compared against.
5. Passed: ``set_current`` promotes the candidate (the daemon notices the pointer and
   swaps the model in). With ``retrain.shadow_hours > 0`` and a serving model, it is
   registered as ``shadow`` instead (``set_shadow``): the daemon scores it beside the
   serving model on live traffic and promotes or rejects it (`monitor.core.shadow`).
   Failed: the candidate is deleted (``--keep-rejected`` keeps it),
   the old model keeps serving.

The verdict is one JSON line on stdout (and the log), saved as ``gate.json`` in a
promoted bundle, and exported as a Prometheus textfile (default
``<models.dir>/retrain.prom``, written atomically; `monitor.io.retrain_status`) that the
daemon re-exports through `RetrainStatusCollector` and node_exporter's textfile collector
can read too.

Exit codes: 0 promoted; 3 gate failed (not promoted); 78 bad configuration; 1 any other
error (bad data, training failure).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from monitor.app.cliargs import add_config
from monitor.app.exclusions import Exclusions, exclude_for_retrain, exclude_spans_of, replay_spans
from monitor.app.gates import (
    CanarySettings,
    canary_check,
    episode_check,
    plan_canaries,
    run_canaries,
    run_episodes,
    score_slice,
    threshold_check,
    time_slice,
)
from monitor.app.readplan import plan_reads
from monitor.app.training import group_training_data, load_training_data, threads_arg, train_bundle
from monitor.core.config import DEFAULT_GROUP, EXIT_CONFIG, Config, ConfigError, load_config
from monitor.core.scoring_model import ScoringModel
from monitor.io.logs import basic_logging
from monitor.io.retrain_status import TEXTFILE_NAME, read_textfile, write_textfile

log = logging.getLogger(__name__)

EXIT_PROMOTED = 0
EXIT_ERROR = 1
EXIT_GATE_FAILED = 3


# --------------------------------------------------------------------------- data split


def _filter_recent(data: list, max_age_hours: float) -> list:
    """Keep only the newest `max_age_hours` of every stream (0: all)."""
    if max_age_hours <= 0:
        return data
    out = []
    for sd in data:
        newest = _newest(sd)
        if newest is None:
            continue
        cut = newest - max_age_hours * 3600.0
        out.append(time_slice(sd, lo=cut))
    return out


def _newest(sd) -> float | None:
    ts = [float(np.max(sd.timestamps))] if sd.timestamps is not None and len(sd.timestamps) else []
    if sd.readings:
        ts.append(float(np.max(sd.readings.times)))
    return max(ts) if ts else None


def window_files(paths: Sequence[str], max_age_hours: float) -> tuple[list[str], int]:
    """--data with folders expanded and recordings last written more than `max_age_hours`
    (+ a minute) before the newest one left out unread; (paths, files skipped).

    A recording's data was received before its last write, so a file last written before
    the cut holds nothing the time window would keep. CSV files are always read.
    """
    plan = plan_reads(paths, max_age_hours)
    return plan.paths, plan.skipped


def split_holdout(data: list, fraction: float) -> tuple[list, list]:
    """(older part, newest `fraction`) of each stream, split by time."""
    train, hold = [], []
    for sd in data:
        times = sd.timestamps if sd.timestamps is not None else np.zeros(0)
        if sd.readings:
            times = np.concatenate([times, sd.readings.times])
        if len(times) == 0:
            continue
        cut = float(np.quantile(np.sort(times), 1.0 - fraction))
        train.append(time_slice(sd, hi=cut))
        hold.append(time_slice(sd, lo=cut))
    return train, hold


def _rows(sd) -> int:
    return (len(sd.timestamps) if sd.timestamps is not None else 0) + len(sd.readings)


# --------------------------------------------------------------------------- evaluation


@dataclass
class Evaluation:
    """How one model did on the held-out slice."""

    version: str
    scored: int = 0  # rows (wide data) or windows (recordings) with a score
    alerting: int = 0  # of those, how many while the alarm was firing
    alerts_fired: int = 0
    finite: bool = True
    nonfinite: int = 0
    score_p50: float = math.nan
    score_p99: float = math.nan
    score_max: float = math.nan
    error: str | None = None
    _scores: list = field(default_factory=list, repr=False)

    @property
    def false_alarm_rate(self) -> float:
        return self.alerting / self.scored if self.scored else math.nan

    def as_dict(self) -> dict:
        d = {
            "version": self.version,
            "scored": self.scored,
            "alerting": self.alerting,
            "false_alarm_rate": _num(self.false_alarm_rate),
            "alerts_fired": self.alerts_fired,
            "finite": self.finite,
            "nonfinite": self.nonfinite,
            "score_p50": _num(self.score_p50),
            "score_p99": _num(self.score_p99),
            "score_max": _num(self.score_max),
        }
        if self.error:
            d["error"] = self.error
        return d

    def _finish(self) -> Evaluation:
        s = np.asarray(self._scores, dtype=np.float64)
        fin = s[np.isfinite(s)]
        if fin.size:
            self.score_p50, self.score_p99, self.score_max = (
                float(np.quantile(fin, 0.5)),
                float(np.quantile(fin, 0.99)),
                float(fin.max()),
            )
        self._scores = []
        return self


def _num(x: float):
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def evaluate_model(cfg: Config, model, holdout: list, group: str | None = None) -> Evaluation:
    """Score the held-out slice with `model` through the daemon's runner (with `groups:`,
    the settings of `group`, default the first), with its offline threshold only."""
    ev = Evaluation(model.version)
    for sd in holdout:
        run = score_slice(cfg, model, sd, group)
        ev.nonfinite += run.nonfinite
        ev.scored += len(run.times)
        ev.alerting += int(run.alerting.sum())
        ev.alerts_fired += run.alerts_fired
        ev._scores.extend(run.scores.tolist())
    ev.finite = ev.nonfinite == 0
    return ev._finish()


# --------------------------------------------------------------------------- gate


@dataclass
class GateSettings:
    max_false_alarm_rate: float = 0.01
    margin: float = 0.1
    min_windows: int = 20


def gate(candidate: Evaluation, current: Evaluation | None, settings: GateSettings) -> tuple[bool, list[dict]]:
    """The checks, each {check, passed, detail}; passed when all pass."""
    checks = []
    checks.append(
        {
            "check": "finite_scores",
            "passed": candidate.finite and candidate.error is None,
            "detail": f"{candidate.nonfinite} non-finite of {candidate.scored} scores"
            + (f"; {candidate.error}" if candidate.error else ""),
        }
    )
    checks.append(
        {
            "check": "enough_data",
            "passed": candidate.scored >= settings.min_windows,
            "detail": f"{candidate.scored} scored rows/windows on the held-out slice (need >= {settings.min_windows})",
        }
    )
    far = candidate.false_alarm_rate
    ok = math.isfinite(far) and far <= settings.max_false_alarm_rate
    checks.append(
        {
            "check": "false_alarm_budget",
            "passed": ok,
            "detail": f"candidate false-alarm rate {_fmt(far)} {'<=' if ok else '>'} "
            f"budget {settings.max_false_alarm_rate:g}",
        }
    )
    if current is None or current.error is not None or not math.isfinite(current.false_alarm_rate):
        why = "no current model" if current is None else (current.error or "current model scored nothing")
        checks.append({"check": "not_worse_than_current", "passed": True, "detail": f"skipped: {why}"})
    else:
        allowed = current.false_alarm_rate + settings.margin * settings.max_false_alarm_rate
        ok = math.isfinite(far) and far <= allowed + 1e-12
        checks.append(
            {
                "check": "not_worse_than_current",
                "passed": ok,
                "detail": (
                    f"candidate {_fmt(far)} {'<=' if ok else '>'} current {_fmt(current.false_alarm_rate)} + margin "
                    f"{settings.margin:g} x budget {settings.max_false_alarm_rate:g} = {_fmt(allowed)}"
                ),
            }
        )
    return all(c["passed"] for c in checks), checks


def _fmt(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.4g}"


def _detection_checks(
    cfg: Config,
    group: str,
    cand: ScoringModel | None,
    cur: ScoringModel | None,
    holdout: list,
    ex: Exclusions,
    cs: CanarySettings,
    max_factor: float,
    allow_jump: bool,
) -> list[dict]:
    """Canary detection, threshold jump and past episodes (`monitor.app.gates`)."""
    if cand is None:
        return [{"check": "canary_detection", "passed": False, "detail": "the candidate could not be loaded"}]
    cp = plan_canaries(holdout, cand, cs, cfg.stream.max_gap_seconds or 5 * cand.period_seconds)
    cand_c = run_canaries(cfg, cand, cp, group) if cp else None
    cur_c = None
    if cp is not None and cur is not None:
        try:
            cur_c = run_canaries(cfg, cur, cp, group)
        except Exception as exc:  # other channels: not comparable
            log.info("the current model cannot score the canaries: %s", exc)
    check = canary_check(cand_c, cur_c, cs)
    if cp is not None:
        check["stream"] = cp.stream
        check["canaries"] = cp.describe()
    tail = 2 * cand.window_size * cand.period_seconds
    with_data = [e for e in ex.episodes if e.data]
    without = [e.alert_id for e in ex.episodes if not e.data]
    cand_e = run_episodes(cfg, cand, with_data, group, tail)
    cur_e = None
    if cur is not None and with_data:
        try:
            cur_e = run_episodes(cfg, cur, with_data, group, tail)
        except Exception as exc:
            log.info("the current model cannot replay the past episodes: %s", exc)
    return [
        check,
        threshold_check(cand.threshold, cur.threshold if cur is not None else None, max_factor, allow_jump),
        episode_check(cand_e, cur_e, without),
    ]


# --------------------------------------------------------------------------- command


def run_retrain(args: argparse.Namespace) -> int:
    # torch (~2 s to import) comes with the bundle code: only when retraining, not for the
    # parser that every `monitor` command builds (cli imports this module for `register`)
    from monitor.core.model.bundle import current_bundle_path, load_bundle, set_current  # noqa: PLC0415
    from monitor.core.model.registry import set_shadow  # noqa: PLC0415

    started_wall = time.time()
    settings = GateSettings(args.max_false_alarm_rate, args.margin, args.min_windows)
    verdict: dict = {
        "event": "retrain_gate",
        "settings": {
            "max_false_alarm_rate": settings.max_false_alarm_rate,
            "margin": settings.margin,
            "min_windows": settings.min_windows,
        },
    }
    textfile: Path | None = Path(args.textfile) if args.textfile else None
    code = EXIT_ERROR
    try:
        full = load_config(args.config)
        group = _retrain_group(full, getattr(args, "group", None))
        cfg = full.for_group(group) if full.groups else full
        if getattr(args, "threads", None) is not None:
            cfg.model.threads = args.threads
        models_dir = (
            Path(args.out) / group if args.out and full.groups else Path(args.out or full.group_models_dir(group))
        )
        verdict["group"] = group

        def load(paths: list[str]) -> list:
            return group_training_data(paths, full, group) if full.groups else load_training_data(paths, cfg)

        textfile = textfile or models_dir / TEXTFILE_NAME
        verdict["models_dir"] = str(models_dir)
        for name, value in (("--max-false-alarm-rate", settings.max_false_alarm_rate), ("--margin", settings.margin)):
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(name, f"must be a number >= 0, got {value}")
        rs = cfg.retrain
        cs = CanarySettings(
            rs.canaries_per_kind,
            rs.canary_seed,
            rs.canary_margin if args.canary_margin is None else args.canary_margin,
            rs.canary_floor if args.canary_floor is None else args.canary_floor,
        )
        max_factor = rs.max_threshold_factor if args.max_threshold_factor is None else args.max_threshold_factor
        allow_jump = bool(args.allow_threshold_jump or rs.allow_threshold_jump)
        if not 0 <= cs.floor <= 1:
            raise ConfigError("--canary-floor", f"must be in [0, 1], got {cs.floor}")
        if not cs.margin >= 0:
            raise ConfigError("--canary-margin", f"must be >= 0, got {cs.margin}")
        if not max_factor >= 1:
            raise ConfigError("--max-threshold-factor", f"must be >= 1, got {max_factor}")
        verdict["settings"].update(
            canary_floor=cs.floor,
            canary_margin=cs.margin,
            canaries_per_kind=cs.per_kind,
            max_threshold_factor=max_factor,
            allow_threshold_jump=allow_jump,
        )
        max_age = rs.max_age_hours if args.max_age_hours is None else args.max_age_hours
        if not max_age >= 0:
            raise ConfigError("--max-age-hours", f"must be >= 0, got {max_age}")
        max_read = rs.max_read_hours if args.max_read_hours is None else args.max_read_hours
        if not max_read >= 0:
            raise ConfigError("--max-read-hours", f"must be >= 0, got {max_read}")
        episodes = replay_spans(cfg, args.data, args.exclude_alerts, args.no_exclusions)
        plan = plan_reads(args.data, max_age, max_read, episodes)
        paths = plan.paths
        verdict["window"] = plan.info(max_age, max_read)
        if plan.thinned:
            log.info(
                "data window thinned (retrain.max_read_hours %g): read %d files, one older file in %d, "
                "%d left unread, %d read for past episodes",
                max_read,
                len(paths),
                plan.every,
                plan.thinned,
                plan.for_episodes,
            )
        data = _filter_recent(load(paths), max_age)
        ex = exclude_for_retrain(data, cfg, args.data, args.exclude_alerts, args.no_exclusions)
        verdict["excluded"] = ex.info
        verdict["labels"] = ex.labels
        if args.holdout:
            train_data, holdout = data, _filter_recent(load(args.holdout), 0)
            exclude_spans_of(holdout, ex)
            verdict["holdout"] = {"source": "files", "paths": [str(p) for p in args.holdout]}
        else:
            if not 0 < args.holdout_fraction < 1:
                raise ConfigError("--holdout-fraction", f"must be in (0, 1), got {args.holdout_fraction}")
            train_data, holdout = split_holdout(data, args.holdout_fraction)
            verdict["holdout"] = {"source": "newest_fraction", "fraction": args.holdout_fraction}
        verdict["rows"] = {"train": sum(_rows(sd) for sd in train_data), "holdout": sum(_rows(sd) for sd in holdout)}
        if not any(_rows(sd) for sd in holdout):
            raise ValueError("the held-out slice is empty")

        outcome = train_bundle(
            train_data,
            cfg,
            models_dir,
            make_current=False,
            sources=[str(p) for p in args.data],
            write_plots=not args.no_plots,
        )
        cand_path = outcome.bundle_path
        verdict["candidate"] = {
            "version": cand_path.name,
            "path": str(cand_path),
            "threshold": outcome.manifest.threshold,
        }
        cand_model = None
        try:
            cand_model = ScoringModel.from_bundle(load_bundle(cand_path))
            cand_ev = evaluate_model(cfg, cand_model, holdout, group)
        except Exception as exc:
            cand_ev = Evaluation(cand_path.name, error=f"{type(exc).__name__}: {exc}", finite=False)
        verdict["candidate"].update(cand_ev.as_dict())

        current_ev, cur_model = None, None
        current = current_bundle_path(models_dir)
        if current is not None and current.resolve() != cand_path.resolve():
            try:
                cur_model = ScoringModel.from_bundle(load_bundle(current))
                current_ev = evaluate_model(cfg, cur_model, holdout, group)
            except Exception as exc:
                current_ev = Evaluation(current.name, error=f"{type(exc).__name__}: {exc}")
                cur_model = None
            verdict["current"] = current_ev.as_dict()
            if cur_model is not None:
                verdict["current"]["threshold"] = cur_model.threshold
        else:
            verdict["current"] = None

        passed, checks = gate(cand_ev, current_ev, settings)
        checks.insert(0, ex.check)
        checks += _detection_checks(cfg, group, cand_model, cur_model, holdout, ex, cs, max_factor, allow_jump)
        passed = all(c["passed"] for c in checks)
        verdict["checks"] = checks
        verdict["passed"] = passed
        if passed and rs.shadow_hours > 0 and cur_model is not None:
            # passed offline: the daemon scores it live beside the serving model first and
            # promotes it only within the shadow budgets (monitor.core.shadow)
            (cand_path / "gate.json").write_text(json.dumps(verdict, indent=2) + "\n")
            set_shadow(models_dir, cand_path.name)
            verdict["promoted"] = False
            verdict["shadow"] = {"version": cand_path.name, "hours": rs.shadow_hours}
            code = EXIT_PROMOTED
        elif passed:
            (cand_path / "gate.json").write_text(json.dumps(verdict, indent=2) + "\n")
            set_current(models_dir, cand_path.name)
            verdict["promoted"] = True
            code = EXIT_PROMOTED
        else:
            verdict["promoted"] = False
            if not args.keep_rejected:
                shutil.rmtree(cand_path, ignore_errors=True)
                verdict["candidate"]["deleted"] = True
            code = EXIT_GATE_FAILED
    except ConfigError as exc:
        verdict.update(passed=False, promoted=False, error=f"configuration error: {exc}")
        code = EXIT_CONFIG
    except Exception as exc:
        log.debug("retrain failed", exc_info=True)
        verdict.update(passed=False, promoted=False, error=f"{type(exc).__name__}: {exc}")
        code = EXIT_ERROR
    finished = time.time()
    verdict["exit_code"] = code
    verdict["seconds"] = round(finished - started_wall, 3)

    if textfile is None:  # the config did not load: no models dir to write into
        return _report(verdict, code)
    previous = read_textfile(textfile)
    # absent until a retrain first promotes (not 0): "never" is no series, as before any retrain
    last_success = (
        finished if code == EXIT_PROMOTED else previous.get("monitor_retrain_last_success_timestamp_seconds", 0.0)
    )
    values = {
        "monitor_retrain_last_run_timestamp_seconds": finished,
        **({"monitor_retrain_last_success_timestamp_seconds": last_success} if last_success > 0 else {}),
        "monitor_retrain_gate_passed": 1.0 if verdict.get("passed") else 0.0,
        "monitor_retrain_candidate_false_alarm_rate": _nan((verdict.get("candidate") or {}).get("false_alarm_rate")),
        "monitor_retrain_current_false_alarm_rate": _nan((verdict.get("current") or {}).get("false_alarm_rate")),
        "monitor_retrain_last_exit_code": float(code),
        **_detection_values(verdict),
    }
    passed_checks = {c["check"]: 1.0 if c["passed"] else 0.0 for c in verdict.get("checks", [])}
    try:
        write_textfile(textfile, values, passed_checks)
        verdict["textfile"] = str(textfile)
    except OSError as exc:
        verdict["textfile_error"] = str(exc)
        log.error("cannot write %s: %s", textfile, exc)
    return _report(verdict, code)


def _report(verdict: dict, code: int) -> int:
    """The verdict as one JSON line on stdout (the journal under systemd) plus a log summary."""
    sys.stdout.write(json.dumps(verdict, default=str) + "\n")  # the command's output
    sys.stdout.flush()
    level = logging.INFO if code == EXIT_PROMOTED else logging.WARNING  # a refusal shows every figure
    for c in verdict.get("checks", []):
        log.log(level, "retrain gate: %s %s: %s", c["check"], "passed" if c["passed"] else "FAILED", c["detail"])
    if code == EXIT_PROMOTED and verdict.get("shadow"):
        log.info(
            "retrain: %s passed the gate; in shadow for %g h beside the serving model (the daemon promotes or "
            "rejects it)",
            verdict["candidate"]["version"],
            verdict["shadow"]["hours"],
        )
    elif code == EXIT_PROMOTED:
        log.info("retrain: promoted %s", verdict["candidate"]["version"])
    elif code == EXIT_GATE_FAILED:
        failed = "; ".join(c["detail"] for c in verdict.get("checks", []) if not c["passed"])
        log.warning("retrain: candidate %s not promoted, gate failed: %s", verdict["candidate"]["version"], failed)
    else:
        log.error("retrain failed (exit %d): %s", code, verdict.get("error"))
    if code == EXIT_CONFIG:
        sys.stderr.write(verdict["error"] + "\n")
    return code


def _detection_values(verdict: dict) -> dict[str, float]:
    """The detection-power figures of the verdict, for the textfile."""
    by = {c["check"]: c for c in verdict.get("checks", [])}
    canary = by.get("canary_detection", {})
    eps = by.get("past_episodes", {}).get("episodes", {})
    return {
        "monitor_retrain_candidate_canary_detection_rate": _nan((canary.get("candidate") or {}).get("rate")),
        "monitor_retrain_current_canary_detection_rate": _nan((canary.get("current") or {}).get("rate")),
        "monitor_retrain_threshold_ratio": _nan(by.get("threshold_jump", {}).get("ratio")),
        "monitor_retrain_past_episodes": float(len(eps)),
        "monitor_retrain_past_episodes_missed": float(sum(1 for e in eps.values() if not e["candidate"])),
    }


def _nan(x) -> float:
    return math.nan if x is None else float(x)


def _retrain_group(cfg: Config, name: str | None) -> str:
    """The group to retrain: one at a time (each has its own bundles, gate and pointer)."""
    if not cfg.groups:
        if name not in (None, DEFAULT_GROUP):
            raise ConfigError("--group", f"the config has no groups: (only {DEFAULT_GROUP!r}), got {name!r}")
        return DEFAULT_GROUP
    if name is None:
        raise ConfigError("--group", f"the config has groups; retrain one: {', '.join(g.name for g in cfg.groups)}")
    return cfg.group(name).name


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config(p)
    p.add_argument("--group", help="with groups: the group to retrain (its streams, settings and models/<group>)")
    p.add_argument(
        "--data", nargs="+", required=True, help="recorded data: CSV files, recordings (.jsonl[.gz]) or folders of them"
    )
    p.add_argument("--holdout", nargs="+", help="held-out normal data to judge on (default: newest slice of --data)")
    p.add_argument(
        "--holdout-fraction",
        type=float,
        default=0.2,
        help="without --holdout: newest share of each stream held out (default 0.2)",
    )
    p.add_argument(
        "--max-age-hours",
        type=float,
        help="use only the newest N hours of --data; older recording files are not read "
        "(default retrain.max_age_hours, 0: all)",
    )
    p.add_argument(
        "--max-read-hours",
        type=float,
        help="a longer window is read thinned by whole files: the newest half in full, older files spread "
        "evenly, every file of a past episode (default retrain.max_read_hours, 168; 0: read it all)",
    )
    p.add_argument(
        "--max-false-alarm-rate",
        type=float,
        default=0.01,
        help="budget: share of held-out normal rows/windows alerting (default 0.01)",
    )
    p.add_argument(
        "--margin",
        type=float,
        default=0.1,
        help="may exceed the current model's false-alarm rate by margin x budget (default 0.1)",
    )
    p.add_argument("--min-windows", type=int, default=20, help="fewest scored held-out rows/windows (default 20)")
    p.add_argument("--out", help="models directory (default: models.dir of the config)")
    p.add_argument("--textfile", help="Prometheus textfile to write (default: <models dir>/retrain.prom)")
    p.add_argument(
        "--exclude-alerts",
        nargs="+",
        metavar="FILE",
        help="alert logs (JSON lines) whose firing..resolved spans are left out and replayed "
        "(default: alerts.ndjson in each --data folder / beside each --data file)",
    )
    p.add_argument(
        "--no-exclusions",
        action="store_true",
        help="train on all of --data on purpose: no alert log needed, nothing left out, no past episodes",
    )
    p.add_argument(
        "--allow-threshold-jump",
        action="store_true",
        help="promote even if the threshold moved more than the allowed factor (retrain.allow_threshold_jump)",
    )
    p.add_argument(
        "--max-threshold-factor",
        type=float,
        help="candidate threshold within this factor of the current one (default retrain.max_threshold_factor, 5)",
    )
    p.add_argument(
        "--canary-floor", type=float, help="least share of canaries to detect (default retrain.canary_floor, 0.5)"
    )
    p.add_argument(
        "--canary-margin",
        type=float,
        help="may detect this share fewer canaries than the current model (default retrain.canary_margin, 0.15)",
    )
    p.add_argument("--keep-rejected", action="store_true", help="keep a candidate that failed the gate")
    p.add_argument("--no-plots", action="store_true", help="skip the training report's PNG plots")
    p.add_argument("--threads", type=threads_arg, help='torch threads: a count or "auto" (default: model.threads)')


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``monitor retrain`` to the CLI's subparsers (``build_parser`` in cli.py)."""
    p = subparsers.add_parser(
        "retrain", help="train a candidate on recorded data; promote it only if it passes the gate"
    )
    add_arguments(p)
    p.set_defaults(func=run_retrain)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="monitor retrain", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    basic_logging("INFO")  # <N> priority prefixes under journald (the retrain timer's unit)
    try:
        return run_retrain(args)
    except ConfigError as exc:
        sys.stderr.write(f"configuration error: {exc}\n")
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
