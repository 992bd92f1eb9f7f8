"""Latent features (decision 0020): codes from the scoring pass, the map, operating states."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from broker import Mosquitto, mosquitto_binary
from daemon_support import (
    MODEL_YAML,
    Publisher,
    Subscriber,
    config_from,
    daemon_config,
    feed_rows,
    load_yaml,
    wait_until,
)
from prometheus_client import CollectorRegistry

from monitor.app.backtest import run_backtest, write_scores_csv
from monitor.app.cli import main
from monitor.app.latent import LatentCsv, latent_map_png
from monitor.app.models import latent_text
from monitor.app.replay import replay_offline
from monitor.app.service import Service
from monitor.app.training import StreamData, train_bundle
from monitor.core.config import ConfigError, ModelConfig
from monitor.core.model.bundle import load_bundle
from monitor.core.model.latent import LatentModel, fit_projection, fit_states, kmeans
from monitor.core.model.manifest import Manifest, ManifestError
from monitor.core.model.nets import build_autoencoder
from monitor.core.model.scorer import AutoencoderScorer
from monitor.core.scoring_model import ScoringModel
from monitor.core.synthetic import CHANNELS, pump, write_csv
from monitor.core.types import RawMessage, ScoreBatch
from monitor.io.latent_out import LatentPublisher
from monitor.io.metrics import Metrics
from monitor.io.recording import RecordingWriter

FIXTURE = Path(__file__).parent / "fixtures" / "bundle-v1"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """The daemon tests' small model, trained with its report plots."""
    cfg = config_from(load_yaml(MODEL_YAML))
    t, v, _ = pump(2400, seed=11, steps_per_hour=0)
    d = tmp_path_factory.mktemp("models")
    return train_bundle([StreamData("site1/pump1", list(CHANNELS), t, v)], cfg, d).bundle_path


# --------------------------------------------------------------------------- codes


@pytest.mark.parametrize("arch", ["dense", "conv1d"])
def test_codes_have_one_row_of_code_size_per_window_and_leave_the_errors_unchanged(arch):
    torch.manual_seed(0)
    mc = ModelConfig(architecture=arch, window_size=12, code_size=3, hidden=[16], conv_channels=[8])
    scorer = AutoencoderScorer(build_autoencoder(mc, 4))
    x = np.random.default_rng(0).normal(size=(37, 12, 4)).astype(np.float32)
    raw, per_channel, last, codes = scorer.errors_and_codes(x)
    assert codes.shape == (37, 3) and codes.dtype == np.float32
    for a, b in zip((raw, per_channel, last), scorer.errors(x), strict=True):
        np.testing.assert_array_equal(a, b)
    with torch.inference_mode():
        _, code = scorer.module(torch.from_numpy(x))
    expected = code.numpy() if arch == "dense" else code.numpy().mean(axis=2)
    np.testing.assert_allclose(codes, expected, rtol=1e-6, atol=1e-7)
    empty = scorer.errors_and_codes(np.zeros((0, 12, 4), dtype=np.float32))[3]
    assert empty.shape == (0, 3)


def test_chunked_codes_equal_codes_of_one_pass():
    torch.manual_seed(1)
    scorer = AutoencoderScorer(
        build_autoencoder(ModelConfig(window_size=8, code_size=2, hidden=[8]), 2), chunk_values=1
    )
    x = np.random.default_rng(1).normal(size=(700, 8, 2)).astype(np.float32)  # 256-window pieces
    whole = AutoencoderScorer(scorer.module).errors_and_codes(x[:256])[3]
    np.testing.assert_allclose(scorer.errors_and_codes(x)[3][:256], whole, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- states and map


def _three_clouds(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 1.0], [0.0, 6.0, -1.0]])
    which = rng.integers(0, 3, size=600)
    codes = centres[which] + rng.normal(scale=0.4, size=(600, 3))
    level = np.array([1.0, 3.0, 2.0])[which] + rng.normal(scale=0.05, size=600)
    return codes, level


