"""Command line: `monitor train | backtest | check-config | run | models | ...`.

Exit codes: 0 success, 78 bad configuration (the message names the key), 1 any other
failure (bad data, a missing or refused bundle, a model trained on other channels than
``stream.channels``), 2 bad command-line usage, 141 stdout closed early (quietly); the
list and ``--config`` / ``MONITOR_CONFIG``: `monitor.app.cliargs`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import queue
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from monitor import __version__
from monitor.app import label, models, retrain
from monitor.app.backtest import format_quality, plot_timeline, run_backtest, write_scores_csv
from monitor.app.cliargs import EXIT_USAGE, UsageError, add_config, quiet_broken_pipe
from monitor.app.exclude import exclude_spans, labelled_spans, parse_span
from monitor.app.replay import connect_publisher, replay_offline, replay_to_broker
from monitor.app.training import (
    StreamData,
    adapters_line,
    group_training_data,
    load_training_data,
    threads_arg,
    train_bundle,
)
from monitor.core.config import (
    DEFAULT_GROUP,
    EXIT_CONFIG,
    Config,
    ConfigError,
    load_config,
    parse_partitions,
    shard_partitions,
)
from monitor.core.fleet import Fleet
from monitor.core.pipeline import TALLIES
from monitor.core.scoring_model import ScoringModel
from monitor.io.codec import Codec
from monitor.io.files import read_csv
from monitor.io.logs import basic_logging, setup_logging
from monitor.io.mqtt import MQTTIngest
from monitor.io.nats import partition_mappings, prepare_stream, require_client, server_config
from monitor.io.notify import make_systemd_tick
from monitor.io.record import Recorder
from monitor.io.recording import ALERTS_FILE, iter_recordings
from monitor.io.sinks import alert_json

# torch takes ~2 s to import: the model bundle code, the daemon and the demo are imported
# inside the commands that score, so that --help, check-config, record and
# replay --to-broker start without it (each such import says `# torch`).

log = logging.getLogger("monitor")


def _config(path: str | None) -> Config:
    return load_config(path)


def _load_model(path: Path, required_channels: list[str] | None = None) -> ScoringModel:
    """The scoring model of a bundle directory (or of a models directory's `current`).

    A model trained on other channels than the config's ``stream.channels`` (when it names
    them) is refused, as the daemon refuses it (`lifecycle.check_channels`): exit 1."""
    from monitor.app.lifecycle import check_channels  # noqa: PLC0415  # torch
    from monitor.core.model.bundle import load_bundle  # noqa: PLC0415  # torch

    model = ScoringModel.from_bundle(load_bundle(path))
    check_channels(model, required_channels)
    return model


def _progress(info: dict) -> None:
    left = info.get("seconds_left_estimate")
    left_s = f", ~{left:.0f}s left" if left is not None else ""
    print(
        f"  epoch {info['epoch']:>3}/{info['epochs']}  train {info['train_loss']:.4f}  "
        f"val {info['val_loss']:.4f}  ({info['seconds_elapsed']:.1f}s{left_s})",
        file=sys.stderr,
        flush=True,
    )


def cmd_check_config(args: argparse.Namespace) -> int:
    path = args.config_file or args.config  # the positional PATH wins
    if not path:
        raise UsageError("give the config: check-config PATH, --config PATH or MONITOR_CONFIG")
    cfg = _config(path)
    print(f"{path}: OK")
    if args.show:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return 0


def _override_threads(cfg: Config, threads: int | str | None) -> None:
    """``--threads`` over `model.threads`, for the top level and every group."""
    if threads is not None:
        cfg.model.threads = threads
        for g in cfg.groups:
            g.model.threads = threads


def cmd_train(args: argparse.Namespace) -> int:
    cfg = _config(args.config)
    _override_threads(cfg, args.threads)
    if args.device:
        cfg.model.device = args.device
        for g in cfg.groups:
            g.model.device = args.device
    if not cfg.groups:
        if args.group not in (None, DEFAULT_GROUP):
            raise ConfigError("--group", f"the config has no groups: (only {DEFAULT_GROUP!r}), got {args.group!r}")
        return _train_one(args, cfg, load_training_data(args.data, cfg), Path(args.out or cfg.models.dir))
    names = [cfg.group(args.group).name] if args.group else [g.name for g in cfg.groups]
    trained = 0
    for name in names:
        data = group_training_data(args.data, cfg, name)
        if not data:
            print(f"group {name}: no stream of the data routes to it; not trained", file=sys.stderr)
            continue
        out = Path(args.out) / name if args.out else cfg.group_models_dir(name)
        print(f"group {name}: {len(data)} stream(s) -> {out}", file=sys.stderr)
        _train_one(args, cfg.for_group(name), data, out)
        trained += 1
    if not trained:
        raise ValueError(f"no training data for group(s) {', '.join(names)}: check groups[].streams / topics")
    return 0


def _train_one(args: argparse.Namespace, cfg: Config, data: list[StreamData], out: Path) -> int:
    if args.exclude_alerts or args.exclude_span:
        spans, counts = labelled_spans(args.exclude_alerts or [])
        if args.exclude_alerts:
            print(
                f"alert episodes: {counts['confirmed']} confirmed and {counts['unlabelled']} unlabelled left out, "
                f"{counts['false_alarm']} labelled false alarm kept as normal data",
                file=sys.stderr,
            )
        spans += [parse_span(a, b) for a, b in (args.exclude_span or [])]
        pad = cfg.model.window_size * (cfg.stream.period_seconds if cfg.stream.period_seconds != "auto" else 1.0)
        removed = exclude_spans(data, spans, pad_seconds=pad)
        print(f"left out {removed} rows/readings inside {len(spans)} alerting span(s)", file=sys.stderr)
    print(f"training on {sum(_rows(sd) for sd in data)} readings/rows from {len(args.data)} source(s)", file=sys.stderr)
    outcome = train_bundle(
        data, cfg, out, progress=None if args.quiet else _progress, make_current=not args.no_promote, sources=args.data
    )
    m = outcome.manifest
    exceedance = m.validation.get("calibration_exceedance_rate")
    print(
        f"bundle {m.version} written to {outcome.bundle_path}\n"
        f"  channels {len(m.channels)}, period {m.period_seconds}s, "
        f"window {m.window_size}x stride {m.stride}\n"
        f"  threshold {m.threshold:.6g} ({m.threshold_method}), calibration exceedance "
        f"{exceedance:.4f}\n"
        f"  {adapters_line(outcome.report['adapters'])}\n"
        f"  {m.training['epochs_run']} epochs in {m.training['seconds']:.1f}s; "
        f"report: {outcome.bundle_path / 'report.json'}"
        + ("" if args.no_promote else f"\n  {out / 'current'} -> {outcome.bundle_path.name}")
    )
    return 0


def _rows(sd) -> int:
    return len(sd.timestamps) if sd.timestamps is not None else len(sd.readings)


def cmd_backtest(args: argparse.Namespace) -> int:
    from monitor.core.model.threads import use_threads  # noqa: PLC0415  # torch

    cfg = _config(args.config)
    _override_threads(cfg, args.threads)
    if args.model and args.train_rows:
        raise UsageError("give --model or --train-rows, not both")
    group = _backtest_group(cfg, args.group)
    data = read_csv(args.data, cfg.data)
    started = time.monotonic()
    gcfg = cfg.for_group(group)
    use_threads(gcfg.model.threads)  # scoring; training (--train-rows) sets the same
    if args.train_rows:
        if args.train_rows >= data.n_rows:
            raise SystemExit(f"--train-rows {args.train_rows} leaves nothing to test in {data.n_rows} rows")
        channels = gcfg.stream.channels or data.channels
        cols = [data.channels.index(c) for c in channels]
        sd = StreamData(
            cfg.data.stream, list(channels), data.timestamps[: args.train_rows], data.values[: args.train_rows][:, cols]
        )
        with tempfile.TemporaryDirectory(prefix="monitor-backtest-") as tmp:
            outcome = train_bundle([sd], gcfg, Path(tmp), sources=[args.data], write_plots=False)
            model = _load_model(outcome.bundle_path)
    else:
        model = _load_model(Path(args.model or cfg.group_models_dir(group)), gcfg.stream.channels or None)
    if cfg.groups:
        print(f"stream {cfg.data.stream} scored as group {group}", file=sys.stderr)
    train_seconds = time.monotonic() - started
    result = run_backtest(
        cfg,
        data.timestamps,
        data.values,
        data.channels,
        model,
        labels=data.labels,
        train_rows=args.train_rows or 0,
        group=group if cfg.groups else None,
        latent=args.latent,
    )
    write_scores_csv(result, Path(args.out))
    if args.latent:
        _backtest_latent_map(result, model, Path(args.out))
    print(
        f"{data.n_rows} rows scored with model {model.version} -> {args.out}"
        + (f" (trained in {train_seconds:.1f}s)" if args.train_rows else "")
    )
    firing = sum(1 for a in result.alerts if a.state == "firing")
    print(
        f"alerts fired: {firing}; dropped/rejected: "
        + (", ".join(f"{k}={v}" for k, v in sorted(result.counters.items()) if k not in TALLIES) or "none")
    )
    if result.quality is not None:
        print(format_quality(result.quality))
        plot = Path(args.plot) if args.plot else Path(args.out).with_suffix(".png")
        if plot_timeline(result, plot, title=f"{args.data} — model {model.version}"):
            print(f"timeline: {plot}")
    if args.report:
        report = {
            "rows": data.n_rows,
            "model": model.version,
            "train_seconds": train_seconds,
            "counters": result.counters,
            "alerts": [a.to_dict() for a in result.alerts],
            "quality": result.quality.as_dict() if result.quality else None,
        }
        Path(args.report).write_text(json.dumps(report, indent=2))
    return 0


def _backtest_latent_map(result, model: ScoringModel, out: Path) -> None:
    """``<out>.latent.png``: the scored windows on the bundle's map, alerted ones highlighted."""
    from monitor.app.latent import backtest_map_png  # noqa: PLC0415

    if model.latent is None:
        print(f"model {model.version} has no latent map (trained before it); codes written, no latent.png")
        return
    if result.window_codes is None or not len(result.window_codes):
        return
    path = out.with_suffix(".latent.png")
    if backtest_map_png(model.latent, result.window_codes, result.window_alert, path):
        print(f"latent map: {path}")


