"""Adding an interaction head is one file plus one table line: a toy head registered in
:data:`hoi.models.heads.HEADS` is configured, trained by ``hoi train``'s loop, checkpointed and
tested by ``hoi test``'s code without any of them naming it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from hoi.config import ConfigError
from hoi.data.metadata import hico_metadata
from hoi.engine.checkpoint import load_checkpoint
from hoi.engine.distributed import DistInfo
from hoi.evaluation import HOIResults
from hoi.hoi_config import config_of_checkpoint, load_config
from hoi.inference.test_split import run_test
from hoi.models.heads import HEADS, HeadConfig, InteractionHead
from hoi.training.train_heads import run_training

from .test_vsgnet_synth import CHANNELS, make_split


# ------------------------------------------------------------------ the toy head (one "file")
@dataclass
class ToyConfig(HeadConfig):
    hidden: int = 8
    bias_lr: float = 0.5  # the output bias trains at its own rate, outside the schedule


class ToyHead(InteractionHead):
    """Mean feature of the image and the two boxes' corners -> one linear layer -> verb logits."""

    Config = ToyConfig
    training_keys = ("bias_lr",)

    def __init__(self, cfg: ToyConfig) -> None:
        super().__init__(cfg)
        self.body = nn.Sequential(nn.Linear(cfg.in_channels + 8, cfg.hidden), nn.ReLU())
        self.out = nn.Linear(cfg.hidden, 117)
        mask = torch.from_numpy(hico_metadata().object_verb_mask.copy())
        self.register_buffer("object_verb_mask", mask, persistent=False)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        image = batch["features"].float().mean(dim=(2, 3))
        size = batch["image_size"][batch["pair_image"]].float().repeat(1, 2)
        boxes = torch.cat([batch["boxes_h"][batch["pair_h"]] / size,
                           batch["boxes_o"][batch["pair_o"]] / size], 1)
        features = torch.cat([image[batch["pair_image"]], boxes.float()], 1)
        return {"verbs": self.out(self.body(features))}

    def log_scores(self, outputs, batch):
        valid = self.object_verb_mask[batch["labels_o"][batch["pair_o"]]]
        return F.logsigmoid(outputs["verbs"].float()).clamp(max=-1e-6), valid

    def loss(self, outputs, batch):
        terms = F.binary_cross_entropy_with_logits(outputs["verbs"].float(),
                                                   batch["labels"].float(),
                                                   reduction="none")
        return terms[self.log_scores(outputs, batch)[1]].sum()

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        rest = [p for n, p in self.named_parameters() if n != "out.bias"]
        return [{"name": "main", "params": rest, "lr": lr, "scheduled": True},
                {"name": "bias", "params": [self.out.bias], "lr": self.cfg.bias_lr,
                 "scheduled": False}]


@pytest.fixture
def toy_head():
    HEADS.register("toy", ToyHead)  # the one table line
    yield ToyHead
    HEADS.unregister("toy")


def _overrides(root: Path, out: Path, *extra: str) -> list[str]:
    return ["model.name=toy", f"model.in_channels={CHANNELS}", "model.hidden=12",
            f"data.root={root}",
            "data.workers=0", "data.val_fraction=0.0", "device=cpu", "optim.batch_size=4",
            "optim.epochs=2",
            "optim.lr=0.1", "optim.lr_factor=3.0", "optim.lr_factor_epochs=[2,2]", "progress=false",
            "tensorboard=false", f"output_dir={out}", "log_every=1", "test.batch_size=4", *extra]


def test_a_registered_head_trains_and_tests(toy_head, tmp_path: Path) -> None:
    make_split(tmp_path, "train2015", 8, seed=0)
    out = tmp_path / "run"
    cfg = load_config(None, _overrides(tmp_path, out))
    assert OmegaConf.get_type(cfg.model) is ToyConfig
    assert cfg.model.hidden == 12 and cfg.model.bias_lr == 0.5
    torch.manual_seed(0)
    initial = ToyHead(cfg.model).state_dict()
    metrics = run_training(cfg, DistInfo(), None)

    # the head's groups: the scheduled one at lr x factor in epoch 2, the bias at its own rate
    assert metrics["train/lr"] == pytest.approx(0.3)
    assert metrics["train/bias_lr"] == pytest.approx(0.5)
    ckpt = load_checkpoint(out / "best.pth")
    assert ckpt["arch"]["model"] == "toy" and ckpt["arch"]["heads"] == {"in_channels": CHANNELS,
                                                                        "hidden": 12}
    assert set(ckpt["model"]) == set(initial)
    assert not torch.equal(ckpt["model"]["body.0.weight"], initial["body.0.weight"])  # it trained

    # hoi test's code reads the head back from the checkpoint's config and writes results
    test_cfg = config_of_checkpoint(ckpt, out / "best.pth")
    results = run_test(test_cfg, ckpt, out / "best.pth", tmp_path / "results.npz", DistInfo(),
                       split="train2015")
    rows = HOIResults.load(results)
    assert len(rows) > 0 and rows.score.min() >= 0 and rows.score.max() <= 1


def test_unknown_head_and_its_keys_are_refused(toy_head, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model.name: unknown value 'nope'; valid names: toy, "
                                          r"vsgnet"):
        load_config(None, ["model.name=nope"])
    with pytest.raises(ConfigError, match=r"unknown config key 'model.hiden'.*model.hidden"):
        load_config(None, ["model.name=toy", "model.hiden=3"])
    with pytest.raises(ConfigError, match=r"unknown config key 'model.roi_pool'"):  # a VSGNet key
        load_config(None, ["model.name=toy", "model.roi_pool=align"])
