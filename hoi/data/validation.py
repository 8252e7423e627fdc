"""Content checks of an annotation dict: every problem, with the image and pair it concerns.

Used by ``python -m data_prep.validate`` and by every stage that reads annotations, so all of
them apply the same rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hoi.data.annotations import (
    PAIR_KEYS,
    TOP_KEYS,
    AnnotationError,
    check_schema,
    load_annotations,
    size_known,
)
from hoi.data.boxes import inside_image, well_ordered
from hoi.data.metadata import NUM_HOIS, NUM_OBJECTS, NUM_VERBS, hico_metadata


@dataclass(frozen=True)
class Problem:
    """One problem of an annotation file.

    ``image`` (index into ``filenames``), ``filename`` and ``pair`` (index within the image)
    are None where the problem is not about one image or one pair.
    """

    kind: str
    message: str
    image: int | None = None
    filename: str | None = None
    pair: int | None = None

    def __str__(self) -> str:
        where = []
        if self.image is not None:
            where.append(f"image {self.image}" + (f" ({self.filename})" if self.filename else ""))
        if self.pair is not None:
            where.append(f"pair {self.pair}")
        return f"[{self.kind}] " + (", ".join(where) + ": " if where else "") + self.message


def _check_tables(data: Mapping[str, Any]) -> list[Problem]:
    meta = hico_metadata()
    out = []
    if list(data["objects"]) != list(meta.objects):
        out.append(Problem("objects", f"expected the {NUM_OBJECTS} official object names in order"))
    if list(data["verbs"]) != list(meta.verbs):
        out.append(Problem("verbs", f"expected the {NUM_VERBS} official verb names in order"))
    corr = np.asarray(data["correspondence"], dtype=np.int64).reshape(-1, 3)
    if corr.shape != (NUM_HOIS, 3) or not np.array_equal(corr, meta.correspondence):
        out.append(Problem("correspondence", f"expected the official {NUM_HOIS} rows [hoi, object, "
                                             "verb]"))
    rare, non_rare = sorted(data["rare"]), sorted(data["non_rare"])
    if sorted(rare + non_rare) != list(range(NUM_HOIS)):
        out.append(Problem("rare", f"rare + non_rare must partition 0..{NUM_HOIS - 1} "
                           f"(got {len(rare)} + {len(non_rare)} indices)"))
    return out


def _check_image(i: int, name: str, size: Any, anno: Mapping[str, Any]) -> list[Problem]:
    meta = hico_metadata()
    out = []
    try:
        width, height = float(size[0]), float(size[1])
        sized = width >= 1 and height >= 1
    except (TypeError, ValueError):
        sized = False
    n = len(anno["hoi"])
    # unknown: an image without pairs (hake.py)
    if not sized and not (n == 0 and _unknown_size(size)):
        out.append(Problem("size", f"expected a positive [width, height], got {size!r}"
                           + (" ([0, 0], unknown, only for an image without pairs)"
                              if _unknown_size(size) else ""),
                           i, name))
    if n == 0:
        return out
    hoi = np.asarray(anno["hoi"])
    obj = np.asarray(anno["object"])
    verb = np.asarray(anno["verb"])
    for key, arr, limit in (("hoi", hoi, NUM_HOIS), ("object", obj, NUM_OBJECTS),
                            ("verb", verb, NUM_VERBS)):
        for j in np.flatnonzero(~_int_in_range(arr, limit)):
            out.append(Problem(key, f"{key} id {arr[j].item()!r} out of range 0..{limit - 1}", i,
                               name, int(j)))
    ok = (_int_in_range(hoi, NUM_HOIS) & _int_in_range(obj, NUM_OBJECTS)
          & _int_in_range(verb, NUM_VERBS))
    for j in np.flatnonzero(ok):
        h = int(hoi[j])
        want = (int(meta.hoi_object[h]), int(meta.hoi_verb[h]))
        if (int(obj[j]), int(verb[j])) != want:
            out.append(Problem(
                "correspondence",
                f"HOI {h} ({meta.hoi_names[h]}) needs object {want[0]} and verb {want[1]}, "
                f"got object {obj[j]} and verb {verb[j]}", i, name, int(j)))
    for key in ("boxes_h", "boxes_o"):
        boxes = np.asarray(anno[key], dtype=np.float64).reshape(-1, 4)
        ordered = well_ordered(boxes)
        for j in np.flatnonzero(~ordered):
            out.append(Problem("box_order", f"{key} {boxes[j].tolist()} is not x1 <= x2, y1 <= y2 "
                               "(finite)", i, name, int(j)))
        if sized:
            inside = inside_image(boxes, width, height)
            for j in np.flatnonzero(ordered & ~inside):
                out.append(Problem("box_outside", f"{key} {boxes[j].tolist()} is outside "
                                   f"[1, {width:g}] x [1, {height:g}]", i, name, int(j)))
    return out


def _unknown_size(size: Any) -> bool:
    try:
        return not size_known(size)
    except (TypeError, ValueError):
        return False


def _int_in_range(arr: np.ndarray, limit: int) -> np.ndarray:
    if arr.dtype.kind not in "iuf":
        return np.zeros(arr.shape, dtype=bool)
    return (arr == np.round(arr)) & (arr >= 0) & (arr < limit)


def validate_annotations(data: Mapping[str, Any]) -> list[Problem]:
    """Every problem of an annotation dict (empty list when it is valid).

    Checks: the schema (one ``schema`` problem and nothing else if it is broken), the class
    tables, each image's size, every pair's ids (in range, object and verb consistent with the
    HOI via the official correspondence), every box (finite, well ordered, inside
    ``[1, W] x [1, H]``), unique filenames and the ``empty`` list (exactly the images without
    pairs).
    """
    try:
        check_schema(data)
    except AnnotationError as err:
        return [Problem("schema", str(err).split(": ", 1)[-1])]
    problems = _check_tables(data)
    names = data["filenames"]
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            problems.append(Problem("filename", f"duplicate of image {seen[name]}", i, name))
        seen.setdefault(name, i)
    for i, (name, size, anno) in enumerate(zip(names, data["size"], data["annotation"])):
        problems.extend(_check_image(i, name, size, anno))
    empty_actual = {i for i, a in enumerate(data["annotation"]) if len(a["hoi"]) == 0}
    empty_listed = list(data["empty"])
    for i in sorted(empty_actual - set(empty_listed)):
        problems.append(Problem("empty", "has no pair but is not in 'empty'", i, names[i]))
    for i in sorted(set(empty_listed) - empty_actual):
        if isinstance(i, int) and 0 <= i < len(names):
            problems.append(Problem("empty", "is in 'empty' but has pairs", i, names[i]))
        else:
            problems.append(Problem("empty", f"'empty' lists {i!r}, not an image index "
                                             f"0..{len(names) - 1}"))
    return problems


def check_annotations(data: Mapping[str, Any], source: str | Path = "<annotations>") -> None:
    """Raise :class:`AnnotationError` naming ``source``, the first problem (image, pair, what
    was expected) and how many there are in all, unless ``data`` is valid."""
    problems = validate_annotations(data)
    if problems:
        more = f" (and {len(problems) - 1} more problems: python -m data_prep.validate {source})" \
            if len(problems) > 1 else ""
        raise AnnotationError(f"{source}: {problems[0]}{more}")


def load_valid_annotations(path: str | Path) -> dict[str, Any]:
    """Read an annotation file and refuse it, in one line, unless it is valid (schema and
    content, :func:`validate_annotations`). Every stage reads its annotations through this."""
    data = load_annotations(path)
    check_annotations(data, path)
    return data


__all__ = ["Problem", "validate_annotations", "check_annotations", "load_valid_annotations",
           "PAIR_KEYS", "TOP_KEYS"]
