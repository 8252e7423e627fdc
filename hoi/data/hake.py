"""HAKE's re-release of the HICO-DET training split (``hico-det-instance-level.tar.gz``, or the
JSON inside it) -> an annotation dict in our schema (docs/architecture.md#annotation-files).

HAKE's file (DirtyHarryLYL/HAKE, ``Annotations/``) is a JSON object keyed by image name; each
value has ``labels``, one per human-object pair: ``hoi_id`` (1-based, official order),
``human_bbox`` / ``object_bbox`` (``[x1, y1, x2, y2]``, 1-based inclusive like the official
``anno_bbox.mat``), ``width`` and ``height`` of the image (part states are ignored). Images are
written in the official order (``list_train`` is ascending by file number, and the zero-padded
names sort the same way). HAKE holds 117,654 pairs, 217 fewer than the official 117,871 (in 36
classes, mostly ``no_interaction``); the official ``anno_bbox.mat`` is preferred when available.

485 images have no label, hence no size in the file. Their size comes from the images when a
folder is given (the JPEG header, no decoding); otherwise it is recorded as unknown,
:data:`UNKNOWN_SIZE` (``[0, 0]``), which the validator accepts only for images without pairs,
detect / extract replace by the decoded size, and training leaves out (with a log line).
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hoi.data.annotations import UNKNOWN_SIZE, AnnotationError, build_instances
from hoi.data.images import ImageError, read_image_size
from hoi.data.metadata import NUM_HOIS, hico_metadata

MEMBER_SUFFIX = "hico-det-training-set-instance-level.json"


def read_hake(path: str | Path) -> dict[str, Any]:
    """The HAKE JSON object (image name -> record), from the ``.tar.gz`` release or the JSON."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"HAKE annotation file not found: {path}")
    try:
        if path.name.endswith((".tar.gz", ".tgz", ".tar")):
            with tarfile.open(path) as tar:
                members = [m for m in tar.getmembers() if m.name.endswith(MEMBER_SUFFIX)]
                if len(members) != 1:
                    raise AnnotationError(f"{path}: expected one member ending in {MEMBER_SUFFIX}, "
                                          f"found {[m.name for m in tar.getmembers()][:5]}")
                data = json.load(tar.extractfile(members[0]))  # type: ignore[arg-type]
        else:
            with path.open(encoding="utf-8") as f:
                data = json.load(f)
    except (json.JSONDecodeError, tarfile.TarError, UnicodeDecodeError) as err:
        raise AnnotationError(f"{path}: not HAKE's instance-level JSON ({err})") from err
    if not isinstance(data, Mapping) or not data:
        raise AnnotationError(f"{path}: expected a JSON object keyed by image name")
    return dict(data)


def image_size(path: Path) -> tuple[int, int]:
    """[w, h] of an image from its header; the error names the file and why the size is needed."""
    try:
        return read_image_size(path)
    except ImageError as err:
        raise AnnotationError(f"{err} (needed for the size of an image without labels)") from err


def _image_record(source: str, name: str,
                  record: Any) -> tuple[dict[str, list], tuple[int, int] | None]:
    """The pair lists of one HAKE record and the [w, h] its labels give (None without labels)."""
    meta = hico_metadata()
    labels = record.get("labels") if isinstance(record, Mapping) else None
    if not isinstance(labels, list):
        raise AnnotationError(f"{source}: image {name}: expected an object with a 'labels' list")
    pairs: dict[str, list] = {"boxes_h": [], "boxes_o": [], "hoi": [], "object": [], "verb": []}
    sizes = set()
    for j, label in enumerate(labels):
        where = f"{source}: image {name}, label {j}"
        try:
            hoi = int(label["hoi_id"]) - 1
            box_h = [float(v) for v in label["human_bbox"]]
            box_o = [float(v) for v in label["object_bbox"]]
            sizes.add((int(label["width"]), int(label["height"])))
        except (KeyError, TypeError, ValueError) as err:
            raise AnnotationError(f"{where}: expected hoi_id, human_bbox, object_bbox, width, "
                                  f"height ({type(err).__name__}: {err})") from err
        if not 0 <= hoi < NUM_HOIS:
            raise AnnotationError(f"{where}: hoi_id {hoi + 1} out of range 1..{NUM_HOIS}")
        if len(box_h) != 4 or len(box_o) != 4:
            raise AnnotationError(f"{where}: expected boxes [x1, y1, x2, y2]")
        pairs["boxes_h"].append(box_h)
        pairs["boxes_o"].append(box_o)
        pairs["hoi"].append(hoi)
        pairs["object"].append(int(meta.hoi_object[hoi]))
        pairs["verb"].append(int(meta.hoi_verb[hoi]))
    if len(sizes) > 1:
        raise AnnotationError(f"{source}: image {name}: its labels give different sizes "
                              f"{sorted(sizes)}")
    return pairs, (sizes.pop() if sizes else None)


def hake_to_instances(data: Mapping[str, Any], source: str = "<hake>",
                      images: str | Path | None = None) -> tuple[dict[str, Any], list[int]]:
    """(annotation dict, indices of the images whose size is unknown).

    Images in ascending name order (= the official ``list_train`` order); HOI ids mapped to 0-based;
    boxes unchanged; rare / non-rare from this file's own pair counts (fewer than 10 = rare).
    Sizes come from the labels; for an image without labels from ``images/<name>`` when
    ``images`` is given, else :data:`UNKNOWN_SIZE`.
    """
    names = sorted(data)
    pairs, sizes, unknown = [], [], []
    for i, name in enumerate(names):
        p, size = _image_record(source, name, data[name])
        if size is None:
            size = image_size(Path(images) / name) if images is not None else UNKNOWN_SIZE
            if images is None:
                unknown.append(i)
        pairs.append(p)
        sizes.append(size)
    hoi = np.fromiter((h for p in pairs for h in p["hoi"]), dtype=np.int64)
    return build_instances(names, sizes, pairs, np.bincount(hoi, minlength=NUM_HOIS)), unknown


