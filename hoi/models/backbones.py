"""ResNet-50/101/152 (torchvision's definitions) with attention blocks placed by config,
weight loading, and the frozen feature extractor of the HOI pipeline.

Stages are numbered as in the papers: stage 2..5 = torchvision's ``layer1``..``layer4``.
Positions inside a bottleneck (Ruan et al. 2021, Table III), ``POSITIONS``:

- ``after_conv2``: after the 3x3 conv (and its BN + ReLU), on the block's width, i.e. before
  the last 1x1 conv. The SAC paper's default.
- ``after_conv3``: after the last 1x1 conv and its BN, on the block's output channels, before
  the residual addition. Where GCNet, SE and CBAM put their blocks.
- ``auto``: the block's own ``default_position``.

Which bottlenecks of a chosen stage get a block, ``BOTTLENECKS``: ``last`` or ``all``. The
block itself comes from :data:`hoi.models.attention.ATTENTION_BLOCKS`, its extra options from
``attention.options`` (checked against the block's ``Options`` dataclass).

Named architectures (``ARCHS``) follow the paper's Table X: SAC and GC in the last bottleneck
of stages 2-4, SE and CBAM in every bottleneck of stages 2-5.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet
from torchvision.ops.misc import FrozenBatchNorm2d

from hoi.config import AT_LEAST_ONE, Check, ConfigError, build_config, check_ranges, one_of, to_dict
from hoi.models.attention import ATTENTION_BLOCKS, AttentionBlock, NoOptions, attention_classes
from hoi.registry import Table

STAGE_DEPTHS: dict[int, list[int]] = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}
STAGES = (2, 3, 4, 5)
STAGE_STRIDE = {1: 4, 2: 4, 3: 8, 4: 16, 5: 32}


def _after_conv2(bottleneck: AttentionBottleneck, make: Callable[[int], nn.Module]) -> None:
    bottleneck.attn_after_conv2 = make(bottleneck.conv2.out_channels)


def _after_conv3(bottleneck: AttentionBottleneck, make: Callable[[int], nn.Module]) -> None:
    bottleneck.attn_after_conv3 = make(bottleneck.conv3.out_channels)


def _last_bottleneck(layer: nn.Sequential) -> list[nn.Module]:
    return [layer[-1]]


def _every_bottleneck(layer: nn.Sequential) -> list[nn.Module]:
    return list(layer)


Attach = Callable[["AttentionBottleneck", Callable[[int], nn.Module]], None]
# position -> how to attach a block built for a number of channels; auto: the block's default
POSITIONS: Table[Attach | None] = Table(
    "attention.position", {"auto": None, "after_conv2": _after_conv2, "after_conv3": _after_conv3}
)
# attention.blocks -> the bottlenecks of a stage (an nn.Sequential) that get a block
BOTTLENECKS: Table[Callable[[nn.Sequential], list[nn.Module]]] = Table(
    "attention.blocks", {"last": _last_bottleneck, "all": _every_bottleneck}
)
# What records written before ``attention.options`` hold at the top level of ``attention``
# (for every block type), with the values they had when they meant nothing.
_OLD_TOP_LEVEL_OPTIONS = {"softmax_beta": False, "order": "cheap"}


@dataclass
class AttentionConfig:
    """Where and which attention block goes into the ResNet."""

    RANGES: ClassVar[dict[str, Check]] = {
        "stages": Check(ge=min(STAGES), le=max(STAGES), why="stages are numbered 2..5"),
        "reduction": Check(ge=1, why="null: the block's default"),
    }

    type: str = "none"  # a name of ATTENTION_BLOCKS: none | sac | gc | se | cbam
    stages: list[int] = field(default_factory=lambda: [2, 3, 4])  # subset of 2..5
    blocks: str = "last"  # last | all bottlenecks of each chosen stage
    position: str = "auto"  # auto (the block's default_position) | after_conv2 | after_conv3
    reduction: int | None = None  # None: the block's default_reduction (SAC l=32, GC/SE/CBAM r=16)
    # the block's own options (its Options dataclass), e.g. SAC's softmax_beta and order;
    # completed with the block's defaults by validate_backbone_config
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class BackboneConfig:
    """A ResNet with optional attention; ``num_classes`` sizes the classifier head."""

    RANGES: ClassVar[dict[str, Check]] = {"depth": one_of(*STAGE_DEPTHS),
                                          "num_classes": AT_LEAST_ONE}

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
    """Raise ConfigError naming the field whose value is not allowed.

    ``cfg.attention.options`` is replaced by the block's complete options (given values over
    the block's defaults), so that a recorded config names every option it was built with.
    """
    check_ranges(cfg)  # the declared ranges (again: a config may be built without build_config)
    att = cfg.attention
    ATTENTION_BLOCKS.check(att.type)
    BOTTLENECKS.check(att.blocks)
    POSITIONS.check(att.position)
    att.options = block_options(att)


def block_options(att: AttentionConfig) -> dict[str, Any]:
    """``att.options`` checked against the block's ``Options`` dataclass (a typo is refused
    with the closest valid key) and completed with its defaults. ``none`` takes no options."""
    block = ATTENTION_BLOCKS[att.type]
    schema = NoOptions if block is None else block.Options
    try:
        built = build_config(schema, base=to_dict(att.options))
    except ConfigError as err:
        reason = str(err).removeprefix("preset: ")
        raise ConfigError(f"attention.options of attention.type={att.type!r}: {reason}") from None
    return dataclasses.asdict(schema(**to_dict(built)))  # the dataclass checks the values


def attention_block(att: AttentionConfig) -> type[AttentionBlock] | None:
    """The block class that ``att.type`` names (None for ``none``)."""
    return ATTENTION_BLOCKS[att.type]


def resolved_placement(att: AttentionConfig) -> tuple[str, int]:
    """(position, reduction) with ``auto`` / ``None`` replaced by the block's defaults."""
    block = attention_block(att)
    if block is None:
        raise ConfigError("attention.type is 'none': no block to place")
    position = block.default_position if att.position == "auto" else att.position
    reduction = att.reduction if att.reduction is not None else block.default_reduction
    return position, reduction


