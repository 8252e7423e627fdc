"""ResNet-50/101/152 (torchvision's definitions) with attention blocks placed by config,
weight loading, and the frozen feature extractor of the HOI pipeline.

Stages are numbered as in the papers: stage 2..5 = torchvision's ``layer1``..``layer4``.
Positions inside a bottleneck (Ruan et al. 2021, Table III):

- ``after_conv2``: after the 3x3 conv (and its BN + ReLU), on the block's width, i.e. before
  the last 1x1 conv. The SAC paper's default.
- ``after_conv3``: after the last 1x1 conv and its BN, on the block's output channels, before
  the residual addition. Where GCNet, SE and CBAM put their blocks.

Named architectures (``ARCHS``) follow the paper's Table X: SAC and GC in the last bottleneck
of stages 2-4, SE and CBAM in every bottleneck of stages 2-5.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet
from torchvision.ops.misc import FrozenBatchNorm2d

from hoi.config import ConfigError, build_config
from hoi.models.attention import ATTENTION_BLOCKS, create_attention

STAGE_DEPTHS: dict[int, list[int]] = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}
STAGES = (2, 3, 4, 5)
POSITIONS = ("after_conv2", "after_conv3")
DEFAULT_POSITION = {"sac": "after_conv2", "gc": "after_conv3", "se": "after_conv3", "cbam": "after_conv3"}
DEFAULT_REDUCTION = {"sac": 32, "gc": 16, "se": 16, "cbam": 16}
STAGE_STRIDE = {1: 4, 2: 4, 3: 8, 4: 16, 5: 32}


@dataclass
class AttentionConfig:
    """Where and which attention block goes into the ResNet."""

    type: str = "none"  # none | sac | gc | se | cbam
    stages: list[int] = field(default_factory=lambda: [2, 3, 4])  # subset of 2..5
    blocks: str = "last"  # last | all bottlenecks of each chosen stage
    position: str = "auto"  # auto (the block's own default) | after_conv2 | after_conv3
    reduction: int | None = None  # None: the block's default (SAC l=32, GC/SE/CBAM r=16)
    softmax_beta: bool = False  # SAC only: Table II ablation
    order: str = "cheap"  # SAC only: cheap | paper (Eq. 5 as written)


@dataclass
class BackboneConfig:
    """A ResNet with optional attention; ``num_classes`` sizes the classifier head."""

    depth: int = 50
    num_classes: int = 1000
    attention: AttentionConfig = field(default_factory=AttentionConfig)


def _arch(depth: int, attention: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"depth": depth, "attention": attention or {"type": "none"}}


_PAPER_LAST_2_4 = {"stages": [2, 3, 4], "blocks": "last"}
_EVERY_2_5 = {"stages": [2, 3, 4, 5], "blocks": "all"}
ARCHS: dict[str, dict[str, Any]] = {}
for _depth in STAGE_DEPTHS:
    ARCHS[f"resnet{_depth}"] = _arch(_depth)
    ARCHS[f"sac_resnet{_depth}"] = _arch(_depth, {"type": "sac", **_PAPER_LAST_2_4})
    ARCHS[f"gc_resnet{_depth}"] = _arch(_depth, {"type": "gc", **_PAPER_LAST_2_4})
    ARCHS[f"se_resnet{_depth}"] = _arch(_depth, {"type": "se", **_EVERY_2_5})
    ARCHS[f"cbam_resnet{_depth}"] = _arch(_depth, {"type": "cbam", **_EVERY_2_5})


def backbone_config(
    arch: str | None = None,
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> BackboneConfig:
    """A validated backbone config: a named preset, then a YAML file, then overrides."""
    base = None
    if arch is not None:
        if arch not in ARCHS:
            raise ConfigError(f"unknown arch {arch!r}; valid names: {', '.join(sorted(ARCHS))}")
        base = copy.deepcopy(ARCHS[arch])
    cfg = build_config(BackboneConfig, config_file, overrides, base=base)
    validate_backbone_config(cfg)
    return cfg


def validate_backbone_config(cfg: BackboneConfig) -> None:
    """Raise ConfigError naming the field whose value is not allowed."""
    if cfg.depth not in STAGE_DEPTHS:
        raise ConfigError(f"depth must be one of {sorted(STAGE_DEPTHS)}, got {cfg.depth}")
    att = cfg.attention
    if att.type != "none" and att.type not in ATTENTION_BLOCKS:
        valid = ", ".join(["none", *sorted(ATTENTION_BLOCKS)])
        raise ConfigError(f"attention.type: unknown block {att.type!r}; valid names: {valid}")
    bad = [s for s in att.stages if s not in STAGES]
    if bad:
        raise ConfigError(f"attention.stages: stages are numbered 2..5, got {list(att.stages)}")
    if att.blocks not in ("last", "all"):
        raise ConfigError(f"attention.blocks must be 'last' or 'all', got {att.blocks!r}")
    if att.position not in ("auto", *POSITIONS):
        raise ConfigError(
            f"attention.position must be auto, after_conv2 or after_conv3, got {att.position!r}"
        )
    if att.order not in ("cheap", "paper"):
        raise ConfigError(f"attention.order must be 'cheap' or 'paper', got {att.order!r}")


def resolved_placement(att: AttentionConfig) -> tuple[str, int]:
    """(position, reduction) with ``auto`` / ``None`` replaced by the block's defaults."""
    position = DEFAULT_POSITION[att.type] if att.position == "auto" else att.position
    reduction = att.reduction if att.reduction is not None else DEFAULT_REDUCTION[att.type]
    return position, reduction