def test_states_are_the_same_on_a_seeded_rerun_and_named_by_first_channel_level():
    codes, level = _three_clouds(0)
    a = fit_states(codes, level, "auto", seed=4, channel="flow")
    b = fit_states(codes, level, "auto", seed=4, channel="flow")
    assert a is not None and b is not None
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert a.k == 3 and a.rule == "silhouette" and a.names == ["low-flow", "mid-flow", "high-flow"]
    # numbering follows the level rule, not the order k-means found them in: another seed, same states
    c = fit_states(codes, level, "auto", seed=99, channel="flow")
    assert c is not None
    np.testing.assert_allclose(c.centroids, a.centroids, atol=1e-9)
    idx, _ = a.assign(codes)
    for state, true_level in enumerate([1.0, 2.0, 3.0]):
        assert abs(level[idx == state].mean() - true_level) < 0.1


def test_novelty_is_about_one_at_the_training_p99_and_large_far_from_every_state():
    codes, level = _three_clouds(2)
    st = fit_states(codes, level, 3, seed=0, channel="flow")
    assert st is not None and st.rule == "config" and st.k == 3
    _, novelty = st.assign(codes)
    assert np.mean(novelty <= 1.0) == pytest.approx(0.99, abs=0.006)
    _, far = st.assign(np.array([[30.0, -30.0, 10.0]]))
    assert far[0] > 5


def test_kmeans_is_deterministic_for_a_seed():
    x = np.random.default_rng(3).normal(size=(300, 4))
    c1, l1 = kmeans(x, 4, seed=7)
    c2, l2 = kmeans(x, 4, seed=7)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(l1, l2)


def test_map_is_the_code_for_size_two_and_a_pca_with_its_explained_variance_otherwise():
    rng = np.random.default_rng(5)
    two = rng.normal(size=(50, 2))
    p = fit_projection(two)
    assert p.method == "code" and p.explained == 1.0
    np.testing.assert_array_equal(p(two), two)
    flat = np.column_stack([rng.normal(size=200) * 5, rng.normal(size=200) * 2, rng.normal(size=200) * 0.01])
    p = fit_projection(flat)
    total = flat.var(axis=0).sum()
    assert p.method == "pca" and p.explained == pytest.approx((flat.var(axis=0)[:2].sum()) / total, rel=0.05)


def test_states_config_is_validated():
    assert ModelConfig(states=4).states == 4 and ModelConfig(states="off").states == "off"
    for bad in (0, 13, "many", True, 2.5):
        with pytest.raises(ConfigError, match=r"model\.states"):
            ModelConfig(states=bad)


# --------------------------------------------------------------------------- bundle and report


@pytest.mark.slow  # trains the module's bundle (about 7 s)
def test_training_writes_latent_png_and_the_latent_facts_into_the_manifest(bundle):
    png = bundle / "latent.png"
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = load_bundle(bundle).manifest
    latent = m.latent_model
    assert latent is not None and latent.code_size == 6 and latent.pooling == "none"
    assert 0 < latent.projection.explained <= 1 and latent.states is not None and latent.states.k >= 2
    report = json.loads((bundle / "report.json").read_text())
    assert report["latent"]["explained_variance"] == pytest.approx(latent.projection.explained)
    text = latent_text(m)
    assert "code_size 6" in text and "% of the code variance" in text
    assert text.count("centroid [") == latent.states.k


def test_latent_map_png_is_a_non_empty_png():
    codes, level = _three_clouds(1)
    latent = LatentModel(3, "none", fit_projection(codes), fit_states(codes, level, 3, 0, "flow"))
    png = latent_map_png(latent, codes[:500], codes[500:])
    assert png is not None and png[:4] == b"\x89PNG" and len(png) > 1000


def test_a_format_1_bundle_has_no_latent_facts_and_still_scores():
    b = load_bundle(FIXTURE / "models" / "current")
    assert b.manifest.latent is None and ScoringModel.from_bundle(b).latent is None
    assert "trained before them" in latent_text(b.manifest)


@pytest.mark.slow  # trains the module's bundle (about 7 s)
def test_a_malformed_latent_entry_is_refused_naming_the_key(bundle):
    obj = json.loads((bundle / "manifest.json").read_text())
    assert Manifest.from_json(obj).to_json()["latent"] == obj["latent"]  # round trip
    obj["latent"]["states"]["centroids"] = [[1.0]]
    with pytest.raises(ManifestError, match=r"latent\.states\.centroids"):
        Manifest.from_json(obj)
    obj = json.loads((bundle / "manifest.json").read_text())
    obj["latent"]["code_size"] = 3
    with pytest.raises(ManifestError, match="latent"):
        Manifest.from_json(obj)


