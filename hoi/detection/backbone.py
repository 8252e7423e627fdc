"""The attention ResNets of :mod:`hoi.models.backbones` as Detectron2 backbones.

:class:`AttentionResNetBackbone` is the bottom-up part: torchvision's ResNet layout (stride in
the 3x3 conv, mmdetection's ``style='pytorch'``) with the attention blocks placed by a
:class:`~hoi.models.backbones.BackboneConfig`, returning ``res2``..``res5`` (strides 4..32,
256..2048 channels). As in the paper (Sec. IV-A.2) and Detectron2's own ResNets:

- the ResNet's BatchNorms become ``FrozenBatchNorm2d`` (statistics and affine fixed), after the
  ImageNet weights are loaded;
- the stem and stage 2 are frozen (``MODEL.BACKBONE.FREEZE_AT = 2``: "c1 and c2 frozen");
- the attention blocks' own layers are left as the block defines them and trained from scratch
  (identity start): GC's LayerNorm stays a trainable LayerNorm, as in GCNet's mmdetection code
  (``ContextBlock``, whose LayerNorm neither ``frozen_stages`` nor ``norm_eval`` touch), and
  CBAM's one-channel BatchNorm of its spatial gate stays a BatchNorm.

Two builders are registered in Detectron2's ``BACKBONE_REGISTRY`` (``MODEL.BACKBONE.NAME``),
each the counterpart of Detectron2's own in ``detectron2/modeling/backbone/fpn.py``:

- ``build_attention_resnet_fpn_backbone``: FPN on ``MODEL.FPN.IN_FEATURES`` with P6 by max
  pooling P5 (``build_resnet_fpn_backbone``: R-CNNs);
- ``build_attention_resnet_retinanet_backbone``: FPN with P6/P7 computed from C5
  (``build_retinanet_resnet_fpn_backbone``, ``LastLevelP6P7``: RetinaNet; mmdetection v1's
  RetinaNet also takes P6 from C5, ``extra_convs_on_inputs=True``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

from hoi.detectron2_compat import import_detectron2
from hoi.errors import UserError
from hoi.models.attention import attention_classes
from hoi.models.backbones import STAGE_STRIDE, AttentionResNet, BackboneConfig, freeze_batchnorm
from hoi.models.weights import load_backbone_weights

import_detectron2()  # the import fixes, before any detectron2 submodule
from detectron2.layers import ShapeSpec  # noqa: E402
from detectron2.modeling import BACKBONE_REGISTRY, Backbone  # noqa: E402
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool, LastLevelP6P7  # noqa: E402

LOG = logging.getLogger(__name__)
STAGE_NAMES = ("stem", "res2", "res3", "res4", "res5")  # Detectron2's names; index = freeze level


class BackboneBuildError(UserError, ValueError):
    """A detection backbone setting that cannot be built (a feature name, a freeze level)."""


def freeze_resnet_batchnorm(module: nn.Module) -> nn.Module:
    """Replace the ResNet's BatchNorm2d layers in ``module`` by FrozenBatchNorm2d (same
    statistics and affine), leaving the attention blocks' own layers untouched."""
    blocks = attention_classes()
    for name, child in module.named_children():
        if isinstance(child, blocks):
            continue
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, freeze_batchnorm(child))
        else:
            freeze_resnet_batchnorm(child)
    return module


