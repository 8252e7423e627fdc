"""Box utilities for ``[x1, y1, x2, y2]`` boxes in the annotation convention.

The HICO-DET files use 1-based, inclusive pixel coordinates: a box covers ``x2 - x1 + 1``
pixels horizontally. IoU follows the official evaluation code (``VOCevaldet_bboxpair.m``),
including its ``+1`` on widths, heights and intersections and its order of operations, so
that overlaps of exactly 0.5 come out the same bit for bit.
"""

from __future__ import annotations

import numpy as np

PIXEL_OFFSET = 1.0  # inclusive pixel convention: width = x2 - x1 + 1


def iou_inclusive(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of boxes ``a`` and ``b`` (both (N, 4)), +1 pixel convention -> (N,) float64.

    Returns 0 where the boxes do not intersect.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + PIXEL_OFFSET
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + PIXEL_OFFSET
    inter = iw * ih
    union = ((a[:, 2] - a[:, 0] + PIXEL_OFFSET) * (a[:, 3] - a[:, 1] + PIXEL_OFFSET)
             + (b[:, 2] - b[:, 0] + PIXEL_OFFSET) * (b[:, 3] - b[:, 1] + PIXEL_OFFSET)) - inter
    hit = (iw > 0) & (ih > 0)
    out = np.zeros(len(a), dtype=np.float64)
    np.divide(inter, union, out=out, where=hit)
    return out


def iou_matrix_inclusive(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (N, 4) with every box of ``b`` (M, 4) -> (N, M) float64."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n, m = len(a), len(b)
    return iou_inclusive(np.repeat(a, m, axis=0), np.tile(b, (n, 1))).reshape(n, m)


def to_zero_based(boxes: np.ndarray) -> np.ndarray:
    """Annotation convention (1-based) -> the 0-based convention of the official result files."""
    return np.asarray(boxes, dtype=np.float64) - PIXEL_OFFSET


def to_one_based(boxes: np.ndarray) -> np.ndarray:
    """0-based boxes (official result files) -> the annotation convention, as MATLAB's ``+ 1``."""
    return np.asarray(boxes, dtype=np.float64) + PIXEL_OFFSET


def well_ordered(boxes: np.ndarray) -> np.ndarray:
    """(N,) bool: finite coordinates with ``x1 <= x2`` and ``y1 <= y2`` for boxes (N, 4)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    finite = np.isfinite(boxes).all(axis=1)
    return finite & (boxes[:, 0] <= boxes[:, 2]) & (boxes[:, 1] <= boxes[:, 3])


def inside_image(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """(N,) bool: boxes (N, 4) lie in ``[1, width] x [1, height]`` (1-based inclusive pixels)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return ((boxes[:, 0] >= 1) & (boxes[:, 1] >= 1)
            & (boxes[:, 2] <= width) & (boxes[:, 3] <= height))
