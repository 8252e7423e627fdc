"""ImageNet pretraining (``hoi pretrain``, ``hoi export-backbone``) on tiny generated image
folders: it learns, it resumes exactly, it runs on two Gloo processes, it exports a backbone
that the feature extractor loads, and it refuses bad input naming the file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hoi.cli import main as hoi_main
from hoi.engine.checkpoint import CheckpointError
from hoi.engine.distributed import DistInfo
from hoi.engine.logging import read_metrics
from hoi.models.backbones import (
    AttentionResNet,
    BackboneConfig,
    FrozenFeatureExtractor,
    create_backbone,
)
from hoi.models.weights import load_backbone_weights, read_state_dict
from hoi.pretrain.export import export_backbone
from hoi.pretrain.imagefolder import (
    DatasetError,
    ImageFolderDataset,
    ImageReadError,
    eval_transform,
)
from hoi.pretrain.pretrain_config import load_pretrain_config
from hoi.pretrain.train_backbone import run_pretraining
from hoi.provenance import file_sha256

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "imagenet"
COLOURS = {"blue": (30, 30, 200), "green": (30, 200, 30), "red": (200, 30, 30)}
SIZE = 32


def make_image_folder(root: Path, n_train: int, n_val: int, size: int = SIZE,
                      seed: int = 0) -> Path:
    """root/{train,val}/{blue,green,red}/*.png: noisy images whose class is their colour."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for name, rgb in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = np.asarray(rgb, dtype=float) + rng.normal(0.0, 40.0, (size, size, 3))
                image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
                image.save(folder / f"{name}_{i}.png")
    return root


def tiny(root: Path, out: Path, batch: int, eval_batch: int, epochs: int, *extra: str) -> list[str]:
    """Overrides that shrink the paper's recipe to 32x32 images and a few iterations."""
    return [
        f"data.root={root}", f"output_dir={out}",
        f"data.train_crop={SIZE}", f"data.eval_resize={SIZE + 4}", f"data.eval_crop={SIZE}",
        "data.crop_scale=[0.5,1.0]", "data.workers=0",
        f"optim.batch_size={batch}", f"optim.eval_batch_size={eval_batch}",
        f"optim.epochs={epochs}",
        "optim.warmup_epochs=1", "log_every=1", "progress=false", "tensorboard=false", *extra,
    ]


def pretrain(config: str, overrides: list[str],
             resume: str | Path | None = None) -> dict[str, float]:
    cfg = load_pretrain_config(CONFIGS / config, overrides)
    return run_pretraining(cfg, DistInfo(), resume)


def epoch_records(out: Path) -> list[dict]:
    return [r for r in read_metrics(out / "metrics.jsonl") if "train/loss" in r]


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("imagenet_small"), n_train=4, n_val=2)


@pytest.fixture(scope="module")
def sac_run(small_data, tmp_path_factory) -> Path:
    """An uninterrupted 2-epoch SAC-ResNet-50 run (3 iterations of 4 images per epoch), with a
    DataLoader worker process, whose augmentation seeds must also survive a resume."""
    out = tmp_path_factory.mktemp("sac_run")
    pretrain("sac_resnet50.yaml", tiny(small_data, out, 4, 6, 2, "optim.lr=0.01", "data.workers=1"))
    return out


def test_learns_colours(tmp_path):
    """ResNet-50 from scratch separates three colours: validation top-1 far above chance (33%)."""
    data = make_image_folder(tmp_path / "data", n_train=8, n_val=5)
    out = tmp_path / "run"
    # batches of 8 reach layer4 as 1x1 maps: a faster BatchNorm momentum lets the running
    # statistics that evaluation uses catch up with the weights within 18 iterations
    pretrain("resnet50.yaml", tiny(data, out, 8, 15, 6, "optim.lr=0.003", "optim.lr_step_epochs=3",
                                   "bn_momentum=0.5", "tensorboard=true"))
    records = epoch_records(out)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[-1]["val/images"] == 15
    assert records[-1]["val/top1"] >= 80.0, records[-1]
    assert records[-1]["train/lr"] == pytest.approx(0.0003)  # divided by 10 after epoch 3
    assert (out / "config.yaml").is_file() and (out / "checkpoint.pth").is_file()
    assert load_pretrain_config(out / "config.yaml").backbone.num_classes == 3
    assert list((out / "tensorboard").iterdir())
    print(f"\nvalidation top-1 after 6 epochs: {records[-1]['val/top1']:.1f}% (chance 33.3%)")


def test_resume_matches_uninterrupted(sac_run, small_data, tmp_path):
    """Stop after epoch 1, resume: the final weights, optimizer state and metrics equal those
    of the uninterrupted run bit for bit."""
    out = tmp_path / "stopped"
    overrides = tiny(small_data, out, 4, 6, 2, "optim.lr=0.01", "data.workers=1")
    pretrain("sac_resnet50.yaml", [*overrides, "stop_after_epoch=1"])
    assert len(epoch_records(out)) == 1
    pretrain("sac_resnet50.yaml", overrides, resume=out / "checkpoint.pth")

    full = torch.load(sac_run / "checkpoint.pth", weights_only=True)
    resumed = torch.load(out / "checkpoint.pth", weights_only=True)
    assert resumed["epoch"] == full["epoch"] == 1
    for key, value in full["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    for pid, st in full["optimizer"]["state"].items():
        assert torch.equal(st["momentum_buffer"],
                           resumed["optimizer"]["state"][pid]["momentum_buffer"])
    assert full["scheduler"] == resumed["scheduler"]
    a, b = epoch_records(sac_run), epoch_records(out)
    assert [r["val/top1"] for r in a] == [r["val/top1"] for r in b]
    assert [r["train/loss"] for r in a] == [r["train/loss"] for r in b]
    def timeless(path: Path) -> list[dict]:
        return [{k: v for k, v in r.items() if not k.startswith("time") and "per_s" not in k}
                for r in read_metrics(path)]

    assert timeless(out / "metrics.jsonl") == timeless(sac_run / "metrics.jsonl")  # nothing twice


def test_export_backbone_loads_into_feature_extractor(sac_run, tmp_path, capsys):
    out = tmp_path / "weights" / "sac_resnet50_imagenet.pth"
    assert hoi_main(["export-backbone", str(sac_run / "checkpoint.pth"), str(out)]) == 0
    digest = file_sha256(out)
    assert digest in capsys.readouterr().out
    sidecar = tmp_path / "weights" / "sac_resnet50_imagenet.pth.sha256"
    assert sidecar.read_text() == f"{digest}  {out.name}\n"

    payload = torch.load(out, weights_only=True)
    assert payload["sha256_of_source"] == file_sha256(sac_run / "checkpoint.pth")
    assert payload["config"]["attention"]["type"] == "sac" and payload["config"]["num_classes"] == 3
    assert payload["classes"] == sorted(COLOURS) and payload["epoch"] == 2
    assert set(read_state_dict(out)) == set(payload["backbone"])
    recipe = payload["recipe"]  # the pretraining recipe travels with the weights
    assert recipe["epochs"] == 2 and recipe["config"]["optim"]["lr"] == 0.01
    assert recipe["top1"] == payload["metrics"]["val/top1"] and "2 of 2 epochs" in recipe["summary"]
    from hoi.pretrain.recipe import recipe_of_file

    assert recipe_of_file(out)["id"] == recipe["id"]

    from hoi.config import build_config

    plain = tmp_path / "plain_state_dict.pth"
    torch.save(payload["backbone"], plain)
    with pytest.raises(CheckpointError, match=rf"{plain}: not a training checkpoint .*missing "
                                              r"\['arch', 'model'\]"):
        export_backbone(plain, tmp_path / "never.pth")

    model = AttentionResNet(build_config(BackboneConfig, base=payload["config"]))
    load_backbone_weights(model, out)  # strict
    extractor = FrozenFeatureExtractor(model, last_stage=4)
    features = extractor(torch.randn(1, 3, SIZE, SIZE))
    assert features.shape == (1, 1024, SIZE // 16, SIZE // 16)


def test_two_process_gloo_run(tmp_path):
    """scripts/pretrain_imagenet.sh (torchrun) with two CPU processes: DDP training and a sharded
    evaluation of 9 images (shards of 5 and 4) that counts each image once."""
    data = make_image_folder(tmp_path / "data", n_train=4, n_val=3)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "HOI_VENV": sys.prefix}
    cmd = [
        "bash", str(REPO / "scripts" / "pretrain_imagenet.sh"), "2",
        str(CONFIGS / "sac_resnet50.yaml"),
        # 2 images per process: at lr 0.01 SAC's quadratic term blows BatchNorm's running variance
        # up to inf within 3 steps, which the run now refuses to save (tests/test_pretrain_input)
        *tiny(data, out, 4, 4, 1, "optim.lr=0.0001", "device=cpu"),
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    record = epoch_records(out)[-1]
    assert record["val/images"] == 9 and record["train/skipped_images"] == 0
    ckpt = torch.load(out / "checkpoint.pth", weights_only=True)
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2
    assert ckpt["iters_per_epoch"] == 3  # 12 images, 2 processes x 2 images per step
    assert not torch.equal(ckpt["rng"][0]["torch"], ckpt["rng"][1]["torch"])  # seed + rank


def test_finetune_starts_from_given_resnet_weights(small_data, tmp_path):
    """The fine-tuning recipe loads a plain ResNet's weights into SAC-ResNet (attention blocks
    left as the identity); with lr 1e-30 (0 is refused) every update is below float32's
    resolution, so the ResNet weights come out unchanged."""
    plain = create_backbone("resnet50", overrides=["num_classes=3"])
    weights = tmp_path / "resnet50.pth"
    torch.save(plain.state_dict(), weights)
    out = tmp_path / "run"
    pretrain("sac_resnet50_finetune.yaml",
             tiny(small_data, out, 4, 6, 1, f"init_weights={weights}", "optim.lr=1e-30"))
    ckpt = torch.load(out / "checkpoint.pth", weights_only=True)
    assert ckpt["arch"]["attention"]["type"] == "sac"
    for key in ("conv1.weight", "layer3.5.conv2.weight", "fc.weight"):
        assert torch.equal(ckpt["model"][key], plain.state_dict()[key]), key
    rho = [k for k in ckpt["model"] if k.startswith("layer1.2.attn_after_conv2")
           and k.endswith("weight")]
    # still the identity: rho starts at 0 and moved by at most lr x its gradient
    assert rho and ckpt["model"][rho[-1]].abs().max() < 1e-20


# ---- bad input ---------------------------------------------------------------------------


def test_missing_dataset_folder_is_named(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    code = hoi_main(["pretrain", "--config", str(CONFIGS / "resnet50.yaml"),
                     f"data.root={missing}", f"output_dir={tmp_path / 'run'}"])
    assert code == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "train/<class>" in err


def test_empty_class_folder_is_named(small_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(small_data, root)
    for f in (root / "val" / "green").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match=r"val/green: class folder holds no image"):
        pretrain("resnet50.yaml", tiny(root, tmp_path / "run", 4, 6, 1))


def test_unsorted_and_mismatched_validation_folders(small_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(small_data, root)
    shutil.rmtree(root / "val" / "red")
    with pytest.raises(DatasetError, match=r"only in train \(1\): \['red'\]"):
        pretrain("resnet50.yaml", tiny(root, tmp_path / "run", 4, 6, 1))
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(next((root / "train" / "red").iterdir()), loose / "ILSVRC2012_val_00000001.png")
    with pytest.raises(DatasetError, match="1 image files directly in it"):
        ImageFolderDataset(loose, eval_transform(36, 32))


def test_unreadable_image_stops_naming_the_file(small_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(small_data, root)
    bad = root / "train" / "red" / "red_99.png"
    bad.write_bytes(b"not a png")
    dataset = ImageFolderDataset(root / "train", eval_transform(36, 32))
    index = [p for p, _ in dataset.samples].index(str(bad))
    with pytest.raises(ImageReadError, match=rf"{bad}: cannot read image .* class 'red'"):
        dataset[index]


def test_unreadable_images_skipped_and_counted(small_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(small_data, root)
    (root / "train" / "red" / "red_99.png").write_bytes(b"not a png")
    (root / "val" / "blue" / "blue_99.png").write_bytes(b"")
    out = tmp_path / "run"
    # 13 training images in steps of 13: the broken one is always inside a batch
    pretrain("resnet50.yaml", tiny(root, out, 13, 7, 1, "data.on_bad_image=skip", "optim.lr=0.01"))
    record = epoch_records(out)[-1]
    assert record["train/skipped_images"] == 1
    assert record["val/skipped_images"] == 1 and record["val/images"] == 6


def test_resume_with_another_architecture_is_refused(sac_run, small_data, tmp_path):
    with pytest.raises(CheckpointError, match=r"attention\.type: checkpoint 'sac', this run 'gc'"):
        pretrain("gc_resnet50.yaml", tiny(small_data, tmp_path / "run", 4, 6, 2),
                 resume=sac_run / "checkpoint.pth")


def test_resume_without_checkpoint_and_overwrite_are_refused(sac_run, small_data, tmp_path, capsys):
    code = hoi_main(["pretrain", "--config", str(CONFIGS / "sac_resnet50.yaml"), "--resume",
                     *tiny(small_data, tmp_path / "empty", 4, 6, 2)])
    assert code == 2 and "checkpoint not found" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="pass --resume"):
        pretrain("sac_resnet50.yaml", tiny(small_data, sac_run, 4, 6, 2))


def test_total_batch_is_shared_by_the_processes():
    from hoi.config import ConfigError
    from hoi.pretrain.pretrain_config import per_process_batch

    assert per_process_batch(256, 4) == 64
    with pytest.raises(ConfigError, match="optim.batch_size=256 .* 3 processes"):
        per_process_batch(256, 3)


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_configs_load(name):
    cfg = load_pretrain_config(CONFIGS / name)
    assert cfg.optim.batch_size == 256 and cfg.optim.momentum == 0.9
    assert cfg.optim.weight_decay == 1e-4
    assert cfg.data.train_crop == 224 and cfg.data.eval_resize == 256 and cfg.data.eval_crop == 224
    if "finetune" in name:
        assert cfg.init_weights == "torchvision" and cfg.optim.lr < 0.1
    else:
        assert (cfg.optim.epochs, cfg.optim.lr, cfg.optim.lr_step_epochs,
                cfg.optim.warmup_epochs) == (100, 0.1, 30, 5)
    if name.startswith(("sac", "gc")):
        assert cfg.backbone.attention.type == name.split("_")[0]
        assert cfg.backbone.depth == int(name.split("resnet")[1].split("_")[0].split(".")[0])