def _backtest_group(cfg: Config, name: str | None) -> str:
    """The group a backtest's stream (``data.stream``) is scored as: `name`, else the one it routes to."""
    if name is not None:
        return cfg.group(name).name
    routed = Fleet.from_config(cfg).route(cfg.data.stream)
    if routed is None:
        raise ConfigError("data.stream", f"stream {cfg.data.stream!r} matches no group; give --group")
    return routed


def _replay_models(cfg: Config, model: str | None, group: str | None) -> dict[str, ScoringModel | None]:
    """A model per group for replay --offline: `--model` for one group, else each group's current."""
    from monitor.core.model.bundle import current_bundle_path  # noqa: PLC0415  # torch

    names = [g.name for g in cfg.fleet()]
    if model is not None:
        if len(names) > 1 and group is None:
            raise UsageError("--model serves one group: give --group too (or leave --model out)")
        target = cfg.group(group).name if group else names[0]
        models: dict[str, ScoringModel | None] = {n: None for n in names}
        models[target] = _load_model(Path(model), cfg.for_group(target).stream.channels or None)
        others = [n for n in names if n != target]
    else:
        models, others = {}, names
    for name in others:
        path = current_bundle_path(cfg.group_models_dir(name))
        if path is None:
            print(
                f"group {name}: no bundle in {cfg.group_models_dir(name)}; its readings count as no_model",
                file=sys.stderr,
            )
            models[name] = None
        else:
            models[name] = _load_model(path, cfg.for_group(name).stream.channels or None)
    return models


