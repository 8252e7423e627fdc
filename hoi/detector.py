"""Detectron2 Faster R-CNN as the object detector of the pipeline: the model from a model-zoo
config (or a local YAML) with our thresholds, its weights (a local file, the model zoo's where
the network allows, or random), its input, and its output in the annotation convention.

Used by ``python -m data_prep.detect`` (a whole split, resumable and sharded) and by
``hoi predict`` (new images). Every use of Detectron2 goes through :mod:`hoi.detectron2_compat`.
Boxes come out as 1-based inclusive pixels of the original image (Detectron2's continuous
0-based box ``[x1, y1, x2, y2]`` covers pixels ``x1 + 1 .. x2``); COCO's 80 classes are mapped
to HICO-DET's object indices.
"""

from __future__ import annotations

import urllib.error
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hoi.data.cache import ImageProposals
from hoi.data.metadata import hico_metadata
from hoi.detectron2_compat import import_detectron2
from hoi.errors import UserError
from hoi.provenance import RANDOM_WEIGHTS, file_sha256

DEFAULT_CONFIG = "COCO-Detection/faster_rcnn_R_101_FPN_3x.yaml"


class DetectorError(UserError, RuntimeError):
    """A detector that cannot be built or loaded, or an import file that is malformed."""


@dataclass
class DetectorSettings:
    """What defines the detector: config (model-zoo name or YAML), weights (a file, None for the
    model zoo's, ``"none"`` for random), score / NMS thresholds, detections per image and the
    test-time resize (None: the config's 800 / 1333)."""

    config: str = DEFAULT_CONFIG
    weights: str | None = None
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    max_per_image: int = 100
    min_size: int | None = None
    max_size: int | None = None
    weights_flag: str = "--weights"  # the option that sets ``weights``, named in errors

    def provenance(self, weights_file: str | None) -> dict[str, Any]:
        """What detections of this detector record (:mod:`hoi.provenance`); ``weights_file`` is
        the local file of :func:`resolve_weights` (None: random weights)."""
        return {"detector": "detectron2 Faster R-CNN", "config": self.config,
                "weights": str(self.weights or "model zoo"),
                "weights_sha256": file_sha256(weights_file) if weights_file else RANDOM_WEIGHTS,
                "score_thresh": self.score_thresh, "nms_thresh": self.nms_thresh,
                "max_per_image": self.max_per_image, "min_size": self.min_size,
                "max_size": self.max_size}


