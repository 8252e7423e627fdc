"""Read the detection files that ship with the official VSGNet code (``Object_Detections_hico``).

One JSON per image, ``HICO_{train,test}2015_%08d.json`` (the image name with ``.json``)::

    {"H": int, "W": int,
     "detections": [{"class_str": "dining table", "score": 0.93,
                     "box_coords": [top, left, bottom, right]}, ...]}

``box_coords`` are continuous pixel coordinates (the TensorFlow Object Detection API's ymin,
xmin, ymax, xmax, in pixels). They become our convention exactly as Detectron2's continuous
boxes do (``hoi.detector.continuous_to_inclusive``): ``x1 = left + 1, y1 = top + 1,
x2 = right, y2 = bottom``, clipped to the image. COCO class names (which may contain a space)
map to HICO-DET objects through their COCO id and the packaged COCO -> HICO table. Every
detection is kept: score thresholds and caps are the ``pairs`` config's job.

Order: each image's detections are stored in the order its file lists them, which is the order
the official code caps them in (first 15 humans, first 15 objects: ``pairs.cap_order=file``).
The TensorFlow Object Detection API writes them by descending score, and then the default
``pairs.cap_order=score`` keeps the same detections; the import checks this and prints how many
images' files are not sorted (:func:`unsorted_images`), the images where the two orders can
differ (when more than 15 detections pass a threshold).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hoi.data.cache import ImageProposals
from hoi.data.metadata import hico_metadata
from hoi.detector import DetectorError, continuous_to_inclusive

# COCO's 80 detection classes in contiguous-id order (1..80), as the TF Object Detection API names
# them
COCO80_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep",
    "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase",
    "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard",
    "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana",
    "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors",
    "teddy bear", "hair drier", "toothbrush",
)

EXPECTED = ('{"H": int, "W": int, "detections": [{"class_str": COCO name, "score": float, '
            '"box_coords": [top, left, bottom, right]}, ...]}')


def coco_name_to_hico() -> dict[str, int]:
    """COCO class name -> HICO object index, through the packaged COCO-80 -> HICO table."""
    table = hico_metadata().coco80_to_hico
    return {name: int(table[i + 1]) for i, name in enumerate(COCO80_NAMES)}


def read_vsgnet_file(path: Path, size: Sequence[int],
                     names: dict[str, int] | None = None) -> ImageProposals:
    """One VSGNet detection file -> all its detections in the annotation convention.

    Args:
        path: the image's JSON file.
        size: the annotation's ``[w, h]`` of that image; the file's ``W``/``H`` must agree.
        names: COCO name -> HICO object (default :func:`coco_name_to_hico`).
    """
    names = coco_name_to_hico() if names is None else names
    try:
        data = json.loads(path.read_text())
        height, width = int(data["H"]), int(data["W"])
        dets = list(data["detections"])
        coords = np.asarray([d["box_coords"] for d in dets], dtype=np.float64).reshape(-1, 4)
        scores = np.asarray([d["score"] for d in dets], dtype=np.float32).reshape(-1)
        classes = [str(d["class_str"]) for d in dets]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise DetectorError(f"{path}: expected a VSGNet detection file {EXPECTED} "
                            f"({err!r})") from err
    w, h = int(size[0]), int(size[1])
    if (width, height) != (w, h):
        raise DetectorError(f"{path}: W x H = {width} x {height}, but the annotation's image is "
                            f"{w} x {h}")
    labels = np.empty(len(dets), dtype=np.int64)
    for k, name in enumerate(classes):
        if name not in names:
            raise DetectorError(f"{path}: detection {k}: class_str {name!r} is not a COCO class "
                                "name")
        labels[k] = names[name]
    top, left, bottom, right = coords.T
    bad = ~np.isfinite(coords).all(axis=1) | (right < left) | (bottom < top)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise DetectorError(f"{path}: detection {k}: box_coords {coords[k].tolist()} is not [top, "
                            "left, bottom, right] with top <= bottom, left <= right")
    boxes = continuous_to_inclusive(np.stack([left, top, right, bottom], axis=1), w, h)
    return ImageProposals(boxes, scores, labels)


def read_vsgnet_dir(folder: Path, filenames: Sequence[str], sizes: Sequence[Sequence[int]],
                    allow_missing: bool = False) -> list[ImageProposals]:
    """The detections of every image (``folder/<image name without extension>.json``), in order."""
    names = coco_name_to_hico()
    out = []
    for name, size in zip(filenames, sizes):
        path = Path(folder) / (Path(name).stem + ".json")
        if not path.is_file():
            if not allow_missing:
                raise DetectorError(f"no detections file for this image: {path} (use "
                                    "--allow-missing to accept that)")
            out.append(ImageProposals(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                                      np.zeros(0, np.int64)))
            continue
        out.append(read_vsgnet_file(path, size, names))
    return out


def unsorted_images(dets: Sequence[ImageProposals]) -> int:
    """How many images list their detections not in descending score order."""
    return sum(int(np.any(np.diff(d.scores) > 0)) for d in dets)
