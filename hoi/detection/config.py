"""Detectron2 configs of the paper's detectors with the attention ResNets (Sec. IV-A).

A detector's config is built in layers, each over the previous (:func:`detector_cfg`):

1. Detectron2's defaults and the nodes added by :func:`add_attention_config`;
2. the detector's model-zoo config (``DETECTORS[name].zoo``: heads, anchors, losses);
3. ``configs/coco/<name>.yaml`` (its ``_BASE_`` ``configs/coco/sec4a.yaml`` holds the paper's
   training recipe: 8 images per batch, 12 epochs, lr 0.01 divided by 10 at epochs 9 and 12,
   800/1333 single scale, frozen BN, stem and res2 frozen);
4. a user YAML (``--config``; a ``config.yaml`` that a training wrote is complete by itself);
5. the backbone (``--arch`` -> ``MODEL.HOI_BACKBONE.ARCH``);
6. ``KEY VALUE`` overrides, as Detectron2's ``--opts``.

``MODEL.HOI_BACKBONE`` describes the backbone as ``hoi info`` and ``hoi pretrain`` do:
``ARCH`` (a name of :data:`hoi.models.backbones.ARCHS`) then ``PLACEMENT`` (overrides applied to
the named architecture: by default the paper's COCO placement, every bottleneck of stages 3-5,
Sec. IV-A.1), then ``CONFIG_FILE`` (a backbone YAML) and ``OVERRIDES`` (``key=value``). So
``--arch sac_resnet50`` is SAC (l = 32, after the 3x3 conv) in all 13 bottlenecks of c3-c5, and
``--arch gc_resnet101`` GC (r = 16, after the last 1x1 conv) in all 30 of ResNet-101's.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hoi.config import ConfigError, build_config, to_dict
from hoi.detectron2_compat import import_detectron2
from hoi.models.backbones import ARCHS, BackboneConfig, validate_backbone_config
from hoi.registry import Table

COCO_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "coco"
BLOCK_TYPES = ("none", "gc", "sac", "se", "cbam")  # the paper's Table VII rows (BAM, DA: not built)
DEPTHS = (50, 101)


@dataclass(frozen=True)
class DetectorRecipe:
    """A detector of the paper: its Detectron2 model-zoo base and our YAML over it."""

    zoo: str  # model-zoo config name (the R-50-FPN 1x one; the backbone is replaced)
    yaml: str  # file name under configs/coco/
    masks: bool  # predicts instance masks (segm AP)
    paper_table: str  # where the paper reports it


DETECTORS: Table[DetectorRecipe] = Table("--detector", {
    "faster_rcnn": DetectorRecipe("COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml",
                                  "faster_rcnn.yaml", False, "VI"),
    "mask_rcnn": DetectorRecipe("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml",
                                "mask_rcnn.yaml", True, "I, V, VII"),
    # Detectron2 v0.6's model zoo has no box-only Cascade R-CNN: the mask one, MASK_ON False
    "cascade_rcnn": DetectorRecipe("Misc/cascade_mask_rcnn_R_50_FPN_1x.yaml",
                                   "cascade_rcnn.yaml", False, "VI"),
    "cascade_mask_rcnn": DetectorRecipe("Misc/cascade_mask_rcnn_R_50_FPN_1x.yaml",
                                        "cascade_mask_rcnn.yaml", True, "V"),
    "retinanet": DetectorRecipe("COCO-Detection/retinanet_R_50_FPN_1x.yaml",
                                "retinanet.yaml", False, "VI"),
})


def detection_arch(block: str, depth: int) -> str:
    """The ``--arch`` name of a backbone of the paper's COCO tables, e.g. ``sac_resnet101``."""
    return f"resnet{depth}" if block == "none" else f"{block}_resnet{depth}"


def all_combinations() -> list[tuple[str, str]]:
    """Every (detector, arch) of the paper's detectors x {R-50, R-101} x {none, gc, sac, se,
    cbam}: 5 x 2 x 5 = 50 runs (the paper reports 32 of them in Tables V-VII)."""
    return [(d, detection_arch(b, depth)) for d in DETECTORS for depth in DEPTHS
            for b in BLOCK_TYPES]


