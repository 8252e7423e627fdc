"""Every setting is checked before any work: its type, and the range of every numeric key as
declared beside its dataclass (``RANGES``, :class:`hoi.config.Check`), refused in one line that
names the layer, the key, the value and what is expected. Also: every numeric key has a
declared range, every YAML file in configs/ loads, features holding NaN are refused by
``hoi test`` naming the file and the image, and a validation mAP that cannot exist is explained
in the training log."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import types
import typing
from pathlib import Path

import h5py
import numpy as np
import pytest

from hoi.cli import main as hoi_main
from hoi.config import (
    AT_LEAST_ONE,
    FRACTION,
    POSITIVE,
    Check,
    ConfigError,
    build_config,
    check_ranges,
    declared_ranges,
    one_of,
)
from hoi.data import build_instances
from hoi.engine.logging import read_metrics
from hoi.hoi_config import load_config, run_schema
from hoi.models.attention import ATTENTION_BLOCKS
from hoi.models.attention.base import NoOptions
from hoi.models.backbones import BackboneConfig, backbone_config
from hoi.models.heads import HEADS
from hoi.pretrain.pretrain_config import PretrainConfig, load_pretrain_config

from . import test_vsgnet_synth
from .test_vsgnet_synth import make_split, run_overrides

REPO = Path(__file__).resolve().parents[1]
HICO_BASE = REPO / "configs" / "hico" / "base.yaml"
IMAGENET_BASE = REPO / "configs" / "imagenet" / "base.yaml"


# ----------------------------------------------------------------- the declarations
def _config_classes() -> list[type]:
    """Every dataclass that a command builds a config from (and the ones nested in them)."""
    roots: list[type] = [run_schema(name) for name in HEADS]
    roots += [PretrainConfig, BackboneConfig, NoOptions]
    roots += [block.Options for block in ATTENTION_BLOCKS.values() if block is not None]
    seen: list[type] = []
    todo = list(roots)
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.append(cls)
        for f in dataclasses.fields(cls):
            inner = _unwrap(typing.get_type_hints(cls)[f.name])
            if dataclasses.is_dataclass(inner):
                todo.append(inner)
    return seen


def _unwrap(hint: typing.Any) -> typing.Any:
    """``X | None`` -> X."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return hint


def _is_numeric(hint: typing.Any) -> bool:
    hint = _unwrap(hint)
    if typing.get_origin(hint) in (list, tuple):
        return all(_is_numeric(a) for a in typing.get_args(hint) if a is not Ellipsis)
    return hint in (int, float)


def test_every_numeric_key_declares_its_range() -> None:
    # a new numeric key without a declaration fails here, so none is forgotten
    missing, stale = [], []
    for cls in _config_classes():
        ranges = declared_ranges(cls)
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        missing += [f"{cls.__module__}.{cls.__name__}.{n}" for n in names
                    if _is_numeric(hints[n]) and n not in ranges]
        stale += [f"{cls.__name__}.{n}" for n in ranges if n not in names]
    assert not missing, f"numeric keys without a declared range (RANGES): {sorted(missing)}"
    assert not stale, f"RANGES names keys that do not exist: {sorted(stale)}"


def test_the_defaults_pass_their_own_ranges() -> None:
    for cls in _config_classes():
        check_ranges(build_config(cls))


def _loader(path: Path):
    """The loader of a YAML file under configs/, by what it configures."""
    rel = path.relative_to(REPO / "configs")
    if rel.parts[0] == "hico" or rel.name.startswith("vsgnet"):
        return load_config
    if rel.parts[0] == "imagenet" or rel.name.startswith("pretrain"):
        return load_pretrain_config
    if rel.parts[0] == "backbones":
        return lambda p: backbone_config(None, p)
    if rel.parts[0] == "coco":  # Detectron2 configs: a detector's, or merged over Mask R-CNN's
        from hoi.detection.config import DETECTORS, detector_cfg

        if rel.stem in DETECTORS:
            return lambda p: detector_cfg(rel.stem, device="cpu")
        return lambda p: detector_cfg("mask_rcnn", config_file=p, device="cpu")
    raise AssertionError(f"{rel}: no loader known for this config; add it to _loader")


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yaml")),
                         ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_yaml_config_loads(path: Path) -> None:
    _loader(path)(path)  # the paper's values are all in range