def upgrade_backbone_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A backbone config dict as recorded by any version (features provenance ``backbone``,
    exported backbones' ``config``, pretraining checkpoints' ``arch``) in the current layout.

    Older versions wrote ``attention.softmax_beta`` and ``attention.order`` for every block
    type: they move into ``attention.options`` where the block has such options (SAC) and are
    dropped where they hold the values that meant nothing; anything else is left in place, so
    that reading the record refuses it.
    """
    out = copy.deepcopy(dict(record))
    att = out.get("attention")
    if not isinstance(att, Mapping) or not any(k in att for k in _OLD_TOP_LEVEL_OPTIONS):
        return out
    att = dict(att)
    name = att.get("type", "none")
    block = ATTENTION_BLOCKS.get(name)
    fields = {f.name for f in dataclasses.fields(block.Options)} if block is not None else set()
    options = dict(att.get("options") or {})
    for key, meaningless in _OLD_TOP_LEVEL_OPTIONS.items():
        if key not in att:
            continue
        if key in fields and key not in options:
            options[key] = att.pop(key)
        elif att[key] == meaningless:
            del att[key]
    att["options"] = options
    out["attention"] = att
    return out


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
        super().__init__(
            AttentionBottleneck, STAGE_DEPTHS[config.depth], num_classes=config.num_classes
        )
        self.config = config
        self._insert_attention(config.attention)

    def _insert_attention(self, att: AttentionConfig) -> None:
        block = attention_block(att)
        if block is None:
            return
        position, reduction = resolved_placement(att)
        attach = POSITIONS[position]
        options = block_options(att)

        def make(channels: int) -> nn.Module:
            return block(channels, reduction=reduction, **options)

        for stage in sorted(set(att.stages)):
            layer: nn.Sequential = getattr(self, f"layer{stage - 1}")
            for bottleneck in BOTTLENECKS[att.blocks](layer):
                attach(bottleneck, make)

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
    types = attention_classes()
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
