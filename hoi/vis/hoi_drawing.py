"""HOI detections drawn on their images: per pair a human box, an object box, a line between
their centres and the label "verb object score"; ground-truth pairs optionally beside them in
another colour. Pairs that share both boxes (several HOI classes of one human-object pair) are
drawn once with one label line per class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from hoi.data.annotations import load_annotations
from hoi.data.images import load_rgb
from hoi.data.metadata import HicoMetadata, hico_metadata
from hoi.errors import UserError
from hoi.evaluation.hoi_results import HOIResults
from hoi.vis.common import new_figure, safe_stem, save_figure

# tab10 without its green, which is the ground truth's colour
PAIR_COLORS = ("#1f77b4", "#ff7f0e", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
               "#bcbd22")
GT_COLOR = "#2ca02c"
AUTO_LONG_SIDE = 640  # images are enlarged to this long side so that labels stay readable


class VisError(UserError, ValueError):
    """Input that cannot be drawn; the message names the file and what was expected."""


@dataclass
class PairDrawing:
    """One human-object pair to draw: boxes (4,) 1-based inclusive, one label line per HOI."""

    box_h: np.ndarray
    box_o: np.ndarray
    labels: list[str] = field(default_factory=list)


def hoi_label(hoi: int, meta: HicoMetadata, score: float | None = None) -> str:
    """'verb object score' (or 'verb object' without a score) of HOI class ``hoi``."""
    text = f"{meta.verbs[meta.hoi_verb[hoi]]} {meta.objects[meta.hoi_object[hoi]]}"
    return text if score is None else f"{text} {score:.2f}"


def group_pairs(boxes_h: np.ndarray, boxes_o: np.ndarray,
                labels: Sequence[str]) -> list[PairDrawing]:
    """Merge rows with identical (human box, object box) into one :class:`PairDrawing`, in
    order of first appearance. ``boxes_h``, ``boxes_o``: (M, 4); ``labels``: (M,)."""
    pairs: dict[tuple[float, ...], PairDrawing] = {}
    for bh, bo, label in zip(np.asarray(boxes_h, float), np.asarray(boxes_o, float), labels):
        key = (*bh.round(2), *bo.round(2))
        if key not in pairs:
            pairs[key] = PairDrawing(bh, bo)
        pairs[key].labels.append(label)
    return list(pairs.values())


def _centre(box: np.ndarray) -> tuple[float, float]:
    # 1-based inclusive pixels -> the 0-based pixel-centre coordinates of imshow
    return (box[0] + box[2]) / 2 - 1, (box[1] + box[3]) / 2 - 1


def _rectangle(box: np.ndarray, color: str, linestyle: str, linewidth: float) -> Rectangle:
    x1, y1, x2, y2 = box
    return Rectangle((x1 - 1.5, y1 - 1.5), x2 - x1 + 1, y2 - y1 + 1, fill=False,
                     edgecolor=color, linestyle=linestyle, linewidth=linewidth)


def draw_pairs(ax: Axes, pairs: Sequence[PairDrawing], colors: Sequence[str] | str,
               linestyle: str = "-", linewidth: float = 2.0, fontsize: float = 7.0) -> None:
    """Draw ``pairs`` on ``ax`` (an image shown with imshow in pixel coordinates)."""
    for k, pair in enumerate(pairs):
        color = colors if isinstance(colors, str) else colors[k % len(colors)]
        ax.add_patch(_rectangle(pair.box_h, color, linestyle, linewidth))
        ax.add_patch(_rectangle(pair.box_o, color, linestyle, linewidth))
        (xh, yh), (xo, yo) = _centre(pair.box_h), _centre(pair.box_o)
        ax.plot([xh, xo], [yh, yo], color=color, linestyle=linestyle, linewidth=linewidth * 0.75)
        ax.plot([xh], [yh], marker="o", color=color, markersize=linewidth * 2.5)
        ax.plot([xo], [yo], marker="s", color=color, markersize=linewidth * 2.5)
        ax.text((xh + xo) / 2, (yh + yo) / 2, "\n".join(pair.labels), color="white",
                fontsize=fontsize, ha="center", va="center", clip_on=True,
                bbox={"facecolor": color, "alpha": 0.75, "edgecolor": "none", "pad": 1.5})


def render_hoi_image(image: Image.Image | np.ndarray, detections: Sequence[PairDrawing] = (),
                     ground_truth: Sequence[PairDrawing] = (), scale: float = 1.0,
                     title: str | None = None) -> Figure:
    """A figure of exactly the image's size times ``scale`` with the pairs drawn over it.

    ``image``: PIL image or (H, W, 3) uint8. Detections get one colour per pair (solid),
    ground truth :data:`GT_COLOR` (dashed, below the detections).
    """
    arr = np.asarray(image)
    h, w = arr.shape[:2]
    fig = new_figure(round(w * scale), round(h * scale))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(arr, interpolation="nearest" if scale == 1 else "bilinear")
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_axis_off()
    linewidth = max(1.0, 1.5 * scale)
    draw_pairs(ax, ground_truth, GT_COLOR, linestyle="--", linewidth=linewidth)
    draw_pairs(ax, detections, PAIR_COLORS, linewidth=linewidth)
    if title:
        ax.text(2, 2, title, color="white", fontsize=7, ha="left", va="top", clip_on=True,
                bbox={"facecolor": "black", "alpha": 0.6, "edgecolor": "none", "pad": 1.5})
    return fig


def top_detections(detections: HOIResults, image_index: int, top: int,
                   min_score: float) -> np.ndarray:
    """Rows of image ``image_index`` with score >= ``min_score``, the ``top`` best first."""
    rows = np.flatnonzero((detections.image_index == image_index) & (detections.score >= min_score))
    rows = rows[np.argsort(-detections.score[rows], kind="stable")]
    return rows[:top]


def save_detection_images(
    detections: HOIResults | str | Path,
    image_dir: str | Path,
    out_dir: str | Path,
    anno: Mapping[str, Any] | str | Path | None = None,
    top: int = 5,
    min_score: float = 0.1,
    max_images: int = 8,
    scale: float | None = None,
    images: Sequence[str] | None = None,
) -> list[Path]:
    """Draw the ``top`` best HOI detections of up to ``max_images`` images; one PNG per image.

    Args:
        detections: results (docs/architecture.md#results-files) or the path of a results file. Its
        ``filenames``
            name the images; without them the annotation file's order is used.
        image_dir: folder holding the images.
        out_dir: where ``<image stem>_hoi.png`` files are written.
        anno: optional annotation dict or file: its GT pairs are drawn dashed in green.
        top, min_score: per image, at most ``top`` rows with score >= ``min_score``.
        max_images: images drawn: the first (in file order) that have such rows.
        scale: output size / image size; None: enlarge small images to a long side of 640 px.
        images: draw these file names (in this order) instead of choosing.

    Returns:
        The written PNG paths.
    """
    source = str(detections) if isinstance(detections, (str, Path)) else "detections"
    det = HOIResults.load(detections) if isinstance(detections, (str, Path)) else detections
    meta = hico_metadata()
    data = load_annotations(anno) if anno is not None else None
    if data is not None:
        det = det.to_annotation_order(data["filenames"], source)
        filenames = list(data["filenames"])
    elif det.filenames is not None:
        filenames = list(det.filenames)
    else:
        raise VisError(f"{source}: the results hold no 'filenames'; pass the annotation file "
                       "(--anno) so that image_index can be mapped to image files")
    bad = (det.image_index < 0) | (det.image_index >= len(filenames))
    if bad.any():
        raise VisError(f"{source}: image_index {det.image_index[bad][:5].tolist()} out of range; "
                       f"expected 0..{len(filenames) - 1}")
    bad = (det.hoi < 0) | (det.hoi >= len(meta.hoi_names))
    if bad.any():
        raise VisError(f"{source}: hoi {det.hoi[bad][:5].tolist()} out of range; expected 0..599")

    if images is not None:
        position = {name: i for i, name in enumerate(filenames)}
        unknown = [n for n in images if n not in position]
        if unknown:
            raise VisError(f"{source}: images {unknown[:5]} are not among its {len(filenames)} "
                           "file names")
        chosen = [position[n] for n in images]
    else:
        with_rows = np.unique(det.image_index[det.score >= min_score])
        chosen = [int(i) for i in with_rows[:max_images]]
        if not chosen:
            raise VisError(f"{source}: no detection has a score >= {min_score}; nothing to draw "
                           "(lower --min-score)")

    image_dir = Path(image_dir)
    missing = [filenames[i] for i in chosen if not (image_dir / filenames[i]).is_file()]
    if missing:
        raise VisError(f"{source}: {len(missing)} of the {len(chosen)} images to draw are not in "
                       f"the image folder {image_dir}, e.g. {missing[:3]}")

    written = []
    for i in chosen:
        name = filenames[i]
        gt = data["annotation"][i] if data is not None else None
        written.append(save_detection_image(image_dir / name, det,
                                            top_detections(det, i, top, min_score),
                                            Path(out_dir), gt, scale, meta))
    return written


def save_detection_image(path: Path, det: HOIResults, rows: np.ndarray, out_dir: Path,
                         gt: Mapping[str, Any] | None = None, scale: float | None = None,
                         meta: HicoMetadata | None = None) -> Path:
    """Draw rows ``rows`` of ``det`` (and the GT pairs of annotation record ``gt``, dashed) on the
    image ``path``; writes and returns ``out_dir/<image stem>_hoi.png``."""
    meta = meta or hico_metadata()
    image = load_rgb(path)
    labels = [hoi_label(int(det.hoi[r]), meta, float(det.score[r])) for r in rows]
    pairs = group_pairs(det.boxes_h[rows], det.boxes_o[rows], labels)
    gt_pairs: list[PairDrawing] = []
    if gt is not None:
        gt_pairs = group_pairs(np.asarray(gt["boxes_h"], float).reshape(-1, 4),
                               np.asarray(gt["boxes_o"], float).reshape(-1, 4),
                               [hoi_label(int(c), meta) + " (GT)" for c in gt["hoi"]])
    s = scale if scale is not None else max(1.0, AUTO_LONG_SIDE / max(image.size))
    fig = render_hoi_image(image, pairs, gt_pairs, scale=s, title=path.name)
    return save_figure(fig, out_dir / f"{safe_stem(path.stem)}_hoi.png")