class AttentionResNetBackbone(Backbone):
    """Bottom-up Detectron2 backbone made of an :class:`AttentionResNet` without its classifier.

    Input (B, 3, H, W) normalised images -> ``{name: (B, C, H / stride, W / stride)}`` for the
    names of ``out_features`` among ``stem`` (64, /4), ``res2`` (256, /4), ``res3`` (512, /8),
    ``res4`` (1024, /16), ``res5`` (2048, /32). Submodule names are torchvision's (``conv1``,
    ``bn1``, ``layer1``..``layer4``), so its state dict keys are a ResNet checkpoint's.

    Args:
        resnet: the network, weights already loaded (its ``avgpool`` and ``fc`` are dropped).
        out_features: the maps returned.
        freeze_at: 0 freezes nothing, 1 the stem, 2 the stem and res2, ... (Detectron2's
            ``MODEL.BACKBONE.FREEZE_AT``).
    """

    def __init__(self, resnet: AttentionResNet, out_features: Sequence[str], freeze_at: int):
        super().__init__()
        unknown = [f for f in out_features if f not in STAGE_NAMES]
        if unknown or not out_features:
            raise BackboneBuildError(f"MODEL.RESNETS.OUT_FEATURES: {list(out_features)} (expected "
                                     f"names among {', '.join(STAGE_NAMES)})")
        if not 0 <= freeze_at <= len(STAGE_NAMES):
            raise BackboneBuildError(f"MODEL.BACKBONE.FREEZE_AT: {freeze_at} (expected 0..5)")
        self.config: BackboneConfig = resnet.config
        self.conv1, self.bn1, self.relu, self.maxpool = (resnet.conv1, resnet.bn1, resnet.relu,
                                                         resnet.maxpool)
        self.layer1, self.layer2 = resnet.layer1, resnet.layer2
        self.layer3, self.layer4 = resnet.layer3, resnet.layer4
        self._out_features = list(out_features)
        self._last_stage = max(STAGE_NAMES.index(f) for f in out_features) + 1  # stem = 1
        self._out_feature_strides = {"stem": STAGE_STRIDE[1]}
        self._out_feature_channels = {"stem": resnet.conv1.out_channels}
        for stage in range(2, 6):
            layer = getattr(self, f"layer{stage - 1}")
            self._out_feature_strides[f"res{stage}"] = STAGE_STRIDE[stage]
            self._out_feature_channels[f"res{stage}"] = layer[-1].conv3.out_channels
        freeze_resnet_batchnorm(self)
        for module in self._modules_up_to(freeze_at):
            module.requires_grad_(False)

    def _modules_up_to(self, level: int) -> list[nn.Module]:
        """The modules of the first ``level`` parts (stem, res2, ...)."""
        parts: list[list[nn.Module]] = [[self.conv1, self.bn1]]
        parts += [[getattr(self, f"layer{s}")] for s in range(1, 5)]
        return [m for part in parts[:level] for m in part]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() != 4:
            raise ValueError(f"expected images (B, C, H, W), got shape {tuple(x.shape)}")
        out: dict[str, torch.Tensor] = {}
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        if "stem" in self._out_features:
            out["stem"] = x
        for stage in range(2, self._last_stage + 1):
            x = getattr(self, f"layer{stage - 1}")(x)
            if f"res{stage}" in self._out_features:
                out[f"res{stage}"] = x
        return out


def build_bottom_up(cfg) -> AttentionResNetBackbone:
    """The bottom-up backbone that ``cfg.MODEL.HOI_BACKBONE`` describes, with the ImageNet
    weights of ``MODEL.HOI_BACKBONE.WEIGHTS`` loaded (attention blocks missing from the file
    start as the identity; the classifier is ignored)."""
    from hoi.detection.config import backbone_config_of  # the node's reader (no cycle at import)

    resnet = AttentionResNet(backbone_config_of(cfg))
    weights = cfg.MODEL.HOI_BACKBONE.WEIGHTS
    if weights:
        report = load_backbone_weights(resnet, weights, ignore_classifier=True)
        LOG.info("backbone weights %s (sha256 %s): %d attention tensors start as the identity",
                 weights, report.sha256 or "-", len(report.missing_attention))
    else:
        LOG.info("backbone weights: none (random initialisation)")
    return AttentionResNetBackbone(resnet, cfg.MODEL.RESNETS.OUT_FEATURES,
                                   cfg.MODEL.BACKBONE.FREEZE_AT)


@BACKBONE_REGISTRY.register()
def build_attention_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> Backbone:
    """Attention ResNet + FPN (P2-P6, P6 by max pooling), as Detectron2's
    ``build_resnet_fpn_backbone``. ``input_shape`` is unused (3-channel images)."""
    return FPN(bottom_up=build_bottom_up(cfg), in_features=cfg.MODEL.FPN.IN_FEATURES,
               out_channels=cfg.MODEL.FPN.OUT_CHANNELS, norm=cfg.MODEL.FPN.NORM,
               top_block=LastLevelMaxPool(), fuse_type=cfg.MODEL.FPN.FUSE_TYPE)


@BACKBONE_REGISTRY.register()
def build_attention_resnet_retinanet_backbone(cfg, input_shape: ShapeSpec) -> Backbone:
    """Attention ResNet + FPN (P3-P7, P6/P7 from C5), as Detectron2's
    ``build_retinanet_resnet_fpn_backbone``."""
    bottom_up = build_bottom_up(cfg)
    c5 = bottom_up.output_shape()["res5"].channels
    out = cfg.MODEL.FPN.OUT_CHANNELS
    return FPN(bottom_up=bottom_up, in_features=cfg.MODEL.FPN.IN_FEATURES, out_channels=out,
               norm=cfg.MODEL.FPN.NORM, top_block=LastLevelP6P7(c5, out),
               fuse_type=cfg.MODEL.FPN.FUSE_TYPE)