# --------------------------------------------------------------------------- pipeline outputs


def _recording(path: Path, t: np.ndarray, v: np.ndarray) -> Path:
    with RecordingWriter(path) as w:
        for ti, vi in zip(t, v, strict=True):
            body = {"ts": float(ti), **{c: float(x) for c, x in zip(CHANNELS, vi, strict=True)}}
            w.write(RawMessage(float(ti) + 0.01, "plant/site1/pump1", json.dumps(body).encode(), 1, False))
    return path


def _replay_cfg():
    raw = load_yaml(MODEL_YAML)
    raw.update(
        {
            "topics": [{"template": "plant/{site}/{asset}", "format": "json_multi", "stream": "{site}/{asset}"}],
            "stream": {"channels": list(CHANNELS), "period_seconds": 1.0, "max_gap_seconds": 5},
            "alarm": {"k": 3, "n": 5, "resolve_m": 10},
            "data": {"stream": "site1/pump1"},
        }
    )
    return config_from(raw)


@pytest.mark.slow  # trains the module's bundle (about 7 s)
def test_backtest_codes_equal_replay_codes_and_the_csv_carries_them(tmp_path, bundle):
    model = ScoringModel.from_bundle(load_bundle(bundle))
    cfg = _replay_cfg()
    t, v, _ = feed_rows(600, fault=(300, 420), start_time=1.7e9)
    batches: list[ScoreBatch] = []
    codes_csv = LatentCsv(tmp_path / "codes.csv")

    def keep(s: ScoreBatch) -> None:
        batches.append(s)
        codes_csv.write(s)

    res = replay_offline([_recording(tmp_path / "r.jsonl.gz", t, v)], cfg, model, on_scores=keep, latent=True)
    codes_csv.close()
    replay_codes = np.concatenate([b.codes for b in batches if b.codes is not None])
    assert replay_codes.shape == (res.windows, 6)
    bt = run_backtest(cfg, t, v, list(CHANNELS), model, latent=True)
    assert bt.window_codes is not None and bt.window_codes.shape == replay_codes.shape
    np.testing.assert_allclose(bt.window_codes, replay_codes, rtol=1e-5, atol=1e-6)
    write_scores_csv(bt, tmp_path / "scores.csv")
    rows = list(csv.DictReader((tmp_path / "scores.csv").read_text().splitlines()))
    assert [f"code_{j}" for j in range(6)] == [k for k in rows[0] if k.startswith("code_")]
    last = [float(rows[-1][f"code_{j}"]) for j in range(6)]
    np.testing.assert_allclose(last, bt.window_codes[-1], rtol=0, atol=0)
    lines = list(csv.DictReader((tmp_path / "codes.csv").read_text().splitlines()))
    assert len(lines) == res.windows and int(lines[0]["state"]) >= 1 and float(lines[0]["novelty"]) >= 0
    np.testing.assert_array_equal([float(lines[-1][f"code_{j}"]) for j in range(6)], replay_codes[-1])


@pytest.mark.slow  # trains the module's bundle (about 7 s)
def test_alerts_carry_the_operating_state_of_the_window_behind_them(tmp_path, bundle):
    model = ScoringModel.from_bundle(load_bundle(bundle))
    t, v, _ = feed_rows(1000, start_time=1.7e9)  # a cavitation fault in rows 700..820
    bt = run_backtest(_replay_cfg(), t, v, list(CHANNELS), model)
    firing = [a for a in bt.alerts if a.state == "firing"]
    assert firing, "the fault should alert"
    st = model.latent.states
    for a in firing:
        ctx = a.operating_state
        assert ctx is not None and ctx["of"] == st.k and 1 <= ctx["index"] <= st.k
        assert ctx["name"] == st.names[ctx["index"] - 1] and ctx["text"].startswith(f"state {ctx['index']} of")
        assert a.to_dict()["operating_state"] == ctx


