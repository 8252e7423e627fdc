"""The official HICO-DET MATLAB annotation files: ``anno_bbox.mat`` (boxes) and ``anno.mat``.

``anno_bbox.mat`` holds ``bbox_train`` and ``bbox_test``, 1xN struct arrays with ``filename``,
``size`` (struct ``width``, ``height``, ``depth``) and ``hoi``, a struct array whose entries have
``id`` (1-based HOI), ``bboxhuman`` / ``bboxobject`` (struct arrays of ``x1 y1 x2 y2``, 1-based
inclusive), ``connection`` (Mx2, rows [human, object], 1-based) and ``invis`` (1: no boxes).

scipy.io reads MATLAB structs as ``mat_struct`` objects with ``squeeze_me``, which collapses
1x1 struct arrays to a bare struct and 1x2 matrices to a vector; :func:`read_anno_bbox_mat`
undoes all of it. :func:`write_anno_bbox_mat` writes the same structure from annotation dicts
(docs/architecture.md#annotation-files), so synthetic data can go through the official toolkit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from hoi.data.annotations import AnnotationError, build_instances
from hoi.data.metadata import NUM_HOIS, hico_metadata

SPLIT_VARS = {"train": "bbox_train", "test": "bbox_test"}
IMAGE_DEPTH = 3  # the JSON schema has no depth; HICO-DET images are RGB
BOX_FIELDS = ("x1", "y1", "x2", "y2")


@dataclass
class OfficialHOI:
    """One ``hoi(j)`` entry of an image: ``humans`` (K, 4), ``objects`` (L, 4), ``connection``
    (M, 2) 1-based [human, object] rows, ``id`` 1-based HOI, ``invis`` no boxes."""

    id: int
    humans: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    objects: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    connection: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    invis: bool = False


@dataclass
class OfficialImage:
    """One record of ``bbox_train`` / ``bbox_test``."""

    filename: str
    width: int
    height: int
    depth: int = IMAGE_DEPTH
    hois: list[OfficialHOI] = field(default_factory=list)


# ---------------------------------------------------------------- reading

def _items(value: Any) -> list[Any]:
    """A MATLAB array as read with squeeze_me: a bare element, a 0-d or n-d array -> list."""
    if isinstance(value, np.ndarray):
        return list(value.ravel())
    return [value]


def _get(record: Any, name: str, where: str) -> Any:
    if isinstance(record, scipy.io.matlab.mat_struct):
        if name not in record._fieldnames:
            raise AnnotationError(f"{where}: missing field '{name}' (has {record._fieldnames})")
        return getattr(record, name)
    raise AnnotationError(f"{where}: expected a struct with field '{name}', got "
                          f"{type(record).__name__}")


def _scalar(value: Any, where: str) -> float:
    arr = np.asarray(value, dtype=np.float64).ravel()
    if arr.size != 1:
        raise AnnotationError(f"{where}: expected one number, got {arr.size} values")
    return float(arr[0])


def _boxes(value: Any, where: str) -> np.ndarray:
    if isinstance(value, np.ndarray) and value.size == 0:
        return np.zeros((0, 4))
    rows = []
    for k, box in enumerate(_items(value)):
        rows.append([_scalar(_get(box, f, f"{where}({k + 1})"),
                             f"{where}({k + 1}).{f}") for f in BOX_FIELDS])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def _connection(value: Any, where: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if arr.ndim == 1 and arr.size == 2:  # a single row, squeezed
        arr = arr.reshape(1, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise AnnotationError(f"{where}: expected an Mx2 matrix of [human, object] indices, got "
                              f"shape {arr.shape}")
    if not np.array_equal(arr, np.round(arr)):
        raise AnnotationError(f"{where}: expected integer indices, got {arr.tolist()}")
    return arr.astype(np.int64)


def _read_image(record: Any, where: str) -> OfficialImage:
    filename = _get(record, "filename", where)
    if not isinstance(filename, str):
        raise AnnotationError(f"{where}.filename: expected a string, got {filename!r}")
    where = f"{where} '{filename}'"
    size = _get(record, "size", where)
    width = _scalar(_get(size, "width", f"{where}.size"), f"{where}.size.width")
    height = _scalar(_get(size, "height", f"{where}.size.height"), f"{where}.size.height")
    depth = _scalar(_get(size, "depth", f"{where}.size"), f"{where}.size.depth") \
        if "depth" in getattr(size, "_fieldnames", []) else IMAGE_DEPTH
    image = OfficialImage(filename, int(width), int(height), int(depth))
    hoi_value = _get(record, "hoi", where)
    entries = [] if isinstance(hoi_value, np.ndarray) and hoi_value.size == 0 else _items(hoi_value)
    for j, entry in enumerate(entries):
        w = f"{where} hoi({j + 1})"
        hid = _scalar(_get(entry, "id", w), f"{w}.id")
        if hid != int(hid) or not 1 <= hid <= NUM_HOIS:
            raise AnnotationError(f"{w}.id: expected an integer 1..{NUM_HOIS}, got {hid}")
        invis = bool(_scalar(_get(entry, "invis", w), f"{w}.invis"))
        hoi = OfficialHOI(int(hid), invis=invis)
        if not invis:
            hoi.humans = _boxes(_get(entry, "bboxhuman", w), f"{w}.bboxhuman")
            hoi.objects = _boxes(_get(entry, "bboxobject", w), f"{w}.bboxobject")
            hoi.connection = _connection(_get(entry, "connection", w), f"{w}.connection")
            conn = hoi.connection
            bad = ~((conn[:, 0] >= 1) & (conn[:, 0] <= len(hoi.humans))
                    & (conn[:, 1] >= 1) & (conn[:, 1] <= len(hoi.objects)))
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                raise AnnotationError(
                    f"{w}.connection row {k + 1}: {conn[k].tolist()} refers to a missing box "
                    f"({len(hoi.humans)} human, {len(hoi.objects)} object boxes)")
        image.hois.append(hoi)
    return image


def _loadmat(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"MATLAB file not found: {path}")
    try:
        return scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except NotImplementedError as err:  # v7.3 (HDF5) files
        raise AnnotationError(f"{path}: MATLAB v7.3 files are not supported; re-save with "
                              f"save(..., '-v7') ({err})") from err
    except Exception as err:
        raise AnnotationError(f"{path}: not a readable MATLAB file ({err})") from err


def read_anno_bbox_mat(path: str | Path) -> dict[str, list[OfficialImage]]:
    """Read ``anno_bbox.mat`` -> ``{"train": [...], "test": [...]}`` (splits present in the
    file)."""
    path = Path(path)
    mat = _loadmat(path)
    out = {}
    for split, var in SPLIT_VARS.items():
        if var not in mat:
            continue
        value = mat[var]
        records = [] if isinstance(value, np.ndarray) and value.size == 0 else _items(value)
        out[split] = [_read_image(r, f"{path}: {var}({i + 1})") for i, r in enumerate(records)]
    if not out:
        raise AnnotationError(f"{path}: expected variables {list(SPLIT_VARS.values())}, "
                              f"found {[k for k in mat if not k.startswith('__')]}")
    return out


def read_list_action(path: str | Path) -> list[tuple[str, str]]:
    """``list_action`` of ``anno.mat`` (or ``anno_bbox.mat``) -> 600 (object, verb) names."""
    path = Path(path)
    mat = _loadmat(path)
    if "list_action" not in mat:
        raise AnnotationError(f"{path}: no variable 'list_action'")
    return [(str(_get(a, "nname", f"{path}: list_action({k + 1})")),
             str(_get(a, "vname", f"{path}: list_action({k + 1})")))
            for k, a in enumerate(_items(mat["list_action"]))]


def check_list_action(names: Sequence[tuple[str, str]], source: str) -> None:
    """Fail unless ``list_action`` is the packaged official HOI order."""
    meta = hico_metadata()
    expected = [(meta.objects[o], meta.verbs[v]) for o, v in zip(meta.hoi_object, meta.hoi_verb)]
    if len(names) != len(expected):
        raise AnnotationError(f"{source}: list_action has {len(names)} entries, expected "
                              f"{len(expected)}")
    for k, (got, want) in enumerate(zip(names, expected)):
        if tuple(got) != want:
            raise AnnotationError(f"{source}: list_action({k + 1}) is {got}, expected {want} "
                                  "(the official HOI order)")


def read_image_labels(path: str | Path, split: str = "test") -> np.ndarray:
    """HICO image-level labels ``anno_{split}`` of ``anno.mat`` -> (600, N) float64
    (1 positive, 0 ambiguous, -1 negative, NaN unknown)."""
    path = Path(path)
    mat = _loadmat(path)
    var = f"anno_{split}"
    if var not in mat:
        raise AnnotationError(f"{path}: no variable '{var}'")
    labels = np.asarray(mat[var], dtype=np.float64)
    if labels.ndim == 1:
        labels = labels.reshape(NUM_HOIS, -1)
    if labels.shape[0] != NUM_HOIS:
        raise AnnotationError(f"{path}: {var} has shape {labels.shape}, expected ({NUM_HOIS}, N)")
    return labels


# ---------------------------------------------------------------- conversion

def train_pair_counts(images: Sequence[OfficialImage]) -> np.ndarray:
    """(600,) visible pairs per HOI class, counted as the official ``eval_one.m`` does."""
    counts = np.zeros(NUM_HOIS, dtype=np.int64)
    for image in images:
        for hoi in image.hois:
            if not hoi.invis:
                counts[hoi.id - 1] += len(hoi.connection)
    return counts


def official_to_instances(images: Sequence[OfficialImage],
                          train_pairs: np.ndarray | None) -> dict[str, Any]:
    """Official records -> annotation dict (docs/architecture.md#annotation-files): one pair per
    connection row,
    invisible entries left out, boxes unchanged (1-based)."""
    meta = hico_metadata()
    pairs = []
    for image in images:
        p: dict[str, list] = {"boxes_h": [], "boxes_o": [], "hoi": [], "object": [], "verb": []}
        for hoi in image.hois:
            if hoi.invis:
                continue
            h = hoi.id - 1
            for hi, oi in hoi.connection:
                p["boxes_h"].append([float(v) for v in hoi.humans[hi - 1]])
                p["boxes_o"].append([float(v) for v in hoi.objects[oi - 1]])
                p["hoi"].append(int(h))
                p["object"].append(int(meta.hoi_object[h]))
                p["verb"].append(int(meta.hoi_verb[h]))
        pairs.append(p)
    return build_instances([im.filename for im in images], [(im.width, im.height) for im in images],
                           pairs, train_pairs)


def _unique_rows(boxes: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Distinct boxes in order of first appearance, and each input's 1-based index among them."""
    seen: dict[tuple[float, ...], int] = {}
    index = [seen.setdefault(tuple(b), len(seen)) + 1 for b in boxes]
    return np.asarray(list(seen),
                      dtype=np.float64).reshape(-1, 4), np.asarray(index, dtype=np.int64)


def instances_to_official(data: Mapping[str, Any]) -> list[OfficialImage]:
    """Annotation dict -> official records: pairs grouped by HOI (in order of first appearance),
    identical boxes of one HOI entry shared through ``connection``."""
    images = []
    for name, size, anno in zip(data["filenames"], data["size"], data["annotation"]):
        image = OfficialImage(name, int(size[0]), int(size[1]))
        order: dict[int, list[int]] = {}
        for j, h in enumerate(anno["hoi"]):
            order.setdefault(int(h), []).append(j)
        for h, rows in order.items():
            humans, hidx = _unique_rows([list(anno["boxes_h"][j]) for j in rows])
            objects, oidx = _unique_rows([list(anno["boxes_o"][j]) for j in rows])
            image.hois.append(OfficialHOI(h + 1, humans, objects, np.stack([hidx, oidx], axis=1)))
        images.append(image)
    return images


# ---------------------------------------------------------------- writing

def _struct_array(rows: list[dict[str, Any]], names: Sequence[str]) -> np.ndarray:
    """A 1xN MATLAB struct array (a numpy record array of objects, as scipy.io writes it)."""
    arr = np.empty((1, len(rows)), dtype=[(n, object) for n in names])
    for k, row in enumerate(rows):
        for n in names:
            arr[0, k][n] = row[n]
    return arr


def _box_structs(boxes: np.ndarray) -> np.ndarray:
    if len(boxes) == 0:
        return np.zeros((0, 0))
    return _struct_array([dict(zip(BOX_FIELDS, (float(v) for v in b))) for b in boxes], BOX_FIELDS)


def _image_struct(image: OfficialImage) -> dict[str, Any]:
    hois = []
    for hoi in image.hois:
        hois.append({
            "id": float(hoi.id),
            "bboxhuman": np.zeros((0, 0)) if hoi.invis else _box_structs(hoi.humans),
            "bboxobject": np.zeros((0, 0)) if hoi.invis else _box_structs(hoi.objects),
            "connection": np.zeros((0, 0)) if hoi.invis or len(hoi.connection) == 0
            else np.asarray(hoi.connection, dtype=np.float64).reshape(-1, 2),
            "invis": float(hoi.invis),
        })
    names = ("id", "bboxhuman", "bboxobject", "connection", "invis")
    return {
        "filename": image.filename,
        "size": {"width": float(image.width), "height": float(image.height),
                 "depth": float(image.depth)},
        "hoi": _struct_array(hois, names) if hois else np.zeros((0, 0)),
    }


def _list_action() -> np.ndarray:
    meta = hico_metadata()
    rows = [{"nname": meta.objects[o], "vname": meta.verbs[v]} for o, v in zip(meta.hoi_object,
                                                                               meta.hoi_verb)]
    arr = _struct_array(rows, ("nname", "vname"))
    return arr.reshape(-1, 1)


def write_official_mat(splits: Mapping[str, Sequence[OfficialImage]], path: str | Path) -> None:
    """Write official records (``{"train": [...], "test": [...]}``) as ``anno_bbox.mat``."""
    out: dict[str, Any] = {"list_action": _list_action()}
    for split, images in splits.items():
        if split not in SPLIT_VARS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(SPLIT_VARS)}")
        out[SPLIT_VARS[split]] = _struct_array([_image_struct(im) for im in images],
                                               ("filename", "size", "hoi"))
    scipy.io.savemat(str(path), out, do_compression=True)


