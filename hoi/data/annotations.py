"""HICO-DET annotation files (``instances_{train,test}2015.json``,
docs/architecture.md#annotation-files).

The schema is the one of fredzzhang/hicodet: ``filenames``, ``size`` ([w, h]), ``annotation``
(per image: ``boxes_h``, ``boxes_o``, ``hoi``, ``object``, ``verb``), ``empty``, ``objects``,
``verbs``, ``correspondence``, ``rare``, ``non_rare``. Boxes are 1-based inclusive pixels.

:func:`load_annotations` checks the structure (keys, types, lengths) and fails with a message
that names the file, the record and the field; :func:`hoi.data.validate_annotations` checks the
content (box ranges, class consistency).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hoi.data.metadata import hico_metadata, rare_split
from hoi.errors import UserError

# ``size`` of an image whose size no source gave (only for images without pairs)
UNKNOWN_SIZE = (0, 0)
TOP_KEYS = ("filenames", "size", "annotation", "empty", "objects", "verbs", "correspondence",
            "rare", "non_rare")
PAIR_KEYS = ("boxes_h", "boxes_o", "hoi", "object", "verb")


class AnnotationError(UserError, ValueError):
    """An annotation file that does not follow the schema; the message names file, record, field."""


def _fail(source: str, where: str, what: str) -> AnnotationError:
    return AnnotationError(f"{source}: {where}: {what}")


def check_schema(data: Any, source: str = "<annotations>") -> None:
    """Raise :class:`AnnotationError` unless ``data`` has the structure of
    docs/architecture.md#annotation-files."""
    if not isinstance(data, Mapping):
        raise _fail(source, "top level", f"expected a JSON object with keys {list(TOP_KEYS)}, "
                    f"got {type(data).__name__}")
    missing = [k for k in TOP_KEYS if k not in data]
    if missing:
        raise _fail(source, "top level", f"missing keys {missing} (expected {list(TOP_KEYS)})")
    n = len(data["filenames"])
    for key in ("size", "annotation"):
        if not isinstance(data[key], Sequence) or len(data[key]) != n:
            got = len(data[key]) if isinstance(data[key], Sequence) else type(data[key]).__name__
            raise _fail(source, f"field '{key}'", f"expected a list of {n} entries (one per "
                                                  f"filename), got {got}")
    for i, name in enumerate(data["filenames"]):
        if not isinstance(name, str):
            raise _fail(source, f"filenames[{i}]", f"expected a string, got {name!r}")
    for i, size in enumerate(data["size"]):
        if not (isinstance(size, Sequence) and len(size) == 2):
            raise _fail(source, f"size[{i}] ({data['filenames'][i]})", "expected [width, height], "
                                                                       f"got {size!r}")
    for i, anno in enumerate(data["annotation"]):
        where = f"annotation[{i}] ({data['filenames'][i]})"
        if not isinstance(anno, Mapping):
            raise _fail(source, where, f"expected an object with keys {list(PAIR_KEYS)}")
        absent = [k for k in PAIR_KEYS if k not in anno]
        if absent:
            raise _fail(source, where, f"missing keys {absent}")
        lengths = {k: len(anno[k]) for k in PAIR_KEYS}
        if len(set(lengths.values())) != 1:
            raise _fail(source, where, f"lists of different lengths {lengths}")
        for key in ("boxes_h", "boxes_o"):
            for j, box in enumerate(anno[key]):
                if not (isinstance(box, Sequence) and len(box) == 4):
                    raise _fail(source, f"{where} field '{key}' pair {j}", "expected [x1, y1, x2, "
                                                                           f"y2], got {box!r}")
    if len(data["objects"]) < 1 or len(data["verbs"]) < 1:
        raise _fail(source, "objects/verbs", "expected non-empty name lists")
    for k, row in enumerate(data["correspondence"]):
        if not (isinstance(row, Sequence) and len(row) == 3):
            raise _fail(source, f"correspondence[{k}]",
                        f"expected [hoi, object, verb], got {row!r}")