@pytest.mark.parametrize("check,kind,is_list,words", [
    (POSITIVE, float, False, "a finite number > 0"),
    (AT_LEAST_ONE, int, False, "a whole number >= 1"),
    (FRACTION, float, False, "a finite number in [0, 1]"),
    (Check(ge=0, lt=1), float, False, "a finite number in [0, 1)"),
    (Check(gt=0, le=1, size=2), float, True, "a list of 2 finite numbers in (0, 1]"),
    (Check(lt=0, why="why"), float, False, "a finite number < 0 (why)"),
    (Check(), float, False, "a finite number"),
    (one_of("auto", "cpu"), str, False, "one of auto, cpu"),
])
def test_what_is_expected_reads_as_words(check, kind, is_list, words) -> None:
    assert check.expected(kind, is_list) == words


def test_accepts() -> None:
    assert POSITIVE.accepts(1e-9) and not POSITIVE.accepts(0.0)
    assert not POSITIVE.accepts(float("nan")) and not POSITIVE.accepts(float("inf"))
    assert FRACTION.accepts(0) and FRACTION.accepts(1.0) and not FRACTION.accepts(1.0001)
    assert not AT_LEAST_ONE.accepts(True)  # a bool is not a count
    assert one_of(50, 101).accepts(101) and not one_of(50, 101).accepts(51)


# ----------------------------------------------------------------- refusals in one line
@pytest.mark.parametrize("override,expected", [
    ("optim.lr=nan", "optim.lr=nan: expected a finite number > 0"),
    ("optim.lr=inf", "optim.lr=inf: expected a finite number > 0"),
    ("optim.lr=-0.1", "optim.lr=-0.1: expected a finite number > 0"),
    ("optim.lr=abc", "optim.lr=abc: expected a number (float)"),
    ("optim.epochs=-1", "optim.epochs=-1: expected a whole number >= 0"),
    ("optim.epochs=2.5", "optim.epochs=2.5: expected a whole number (int)"),
    ("optim.batch_size=0", "optim.batch_size=0: expected a whole number >= 1"),
    ("data.val_fraction=1.5", "data.val_fraction=1.5: expected a finite number in [0, 1)"),
    ("pairs.human_threshold=2", "pairs.human_threshold=2: expected a finite number in [0, 1]"),
    ("test.min_score=-1", "test.min_score=-1: expected a finite number in [0, 1]"),
    ("optim.lr_factor_epochs=[3]", "optim.lr_factor_epochs=[3]: expected a list of 2 whole"),
    ("optim.lr_factor_epochs=[5,2]", "optim.lr_factor_epochs=[5, 2]: expected [first, last] "
                                     "with first <= last"),
    ("model.spatial_channels=[8,0]", "model.spatial_channels=[8, 0]: expected a list of whole "
                                     "numbers >= 1"),
    ("device=gpu", "device=gpu: expected one of auto, cuda, cpu"),
    ("optim=3", "optim=3: expected a mapping of keys"),
    ("optim.clip_grad_norm=0", "optim.clip_grad_norm=0: expected a finite number > 0"),
])
def test_hoi_train_refuses_a_bad_value_before_any_work(override, expected, tmp_path,
                                                        capsys) -> None:
    out = tmp_path / "run"
    code = hoi_main(["train", "--config", str(HICO_BASE), f"data.root={tmp_path / 'none'}",
                     f"output_dir={out}", "device=cpu", override])
    line = _one_error(capsys.readouterr().err)
    assert code == 2 and expected in line, line
    assert "reference_type" not in line and "object_type" not in line  # no library internals
    assert not out.exists()  # refused before the output folder, the data or the model


