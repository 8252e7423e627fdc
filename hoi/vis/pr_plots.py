"""Precision-recall curves of HOI classes, with the evaluator's 11-point AP in the legend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from hoi.data.annotations import ground_truth_arrays, load_annotations
from hoi.data.metadata import hico_metadata
from hoi.evaluation.hico_det import IOU_THRESHOLD, recall_thresholds
from hoi.evaluation.hoi_results import HOIResults
from hoi.evaluation.pr_curves import PRCurve, precision_recall_curves
from hoi.vis.common import new_figure, save_figure
from hoi.vis.hoi_drawing import VisError

CURVES_PER_FIGURE = 8
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def most_annotated_classes(anno: Mapping[str, Any] | str | Path, top: int) -> list[int]:
    """The ``top`` HOI classes with the most GT pairs (ties: lower index first)."""
    gt = ground_truth_arrays(load_annotations(anno))
    counts = np.bincount(gt.hoi, minlength=600)
    order = np.lexsort((np.arange(len(counts)), -counts))
    return [int(c) for c in order[:top] if counts[c] > 0]


def plot_pr_curves(curves: Sequence[PRCurve], names: Sequence[str], title: str = "") -> Figure:
    """One figure: the PR curve of each class (precision after each detection, in score order)
    and its 11 interpolated points (markers);
    legend "name (AP xx.xx, n GT)" with AP in percent."""
    fig = new_figure(640, 480)
    ax = fig.add_subplot(1, 1, 1)
    thresholds = recall_thresholds()
    for k, (curve, name) in enumerate(zip(curves, names)):
        color = PALETTE[k % len(PALETTE)]
        label = f"{name} (AP {100 * curve.ap:.2f}, {curve.npos} GT)"
        if len(curve.recall):
            ax.plot(curve.recall, curve.precision, color=color, linewidth=1.5, label=label)
        else:
            ax.plot([], [], color=color, label=label + ", no detection")
        ax.plot(thresholds, curve.interpolated, linestyle="none", marker="o", markersize=3,
                color=color)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(title or "precision-recall per HOI class (dots: 11-point interpolation)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def save_pr_curves(
    anno: Mapping[str, Any] | str | Path,
    detections: HOIResults | str | Path,
    out_dir: str | Path,
    classes: Sequence[int] | None = None,
    top: int = 6,
    setting: str = "default",
    iou_threshold: float = IOU_THRESHOLD,
) -> list[Path]:
    """PR curves of ``classes`` (default: the ``top`` most annotated) into ``out_dir``.

    Writes ``pr_<setting>.png`` (``pr_<setting>_<k>.png`` when more than
    :data:`CURVES_PER_FIGURE` classes) and returns the paths.
    """
    det = HOIResults.load(detections) if isinstance(detections, (str, Path)) else detections
    data = load_annotations(anno)
    if classes is None:
        classes = most_annotated_classes(data, top)
        if not classes:
            raise VisError(f"{anno if isinstance(anno, (str, Path)) else 'annotations'}: no GT "
                           "pair; no class to draw")
    curves = precision_recall_curves(data, det, list(classes), setting, iou_threshold)
    meta = hico_metadata()
    chunks = [curves[i:i + CURVES_PER_FIGURE] for i in range(0, len(curves), CURVES_PER_FIGURE)]
    written = []
    for k, chunk in enumerate(chunks):
        names = [f"{c.hoi_class}: {meta.hoi_names[c.hoi_class]}" for c in chunk]
        suffix = f"_{k + 1}" if len(chunks) > 1 else ""
        fig = plot_pr_curves(chunk, names, f"precision-recall, {setting} setting (dots: 11-point "
                                           "interpolation)")
        written.append(save_figure(fig, Path(out_dir) / f"pr_{setting}{suffix}.png"))
    return written
