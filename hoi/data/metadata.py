"""HICO-DET class metadata: 600 HOI classes, 117 verbs, 80 objects, and the tables between them.

Everything is read from the files packaged in ``hoi/resources`` (copies of the official class
lists, see ``shared/hicodet/SOURCES.md``). All indices are 0-based and in the official order:
HOI ``i`` is line ``i + 1`` of ``hico_list_hoi.txt``; objects are alphabetical (``person`` is 49);
verbs are in ``hico_list_vb.txt`` order (``no_interaction`` is 57).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

NUM_HOIS = 600
NUM_VERBS = 117
NUM_OBJECTS = 80
PERSON_OBJECT = 49
NO_INTERACTION_VERB = 57
RARE_MAX_TRAIN_PAIRS = 9  # "rare" = fewer than 10 training pairs (official eval_one.m)
LIST_HEADER_LINES = 2  # "id object verb" line and the dashes line of the official lists


def _resource_text(name: str) -> str:
    return resources.files("hoi.resources").joinpath(name).read_text(encoding="utf-8")


def _numbered_names(text: str, header: int, source: str) -> list[list[str]]:
    rows = []
    for k, line in enumerate(text.splitlines()[header:]):
        parts = line.split()
        if not parts:
            continue
        if int(parts[0]) != len(rows) + 1:
            raise ValueError(f"{source}: line {k + header + 1}: expected id {len(rows) + 1}, got "
                             f"{parts[0]}")
        rows.append(parts[1:])
    return rows


@dataclass(frozen=True)
class HicoMetadata:
    """The HICO-DET class tables.

    Attributes:
        hoi_names: (600,) "verb object" strings.
        verbs: (117,) verb names.
        objects: (80,) object names.
        hoi_verb: (600,) int64, verb index of each HOI class.
        hoi_object: (600,) int64, object index of each HOI class.
        object_verb_mask: (80, 117) bool, True where (object, verb) is one of the 600 classes.
        pair_to_hoi: (80, 117) int64, HOI index of (object, verb), -1 where there is none.
        train_pairs: (600,) int64, official number of training pairs per class.
        rare: (138,) int64 HOI indices with fewer than 10 training pairs; non_rare: (462,).
        coco80_to_hico: (81,) int64, COCO contiguous class 1..80 -> object index (entry 0 = -1).
        coco91_to_hico: (91,) int64, COCO category id 1..90 -> object index (-1 for the gaps).
    """

    hoi_names: tuple[str, ...]
    verbs: tuple[str, ...]
    objects: tuple[str, ...]
    hoi_verb: np.ndarray
    hoi_object: np.ndarray
    object_verb_mask: np.ndarray
    pair_to_hoi: np.ndarray
    train_pairs: np.ndarray
    rare: np.ndarray
    non_rare: np.ndarray
    coco80_to_hico: np.ndarray
    coco91_to_hico: np.ndarray

    @property
    def correspondence(self) -> np.ndarray:
        """(600, 3) int64 rows ``[hoi, object, verb]``, as in the annotation files."""
        return np.stack([np.arange(NUM_HOIS), self.hoi_object, self.hoi_verb], axis=1)

    @property
    def rare_mask(self) -> np.ndarray:
        """(600,) bool, True for the rare classes."""
        mask = np.zeros(NUM_HOIS, dtype=bool)
        mask[self.rare] = True
        return mask

    def object_hoi_range(self, obj: int) -> tuple[int, int]:
        """First and one-past-last HOI index of object ``obj`` (its HOIs form one block)."""
        idx = np.flatnonzero(self.hoi_object == obj)
        return int(idx[0]), int(idx[-1]) + 1

    def hico_to_coco80(self) -> np.ndarray:
        """(80,) int64, object index -> COCO contiguous class 1..80."""
        inverse = np.full(NUM_OBJECTS, -1, dtype=np.int64)
        valid = self.coco80_to_hico >= 0
        inverse[self.coco80_to_hico[valid]] = np.flatnonzero(valid)
        return inverse


def _coco_map(name: str, size: int) -> np.ndarray:
    table = np.full(size, -1, dtype=np.int64)
    for key, value in json.loads(_resource_text(name)).items():
        table[int(key)] = int(value)
    return table


@lru_cache(maxsize=1)
def hico_metadata() -> HicoMetadata:
    """The packaged HICO-DET metadata (loaded once)."""
    objects = [r[0] for r in _numbered_names(_resource_text("hico_obj_list.txt"), 0,
                                             "hico_obj_list.txt")]
    verbs = [r[0] for r in _numbered_names(_resource_text("hico_list_vb.txt"), LIST_HEADER_LINES,
                                           "hico_list_vb.txt")]
    hois = _numbered_names(_resource_text("hico_list_hoi.txt"), LIST_HEADER_LINES,
                           "hico_list_hoi.txt")
    obj_index = {name: i for i, name in enumerate(objects)}
    verb_index = {name: i for i, name in enumerate(verbs)}
    hoi_object = np.array([obj_index[o] for o, _ in hois], dtype=np.int64)
    hoi_verb = np.array([verb_index[v] for _, v in hois], dtype=np.int64)

    rows = list(csv.DictReader(_resource_text("hoi_classes.tsv").splitlines(), delimiter="\t"))
    train_pairs = np.array([int(r["train_pairs_official"]) for r in rows], dtype=np.int64)
    for i, r in enumerate(rows):
        if (int(r["hoi_idx0"]), int(r["object_idx0"]), int(r["verb_idx0"])) != (i, hoi_object[i],
                                                                                hoi_verb[i]):
            raise ValueError(f"hoi_classes.tsv: row {i} disagrees with hico_list_hoi.txt")

    pair_to_hoi = np.full((len(objects), len(verbs)), -1, dtype=np.int64)
    pair_to_hoi[hoi_object, hoi_verb] = np.arange(len(hois))
    rare_mask = train_pairs <= RARE_MAX_TRAIN_PAIRS
    meta = HicoMetadata(
        hoi_names=tuple(f"{v} {o}" for o, v in hois),
        verbs=tuple(verbs),
        objects=tuple(objects),
        hoi_verb=hoi_verb,
        hoi_object=hoi_object,
        object_verb_mask=pair_to_hoi >= 0,
        pair_to_hoi=pair_to_hoi,
        train_pairs=train_pairs,
        rare=np.flatnonzero(rare_mask),
        non_rare=np.flatnonzero(~rare_mask),
        coco80_to_hico=_coco_map("coco80tohico80.json", 81),
        coco91_to_hico=_coco_map("coco91tohico80.json", 91),
    )
    for arr in (meta.hoi_verb, meta.hoi_object, meta.object_verb_mask, meta.pair_to_hoi,
                meta.train_pairs, meta.rare, meta.non_rare, meta.coco80_to_hico,
                meta.coco91_to_hico):
        arr.setflags(write=False)
    return meta


def rare_split(train_pairs: np.ndarray,
               max_rare: int = RARE_MAX_TRAIN_PAIRS) -> tuple[list[int], list[int]]:
    """Rare / non-rare HOI indices from per-class training pair counts (shape (600,))."""
    counts = np.asarray(train_pairs)
    return np.flatnonzero(counts <= max_rare).tolist(), np.flatnonzero(counts > max_rare).tolist()