def add_attention_config(cfg) -> None:
    """Add the nodes our detectors read to a Detectron2 config (idempotent).

    ``MODEL.HOI_BACKBONE``: ``ARCH``, ``PLACEMENT``, ``CONFIG_FILE``, ``OVERRIDES`` (the
    backbone, see the module docstring) and ``WEIGHTS`` (ImageNet weights: a file of
    ``hoi export-backbone`` or torchvision's ResNet file; empty for random initialisation).
    ``SOLVER.CLIP_TOTAL_NORM``: clip the norm of all gradients together (mmdetection's
    ``grad_clip``; 0 = off).
    """
    import_detectron2()
    from detectron2.config import CfgNode

    if "HOI_BACKBONE" not in cfg.MODEL:
        cfg.MODEL.HOI_BACKBONE = CfgNode()
        cfg.MODEL.HOI_BACKBONE.ARCH = "resnet50"
        cfg.MODEL.HOI_BACKBONE.PLACEMENT = []
        cfg.MODEL.HOI_BACKBONE.CONFIG_FILE = ""
        cfg.MODEL.HOI_BACKBONE.OVERRIDES = []
        cfg.MODEL.HOI_BACKBONE.WEIGHTS = ""
    if "CLIP_TOTAL_NORM" not in cfg.SOLVER:
        cfg.SOLVER.CLIP_TOTAL_NORM = 0.0


def backbone_config_of(cfg) -> BackboneConfig:
    """The validated backbone config that ``cfg.MODEL.HOI_BACKBONE`` describes."""
    node = cfg.MODEL.HOI_BACKBONE
    base: dict[str, Any] | None = None
    if node.ARCH:
        if node.ARCH not in ARCHS:
            raise ConfigError(f"MODEL.HOI_BACKBONE.ARCH: unknown arch {node.ARCH!r}; valid "
                              f"names: {', '.join(sorted(ARCHS))}")
        placed = build_config(BackboneConfig, None, list(node.PLACEMENT),
                              base=copy.deepcopy(ARCHS[node.ARCH]), base_origin=node.ARCH)
        base = to_dict(placed)
    config_file = node.CONFIG_FILE or None
    if config_file is not None and not Path(config_file).is_file():
        raise ConfigError(f"MODEL.HOI_BACKBONE.CONFIG_FILE: {config_file} not found")
    if base is None and config_file is None:
        raise ConfigError("MODEL.HOI_BACKBONE: set ARCH (--arch) or CONFIG_FILE")
    config = build_config(BackboneConfig, config_file, list(node.OVERRIDES), base=base)
    validate_backbone_config(config)
    return config


def zoo_config_file(name: str) -> str:
    """Local path of a Detectron2 model-zoo config."""
    import_detectron2()
    from detectron2 import model_zoo

    try:
        return model_zoo.get_config_file(name)
    except RuntimeError as err:
        raise ConfigError(f"Detectron2's model zoo has no config {name} ({err}); "
                          f"reinstall Detectron2 with its model-zoo configs") from err


def detector_cfg(
    detector: str | None = None,
    arch: str | None = None,
    config_file: str | Path | None = None,
    opts: Sequence[str] = (),
    device: str | None = None,
):
    """The Detectron2 config of a detector (see the module docstring for the layers).

    Args:
        detector: a name of :data:`DETECTORS`; None when ``config_file`` is complete (a
            ``config.yaml`` written by a training).
        arch: the backbone's named architecture (``MODEL.HOI_BACKBONE.ARCH``).
        config_file: a Detectron2 YAML merged over the detector's.
        opts: ``KEY VALUE`` pairs (Detectron2's ``merge_from_list``).
        device: ``MODEL.DEVICE`` (e.g. ``cpu``, ``meta``); None keeps the config's.
    """
    import_detectron2()
    from detectron2.config import get_cfg

    if detector is None and config_file is None:
        raise ConfigError("give --detector (one of "
                          f"{', '.join(DETECTORS)}) or --config with a complete config.yaml")
    cfg = get_cfg()
    add_attention_config(cfg)
    cfg.set_new_allowed(False)
    if detector is not None:
        recipe = DETECTORS[detector]
        cfg.merge_from_file(zoo_config_file(recipe.zoo))
        cfg.merge_from_file(str(COCO_CONFIGS / recipe.yaml))
    if config_file is not None:
        if not Path(config_file).is_file():
            raise ConfigError(f"--config {config_file}: file not found")
        _merge(cfg.merge_from_file, str(config_file), f"--config {config_file}")
    if arch is not None:
        cfg.MODEL.HOI_BACKBONE.ARCH = arch
    if len(opts) % 2:
        raise ConfigError(f"overrides come as KEY VALUE pairs; got an odd number: {list(opts)}")
    _merge(cfg.merge_from_list, list(opts), "overrides")
    if device is not None:
        cfg.MODEL.DEVICE = device
    backbone_config_of(cfg)  # refuse a bad backbone now, in one line
    return cfg


def _merge(merge, source: Any, origin: str) -> None:
    """Detectron2's merge, its errors (unknown key, wrong type) as one-line ConfigErrors."""
    try:
        merge(source)
    except (KeyError, ValueError, AssertionError) as err:
        raise ConfigError(f"{origin}: {str(err).strip()}") from err
