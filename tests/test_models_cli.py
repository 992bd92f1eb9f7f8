"""`monitor models list | show | promote | rollback | prune`: the registry of each group, the
rollback stack, what prune protects, and the errors (unknown version or group, empty registry)."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from monitor.app.cli import main
from monitor.core.config import ModelConfig
from monitor.core.model.bundle import current_bundle_path, save_bundle, set_current
from monitor.core.model.nets import architecture_spec, build_from_spec
from monitor.core.model.registry import read_history, rollback_target

torch.set_num_threads(1)

CHANNELS = ["temp", "pressure"]
FIXTURE = Path(__file__).parent / "fixtures" / "bundle-v1"
V1 = "20261202T161519Z-e8e1fc7b"


def save(models_dir: Path, version: str, threshold: float = 0.5, make_current: bool = True, **extra) -> str:
    spec = architecture_spec(ModelConfig(window_size=6, hidden=[4], code_size=2), len(CHANNELS))
    manifest = {
        "version": version,
        "channels": CHANNELS,
        "period_seconds": 1.0,
        "window_size": 6,
        "stride": 1,
        "scaler": {"mean": [0.0, 0.0], "std": [1.0, 1.0]},
        "architecture": spec,
        "threshold": {"method": "quantile", "threshold": threshold},
        "validation": {"calibration_exceedance_rate": 0.0125, "best_val_loss": 0.25},
        "data_span": {"start": 1_700_000_000.0, "end": 1_700_007_200.0},
        **extra,
    }
    torch.manual_seed(0)
    save_bundle(models_dir, manifest, build_from_spec(spec).state_dict(), make_current=make_current)
    time.sleep(0.002)  # created_at orders the listing
    return version


def config(tmp_path: Path, groups: list[str] | None = None) -> str:
    raw: dict = {"models": {"dir": str(tmp_path / "models")}}
    if groups:
        raw["groups"] = [{"name": g, "streams": [f"{g}*"]} for g in groups]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["models", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def three(tmp_path) -> tuple[str, Path]:
    """v1, v2, v3 trained in turn (each made current): the rollback stack is v1 v2 v3."""
    models = tmp_path / "models"
    for i, v in enumerate(["v1", "v2", "v3"]):
        save(models, v, threshold=0.5 + i)
    return config(tmp_path), models


def test_list_shows_every_version_with_created_span_threshold_validation_and_current(capsys, three):
    cfg, _ = three
    code, out, _ = run(capsys, "list", "--config", cfg)
    assert code == 0
    lines = {line.split()[1] if line.split()[0] in "*<" else line.split()[0]: line for line in out.splitlines()[2:5]}
    assert list(lines) == ["v1", "v2", "v3"]
    assert lines["v3"].lstrip().startswith("*") and lines["v2"].lstrip().startswith("<")
    for line in lines.values():
        assert "2023-11-14T22:13Z +2.0h" in line and "exceed 0.0125, val_loss 0.25" in line
    assert "2.5 (quantile)" in lines["v3"] and "0.5 (quantile)" in lines["v1"]
    code, out, _ = run(capsys, "list", "--config", cfg, "--json")
    rows = json.loads(out)["default"]
    assert [(r["version"], r["state"], r["threshold"]) for r in rows] == [
        ("v1", "", 0.5),
        ("v2", "rollback", 1.5),
        ("v3", "current", 2.5),
    ]
    assert rows[0]["data_span"] == [1_700_000_000.0, 1_700_007_200.0] and rows[0]["created_at"].endswith("Z")


def test_list_shows_a_format_1_bundle_and_a_broken_one_without_failing(capsys, tmp_path):
    shutil.copytree(FIXTURE / "models", tmp_path / "models", symlinks=True)
    (tmp_path / "models" / "broken").mkdir()
    code, out, _ = run(capsys, "list", "--config", config(tmp_path))
    assert code == 0
    assert "UNREADABLE" in out and "broken" in out
    (line,) = [x for x in out.splitlines() if V1 in x]
    assert line.lstrip().startswith("*") and "2.19236 (quantile)" in line and " - " in line  # no span in format 1


def test_list_with_groups_lists_each_group_and_says_which_have_none(capsys, tmp_path):
    cfg = config(tmp_path, ["pumps", "motors"])
    save(tmp_path / "models" / "pumps", "p1")
    code, out, _ = run(capsys, "list", "--config", cfg)
    assert code == 0
    assert "group pumps:" in out and "p1" in out and "group motors:" in out and "no versions" in out
    code, out, _ = run(capsys, "list", "--config", cfg, "--group", "pumps")
    assert code == 0 and "motors" not in out


def test_empty_registry_is_a_clear_error(capsys, tmp_path):
    cfg = config(tmp_path)
    for args in (["list"], ["rollback"], ["show", "v1"], ["promote", "v1"], ["prune", "--keep", "2"]):
        code, out, err = run(capsys, *args, "--config", cfg)
        assert code == 1, args
        assert "no model versions" in err and out == ""


def test_show_prints_the_typed_manifest(capsys, three):
    cfg, _ = three
    code, out, err = run(capsys, "show", "v2", "--config", cfg)
    assert code == 0
    manifest = json.loads(out)
    assert manifest["version"] == "v2" and manifest["format_version"] == 2 and manifest["threshold"]["threshold"] == 1.5
    assert len(manifest["weights"]["sha256"]) == 64 and "current" not in err


def test_show_of_a_format_1_bundle_says_it_was_migrated(capsys, tmp_path):
    shutil.copytree(FIXTURE / "models", tmp_path / "models", symlinks=True)
    code, out, err = run(capsys, "show", V1, "--config", config(tmp_path))
    assert code == 0 and json.loads(out)["format_version"] == 2
    assert "stored as format 1" in err and "current" in err


def test_unknown_version_is_refused_naming_the_known_ones(capsys, three):
    cfg, models = three
    for command in ("show", "promote"):
        code, _, err = run(capsys, command, "v9", "--config", cfg)
        assert code == 1 and "no version 'v9'" in err and "v1, v2, v3" in err
    assert current_bundle_path(models).name == "v3"


def test_unknown_group_and_missing_group_exit_2(capsys, tmp_path):
    cfg = config(tmp_path, ["pumps", "motors"])
    save(tmp_path / "models" / "pumps", "p1")
    code, _, err = run(capsys, "list", "--config", cfg, "--group", "fans")
    assert code == 2 and "no group named 'fans'" in err and "pumps, motors" in err
    code, _, err = run(capsys, "rollback", "--config", cfg)
    assert code == 2 and "give --group" in err


def test_bad_config_exits_78(capsys, tmp_path):
    (tmp_path / "bad.yaml").write_text("models: {dir: 5, poll_seconds: -1}\n")
    assert main(["models", "list", "--config", str(tmp_path / "bad.yaml")]) == 78


def test_promote_moves_the_pointer_and_rollback_undoes_it(capsys, three):
    cfg, models = three
    code, out, _ = run(capsys, "promote", "v1", "--config", cfg)
    assert code == 0 and "current v3 -> v1" in out
    assert current_bundle_path(models).name == "v1" and (models / "current").is_symlink()
    code, out, _ = run(capsys, "rollback", "--config", cfg)
    assert code == 0 and "current v1 -> v3" in out
    assert current_bundle_path(models).name == "v3"


def test_repeated_rollback_walks_back_the_history_instead_of_toggling(capsys, three):
    cfg, models = three
    assert run(capsys, "rollback", "--config", cfg)[1].strip().endswith("v3 -> v2 (rolled back)")
    assert run(capsys, "rollback", "--config", cfg)[1].strip().endswith("v2 -> v1 (rolled back)")
    code, _, err = run(capsys, "rollback", "--config", cfg)
    assert code == 1 and "nothing to roll back to" in err
    assert current_bundle_path(models).name == "v1"
    assert [(e.version, e.action) for e in read_history(models)] == [
        ("v1", "train"),
        ("v2", "train"),
        ("v3", "train"),
        ("v2", "rollback"),
        ("v1", "rollback"),
    ]


def test_rollback_skips_versions_deleted_since(capsys, three):
    cfg, models = three
    shutil.rmtree(models / "v2")
    assert rollback_target(models) == "v1"
    assert run(capsys, "rollback", "--config", cfg)[0] == 0 and current_bundle_path(models).name == "v1"


def test_a_registry_from_before_the_history_rolls_back_to_what_was_current(capsys, tmp_path):
    shutil.copytree(FIXTURE / "models", tmp_path / "models", symlinks=True)
    cfg = config(tmp_path)
    save(tmp_path / "models", "new", make_current=False)
    assert run(capsys, "promote", "new", "--config", cfg)[0] == 0
    assert [e.action for e in read_history(tmp_path / "models")] == ["found", "promote"]
    code, out, _ = run(capsys, "rollback", "--config", cfg)
    assert code == 0 and f"new -> {V1}" in out


def test_a_pointer_moved_by_hand_rolls_back_to_the_newest_older_version(capsys, three):
    cfg, models = three
    (models / "current").unlink()
    (models / "current").symlink_to("v2")  # not through the registry: the history ends at v3
    assert rollback_target(models) == "v1"  # created before v2
    assert run(capsys, "rollback", "--config", cfg)[0] == 0 and current_bundle_path(models).name == "v1"


def test_promote_refuses_a_future_format_bundle_and_keeps_current(capsys, three):
    cfg, models = three
    path = models / "v1" / "manifest.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"format_version": 9}))
    code, _, err = run(capsys, "promote", "v1", "--config", cfg)
    assert code == 1 and "unsupported format_version 9" in err and "upgrade monitor" in err
    assert current_bundle_path(models).name == "v3"


def test_prune_keeps_n_newest_and_never_current_nor_the_rollback_target(capsys, tmp_path):
    models = tmp_path / "models"
    for v in ["v1", "v2", "v3", "v4", "v5"]:
        save(models, v)
    cfg = config(tmp_path)
    set_current(models, "v2")  # promote an old one: the rollback target is v5
    code, out, _ = run(capsys, "prune", "--keep", "3", "--dry-run", "--config", cfg)
    assert code == 0 and "would delete 2 version(s): v1, v3" in out and (models / "v1").is_dir()
    code, out, _ = run(capsys, "prune", "--keep", "1", "--config", cfg)
    assert code == 0 and "deleted 3 version(s): v1, v3, v4" in out
    assert sorted(p.name for p in models.iterdir() if not p.name.startswith(".")) == ["current", "v2", "v5"]
    assert run(capsys, "rollback", "--config", cfg)[0] == 0 and current_bundle_path(models).name == "v5"


def test_list_and_prune_leave_the_state_directory_and_foreign_directories_alone(capsys, tmp_path):
    """models/state holds silences, alarm, calibration, shadow and drift state: it is no
    version, and prune once deleted it as an 'unreadable' one."""
    models = tmp_path / "models"
    for v in ["v1", "v2", "v3"]:
        save(models, v)
    cfg = config(tmp_path)
    assert main(["silence", "site1/pump1", "--for", "1h", "--config", cfg]) == 0
    silences = models / "state" / "silences.json"
    assert silences.is_file()
    (models / "notes").mkdir()  # a directory the registry did not write: no manifest
    broken = models / "v0"  # a bundle whose manifest is damaged: unreadable, still pruned
    broken.mkdir()
    (broken / "manifest.json").write_text("{")
    code, out, _ = run(capsys, "list", "--config", cfg)
    assert code == 0 and "state" not in out.split() and "notes" in out and "v0" in out
    code, out, _ = run(capsys, "prune", "--keep", "1", "--config", cfg)
    assert code == 0 and "deleted 2 version(s): v0, v1" in out, out  # v3 current, v2 the rollback target
    assert silences.is_file() and (models / "notes").is_dir() and not broken.exists()


def test_prune_keep_must_be_at_least_one(capsys, three):
    cfg, _ = three
    with pytest.raises(SystemExit) as exc:
        main(["models", "prune", "--keep", "0", "--config", cfg])
    assert exc.value.code == 2 and "at least 1" in capsys.readouterr().err


def test_prune_with_groups_prunes_each_group(capsys, tmp_path):
    cfg = config(tmp_path, ["pumps", "motors"])
    for g in ("pumps", "motors"):
        for i in range(3):
            save(tmp_path / "models" / g, f"{g}{i}")
    code, out, _ = run(capsys, "prune", "--keep", "2", "--config", cfg)
    assert code == 0 and "group pumps: deleted 1 version(s): pumps0" in out and "motors0" in out


def test_models_list_does_not_import_torch(tmp_path):
    shutil.copytree(FIXTURE / "models", tmp_path / "models", symlinks=True)
    code = (
        "import sys; from monitor.app.cli import main; "
        f"rc = main(['models', 'list', '--config', {config(tmp_path)!r}]); "
        "print('torch' in sys.modules, rc)"
    )
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "False 0"