@pytest.mark.parametrize("override,expected", [
    ("optim.epochs=-1", "optim.epochs=-1: expected a whole number >= 1"),
    ("optim.lr=0", "optim.lr=0: expected a finite number > 0"),
    ("data.hflip=1.5", "data.hflip=1.5: expected a finite number in [0, 1]"),
    ("optim.warmup_start_factor=2", "optim.warmup_start_factor=2: expected a finite number in "
                                    "[0, 1]"),
    ("optim.label_smoothing=1", "optim.label_smoothing=1: expected a finite number in [0, 1)"),
    ("data.crop_scale=[0,1]", "data.crop_scale=[0, 1]: expected a list of 2 finite numbers in "
                              "(0, 1]"),
    ("data.std=[0.2,0.2,0]", "data.std=[0.2, 0.2, 0]: expected a list of 3 finite numbers > 0"),
    ("bn_momentum=0", "bn_momentum=0: expected a finite number in (0, 1]"),
    ("backbone.depth=51", "backbone.depth=51: expected one of 50, 101, 152"),
    ("backbone.attention.reduction=0", "backbone.attention.reduction=0: expected a whole number "
                                       ">= 1"),
])
def test_hoi_pretrain_refuses_a_bad_value_before_any_work(override, expected, tmp_path,
                                                           capsys) -> None:
    out = tmp_path / "run"
    code = hoi_main(["pretrain", "--config", str(REPO / "configs/imagenet/sac_resnet50.yaml"),
                     f"data.root={tmp_path / 'none'}", f"output_dir={out}", "device=cpu",
                     override])
    line = _one_error(capsys.readouterr().err)
    assert code == 2 and expected in line, line
    assert not out.exists()


def test_the_line_names_where_the_value_came_from(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"_base_: {HICO_BASE}\noptim:\n  lr: .nan\n")
    with pytest.raises(ConfigError, match=rf"^{bad}: optim.lr=nan: expected a finite number > 0$"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"^command line: optim.momentum=1: expected a finite "
                                          r"number in \[0, 1\)$"):
        load_config(bad, ["optim.lr=0.1", "optim.momentum=1"])
    # a saved config (hoi test, hoi predict) is named as such
    saved = {"optim": {"lr": -1.0}}
    with pytest.raises(ConfigError, match=r"^ckpt.pth \(its saved config\): optim.lr=-1.0: "):
        load_config(None, base=saved, base_origin="ckpt.pth (its saved config)")


def test_a_checkpoint_config_is_checked_with_its_overrides(tmp_path, capsys) -> None:
    import torch

    ckpt = tmp_path / "best.pth"
    torch.save({"config": {"device": "cpu"}, "arch": {}, "model": {}}, ckpt)
    out = tmp_path / "r.npz"
    code = hoi_main(["test", "--checkpoint", str(ckpt), "--out", str(out), "test.min_score=2"])
    line = _one_error(capsys.readouterr().err)
    assert code == 2 and "command line: test.min_score=2: expected a finite number in [0, 1]" \
        in line and not out.exists()
    code = hoi_main(["test", "--checkpoint", str(ckpt), "--out", str(out), "--batch-size", "0"])
    line = _one_error(capsys.readouterr().err)
    assert code == 2 and "test.batch_size=0: expected a whole number >= 1" in line


def test_one_line_from_the_installed_command(tmp_path) -> None:
    # the whole path: `python -m hoi`, stderr, exit status, no traceback
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("HOI_DEBUG", None)
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "hoi", "train", "--config", str(HICO_BASE),
                           f"output_dir={out}", "optim.lr=abc"], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=240)
    assert proc.returncode == 2
    line = _one_error(proc.stderr)
    assert line == "error: command line: optim.lr=abc: expected a number (float)"
    assert not out.exists()