def load_annotations(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Read an annotation file (or take an already loaded dict) and check its structure."""
    if isinstance(source, Mapping):
        data, name = dict(source), "<annotations>"
    elif not isinstance(source, (str, Path)):
        check_schema(source)  # raises: not an annotation dict
        raise AssertionError("unreachable")
    else:
        path = Path(source)
        name = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"annotation file not found: {path}")
        try:
            with path.open(encoding="utf-8") as f:
                data = json.load(f)
        except json.JSONDecodeError as err:
            raise _fail(name, "file", f"not valid JSON ({err})") from err
    check_schema(data, name)
    return data


@dataclass(frozen=True)
class GroundTruth:
    """All GT pairs of an annotation file as flat arrays (one row per pair).

    Attributes:
        image_index: (P,) int64 index into ``filenames``; pairs are in file order.
        boxes_h, boxes_o: (P, 4) float64, 1-based inclusive.
        hoi, object, verb: (P,) int64.
        num_images: number of images (length of ``filenames``).
    """

    image_index: np.ndarray
    boxes_h: np.ndarray
    boxes_o: np.ndarray
    hoi: np.ndarray
    object: np.ndarray
    verb: np.ndarray
    num_images: int


def ground_truth_arrays(data: Mapping[str, Any]) -> GroundTruth:
    """Flatten ``data['annotation']`` into :class:`GroundTruth` arrays."""
    annos = data["annotation"]
    counts = np.array([len(a["hoi"]) for a in annos], dtype=np.int64)

    def cat(key: str, width: int | None = None) -> np.ndarray:
        rows = [v for a in annos for v in a[key]]
        arr = np.asarray(rows, dtype=np.float64 if width else np.int64)
        return arr.reshape(-1, width) if width else arr.reshape(-1)

    return GroundTruth(
        image_index=np.repeat(np.arange(len(annos), dtype=np.int64), counts),
        boxes_h=cat("boxes_h", 4),
        boxes_o=cat("boxes_o", 4),
        hoi=cat("hoi"),
        object=cat("object"),
        verb=cat("verb"),
        num_images=len(annos),
    )


def build_instances(
    filenames: Sequence[str],
    sizes: Sequence[Sequence[int]],
    pairs: Sequence[Mapping[str, list]],
    train_pairs: np.ndarray | None = None,
) -> dict[str, Any]:
    """Assemble a complete annotation dict from per-image pair lists.

    ``pairs[i]`` has the keys of :data:`PAIR_KEYS` for image ``i``. ``train_pairs`` (600,) are
    the per-class training pair counts that define the rare split; the packaged official
    counts are used when it is None.
    """
    meta = hico_metadata()
    counts = meta.train_pairs if train_pairs is None else np.asarray(train_pairs)
    rare, non_rare = rare_split(counts)
    annotation = [{k: list(p[k]) for k in PAIR_KEYS} for p in pairs]
    return {
        "annotation": annotation,
        "filenames": list(filenames),
        "empty": [i for i, a in enumerate(annotation) if not a["hoi"]],
        "objects": list(meta.objects),
        "verbs": list(meta.verbs),
        "correspondence": meta.correspondence.tolist(),
        "size": [[int(s[0]), int(s[1])] for s in sizes],
        "rare": rare,
        "non_rare": non_rare,
    }


def size_known(size: Any) -> bool:
    """False for the :data:`UNKNOWN_SIZE` marker of an image whose size no annotation gave."""
    return tuple(int(v) for v in size) != UNKNOWN_SIZE


def pair_counts(data: Mapping[str, Any], num_classes: int | None = None) -> np.ndarray:
    """(num_classes,) int64 number of GT pairs per HOI class in ``data``."""
    n = num_classes or len(data["correspondence"])
    hoi = np.fromiter((h for a in data["annotation"] for h in a["hoi"]), dtype=np.int64)
    return np.bincount(hoi, minlength=n)


def save_annotations(data: Mapping[str, Any], path: str | Path) -> None:
    """Write an annotation dict as JSON (atomically: temp file, then rename)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f)
    tmp.replace(path)


def subset_annotations(anno: Mapping[str, Any], indices: Sequence[int]) -> dict[str, Any]:
    """The annotation dict restricted to images ``indices`` (in that order)."""
    idx = [int(i) for i in indices]
    sub = dict(anno)
    sub["filenames"] = [anno["filenames"][i] for i in idx]
    sub["size"] = [anno["size"][i] for i in idx]
    sub["annotation"] = [anno["annotation"][i] for i in idx]
    sub["empty"] = [k for k, i in enumerate(idx) if len(anno["annotation"][i]["hoi"]) == 0]
    return sub
