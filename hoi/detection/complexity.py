"""Parameters and FLOPs of a whole detector, counted as mmdetection (v1, ``tools/get_flops.py``)
counts them for the paper's Tables I and VII.

Parameters: every parameter of the model plus the affine (weight, bias) of the frozen
BatchNorms. mmdetection keeps frozen BatchNorms as ``nn.BatchNorm2d`` whose parameters merely
do not train, so its count includes them; Detectron2's ``FrozenBatchNorm2d`` holds them as
buffers (53,120 numbers in a ResNet-50: Detectron2's Mask R-CNN R50-FPN is 44.34M by
``model.parameters()``, 44.40M counted as mmdetection does, the paper's 44.4M).

FLOPs: multiply-adds (torch's FLOP counter halved, as :mod:`hoi.models.complexity`: convolutions
and matrix products; the paper's counter also counts normalisation, activations, pooling and
interpolation, so ours are lower) of mmdetection's ``forward_dummy``: the backbone and FPN on one
1280x800 image, the RPN (or RetinaNet) head on every level, the box head on 1000 RoIs and the
mask head on 100 (each cascade stage's heads alike). RoI pooling, anchors, NMS and the losses
are not counted. The model is built on the ``meta`` device: no memory, no weights, a second.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.ops.misc import FrozenBatchNorm2d as TorchvisionFrozenBN

from hoi.detectron2_compat import import_detectron2
from hoi.models.backbones import attention_block, block_options


@dataclass(frozen=True)
class FlopSettings:
    """What one counted forward pass holds (mmdetection's ``get_flops.py`` / ``forward_dummy``)."""

    height: int = 800
    width: int = 1280
    box_rois: int = 1000  # random proposals through the box head(s)
    mask_rois: int = 100  # the first 100 of them through the mask head


@dataclass
class DetectorComplexity:
    params: int  # as mmdetection counts them (frozen BN affine included)
    params_detectron2: int  # model.parameters() only
    params_trainable: int  # what the optimiser updates (stem, res2 and BN frozen)
    flops: int  # multiply-adds of what the default code executes
    flops_paper_order: int  # with the block's equations in their written order (SAC's Eq. 5)
    flops_parts: dict[str, int]  # backbone+FPN, rpn or dense head, box, mask


def _frozen_bn_classes() -> tuple[type, ...]:
    import_detectron2()
    from detectron2.layers import FrozenBatchNorm2d

    return (FrozenBatchNorm2d, TorchvisionFrozenBN)


def count_detector_parameters(model: nn.Module) -> tuple[int, int, int]:
    """(mmdetection's count, ``model.parameters()`` count, trainable count) of ``model``."""
    own = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(m.weight.numel() + m.bias.numel() for m in model.modules()
                 if isinstance(m, _frozen_bn_classes()))
    return own + frozen, own, trainable


def build_meta_model(cfg) -> nn.Module:
    """The detector of ``cfg`` on the meta device (shapes only; no weights are read)."""
    import_detectron2()
    from detectron2.modeling import build_model

    import hoi.detection.backbone  # noqa: F401 - registers the attention backbones

    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "meta"
    cfg.MODEL.HOI_BACKBONE.WEIGHTS = ""
    with torch.device("meta"):
        return build_model(cfg)


def _as_list(module: nn.Module) -> list[nn.Module]:
    return list(module) if isinstance(module, nn.ModuleList) else [module]


def _count(fn, parts: dict[str, int], name: str) -> object:
    with FlopCounterMode(display=False) as counter:
        out = fn()
    parts[name] = parts.get(name, 0) + counter.get_total_flops() // 2
    return out


@torch.no_grad()
def count_detector_multiply_adds(model: nn.Module, cfg,
                                 settings: FlopSettings = FlopSettings()) -> dict[str, int]:
    """Multiply-adds of ``forward_dummy`` (module docstring) by part, on the meta device."""
    model.eval()
    meta = torch.device("meta")
    parts: dict[str, int] = {}
    image = torch.zeros(1, 3, settings.height, settings.width, device=meta)
    features = _count(lambda: model.backbone(image), parts, "backbone+fpn")
    if hasattr(model, "head"):  # RetinaNet (a dense detector)
        maps = [features[f] for f in model.head_in_features]
        _count(lambda: model.head(maps), parts, "head")
        return parts
    rpn = model.proposal_generator
    maps = [features[f] for f in rpn.in_features]
    _count(lambda: rpn.rpn_head(maps), parts, "rpn")
    channels = cfg.MODEL.FPN.OUT_CHANNELS
    heads = model.roi_heads
    side = cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
    rois = torch.zeros(settings.box_rois, channels, side, side, device=meta)
    for box_head, predictor in zip(_as_list(heads.box_head), _as_list(heads.box_predictor)):
        _count(lambda h=box_head, p=predictor: p(h(rois)), parts, "box")
    if getattr(heads, "mask_on", False):
        side = cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION
        mask_rois = torch.zeros(settings.mask_rois, channels, side, side, device=meta)
        _count(lambda: heads.mask_head.layers(mask_rois), parts, "mask")
    return parts


def _paper_order_cfg(cfg):
    """``cfg`` with the attention block's equations in their written order, or None when the
    default code already computes them so (``AttentionBlock.as_written``)."""
    from hoi.detection.config import backbone_config_of

    backbone = backbone_config_of(cfg)
    block = attention_block(backbone.attention)
    written = None if block is None else block.as_written(block_options(backbone.attention))
    if written is None:
        return None
    out = cfg.clone()
    out.defrost()
    out.MODEL.HOI_BACKBONE.OVERRIDES = [*cfg.MODEL.HOI_BACKBONE.OVERRIDES,
                                        *(f"attention.options.{k}={v}"
                                          for k, v in copy.deepcopy(written).items())]
    return out


def measure_detector(cfg, settings: FlopSettings = FlopSettings()) -> DetectorComplexity:
    """Parameters and multiply-adds of the detector that ``cfg`` describes."""
    model = build_meta_model(cfg)
    params, own, trainable = count_detector_parameters(model)
    parts = count_detector_multiply_adds(model, cfg, settings)
    paper_cfg = _paper_order_cfg(cfg)
    paper_parts = (parts if paper_cfg is None else
                   count_detector_multiply_adds(build_meta_model(paper_cfg), paper_cfg, settings))
    return DetectorComplexity(params, own, trainable, sum(parts.values()),
                              sum(paper_parts.values()), parts)