@pytest.mark.slow  # trains the module's bundle (about 7 s)
def test_without_states_and_without_latent_no_codes_are_computed(tmp_path, bundle):
    model = ScoringModel.from_bundle(load_bundle(bundle))
    plain = ScoringModel(**{**model.__dict__, "latent": None})
    t, v, _ = feed_rows(200, fault=None, start_time=1.7e9)
    seen: list[ScoreBatch] = []
    replay_offline([_recording(tmp_path / "r.jsonl.gz", t, v)], _replay_cfg(), plain, on_scores=seen.append)
    assert seen and all(b.codes is None and b.states is None for b in seen)


# --------------------------------------------------------------------------- daemon-side outputs


def test_operating_state_metric_is_bounded_by_the_stream_label_cap():
    reg = CollectorRegistry()
    m = Metrics(reg, max_stream_labels=2)
    assert [m.set_state(f"s{i}", i % 3 + 1, 0.5) for i in range(5)] == [True, True, False, False, False]
    samples = [s for fam in reg.collect() if fam.name == "monitor_operating_state" for s in fam.samples]
    assert sorted(s.labels["stream"] for s in samples) == ["s0", "s1"]
    assert reg.get_sample_value("monitor_stream_labels_dropped_total") == 3
    m.forget_stream("s0")
    assert reg.get_sample_value("monitor_operating_state", {"stream": "s0"}) is None


def test_latent_topic_publishes_each_streams_newest_code_at_most_once_per_interval():
    sent: list[tuple[str, dict]] = []
    now = [0.0]
    pub = LatentPublisher(lambda t, p, q, r: sent.append((t, json.loads(p))), "lat/{stream}", 10.0, lambda: now[0])
    codes = np.arange(12, dtype=np.float32).reshape(4, 3)
    batch = ScoreBatch(["a", "a", "b", "b"], [1.0, 2.0, 1.0, 2.0], np.ones(4), np.ones(4), *(np.zeros((4, 1)),) * 3)
    batch.codes = codes
    assert pub.send(batch, "v1") == 2
    assert [(t, b["ts"], b["code"]) for t, b in sent] == [
        ("lat/a", 2.0, [3.0, 4.0, 5.0]),
        ("lat/b", 2.0, [9.0, 10.0, 11.0]),
    ]
    now[0] = 9.9
    assert pub.send(batch, "v1") == 0
    now[0] = 10.0
    assert pub.send(batch, "v1") == 2 and len(sent) == 4


needs_broker = pytest.mark.skipif(mosquitto_binary() is None, reason="the mosquitto binary is not installed")


@pytest.mark.slow  # trains the module's bundle (about 7 s)
@needs_broker
def test_live_codes_states_and_metric_equal_offline_replay_of_the_daemons_own_recording(tmp_path, bundle):
    models = bundle.parent
    with Mosquitto(tmp_path / "broker") as b:
        cfg = daemon_config(
            b.port,
            models,
            record={"enabled": True, "dir": str(tmp_path / "rec")},
            alerts={
                "topic": "monitor/alerts/{stream}",
                "latent_topic": "monitor/latent/{stream}",
                "latent_every_seconds": 0,
            },
        )
        svc = Service(cfg)
        svc.start()
        latent = Subscriber(b.port, "monitor/latent/#")
        alerts = Subscriber(b.port, "monitor/alerts/#")
        try:
            wait_until(lambda: svc.ready()[0], what="ready")
            t, v, _ = feed_rows()
            pub = Publisher(b.port)
            pub.publish_rows("plant/site1/pump1", t, v)
            pub.close()
            wait_until(lambda: len(alerts.messages) >= 2, what="live alerts")
            wait_until(lambda: any(json.loads(p)["ts"] >= t[-1] - 1.5 for _, p in latent.messages), what="last code")
            state = svc.registry.get_sample_value("monitor_operating_state", {"stream": "site1/pump1"})
        finally:
            svc.shutdown()
            latent.close()
            alerts.close()
    live = [json.loads(p) for _, p in latent.messages]
    assert live and all(len(m["code"]) == 6 and m["model_version"] == bundle.name for m in live)
    model = ScoringModel.from_bundle(load_bundle(bundle))
    batches: list[ScoreBatch] = []
    offline = replay_offline([tmp_path / "rec"], cfg, model, on_scores=batches.append, latent=True)
    times = np.concatenate([np.asarray(b.times, dtype=float) for b in batches])
    codes = np.concatenate([b.codes for b in batches if b.codes is not None])
    states = np.concatenate([b.states for b in batches if b.states is not None])
    row = {float(ts): i for i, ts in enumerate(times)}
    for m in live:
        i = row[m["ts"]]
        np.testing.assert_allclose(m["code"], codes[i], rtol=1e-5, atol=1e-6)
        assert m["state"] == states[i] + 1
    assert state == states[-1] + 1  # the gauge holds the newest window's state
    fired = [json.loads(p) for _, p in alerts.messages if json.loads(p)["state"] == "firing"]
    assert [a["operating_state"] for a in fired] == [a.operating_state for a in offline.alerts if a.state == "firing"]


