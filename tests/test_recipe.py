"""One pretraining recipe per table: recipe identity, the check, and reproduce_table_xi.sh
refusing mixed or missing backbones before it writes anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from hoi.pretrain.recipe import (
    UNRECORDED,
    recipe_from_checkpoint,
    recipe_of_file,
    table_note,
    torchvision_hash,
)
from hoi.pretrain.recipe import main as recipe_main

REPO = Path(__file__).resolve().parents[1]


def _ckpt(lr: float = 0.1, root: str = "/data/imagenet", init: str | None = None,
          arch: str = "sac_resnet50",
          top1: float = 70.0) -> dict:
    return {"config": {"arch": arch, "init_weights": init, "seed": 3, "output_dir": f"runs/{arch}",
                       "optim": {"epochs": 100, "batch_size": 256, "eval_batch_size": 512, "lr": lr,
                                 "lr_gamma": 0.1,
                                 "lr_step_epochs": 30, "warmup_epochs": 5.0},
                       "data": {"root": root, "workers": 8, "train_crop": 224}},
            "epoch": 99, "classes": ["a", "b"], "metrics": {"val/top1": top1}}


def test_recipe_id_ignores_arch_paths_and_run_control_but_not_the_schedule() -> None:
    a = recipe_from_checkpoint(_ckpt())
    b = recipe_from_checkpoint(_ckpt(root="/mnt/other", arch="resnet101", top1=60.0))
    assert a["id"] == b["id"] and (a["top1"], b["top1"]) == (70.0, 60.0)
    assert recipe_from_checkpoint(_ckpt(lr=0.01))["id"] != a["id"]
    # fine-tuning from torchvision's R50 or R101 file is the same recipe; from random it is not
    r50 = recipe_from_checkpoint(_ckpt(init="/w/resnet50-0676ba61.pth"))
    r101 = recipe_from_checkpoint(_ckpt(init="torchvision"))
    assert r50["id"] == r101["id"] != a["id"]
    assert "100 of 100 epochs" in a["summary"] and "from random" in a["summary"]


def test_torchvision_files_are_recognised_by_their_hash_prefix() -> None:
    assert torchvision_hash(50) == "0676ba61" and torchvision_hash(101) == "63fe2227"


def _write(folder: Path, arch: str, recipe: dict | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"backbone": {"conv1.weight": torch.zeros(1)}}
    if recipe is not None:
        payload["recipe"] = recipe
    torch.save(payload, folder / f"{arch}.pth")


def test_unrecorded_recipe_and_the_note_under_the_table(tmp_path, capsys) -> None:
    w = tmp_path / "w"
    _write(w, "resnet50", None)
    _write(w, "sac_resnet50", recipe_from_checkpoint(_ckpt()))
    assert recipe_of_file(w / "resnet50.pth")["id"] == UNRECORDED
    assert recipe_main(["--weights", str(w), "resnet50", "sac_resnet50"]) == 2
    assert recipe_main(["--weights", str(w), "--allow-mixed", "--out", str(tmp_path / "r.json"),
                        "resnet50", "sac_resnet50"]) == 0
    import json

    recipes = json.loads((tmp_path / "r.json").read_text())
    note = table_note(recipes)
    assert "differ" in note and "- resnet50: no recipe recorded" in note
    assert "- sac_resnet50: hoi pretrain" in note
    same = table_note({"a": recipes["sac_resnet50"], "b": recipes["sac_resnet50"]})
    assert same.startswith("Pretraining, every row: hoi pretrain")


def _reproduce(tmp_path: Path, weights: Path, **env: str) -> subprocess.CompletedProcess:
    full = dict(os.environ, ARCHS="resnet50 sac_resnet50", DATA=str(tmp_path / "data"),
                RUNS=str(tmp_path / "runs"),
                WEIGHTS=str(weights), HOI_VENV=str(Path(sys.executable).parent.parent),
                PYTHONPATH=str(REPO), **env)
    return subprocess.run(["bash", str(REPO / "scripts" / "reproduce_table_xi.sh")], env=full,
                          capture_output=True,
                          text=True, timeout=300)


def test_reproduce_refuses_mixed_recipes_before_writing_anything(tmp_path) -> None:
    w = tmp_path / "w"
    _write(w, "resnet50", recipe_from_checkpoint(_ckpt(lr=0.1)))
    _write(w, "sac_resnet50", recipe_from_checkpoint(_ckpt(lr=0.01)))
    proc = _reproduce(tmp_path, w)
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "different recipes" in err and "resnet50: hoi pretrain" in err
    assert "sac_resnet50: hoi pretrain" in err
    assert "lr 0.1 " in err and "lr 0.01 " in err and "ALLOW_MIXED_PRETRAINING=1" in err
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()

    (w / "sac_resnet50.pth").unlink()  # a missing backbone: no silent fallback to torchvision
    proc = _reproduce(tmp_path, w)
    assert proc.returncode == 2 and "no backbone file for sac_resnet50" in proc.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


def test_reproduce_goes_on_when_mixing_is_allowed(tmp_path) -> None:
    w = tmp_path / "w"
    _write(w, "resnet50", recipe_from_checkpoint(_ckpt(lr=0.1)))
    _write(w, "sac_resnet50", recipe_from_checkpoint(_ckpt(lr=0.01)))
    proc = _reproduce(tmp_path, w, ALLOW_MIXED_PRETRAINING="1")
    # past the check it records the recipes, then extraction stops: there are no images here
    assert (tmp_path / "runs" / "pretraining_recipes.json").is_file()
    assert proc.returncode != 0 and "different recipes" not in proc.stderr
