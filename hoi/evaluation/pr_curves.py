"""Precision-recall curves of single HOI classes, from the evaluator's own matching.

The curves use :func:`hoi.evaluation.hico_det.match_detections` (the official greedy matching)
and the same Known-Object filtering as :func:`hoi.evaluation.evaluate`, so the 11-point AP of a
curve is, bit for bit, the AP that the evaluator reports for that class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hoi.data.annotations import load_annotations
from hoi.evaluation.hico_det import (
    IOU_THRESHOLD,
    average_precision_11pt,
    known_object_images,
    match_detections,
    prepare,
    recall_thresholds,
)
from hoi.evaluation.hoi_results import HOIResults
from hoi.evaluation.map_scores import SETTINGS


@dataclass(frozen=True)
class PRCurve:
    """The precision-recall curve of one HOI class in one setting.

    Attributes:
        hoi_class: HOI index 0..599.
        setting: "default" or "known_object".
        score: (K,) detection scores in evaluation order (descending).
        tp: (K,) bool, true positive at each rank.
        precision, recall: (K,) after the k-th detection (empty when K == 0).
        npos: number of GT pairs of the class.
        ap: 11-point interpolated AP (fraction), equal to the evaluator's.
        interpolated: (11,) max precision at recall >= t for the official thresholds t = 0:0.1:1.
    """

    hoi_class: int
    setting: str
    score: np.ndarray
    tp: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    npos: int
    ap: float
    interpolated: np.ndarray

    @property
    def final_recall(self) -> float:
        return float(self.recall[-1]) if len(self.recall) else 0.0


def _interpolated(precision: np.ndarray, recall: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    if len(precision) == 0:
        return np.zeros(len(thresholds))
    suffix_max = np.maximum.accumulate(precision[::-1])[::-1]
    first = np.searchsorted(recall, thresholds, side="left")
    return np.array([suffix_max[k] if k < len(recall) else 0.0 for k in first])


def precision_recall_curves(
    anno: Mapping[str, Any] | str | Path,
    detections: HOIResults,
    hoi_classes: Sequence[int],
    setting: str = "default",
    iou_threshold: float = IOU_THRESHOLD,
    ko_images: np.ndarray | None = None,
) -> list[PRCurve]:
    """PR curves of several HOI classes, from one matching of the whole detection set.

    Args:
        anno: annotation dict or path (docs/architecture.md#annotation-files).
        detections: results (docs/architecture.md#results-files); mapped to the annotation's images
        by file name.
        hoi_classes: HOI indices 0..599.
        setting: "default" or "known_object".
        iou_threshold: minimum min(IoU_h, IoU_o) of a true positive.
        ko_images: optional (80, N) bool Known-Object image sets (as in :func:`evaluate`).
    """
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; expected one of {list(SETTINGS)}")
    data = load_annotations(anno)
    num_classes = len(data["correspondence"])
    bad = [int(c) for c in hoi_classes if not 0 <= int(c) < num_classes]
    if bad:
        raise ValueError(f"HOI classes {bad} out of range; expected 0..{num_classes - 1}")
    gt, det, hoi_object, npos = prepare(data, detections)

    match = match_detections(gt, det, iou_threshold)
    hoi_sorted = det.hoi[match.order]
    keep = np.ones(len(hoi_sorted), dtype=bool)
    if setting == "known_object":
        if ko_images is None:
            ko_images = known_object_images(gt, len(data["objects"]))
        keep = ko_images[hoi_object[hoi_sorted], det.image_index[match.order]]
    hoi_kept = hoi_sorted[keep]
    tp_kept = match.tp[keep]
    score_kept = det.score[match.order][keep]
    bounds = np.searchsorted(hoi_kept, np.arange(num_classes + 1))  # hoi_sorted is sorted by class
    thresholds = recall_thresholds()

    curves = []
    for c in hoi_classes:
        c = int(c)
        lo, hi = bounds[c], bounds[c + 1]
        tp = tp_kept[lo:hi]
        n = int(npos[c])
        if n > 0 and len(tp):
            ctp = np.cumsum(tp, dtype=np.float64)
            precision = ctp / np.arange(1, len(tp) + 1)
            recall = ctp / n
        else:
            precision = recall = np.zeros(0)
        ap, _ = average_precision_11pt(tp, n, thresholds)
        curves.append(PRCurve(c, setting, score_kept[lo:hi], tp, precision, recall, n, ap,
                              _interpolated(precision, recall, thresholds)))
    return curves


def precision_recall(
    anno: Mapping[str, Any] | str | Path,
    detections: HOIResults,
    hoi_class: int,
    setting: str = "default",
    iou_threshold: float = IOU_THRESHOLD,
    ko_images: np.ndarray | None = None,
) -> PRCurve:
    """The PR curve of one HOI class; see :func:`precision_recall_curves`."""
    return precision_recall_curves(anno, detections, [hoi_class], setting, iou_threshold,
                                   ko_images)[0]