def _one_error(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, stderr
    print(f"\nERROR-LINE {lines[0]}")
    return lines[0]


# ----------------------------------------------------------------- NaN features, hoi test
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("hico")
    make_split(root, "train2015", 4, seed=0)
    make_split(root, "test2015", 3, seed=1)
    out = root / "run"
    assert hoi_main(["train", "--config", str(HICO_BASE),
                     *run_overrides(root, out, **{"optim.epochs": 0})]) == 0
    return root, out / "best.pth"


@pytest.mark.parametrize("workers", [0, 1])
def test_hoi_test_refuses_features_holding_nan(trained, tmp_path, capsys, workers) -> None:
    root, ckpt = trained
    clean = root / "cache" / "sac_resnet50" / "features_test2015.h5"
    feats = tmp_path / "features_test2015.h5"
    feats.write_bytes(clean.read_bytes())
    with h5py.File(feats, "r+") as f:
        name = f["filenames"][1]
        name = name.decode() if isinstance(name, bytes) else str(name)
        data = f["features"][1]
        data[0, 0, 0] = np.nan
        data[-1, -1, -1] = np.inf
        f["features"][1] = data
    out = tmp_path / "r.npz"
    code = hoi_main(["test", "--checkpoint", str(ckpt), "--out", str(out), "--features",
                     str(feats), "--workers", str(workers)])
    line = _one_error(capsys.readouterr().err)
    assert code == 2 and str(feats) in line and name in line and "NaN or infinite" in line, line
    assert not out.exists()
    # the clean file goes through
    assert hoi_main(["test", "--checkpoint", str(ckpt), "--out", str(out)]) == 0


def test_hoi_test_refuses_a_checkpoint_with_nan_weights(trained, tmp_path, capsys) -> None:
    import torch

    _, ckpt = trained
    saved = torch.load(ckpt, weights_only=True)
    name = next(k for k, v in saved["model"].items() if v.is_floating_point())
    saved["model"][name] = torch.full_like(saved["model"][name], float("nan"))
    bad = tmp_path / "best.pth"
    torch.save(saved, bad)
    out = tmp_path / "r.npz"
    code = hoi_main(["test", "--checkpoint", str(bad), "--out", str(out)])
    line = _one_error(capsys.readouterr().err)
    assert code == 2 and str(bad) in line and name in line and "NaN" in line
    assert not out.exists()


# ----------------------------------------------------------------- validation mAP without a split
@pytest.fixture
def no_non_rare(tmp_path, monkeypatch) -> Path:
    """A train split whose annotation has no non-rare class (every class counts as rare)."""
    monkeypatch.setattr(test_vsgnet_synth, "build_instances",
                        lambda n, s, r: build_instances(n, s, r, train_pairs=np.zeros(600)))
    make_split(tmp_path, "train2015", 8, seed=0)
    return tmp_path


def test_the_training_log_says_why_a_validation_map_is_nan(no_non_rare, capsys) -> None:
    root = no_non_rare
    out = root / "run"
    assert hoi_main(["train", "--config", str(HICO_BASE),
                     *run_overrides(root, out, **{"optim.epochs": 1,
                                                  "data.val_fraction": 0.25})]) == 0
    log = (out / "log.txt").read_text()
    warning = ("val/map_non_rare will be nan in every validation: no non-rare class in this "
               "annotation (its 'non_rare' list is empty)")
    assert log.count(warning) == 1, log
    assert np.isnan(float(read_metrics(out / "metrics.jsonl")[-1]["val/map_non_rare"]))
    with capsys.disabled():  # pytest -s lists the lines (README)
        for line in log.splitlines():
            if "map_non_rare" in line:
                print(f"\nLOG-LINE {line}")
    # choosing best.pth by it is refused before training
    capsys.readouterr()
    other = root / "run2"
    code = hoi_main(["train", "--config", str(HICO_BASE),
                     *run_overrides(root, other, **{"optim.epochs": 1, "data.val_fraction": 0.25,
                                                    "select_metric": "non_rare"})])
    line = _one_error(capsys.readouterr().err)
    assert code == 2 and "select_metric=non_rare" in line and "no non-rare class" in line
    assert not (other / "checkpoint.pth").exists()