def write_anno_bbox_mat(instances: Mapping[str, Mapping[str, Any]], path: str | Path) -> None:
    """Write annotation dicts ``{"train": dict, "test": dict}`` as the official ``anno_bbox.mat``.

    Boxes are written unchanged (1-based); see :func:`instances_to_official` for the grouping.
    """
    write_official_mat({split: instances_to_official(d) for split, d in instances.items()}, path)


def write_anno_mat(instances: Mapping[str, Mapping[str, Any]], path: str | Path) -> None:
    """Write a minimal ``anno.mat``: ``list_action``, ``list_{split}`` and image-level labels
    ``anno_{split}`` (600 x N: 1 where the image has a GT pair of the class, NaN elsewhere)."""
    out: dict[str, Any] = {"list_action": _list_action()}
    for split, data in instances.items():
        names = np.empty((len(data["filenames"]), 1), dtype=object)
        names[:, 0] = list(data["filenames"])
        labels = np.full((NUM_HOIS, len(names)), np.nan)
        for i, anno in enumerate(data["annotation"]):
            labels[np.asarray(anno["hoi"], dtype=np.int64), i] = 1.0
        out[f"list_{split}"] = names
        out[f"anno_{split}"] = labels
    scipy.io.savemat(str(path), out, do_compression=True)
