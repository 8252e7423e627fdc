"""The official HICO-DET evaluation (``shared/hicodet/PROTOCOL.md``), vectorised.

Equal, class by class, to ywchao/ho-rcnn ``eval_one.m`` + ``VOCevaldet_bboxpair.m`` under
MATLAB. The greedy matching is sequential in the official code, but its outcome has a closed
form that numpy computes at once: every detection's best GT pair (largest overlap, first on
ties) does not depend on the order, and a detection is a true positive exactly when its
overlap reaches the threshold and it is the first detection, in the sorted order of its class,
whose best pair is that GT pair. Known-Object only removes detections from images without GT
of the class (all false positives that matched nothing), so one matching serves both settings.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from hoi.data.annotations import GroundTruth, ground_truth_arrays, load_annotations
from hoi.data.boxes import iou_inclusive
from hoi.evaluation.hoi_results import HOIResults
from hoi.evaluation.map_scores import SETTINGS, EvalResult, SettingResult

IOU_THRESHOLD = 0.5
RECALL_STEP = 0.1
MATCH_CHUNK = 1 << 18  # detections matched at once


def matlab_colon(start: float, step: float, stop: float) -> np.ndarray:
    """The values of MATLAB's ``start:step:stop``: the first half as ``start + k*step``, the
    second half as ``stop - (n-k)*step`` (so ``0:0.1:1`` holds 0.30000000000000004 and 0.6)."""
    n = int(np.floor((stop - start) / step + 1e-10))
    k = np.arange(n + 1)
    return np.where(k <= n / 2, start + k * step, stop - (n - k) * step)


def recall_thresholds(step: float = RECALL_STEP) -> np.ndarray:
    """The 11 recall thresholds of the official 11-point AP (``0:0.1:1``)."""
    return matlab_colon(0.0, step, 1.0)


@dataclass(frozen=True)
class Matching:
    """Detections in evaluation order with their outcome.

    ``order`` (M,) rows of the detection set, sorted by class, then descending score, then image,
    then row; ``tp`` (M,) bool in that order; ``overlap`` (M,) best min(IoU_h, IoU_o) (-inf where
    the image has no GT pair of the class); ``gt_index`` (M,) that GT pair (-1 where none).
    """

    order: np.ndarray
    tp: np.ndarray
    overlap: np.ndarray
    gt_index: np.ndarray


def match_detections(gt: GroundTruth, det: HOIResults, iou_threshold: float = IOU_THRESHOLD,
                     chunk_size: int = MATCH_CHUNK) -> Matching:
    """Assign every detection to GT as the official greedy matching does (see module docstring)."""
    n_img = np.int64(max(gt.num_images, 1))
    order = np.lexsort((det.image_index, -det.score, det.hoi))
    d_img = det.image_index[order]
    d_key = det.hoi[order] * n_img + d_img
    g_key = gt.hoi * n_img + gt.image_index
    g_order = np.argsort(g_key, kind="stable")  # stable: GT pairs keep file order within a key
    g_sorted = g_key[g_order]
    start = np.searchsorted(g_sorted, d_key, side="left")
    count = np.searchsorted(g_sorted, d_key, side="right") - start

    m = len(order)
    overlap = np.full(m, -np.inf)
    gt_index = np.full(m, -1, dtype=np.int64)
    boxes_h, boxes_o = det.boxes_h[order], det.boxes_o[order]  # gathered once, in sorted order
    for lo in range(0, m, chunk_size):  # chunks bound the memory of the (detection, GT) rows
        hi = min(m, lo + chunk_size)
        cnt = count[lo:hi]
        total = int(cnt.sum())
        if total == 0:
            continue
        # one row per (detection, GT pair of its class in its image)
        seg_start = np.cumsum(cnt) - cnt
        pair_det = np.repeat(np.arange(lo, hi), cnt)
        within = np.arange(total) - np.repeat(seg_start, cnt)
        pair_gt = g_order[np.repeat(start[lo:hi], cnt) + within]
        ov = np.minimum(iou_inclusive(boxes_h[pair_det], gt.boxes_h[pair_gt]),
                        iou_inclusive(boxes_o[pair_det], gt.boxes_o[pair_gt]))
        has_gt = cnt > 0
        seg = seg_start[has_gt]
        best = np.maximum.reduceat(ov, seg)
        is_best = ov == np.repeat(best, cnt[has_gt])
        first = np.minimum.reduceat(np.where(is_best, np.arange(total), total), seg)
        idx = np.flatnonzero(has_gt) + lo
        overlap[idx] = best
        gt_index[idx] = pair_gt[first]

    tp = np.zeros(m, dtype=bool)
    hit = np.flatnonzero(overlap >= iou_threshold)
    if len(hit):
        _, first_use = np.unique(gt_index[hit], return_index=True)  # earliest claim wins
        tp[hit[first_use]] = True
    return Matching(order, tp, overlap, gt_index)


def average_precision_11pt(tp: np.ndarray, npos: int,
                           thresholds: np.ndarray) -> tuple[float, float]:
    """11-point interpolated AP and final recall of one class, as ``VOCevaldet_bboxpair.m``.

    ``tp`` (K,) bool in evaluation order; ``npos`` the class's number of GT pairs.
    """
    if len(tp) == 0 or npos == 0:
        return 0.0, 0.0
    ctp = np.cumsum(tp, dtype=np.float64)
    cfp = np.cumsum(~tp, dtype=np.float64)
    rec = ctp / npos
    prec = ctp / (cfp + ctp)
    suffix_max = np.maximum.accumulate(prec[::-1])[::-1]
    first = np.searchsorted(rec, thresholds, side="left")  # rec is non-decreasing
    ap = 0.0
    for k in first:  # summed in the official order, one threshold at a time
        ap = ap + (float(suffix_max[k]) if k < len(rec) else 0.0) / len(thresholds)
    return ap, float(rec[-1])


def known_object_images(gt: GroundTruth, num_objects: int) -> np.ndarray:
    """(num_objects, N) bool: image i contains object o (a GT pair of an HOI with object o)."""
    out = np.zeros((num_objects, max(gt.num_images, 1)), dtype=bool)
    out[gt.object, gt.image_index] = True
    return out[:, : gt.num_images]


def known_object_images_from_labels(labels: np.ndarray, hoi_object: np.ndarray,
                                    num_objects: int) -> np.ndarray:
    """(num_objects, N) bool from HICO image-level labels (600, N) of ``anno.mat``: the image set
    of the official code (any HOI of the object labelled 1)."""
    positive = np.asarray(labels) == 1
    out = np.zeros((num_objects, positive.shape[1]), dtype=bool)
    np.logical_or.at(out, np.asarray(hoi_object), positive)
    return out


def _split(data: Mapping[str, Any], key: str) -> np.ndarray:
    return np.asarray(sorted(int(c) for c in data[key]), dtype=np.int64)


def per_class_ap(tp: np.ndarray, hoi_sorted: np.ndarray, npos: np.ndarray,
                 thresholds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """11-point AP and final recall (C,) of every class from outcomes in evaluation order.

    ``tp`` (K,) bool and ``hoi_sorted`` (K,) the detections' classes, both in the order of
    :class:`Matching` (class, then descending score; any subset of it keeps that order);
    ``npos`` (C,) GT pairs per class.
    """
    thresholds = recall_thresholds() if thresholds is None else thresholds
    num_classes = len(npos)
    bounds = np.searchsorted(hoi_sorted, np.arange(num_classes + 1))
    ap = np.zeros(num_classes)
    rec = np.zeros(num_classes)
    for c in range(num_classes):
        ap[c], rec[c] = average_precision_11pt(tp[bounds[c]:bounds[c + 1]], int(npos[c]),
                                               thresholds)
    return ap, rec


def setting_result(data: Mapping[str, Any], ap: np.ndarray, rec: np.ndarray, npos: np.ndarray,
                   classes: str = "all") -> SettingResult:
    """Per-class ``ap`` / ``rec`` (C,) with the annotation's rare / non-rare splits; ``classes``
    "annotated" restricts the means to the classes with GT pairs (``npos`` (C,) > 0)."""
    rare, non_rare = _split(data, "rare"), _split(data, "non_rare")
    if classes == "annotated":
        present = np.flatnonzero(npos > 0)
        return SettingResult(ap, rec, np.intersect1d(rare, present),
                             np.intersect1d(non_rare, present),
                             classes=present)
    return SettingResult(ap, rec, rare, non_rare)


class Prepared(NamedTuple):
    """One evaluation's inputs: the GT pairs, the detections checked and in annotation order,
    the object of each HOI class (C,) and the GT pairs per class (C,)."""

    gt: GroundTruth
    det: HOIResults
    hoi_object: np.ndarray
    npos: np.ndarray


def prepare(data: Mapping[str, Any], detections: HOIResults) -> Prepared:
    """GT arrays of annotation dict ``data`` and ``detections`` mapped to its image order and
    checked (:meth:`HOIResults.check`); shared by the evaluator, PR curves and diagnosis."""
    corr = np.asarray(data["correspondence"], dtype=np.int64).reshape(-1, 3)
    hoi_object = np.zeros(len(corr), dtype=np.int64)
    hoi_object[corr[:, 0]] = corr[:, 1]
    gt = ground_truth_arrays(data)
    det = detections.to_annotation_order(data["filenames"])
    det.check(gt.num_images, hoi_object)
    return Prepared(gt, det, hoi_object, np.bincount(gt.hoi, minlength=len(corr)))


def evaluate(
    anno: Mapping[str, Any] | str | Path,
    detections: HOIResults,
    setting: str | Sequence[str] = "both",
    iou_threshold: float = IOU_THRESHOLD,
    ko_images: np.ndarray | None = None,
    classes: str = "all",
) -> EvalResult:
    """HICO-DET mAP of ``detections`` against the annotation file ``anno``.

    Args:
        anno: annotation dict or path (docs/architecture.md#annotation-files); its ``rare`` /
        ``non_rare`` lists define
            the splits.
        detections: results; boxes 1-based, ``image_index`` into the annotation's images (or
            into ``detections.filenames``, mapped by name).
        setting: "default", "known_object", "both" or a list of them.
        iou_threshold: minimum of min(IoU_h, IoU_o) for a true positive.
        ko_images: optional (80, N) bool image sets for Known-Object (e.g. from ``anno.mat``
            via :func:`known_object_images_from_labels`); default: derived from the GT.
        classes: "all" (the official protocol: mean over every class, a class without GT
            scores 0) or "annotated" (means over the classes with at least one GT pair only;
            for small or synthetic test sets that cover a few classes).

    Returns:
        :class:`EvalResult` with per-class AP and recall (600,) per setting.
    """
    data = load_annotations(anno)
    if setting == "both":
        settings = list(SETTINGS)
    else:
        settings = [setting] if isinstance(setting, str) else list(setting)
    for s in settings:
        if s not in SETTINGS:
            raise ValueError(f"unknown setting {s!r}; expected one of {list(SETTINGS)} or 'both'")
    num_objects = len(data["objects"])
    gt, det, hoi_object, npos = prepare(data, detections)
    if len(det) == 0:
        warnings.warn("the detection set is empty: every AP is 0", stacklevel=2)
    if classes not in ("all", "annotated"):
        raise ValueError(f"classes must be 'all' or 'annotated', got {classes!r}")
    if (npos == 0).any() and classes == "all":
        warnings.warn(f"{int((npos == 0).sum())} HOI classes have no GT pair in the annotation "
                      "file; their AP and recall are 0 (as in the official code)", stacklevel=2)

    match = match_detections(gt, det, iou_threshold)
    hoi_sorted = det.hoi[match.order]
    img_sorted = det.image_index[match.order]
    thresholds = recall_thresholds()
    if ko_images is None:
        ko_images = known_object_images(gt, num_objects)
    elif ko_images.shape != (num_objects, gt.num_images):
        raise ValueError(f"ko_images has shape {ko_images.shape}, expected ({num_objects}, "
                         f"{gt.num_images})")
    else:
        # the official code asserts that no GT lies outside the Known-Object image set
        outside = ~ko_images[gt.object, gt.image_index]
        if outside.any():
            raise ValueError(f"{int(outside.sum())} GT pairs lie in images outside their object's "
                             "Known-Object image set")

    results = {}
    for s in settings:
        keep = np.ones(len(hoi_sorted), dtype=bool) if s == "default" else \
            ko_images[hoi_object[hoi_sorted], img_sorted]
        ap, rec = per_class_ap(match.tp[keep], hoi_sorted[keep], npos, thresholds)
        results[s] = setting_result(data, ap, rec, npos, classes)
    info = {"num_detections": len(det), "num_gt_pairs": int(len(gt.hoi)),
            "iou_threshold": iou_threshold,
            "classes": classes}
    return EvalResult(results, info)