class AttentionBottleneck(Bottleneck):
    """torchvision's Bottleneck with optional attention after conv2 and/or after conv3.

    With no attention attached, it computes exactly torchvision's Bottleneck, and its
    state-dict keys are the same, so torchvision checkpoints load unchanged.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.attn_after_conv2: nn.Module | None = None
        self.attn_after_conv3: nn.Module | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        if self.attn_after_conv2 is not None:
            out = self.attn_after_conv2(out)
        out = self.bn3(self.conv3(out))
        if self.attn_after_conv3 is not None:
            out = self.attn_after_conv3(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class AttentionResNet(ResNet):
    """torchvision ResNet built from :class:`AttentionBottleneck`; ``config`` records how.

    Input (B, 3, H, W) -> logits (B, num_classes).
    """

    def __init__(self, config: BackboneConfig) -> None:
        validate_backbone_config(config)
        super().__init__(AttentionBottleneck, STAGE_DEPTHS[config.depth], num_classes=config.num_classes)
        self.config = config
        self._insert_attention(config.attention)

    def _insert_attention(self, att: AttentionConfig) -> None:
        if att.type == "none":
            return
        position, reduction = resolved_placement(att)
        kwargs: dict[str, Any] = {"reduction": reduction}
        if att.type == "sac":
            kwargs.update(softmax_beta=att.softmax_beta, order=att.order)
        for stage in sorted(set(att.stages)):
            layer: nn.Sequential = getattr(self, f"layer{stage - 1}")
            blocks = list(layer) if att.blocks == "all" else [layer[-1]]
            for block in blocks:
                if position == "after_conv2":
                    block.attn_after_conv2 = create_attention(att.type, block.conv2.out_channels, **kwargs)
                else:
                    block.attn_after_conv3 = create_attention(att.type, block.conv3.out_channels, **kwargs)

    def forward_features(self, x: torch.Tensor, last_stage: int = 5) -> torch.Tensor:
        """Feature map after stage ``last_stage`` (2..5); stride 4/8/16/32."""
        check_image_batch(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in range(2, last_stage + 1):
            x = getattr(self, f"layer{stage - 1}")(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def check_image_batch(x: torch.Tensor) -> None:
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(
            f"expected an image batch of shape (B, 3, H, W), got shape {tuple(x.shape)}"
        )


def create_backbone(
    arch: str | None = None,
    config: BackboneConfig | None = None,
    overrides: Sequence[str] = (),
) -> AttentionResNet:
    """Build a classification ResNet from a named arch and/or a config (random init)."""
    if config is None:
        config = backbone_config(arch, overrides=overrides)
    return AttentionResNet(config)


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The attention blocks inside ``model``, in forward order."""
    types = tuple(ATTENTION_BLOCKS.values())
    return [m for m in model.modules() if isinstance(m, types)]


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d in ``module`` by a FrozenBatchNorm2d with the same statistics."""
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps).to(module.running_mean)
        with torch.no_grad():
            if module.affine:
                frozen.weight.copy_(module.weight)
                frozen.bias.copy_(module.bias)
            frozen.running_mean.copy_(module.running_mean)
            frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        new = freeze_batchnorm(child)
        if new is not child:
            setattr(module, name, new)
    return module


class FrozenFeatureExtractor(nn.Module):
    """A ResNet truncated after ``last_stage``, with frozen BatchNorm and no gradients.

    ``.train()`` does not change its outputs (BatchNorm is frozen and it stays in eval mode).
    Input (B, 3, H, W) normalised images -> (B, out_channels, H/stride, W/stride). For the HOI
    pipeline ``last_stage=4`` (torchvision's layer3): stride 16, 1024 channels.
    """

    def __init__(self, resnet: AttentionResNet, last_stage: int = 4) -> None:
        super().__init__()
        if last_stage not in STAGES:
            raise ValueError(f"last_stage must be one of {STAGES}, got {last_stage}")
        self.config = resnet.config
        self.last_stage = last_stage
        self.stride = STAGE_STRIDE[last_stage]
        stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        stages = [getattr(resnet, f"layer{s - 1}") for s in range(2, last_stage + 1)]
        self.body = freeze_batchnorm(nn.Sequential(stem, *stages))
        self.out_channels = stages[-1][-1].conv3.out_channels
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FrozenFeatureExtractor:
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x)
        return self.body(x)