class _EarlySignals:
    """SIGTERM/SIGINT/SIGHUP handlers for the seconds before the service exists (torch import,
    model load): they remember what arrived, and `hand_over` passes it on to the service."""

    def __init__(self) -> None:
        self.stop = self.reload = False
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)

    def _on_stop(self, *_: object) -> None:
        self.stop = True

    def _on_reload(self, *_: object) -> None:
        self.reload = True

    def hand_over(self, service) -> None:
        service.install_signal_handlers()
        if self.stop:
            service.request_stop()
        if self.reload:
            service.request_reload()


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _config(args.config)  # a bad config exits 78 here: before torch is imported or anything connects
    partitions = _owned_partitions(cfg, args.partitions, args.shard)
    setup_logging(args.log_level or cfg.log_level, json_lines=not args.plain_logs)
    early = _EarlySignals()  # from here on a SIGTERM is a clean stop, never the default kill
    log.debug("signal handlers installed")

    from monitor.app.service import Service  # noqa: PLC0415  # torch: only once the config is known good

    service = Service(cfg, config_path=args.config, partitions=partitions)
    early.hand_over(service)  # the service's handlers, before any of its threads starts
    if service.stop_requested:
        log.info("stop requested while starting; not started")
        return 0
    service.start()
    return service.run_forever(
        install_signals=False, on_tick=make_systemd_tick(service)
    )  # sd_notify READY/WATCHDOG under systemd