def _cli_config(tmp_path: Path, bundle: Path) -> Path:
    raw = load_yaml(MODEL_YAML)
    raw.update(
        {
            "topics": [{"template": "plant/{site}/{asset}", "format": "json_multi", "stream": "{site}/{asset}"}],
            "stream": {"channels": list(CHANNELS), "period_seconds": 1.0, "max_gap_seconds": 5},
            "data": {"timestamp_column": "timestamp", "label_column": "anomaly", "stream": "site1/pump1"},
            "models": {"dir": str(bundle.parent)},
        }
    )
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.slow  # trains the module's bundle (about 7 s)
def test_cli_backtest_latent_writes_code_columns_and_the_map_and_models_show_prints_states(tmp_path, bundle, capsys):
    cfg = _cli_config(tmp_path, bundle)
    t, v, labels = feed_rows(1000, start_time=1.7e9)
    write_csv(tmp_path / "feed.csv", t, v, labels)
    out = tmp_path / "scores.csv"
    assert (
        main(["backtest", "--config", str(cfg), "--data", str(tmp_path / "feed.csv"), "--out", str(out), "--latent"])
        == 0
    )
    header = out.read_text().splitlines()[0].split(",")
    assert header[-6:] == [f"code_{j}" for j in range(6)]
    png = out.with_suffix(".latent.png")
    assert png.stat().st_size > 1000 and "latent map:" in capsys.readouterr().out
    assert main(["models", "show", bundle.name, "--config", str(cfg)]) == 0
    shown = capsys.readouterr()
    assert json.loads(shown.out)["latent"]["code_size"] == 6
    assert "code_size 6" in shown.err and "explains" in shown.err and "centroid [" in shown.err


@pytest.mark.slow  # trains the module's bundle (about 7 s)
def test_cli_replay_offline_latent_writes_one_row_per_scored_window(tmp_path, bundle, capsys):
    cfg = _cli_config(tmp_path, bundle)
    t, v, _ = feed_rows(300, fault=None, start_time=1.7e9)
    rec = _recording(tmp_path / "r.jsonl.gz", t, v)
    codes = tmp_path / "codes.csv"
    assert main(["replay", str(rec), "--config", str(cfg), "--offline", "--latent", str(codes)]) == 0
    rows = list(csv.DictReader(codes.read_text().splitlines()))
    assert len(rows) == 300 - 16 + 1 and rows[0]["stream"] == "site1/pump1" and "code_5" in rows[0]
    assert main(["replay", str(rec), "--config", str(cfg), "--to-broker", "--latent", str(codes)]) == 2
    assert "--latent needs --offline" in capsys.readouterr().err


def test_alertmanager_description_says_which_state_the_alert_fired_in():
    from monitor.core.types import Alert  # noqa: PLC0415
    from monitor.io.alertmanager import payload  # noqa: PLC0415

    ctx = {"index": 2, "of": 3, "name": "mid-flow", "novelty": 0.4, "text": "state 2 of 3 (mid-flow)"}
    alert = Alert("id", "s", "firing", 1.0, None, 2.0, 2.0, 0.1, "v1", operating_state=ctx)
    item = payload(alert)
    assert "fired in state 2 of 3 (mid-flow)" in item["annotations"]["description"]
    plain = payload(Alert("id", "s", "firing", 1.0, None, 2.0, 2.0, 0.1, "v1"))
    assert "fired in" not in str(plain)
