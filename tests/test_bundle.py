"""Model bundles: atomic save, `current` pointer, verification before use."""

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from monitor.core.config import ModelConfig
from monitor.core.model import bundle as bundle_mod
from monitor.core.model.bundle import (
    BundleError,
    current_bundle_path,
    list_bundles,
    load_bundle,
    save_bundle,
    set_current,
)
from monitor.core.model.nets import architecture_spec, build_from_spec
from monitor.core.model.scorer import Scorer

torch.set_num_threads(1)

CHANNELS = ["temp", "pressure"]
CFG = ModelConfig(window_size=6, hidden=[8], code_size=3)


def make_model(seed: int = 0):
    spec = architecture_spec(CFG, len(CHANNELS))
    torch.manual_seed(seed)
    return spec, build_from_spec(spec)


def make_manifest(spec: dict, **overrides) -> dict:
    manifest = {
        "streams": ["pump1"],
        "channels": list(CHANNELS),
        "period_seconds": 1.0,
        "window_size": 6,
        "stride": 1,
        "filters": [],
        "scaler": {"mean": [20.0, 1.5], "std": [2.0, np.float64(0.1)]},
        "architecture": spec,
        "training": {"epochs": 3},
        "threshold": {"method": "quantile", "threshold": 0.5},
        "data_fingerprint": "abc",
        "validation": {"f1": float("nan")},
    }
    return manifest | overrides


def save_one(models_dir: Path, seed: int = 0, **kwargs) -> Path:
    spec, module = make_model(seed)
    return save_bundle(models_dir, make_manifest(spec), module.state_dict(), **kwargs)


def rewrite_manifest(bundle_dir: Path, **changes) -> None:
    path = bundle_dir / "manifest.json"
    manifest = json.loads(path.read_text()) | changes
    path.write_text(json.dumps(manifest))


def test_round_trip_gives_same_scores(tmp_path):
    spec, module = make_model()
    x = np.random.default_rng(0).normal(size=(7, 6, 2)).astype(np.float32)
    before = Scorer(module).errors(x)
    path = save_bundle(tmp_path, make_manifest(spec), module.state_dict(), extra_files={"report.json": b"{}"})
    loaded = load_bundle(path)
    after = Scorer(loaded.module).errors(x)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    assert loaded.version == path.name and loaded.channels == CHANNELS and loaded.threshold == 0.5
    assert loaded.manifest.format_version == 2 and loaded.manifest.migrated_from is None
    assert loaded.manifest.validation["f1"] is None  # NaN is not JSON: stored as null
    assert (path / "report.json").read_bytes() == b"{}"


def test_current_pointer_moves_to_newest_save(tmp_path):
    first = save_one(tmp_path, seed=0)
    assert current_bundle_path(tmp_path) == first.resolve()
    second = save_one(tmp_path, seed=1)
    assert second != first
    assert current_bundle_path(tmp_path) == second.resolve()
    assert load_bundle(tmp_path).version == second.name
    third = save_one(tmp_path, seed=2, make_current=False)
    assert current_bundle_path(tmp_path) == second.resolve()
    set_current(tmp_path, first.name)  # roll back
    assert load_bundle(tmp_path).version == first.name
    assert [b.version for b in list_bundles(tmp_path)] == [first.name, second.name, third.name]
    assert [b.is_current for b in list_bundles(tmp_path)] == [True, False, False]


def test_tampered_weights_byte_is_refused_naming_sha256(tmp_path):
    path = save_one(tmp_path)
    weights = path / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"weights\.pt: sha256 mismatch"):
        load_bundle(path)


def test_truncated_weights_are_refused(tmp_path):
    path = save_one(tmp_path)
    weights = path / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(BundleError, match=r"weights\.pt: 100 bytes .*truncated"):
        load_bundle(path)


