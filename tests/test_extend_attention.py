"""Adding an attention block is one class plus one table line: a toy block, registered with
``ATTENTION_BLOCKS.register``, is built at its own default position, validated with its own
options, counted by ``hoi info``, loaded around by the weight loader and trained."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from torch import nn

from hoi.cli import main
from hoi.config import ConfigError
from hoi.models.attention import ATTENTION_BLOCKS, AttentionBlock, attention_classes
from hoi.models.attention.base import check_feature_map
from hoi.models.backbones import (
    AttentionResNet,
    attention_modules,
    backbone_config,
    create_backbone,
)
from hoi.models.complexity import describe, measure
from hoi.models.weights import load_backbone_weights

TOY = ["attention.type=toy", "attention.stages=[3]"]


@dataclass
class ToyOptions:
    gain: float = 1.0


class ToyBlock(AttentionBlock):
    """Z = X + gain * W_up relu(W_down X), two 1x1 convs (C -> C/r -> C).

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    default_position: ClassVar[str] = "after_conv2"
    default_reduction: ClassVar[int] = 4
    Options: ClassVar[type] = ToyOptions

    def __init__(self, channels: int, reduction: int = 4, *, gain: float = 1.0) -> None:
        super().__init__()
        self.channels, self.gain = channels, gain
        hidden = max(1, channels // reduction)
        self.down = nn.Conv2d(channels, hidden, kernel_size=1)
        self.up = nn.Conv2d(hidden, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(x, self.channels, type(self).__name__)
        return x + self.gain * self.up(torch.relu(self.down(x)))


@pytest.fixture
def toy() -> Iterator[type[ToyBlock]]:
    ATTENTION_BLOCKS.register("toy", ToyBlock)  # the one line that adds a block
    yield ToyBlock
    ATTENTION_BLOCKS.unregister("toy")


def test_toy_block_is_built_at_its_default_position(toy) -> None:
    cfg = backbone_config("resnet50", overrides=TOY)
    assert dict(cfg.attention.options) == {"gain": 1.0}
    assert describe(cfg) == "toy r=4 after_conv2, stages 3 (last)"
    model = AttentionResNet(cfg)
    blocks = attention_modules(model)
    assert len(blocks) == 1 and isinstance(blocks[0], ToyBlock)
    assert model.layer2[-1].attn_after_conv2 is blocks[0]  # stage 3 = layer2, last bottleneck
    assert (blocks[0].channels, blocks[0].down.out_channels, blocks[0].gain) == (128, 32, 1.0)
    moved = create_backbone("resnet50", overrides=[
        *TOY, "attention.position=after_conv3", "attention.reduction=8",
        "attention.options.gain=0.5",
    ])
    block = moved.layer2[-1].attn_after_conv3
    assert (block.channels, block.down.out_channels, block.gain) == (512, 64, 0.5)


def test_complexity_and_hoi_info_count_the_toy_block(toy, capsys) -> None:
    size = (64, 64)
    plain = measure(backbone_config("resnet50"), size)
    with_toy = measure(backbone_config("resnet50", overrides=TOY), size)
    c, h, n = 128, 32, (64 // 8) ** 2  # stage 3: width 128, stride 8
    assert with_toy.params - plain.params == (c * h + h) + (h * c + c)
    assert with_toy.flops - plain.flops == 2 * c * h * n  # two 1x1 convs, multiply-adds
    assert with_toy.flops_paper_order == with_toy.flops  # no cheaper rewrite to undo
    assert main(["info", "--arch", "resnet50", *TOY, "--input", "64", "64", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["params"], info["flops"]) == (with_toy.params, with_toy.flops)
    assert info["attention"] == "toy r=4 after_conv2, stages 3 (last)"


def test_unknown_toy_option_is_refused_in_one_error(toy) -> None:
    with pytest.raises(ConfigError) as err:
        backbone_config("resnet50", overrides=[*TOY, "attention.options.gian=2"])
    message = str(err.value)
    assert message.startswith("attention.options of attention.type='toy'")
    assert "'gian'" in message and "closest valid keys: gain" in message
    with pytest.raises(ConfigError, match=r"attention.type: unknown value 'toi'.*sac, se, toy"):
        backbone_config("resnet50", overrides=["attention.type=toi"])


def test_one_sgd_step_trains_the_toy_block(toy) -> None:
    model = create_backbone("resnet50", overrides=[*TOY, "num_classes=5"]).train()
    (block,) = attention_modules(model)
    before = [p.detach().clone() for p in block.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    images, labels = torch.randn(2, 3, 64, 64), torch.tensor([1, 3])
    nn.functional.cross_entropy(model(images), labels).backward()
    optimizer.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, block.parameters()))


def test_weight_loading_sees_a_block_registered_after_import(toy, tmp_path) -> None:
    assert ToyBlock in attention_classes()
    path = tmp_path / "plain.pth"
    torch.save(create_backbone("resnet50").state_dict(), path)
    model = create_backbone("resnet50", overrides=TOY)
    report = load_backbone_weights(model, path)  # strict: only the block's keys may be absent
    assert report.missing == [] and report.unexpected == []
    keys = ("down.bias", "down.weight", "up.bias", "up.weight")
    assert sorted(report.missing_attention) == [f"layer2.3.attn_after_conv2.{k}" for k in keys]


def test_unregistered_toy_is_gone() -> None:
    assert "toy" not in ATTENTION_BLOCKS and ToyBlock not in attention_classes()
    with pytest.raises(ConfigError, match=r"attention.type: unknown value 'toy'"):
        backbone_config("resnet50", overrides=TOY)


def test_a_block_without_its_defaults_fails_where_it_is_defined() -> None:
    with pytest.raises(TypeError, match=r"Incomplete must set default_position, default_reduction"):
        class Incomplete(AttentionBlock):
            pass