def continuous_to_inclusive(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Detectron2's continuous 0-based boxes (K, 4) -> 1-based inclusive pixel boxes in the
    image."""
    out = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    out[:, :2] += 1.0
    out[:, [0, 2]] = out[:, [0, 2]].clip(1, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(1, height)
    out[:, 2] = np.maximum(out[:, 2], out[:, 0])
    out[:, 3] = np.maximum(out[:, 3], out[:, 1])
    return out


def detectron2_cfg(settings: DetectorSettings, device: torch.device):
    """Detectron2 config from a model-zoo name or a YAML file, with our thresholds."""
    import_detectron2()
    from detectron2 import model_zoo
    from detectron2.config import get_cfg

    cfg = get_cfg()
    # the attention-ResNet detectors of `hoi train-detector` (their config.yaml): the
    # MODEL.HOI_BACKBONE node and the registered backbones (hoi.detection)
    from hoi.detection.backbone import build_attention_resnet_fpn_backbone  # noqa: F401
    from hoi.detection.config import add_attention_config

    add_attention_config(cfg)
    if Path(settings.config).is_file():
        cfg.merge_from_file(settings.config)
    else:
        try:
            cfg.merge_from_file(model_zoo.get_config_file(settings.config))
        except RuntimeError as err:
            raise DetectorError(f"--config {settings.config!r} is neither a file nor a model-zoo "
                                f"config ({err})") from err
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = settings.score_thresh
    cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST = settings.nms_thresh
    cfg.TEST.DETECTIONS_PER_IMAGE = settings.max_per_image
    if settings.min_size:
        cfg.INPUT.MIN_SIZE_TEST = settings.min_size
    if settings.max_size:
        cfg.INPUT.MAX_SIZE_TEST = settings.max_size
    cfg.MODEL.DEVICE = str(device)
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.HOI_BACKBONE.WEIGHTS = ""  # the detector's weights hold its whole backbone
    return cfg


def resolve_weights(settings: DetectorSettings) -> str | None:
    """Local path of the detector weights (``weights``, else the model zoo's file, downloaded
    where the network allows); None for ``"none"`` (random initialisation)."""
    if settings.weights == "none":
        return None
    import_detectron2()
    from detectron2 import model_zoo
    from detectron2.utils.file_io import PathManager

    source = settings.weights or model_zoo.get_checkpoint_url(settings.config)
    try:
        local = PathManager.get_local_path(source)
    except (urllib.error.URLError, OSError) as err:
        raise DetectorError(
            f"could not download the detector weights {source} ({err}). Without network access, "
            f"download that file on a machine that has it and pass {settings.weights_flag} "
            f"/path/to/{Path(source).name}"
        ) from err
    if not Path(local).is_file():
        raise DetectorError(f"detector weights not found: {local}")
    return local


def build_detector(settings: DetectorSettings, device: torch.device,
                   weights: str | None) -> tuple[Any, Any]:
    """(model in eval mode, its config), with ``weights`` (a local file from
    :func:`resolve_weights`, or None for random initialisation) loaded."""
    cfg = detectron2_cfg(settings, device)
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    model = build_model(cfg).eval()
    if weights is None:
        return model, cfg
    checkpointer = DetectionCheckpointer(model)
    try:
        checkpoint = checkpointer._load_file(weights)
    except Exception as err:
        raise DetectorError(
            f"{weights}: not a readable Detectron2/PyTorch checkpoint ({err})") from err
    incompatible = checkpointer._load_model(checkpoint)
    missing = [k for k in incompatible.missing_keys if "num_batches_tracked" not in k]
    if missing:
        raise DetectorError(
            f"{weights}: weights do not fit {settings.config}: {len(missing)} missing keys, e.g. "
            f"{missing[:5]}"
        )
    return model, cfg


class Detectron2Input:
    """PIL image -> the dict Detectron2 models take (resized, in the config's channel order)."""

    def __init__(self, cfg) -> None:
        import detectron2.data.transforms as T

        self.resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
        self.bgr = cfg.INPUT.FORMAT == "BGR"

    def __call__(self, image) -> dict[str, Any]:
        arr = np.asarray(image)
        if self.bgr:
            arr = arr[:, :, ::-1]
        h, w = arr.shape[:2]
        resized = self.resize.get_transform(arr).apply_image(arr)
        return {"image": torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1))),
                "height": h, "width": w}


def to_device(inputs: Sequence[dict[str, Any]], device: torch.device) -> list[dict[str, Any]]:
    """The inputs with their images on ``device`` (a non-blocking copy from pinned memory), so
    that the model's own move is a no-op."""
    return [{**inp, "image": inp["image"].to(device, non_blocking=True)} for inp in inputs]


@torch.inference_mode()
def raw_detections(model, inputs: Sequence[dict[str, Any]]) -> tuple[torch.Tensor, list[int]]:
    """The model's detections of a batch, packed on its device into one (K, 6) float32 tensor
    (``x1, y1, x2, y2`` continuous 0-based, score, COCO contiguous class 0..79) and the count of
    each image: one copy brings a batch to the host (:func:`unpack_detections`)."""
    results = [r["instances"] for r in model(list(inputs))]
    counts = [len(inst) for inst in results]
    packed = torch.cat([torch.cat([inst.pred_boxes.tensor.float(), inst.scores.float()[:, None],
                                   inst.pred_classes.float()[:, None]], dim=1)
                        for inst in results]) if results else torch.zeros(0, 6)
    return packed, counts


def unpack_detections(packed: np.ndarray, counts: Sequence[int],
                      sizes: Sequence[tuple[int, int]]) -> list[ImageProposals]:
    """:func:`raw_detections` on the host -> per image (``sizes``: its (width, height)) proposals
    in the annotation convention (boxes 1-based inclusive, clipped to the image; HICO object
    indices)."""
    coco_to_hico = hico_metadata().coco80_to_hico
    ends = np.cumsum([0, *counts])
    out = []
    for a, b, (w, h) in zip(ends[:-1], ends[1:], sizes):
        rows = packed[a:b]
        labels = coco_to_hico[rows[:, 5].astype(np.int64) + 1]
        out.append(ImageProposals(continuous_to_inclusive(rows[:, :4], w, h), rows[:, 4], labels))
    return out


def detect_batch(model, inputs: Sequence[dict[str, Any]]) -> list[ImageProposals]:
    """Detections of a batch of :class:`Detectron2Input` dicts, in the annotation convention
    (boxes 1-based inclusive, clipped to each image; HICO object indices), brought to the host
    in one copy."""
    packed, counts = raw_detections(model, inputs)
    return unpack_detections(packed.cpu().numpy(), counts,
                             [(inp["width"], inp["height"]) for inp in inputs])