def test_truncated_weights_without_size_in_manifest_fail_the_hash(tmp_path):
    path = save_one(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["weights"]["bytes"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    (path / "weights.pt").write_bytes((path / "weights.pt").read_bytes()[:100])
    with pytest.raises(BundleError, match="sha256 mismatch"):
        load_bundle(path)


def test_wrong_channel_count_in_manifest_is_refused(tmp_path):
    path = save_one(tmp_path)
    rewrite_manifest(path, channels=["a", "b", "c"], scaler={"mean": [0, 0, 0], "std": [1, 1, 1]})
    with pytest.raises(BundleError, match="n_channels is 2 but channels lists 3"):
        load_bundle(path)


def test_scaler_length_must_match_channels(tmp_path):
    path = save_one(tmp_path)
    rewrite_manifest(path, scaler={"mean": [0.0], "std": [1.0, 1.0]})
    with pytest.raises(BundleError, match=r"scaler\.mean must list one number per channel \(2\)"):
        load_bundle(path)


def test_weights_that_do_not_fit_the_architecture_are_refused_with_shape_mismatch(tmp_path):
    path = save_one(tmp_path)
    spec = json.loads((path / "manifest.json").read_text())["architecture"]
    rewrite_manifest(path, architecture=spec | {"hidden": [9]})
    with pytest.raises(BundleError, match=r"shape mismatch for encoder\.0\.weight: file has \(8, 12\)"):
        load_bundle(path)


@pytest.mark.parametrize("key", ["threshold", "weights", "scaler", "architecture"])
def test_missing_required_key_is_refused_naming_it(tmp_path, key):
    path = save_one(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest[key]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=f"missing key.*{key}"):
        load_bundle(path)


def test_missing_manifest_is_refused(tmp_path):
    path = save_one(tmp_path)
    (path / "manifest.json").unlink()
    with pytest.raises(BundleError, match=r"manifest\.json"):
        load_bundle(path)
    with pytest.raises(BundleError, match=r"manifest\.json: missing"):
        load_bundle(tmp_path)  # via `current`


def test_invalid_json_and_unsupported_format_are_refused(tmp_path):
    path = save_one(tmp_path)
    rewrite_manifest(path, format_version=3)
    with pytest.raises(BundleError, match=r"unsupported format_version 3.*newer monitor: upgrade monitor"):
        load_bundle(path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(path)


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_of_arbitrary_object_with_matching_hash_is_refused(tmp_path):
    path = save_one(tmp_path / "models")
    marker = tmp_path / "code-ran"
    payload = pickle.dumps({"encoder.0.weight": _RunsCodeWhenUnpickled(marker)}, protocol=2)
    (path / "weights.pt").write_bytes(payload)
    weights = json.loads((path / "manifest.json").read_text())["weights"]
    rewrite_manifest(path, weights=weights | {"sha256": hashlib.sha256(payload).hexdigest(), "bytes": len(payload)})
    with pytest.raises(BundleError, match=r"refused to load.*Unsupported global.*open"):
        load_bundle(path)
    assert not marker.exists()


def test_interrupted_save_leaves_no_visible_bundle_and_keeps_current(tmp_path, monkeypatch):
    first = save_one(tmp_path)

    def crash(*args, **kwargs):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(bundle_mod.os, "rename", crash)
    with pytest.raises(OSError, match="simulated crash"):
        save_one(tmp_path, seed=1)
    monkeypatch.undo()
    assert [b.version for b in list_bundles(tmp_path)] == [first.name]
    assert current_bundle_path(tmp_path) == first.resolve()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, "current", ".history.jsonl"])


def test_leftover_temp_dir_from_a_killed_save_is_ignored(tmp_path):
    first = save_one(tmp_path)
    partial = tmp_path / ".tmp-20990101T000000Z-deadbeef-0000"
    partial.mkdir()
    (partial / "weights.pt").write_bytes(b"half")
    assert [b.version for b in list_bundles(tmp_path)] == [first.name]
    assert load_bundle(tmp_path).version == first.name
    old = 10_000
    os.utime(partial, (os.path.getatime(partial) - old, os.path.getmtime(partial) - old))
    assert bundle_mod.remove_stale_temp_dirs(tmp_path) == [partial]


def test_models_dir_without_current_is_a_clear_error(tmp_path):
    with pytest.raises(BundleError, match="no current pointer"):
        load_bundle(tmp_path)


def test_explicit_version_is_used_and_not_overwritten(tmp_path):
    spec, module = make_model()
    path = save_bundle(tmp_path, make_manifest(spec, version="v1"), module.state_dict())
    assert path.name == "v1" and load_bundle(tmp_path).version == "v1"
    with pytest.raises(BundleError, match="already exists"):
        save_bundle(tmp_path, make_manifest(spec, version="v1"), module.state_dict())
    with pytest.raises(BundleError, match="not a safe directory name"):
        save_bundle(tmp_path, make_manifest(spec, version="../evil"), module.state_dict())
