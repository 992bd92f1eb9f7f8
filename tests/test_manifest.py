"""The typed manifest: a real format-1 bundle (tests/fixtures/bundle-v1, made by the code before
the dataclass) still loads through the migration, scores identically and is still refused
when tampered with; format 2 round-trips; unknown formats are refused."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from monitor.app.cli import main
from monitor.core.model.bundle import BundleError, list_bundles, load_bundle, save_bundle
from monitor.core.model.manifest import FORMAT_VERSION, Manifest, ManifestError, migrate
from monitor.core.model.nets import build_from_spec
from monitor.core.model.scorer import Scorer

torch.set_num_threads(1)

FIXTURE = Path(__file__).parent / "fixtures" / "bundle-v1"
V1 = "20261202T161519Z-e8e1fc7b"


@pytest.fixture
def v1(tmp_path) -> Path:
    """A private copy of the fixture (config, feed, models/ with its `current` symlink)."""
    dest = tmp_path / "bundle-v1"
    shutil.copytree(FIXTURE, dest, symlinks=True)
    return dest


def _v1_manifest() -> dict:
    return json.loads((FIXTURE / "models" / V1 / "manifest.json").read_text())


def _windows(bundle) -> np.ndarray:
    with open(FIXTURE / "feed.csv") as fh:
        rows = list(csv.DictReader(fh))
    x = np.array([[float(r[c]) for c in bundle.channels] for r in rows])
    z = ((x - bundle.scaler_mean) / bundle.scaler_std).astype(np.float32)
    w = bundle.window_size
    return np.stack([z[i : i + w] for i in range(len(z) - w + 1)])


def test_fixture_is_a_format_1_bundle_as_the_old_code_wrote_it():
    raw = _v1_manifest()
    assert raw["format_version"] == 1 and "weights" not in raw and len(raw["weights_sha256"]) == 64
    assert (FIXTURE / "models" / "current").is_symlink()


def test_format_1_bundle_loads_through_the_migration(v1):
    bundle = load_bundle(v1 / "models")  # via `current`
    m = bundle.manifest
    raw = _v1_manifest()
    assert (m.format_version, m.migrated_from, bundle.version) == (FORMAT_VERSION, 1, V1)
    assert m.weights.file == raw["weights_file"] and m.weights.sha256 == raw["weights_sha256"]
    assert m.weights.bytes == raw["weights_bytes"] == (v1 / "models" / V1 / "weights.pt").stat().st_size
    assert m.channels == raw["channels"] and m.threshold == raw["threshold"]["threshold"]
    assert m.scaler_mean == raw["scaler"]["mean"] and m.created_at == raw["created_at"]
    assert m.data_span is None  # format 1 never recorded it
    assert m.extra == {}  # every format-1 key has a typed home
    assert json.loads((v1 / "models" / V1 / "manifest.json").read_text()) == raw  # the file is not rewritten


def test_format_1_bundle_scores_as_the_old_code_did_to_float32_rounding(v1):
    # Not bit-exact across machines: torch picks its matmul kernels by the CPU's instruction
    # set, and the fixture's errors were written on another CPU (seen: 5 of 33 differing by
    # one float32 ulp). A few ulps (rtol 1e-6) still tells a migrated bundle from a changed one.
    bundle = load_bundle(v1 / "models")
    raw, per_channel, _ = Scorer(bundle.module).errors(_windows(bundle))
    expected = json.loads((FIXTURE / "expected-errors.json").read_text())
    np.testing.assert_allclose(raw, np.asarray(expected["raw"], dtype=np.float32), rtol=1e-6, atol=0)
    first = np.asarray(expected["per_channel_first"], dtype=np.float32)
    np.testing.assert_allclose(per_channel[0], first, rtol=1e-6, atol=0)


def test_format_1_bundle_backtests_to_the_same_csv_as_the_old_code(v1, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    args = ["backtest", "--config", str(v1 / "config.yaml"), "--data", str(v1 / "feed.csv")]
    args += ["--model", str(v1 / "models"), "--out", str(out), "--plot", str(tmp_path / "p.png")]
    assert main(args) == 0, capsys.readouterr().err
    assert f"scored with model {V1}" in capsys.readouterr().out
    assert out.read_text() == (FIXTURE / "expected-backtest.csv").read_text()


def test_tampered_format_1_weights_are_refused_by_the_hash(v1):
    weights = v1 / "models" / V1 / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"weights\.pt: sha256 mismatch"):
        load_bundle(v1 / "models")


def test_format_1_manifest_with_an_edited_hash_is_refused(v1):
    path = v1 / "models" / V1 / "manifest.json"
    raw = json.loads(path.read_text())
    path.write_text(json.dumps(raw | {"weights_sha256": "0" * 64}))
    with pytest.raises(BundleError, match="sha256 mismatch"):
        load_bundle(v1 / "models")
    path.write_text(json.dumps({k: v for k, v in raw.items() if k != "weights_sha256"}))
    with pytest.raises(BundleError, match=r"missing key.*weights"):
        load_bundle(v1 / "models")


def test_migrated_manifest_round_trips_as_format_2():
    m = Manifest.from_json(_v1_manifest())
    again = Manifest.from_json(m.to_json())
    assert again.to_json() == m.to_json() and again.migrated_from is None
    assert m.to_json()["format_version"] == 2 and "weights_sha256" not in m.to_json()


def test_a_migrated_bundle_saved_again_is_format_2_and_scores_the_same(v1, tmp_path):
    old = load_bundle(v1 / "models")
    manifest = old.manifest.to_json()
    del manifest["version"]  # a new version name
    path = save_bundle(tmp_path / "models", manifest, old.module.state_dict(), make_current=False)
    assert json.loads((path / "manifest.json").read_text())["format_version"] == 2
    new = load_bundle(path)
    x = _windows(old)
    np.testing.assert_array_equal(Scorer(old.module).errors(x)[0], Scorer(new.module).errors(x)[0])


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (3, r"unsupported format_version 3; this monitor reads 1, 2 \(the bundle was written by a newer monitor"),
        (99, r"unsupported format_version 99.*upgrade monitor"),
        (0, r"unsupported format_version 0.*\(retrain\)"),
        ("2", r"unsupported format_version '2'"),
        (True, r"unsupported format_version True"),
    ],
)
def test_unknown_format_versions_are_refused_with_a_clear_message(version, message):
    with pytest.raises(ManifestError, match=message):
        Manifest.from_json(_v1_manifest() | {"format_version": version})


def test_future_format_bundle_is_refused_at_load_and_listed_with_the_reason(v1):
    path = v1 / "models" / V1 / "manifest.json"
    path.write_text(json.dumps(_v1_manifest() | {"format_version": 7}))
    with pytest.raises(BundleError, match="unsupported format_version 7"):
        load_bundle(v1 / "models")
    (info,) = list_bundles(v1 / "models")
    assert info.manifest is None and "unsupported format_version 7" in (info.error or "")


def test_unknown_keys_are_kept_verbatim():
    m = Manifest.from_json(Manifest.from_json(_v1_manifest()).to_json() | {"shadow": {"pump1": [1, 2]}})
    assert m.extra == {"shadow": {"pump1": [1, 2]}} and m.to_json()["shadow"] == {"pump1": [1, 2]}


def test_migrate_leaves_its_input_alone():
    raw = _v1_manifest()
    migrated = migrate(raw)
    assert raw == _v1_manifest() and migrated["weights"]["sha256"] == raw["weights_sha256"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"weights": {"file": "../x.pt", "sha256": "0" * 64}}, r"weights\.file must be a plain file name"),
        ({"weights": {"file": "w.pt", "sha256": "abc"}}, r"weights\.sha256 must be 64 lowercase hex"),
        ({"data_span": {"start": "yesterday", "end": 1.0}}, "data_span must be null or an object"),
        ({"threshold": {"threshold": -1.0}}, r"threshold\.threshold must be a finite number > 0"),
    ],
)
def test_malformed_format_2_fields_are_refused_naming_the_key(change, message):
    good = Manifest.from_json(_v1_manifest()).to_json()
    with pytest.raises(ManifestError, match=message):
        Manifest.from_json(good | change)


def test_save_records_the_training_data_span(tmp_path):
    spec = _v1_manifest()["architecture"]
    manifest = Manifest.from_json(_v1_manifest()).to_json() | {"data_span": {"start": 10.0, "end": 20.0}}
    del manifest["version"]
    path = save_bundle(tmp_path, manifest, build_from_spec(spec).state_dict())
    span = load_bundle(path).manifest.data_span
    assert span is not None and (span.start, span.end) == (10.0, 20.0)