def _owned_partitions(cfg: Config, spec: str | None, shard: str | None) -> tuple[int, ...] | None:
    """The partitions `run` owns: --partitions, --shard i/n, else nats.owned (source: nats only)."""
    if (spec or shard) and cfg.source != "nats":
        raise ConfigError("source", "--partitions and --shard need source: nats (MQTT has no partitions)")
    if spec and shard:
        raise UsageError("give --partitions or --shard, not both")
    if cfg.source != "nats":
        return None
    require_client()  # source: nats without nats-py: exit 78 with the install command
    if shard:
        return shard_partitions(shard, cfg.nats.partitions)
    return parse_partitions(spec, cfg.nats.partitions, "--partitions") if spec else cfg.nats.owned_partitions()


def cmd_nats_server_config(args: argparse.Namespace) -> int:
    """The nats-server config whose mappings partition the config's topic rules (deploy/nats/)."""
    cfg = _config(args.config)
    maps = partition_mappings(cfg.topics, cfg.nats.partitions, cfg.nats.subject_prefix)
    print(
        server_config(
            maps, port=args.port, store_dir=args.store_dir, mqtt_port=args.mqtt_port or None, server_name=args.name
        ),
        end="",
    )
    return 0


def cmd_nats_stream(args: argparse.Namespace) -> int:
    """Make the JetStream stream capture the config's subject prefix (changing N: before the
    server's mappings switch to the new prefix, so no message lands outside the stream)."""
    cfg = _config(args.config)
    try:
        subjects = prepare_stream(cfg.nats)
    except ConfigError:
        raise
    except Exception as exc:  # unreachable, refused, no JetStream: say so, exit 69 (EX_UNAVAILABLE)
        print(f"error: cannot prepare stream {cfg.nats.stream}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 69
    print(f"stream {cfg.nats.stream} captures: {', '.join(subjects)}")
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    cfg = _config(args.config)
    setup_logging(args.log_level or cfg.log_level)
    recorder = Recorder(
        args.out or cfg.record.dir,
        rotate_bytes=cfg.record.rotate_bytes,
        rotate_seconds=cfg.record.rotate_seconds,
        max_age_seconds=cfg.record.max_age_hours * 3600.0,
        max_bytes=cfg.record.max_bytes,
    ).start()

    class _Discard(queue.Queue):
        def put_nowait(self, item):  # recording only: decoded readings are not needed
            return None

    codec = Codec(cfg.topics, cfg.mqtt.max_payload_bytes, cfg.stream.max_future_seconds)
    # its own client id: with the daemon's, each would take the other's session in turns
    ingest = MQTTIngest(cfg.mqtt.for_role("record"), cfg.topics, codec, _Discard(), raw_tap=recorder.tap)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ingest.start()
    log.info("recording into %s", recorder.dir)
    deadline = time.monotonic() + args.duration if args.duration else None
    while not stop.is_set() and not (deadline and time.monotonic() >= deadline):
        stop.wait(0.2)
    ingest.stop()
    recorder.close()
    print(
        f"recorded {recorder.stats['recorded']} messages into {len(recorder.files)} file(s) in {recorder.dir}; "
        f"dropped {recorder.stats['dropped']}, write errors {recorder.stats['write_errors']}"
    )
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    cfg = _config(args.config)
    if args.to_broker == args.offline:
        raise UsageError("choose one of --offline or --to-broker")
    if args.latent and not args.offline:
        raise UsageError("--latent needs --offline (codes come from scoring here)")
    if args.offline:
        models = _replay_models(cfg, args.model, args.group)
        if args.alerts_out and Path(args.alerts_out).name != ALERTS_FILE:
            print(
                f"warning: `monitor retrain` and `monitor label` look for the alert log as {ALERTS_FILE} in the "
                f"recordings folder; {args.alerts_out} will not be found there",
                file=sys.stderr,
            )
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(open(args.alerts_out, "w")) if args.alerts_out else None

            def on_alert(alert):
                line = alert_json(alert).decode()
                print(line, flush=True)
                if out:
                    out.write(line + "\n")

            on_scores = None
            if args.latent:
                from monitor.app.latent import LatentCsv  # noqa: PLC0415

                codes_csv = LatentCsv(Path(args.latent))
                stack.callback(codes_csv.close)
                on_scores = codes_csv.write
            res = replay_offline(
                args.files, cfg, models, on_alert=on_alert, on_scores=on_scores, latent=bool(args.latent)
            )
        versions = ", ".join(f"{g}={m.version if m else 'none'}" for g, m in models.items())
        print(
            f"replayed {res.messages} messages ({res.readings} readings, {res.windows} windows) with model(s) "
            f"{versions}: {len(res.alerts)} alert state changes; rejected {dict(res.rejected) or 'none'}"
            + (
                f"; {sum(res.unrouted.values())} readings of {len(res.unrouted)} stream(s) matched no group"
                if res.unrouted
                else ""
            ),
            file=sys.stderr,
        )
        if res.messages and not res.readings:
            print(
                f"error: none of the {res.messages} messages gave a reading (rejected "
                f"{dict(res.rejected) or 'none'}): is --config the one the recording was made with "
                "(mqtt.topics, stream.channels, payload format)?",
                file=sys.stderr,
            )
            return 1
        return 0
    client = connect_publisher(cfg.mqtt)
    try:
        n = replay_to_broker(
            iter_recordings(args.files), lambda t, p, q, r: client.publish(t, p, q, r), speed=args.speed
        )
    finally:
        client.loop_stop()
        client.disconnect()
    print(
        f"republished {n} messages to {cfg.mqtt.host}:{cfg.mqtt.port} at "
        + ("full speed" if args.speed <= 0 else f"{args.speed:g}x"),
        file=sys.stderr,
    )
    return 0


def cmd_silence(args: argparse.Namespace) -> int:
    from monitor.io import silences  # noqa: PLC0415

    cfg = _config(args.config)
    path = silences.silences_path(cfg.models.dir)
    try:
        if args.list:
            now = time.time()
            active = [s for s in silences.load(path) if s.active(now)]
            for s in active:
                left = s.until - now
                print(
                    f"{s.id}  {s.stream}  until {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(s.until))} UTC "
                    f"({left / 3600:.1f} h left)  {s.reason}"
                )
            if not active:
                print(f"no active silences ({path})")
            return 0
        if args.clear:
            if not silences.clear(path, args.clear):
                print(f"no silence with id {args.clear!r} in {path}", file=sys.stderr)
                return 1
            print(f"cleared {args.clear}")
            return 0
        if not args.stream or not args.duration:
            raise UsageError("give STREAM --for DURATION [--reason TEXT], or --list, or --clear ID")
        seconds = silences.parse_duration(args.duration)
        s = silences.add(path, args.stream, seconds, args.reason or "")
    except (silences.SilenceFileError, ValueError, OSError) as exc:
        print(f"monitor silence: {exc}", file=sys.stderr)
        return 1
    print(f"{s.id}  {s.stream} silenced for {seconds / 3600:.2f} h: {s.reason}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from monitor.app.demo import run_demo  # noqa: PLC0415  # torch

    logging.getLogger().setLevel(args.log_level or "ERROR")
    return run_demo(args.speed, args.duration, args.metrics_port, args.broker, epochs=args.epochs, threads=args.threads)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="monitor", description="Streaming sensor anomaly monitor")
    p.add_argument("--version", action="version", version=f"monitor {__version__}")
    p.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("check-config", help="validate a config file (exit 78 if invalid)")
    c.add_argument("config_file", nargs="?", metavar="CONFIG", help="the config file (or --config)")
    add_config(c, required=False)
    c.add_argument("--show", action="store_true", help="print the effective config (secrets masked)")
    c.set_defaults(func=cmd_check_config)

    t = sub.add_parser("train", help="train a model bundle from CSV files or recordings")
    add_config(t)
    t.add_argument("--data", nargs="+", required=True, help="CSV files, recordings (.jsonl[.gz]) or folders of them")
    t.add_argument("--out", help="models directory (default: models.dir of the config; with groups, <out>/<group>)")
    t.add_argument("--group", help="train only this group (default: one bundle per group)")
    t.add_argument("--device", choices=["auto", "cpu", "cuda"])
    t.add_argument("--threads", type=threads_arg, help='torch threads: a count or "auto" (default: model.threads)')
    t.add_argument("--no-promote", action="store_true", help="do not move the `current` pointer")
    t.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    t.add_argument(
        "--exclude-alerts",
        nargs="+",
        metavar="FILE",
        help="leave out periods that were alerting (alert JSON lines or a recording of the alert topic); "
        "episodes labelled false alarm (alert-labels.json beside the log, `monitor label`) stay in as normal data",
    )
    t.add_argument(
        "--exclude-span",
        nargs=2,
        action="append",
        metavar=("START", "END"),
        help="leave out a period (epoch seconds or ISO 8601); repeatable",
    )
    t.set_defaults(func=cmd_train)

    b = sub.add_parser("backtest", help="stream a CSV file through the pipeline, one output row per input row")
    add_config(b)
    b.add_argument("--data", required=True, help="a wide CSV file")
    b.add_argument("--model", help="bundle directory or models directory (default: models.dir/current)")
    b.add_argument("--group", help="score the stream as this group (default: the group data.stream routes to)")
    b.add_argument("--train-rows", type=int, default=0, help="train on the first N rows, score the rest")
    b.add_argument("--out", required=True, help="scores CSV to write")
    b.add_argument("--plot", help="timeline PNG (default: beside --out)")
    b.add_argument("--report", help="write figures and alerts as JSON")
    b.add_argument("--threads", type=threads_arg, help='torch threads: a count or "auto" (default: model.threads)')
    b.add_argument(
        "--latent",
        action="store_true",
        help="add each window's code (code_0 ...) to --out and draw <out>.latent.png (the operating-state map)",
    )
    b.set_defaults(func=cmd_backtest)

    r = sub.add_parser("run", help="run the daemon: MQTT in, alerts and metrics out")
    add_config(r)
    r.add_argument("--plain-logs", action="store_true", help="human-readable logs instead of JSON lines")
    r.add_argument("--partitions", help='source: nats — the partitions this worker owns, e.g. "0-3" or "0-3,6"')
    r.add_argument("--shard", help='source: nats — worker i of n ("i/n", from 0) owns the i-th of n partition ranges')
    r.set_defaults(func=cmd_run)

    ns = sub.add_parser("nats-server-config", help="print a nats-server config partitioning the topic rules")
    add_config(ns)
    ns.add_argument("--port", type=int, default=4222)
    ns.add_argument("--mqtt-port", type=int, default=1883, help="the MQTT listener's port (0: none)")
    ns.add_argument("--store-dir", default="/data/jetstream")
    ns.add_argument("--name", default="monitor-nats-0", help="server_name")
    ns.set_defaults(func=cmd_nats_server_config)

    nst = sub.add_parser("nats-stream", help="make the JetStream stream capture the config's subject prefix")
    add_config(nst)
    nst.set_defaults(func=cmd_nats_stream)

    rec = sub.add_parser("record", help="record raw MQTT messages into rotating compressed files")
    add_config(rec)
    rec.add_argument("--out", help="directory (default: record.dir of the config)")
    rec.add_argument("--duration", type=float, help="stop after this many seconds")
    rec.set_defaults(func=cmd_record)

    rp = sub.add_parser("replay", help="replay recordings offline through the pipeline or to a broker")
    rp.add_argument("files", nargs="+", help="recording files or directories")
    add_config(rp)
    rp.add_argument("--offline", action="store_true", help="run through the pipeline here; print alerts")
    rp.add_argument("--to-broker", action="store_true", help="republish to the configured broker")
    rp.add_argument("--speed", type=float, default=1.0, help="x real time with --to-broker; 0 = as fast as possible")
    rp.add_argument("--model", help="bundle or models directory (default: models.dir of the config)")
    rp.add_argument("--group", help="the group --model serves (with groups:); the others use their current")
    rp.add_argument(
        "--latent",
        metavar="CSV",
        help="--offline: write each scored window's stream, time, score, state, novelty and code_0 ... to CSV",
    )
    rp.add_argument(
        "--alerts-out", help=f"also write the alerts as JSON lines here (for retrain: <recordings>/{ALERTS_FILE})"
    )
    rp.set_defaults(func=cmd_replay)

    si = sub.add_parser("silence", help="silence a stream's alerts for a while (maintenance), list or clear silences")
    add_config(si)
    si.add_argument("stream", nargs="?", help="stream key or fnmatch pattern (site1/*)")
    si.add_argument("--for", dest="duration", help="how long: 90s, 15m, 2h, 1d")
    si.add_argument("--reason", default="", help="why (shown by --list)")
    si.add_argument("--list", action="store_true", help="list the silences in force")
    si.add_argument("--clear", metavar="ID", help="remove a silence")
    si.set_defaults(func=cmd_silence)

    d = sub.add_parser("demo", help="train on a bundled recording, run the daemon on a local broker, replay a fault")
    d.add_argument("--speed", type=float, default=20.0, help="replay speed (x real time)")
    d.add_argument("--duration", type=float, help="stop after this many seconds (exit 1 if nothing was alerted)")
    d.add_argument("--metrics-port", type=int, default=9108)
    d.add_argument("--broker", choices=["auto", "mosquitto", "amqtt"], default="auto")
    d.add_argument("--epochs", type=int, help="training epochs (default: the demo config's 25; fewer is faster)")
    d.add_argument("--threads", type=threads_arg, help='torch threads: a count or "auto" (default 1)')
    d.set_defaults(func=cmd_demo)

    retrain.register(sub)
    models.register(sub)
    label.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    basic_logging(args.log_level or "WARNING")  # <N> priority prefixes under journald
    try:
        code = args.func(args)
        sys.stdout.flush()  # here, so that a closed pipe is caught below, not at exit
        return code
    except BrokenPipeError:  # `monitor models show X | head`: the reader has gone
        return quiet_broken_pipe()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except UsageError as exc:
        print(f"monitor {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except SystemExit:
        raise
    except Exception as exc:
        from monitor.app.lifecycle import ModelRejected  # noqa: PLC0415  # torch
        from monitor.core.model.bundle import BundleError, BundleNotFound  # noqa: PLC0415  # torch

        if isinstance(exc, BundleNotFound):
            kind = "model not found"
        elif isinstance(exc, (BundleError, ModelRejected)):
            kind = "model bundle refused"
        else:
            kind = type(exc).__name__
        print(f"error: {kind}: {exc}", file=sys.stderr)
        if args.log_level == "DEBUG":
            raise
        return 1


if __name__ == "__main__":
    sys.exit(main())
