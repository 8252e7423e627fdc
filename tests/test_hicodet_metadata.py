"""The packaged HICO-DET metadata against the official lists and counts in shared/hicodet."""

from __future__ import annotations

import csv
import json

import numpy as np

from hoi.data import NO_INTERACTION_VERB, PERSON_OBJECT, hico_metadata
from hoi.data.metadata import rare_split


def test_sizes_and_fixed_indices() -> None:
    meta = hico_metadata()
    assert (len(meta.hoi_names), len(meta.verbs), len(meta.objects)) == (600, 117, 80)
    assert meta.objects[PERSON_OBJECT] == "person" and PERSON_OBJECT == 49
    assert meta.verbs[NO_INTERACTION_VERB] == "no_interaction" and NO_INTERACTION_VERB == 57
    assert meta.hoi_names[0] == "board airplane" and meta.hoi_names[599] == "no_interaction zebra"
    assert (len(meta.rare), len(meta.non_rare)) == (138, 462)
    assert sorted(np.concatenate([meta.rare, meta.non_rare]).tolist()) == list(range(600))


def test_tables_are_consistent() -> None:
    meta = hico_metadata()
    assert meta.object_verb_mask.shape == (80, 117) and meta.object_verb_mask.dtype == bool
    assert meta.object_verb_mask.sum() == 600
    assert np.array_equal(meta.pair_to_hoi[meta.hoi_object, meta.hoi_verb], np.arange(600))
    assert (meta.pair_to_hoi[~meta.object_verb_mask] == -1).all()
    # every object has a contiguous HOI block, and every object's no_interaction class exists
    for obj in range(80):
        first, stop = meta.object_hoi_range(obj)
        assert (meta.hoi_object[first:stop] == obj).all()
        assert (meta.hoi_object == obj).sum() == stop - first
        assert meta.object_verb_mask[obj, NO_INTERACTION_VERB]


def test_against_official_test_annotations(shared_dir) -> None:
    meta = hico_metadata()
    data = json.loads((shared_dir / "hicodet" / "instances_test2015.json").read_text())
    assert list(meta.objects) == data["objects"]
    assert list(meta.verbs) == data["verbs"]
    assert meta.correspondence.tolist() == data["correspondence"]
    assert meta.rare.tolist() == sorted(data["rare"])
    assert meta.non_rare.tolist() == sorted(data["non_rare"])


def test_against_official_lists_and_counts(shared_dir) -> None:
    meta = hico_metadata()
    root = shared_dir / "hicodet"
    rows = (root / "hico_list_hoi.txt").read_text().splitlines()[2:]
    assert ([(r.split()[2], r.split()[1]) for r in rows]
            == [tuple(n.split(" ")) for n in meta.hoi_names])
    info = json.loads((root / "label_info.json").read_text())["hoi_info"]
    counts = np.array([info[str(i + 1)]["counts_train"] for i in range(600)])
    assert np.array_equal(meta.train_pairs, counts)
    assert counts.sum() == 117871
    rare, non_rare = rare_split(counts)
    assert rare == meta.rare.tolist() and non_rare == meta.non_rare.tolist()
    with (root / "hoi_classes.tsv").open() as f:
        tsv = list(csv.DictReader(f, delimiter="\t"))
    assert [int(r["rare"]) for r in tsv] == meta.rare_mask.astype(int).tolist()


def test_coco_maps(shared_dir) -> None:
    meta = hico_metadata()
    m80 = json.loads((shared_dir / "hicodet" / "coco80tohico80.json").read_text())
    m91 = json.loads((shared_dir / "hicodet" / "coco91tohico80.json").read_text())
    assert ({int(k): v for k, v in m80.items()}
            == {k: int(meta.coco80_to_hico[k]) for k in range(1, 81)})
    assert {int(k): v for k, v in m91.items()} == {
        k: int(meta.coco91_to_hico[k]) for k in range(91) if meta.coco91_to_hico[k] >= 0}
    assert sorted(meta.coco80_to_hico[1:].tolist()) == list(range(80))
    assert meta.coco80_to_hico[1] == PERSON_OBJECT  # COCO class 1 is person
    inverse = meta.hico_to_coco80()
    assert np.array_equal(meta.coco80_to_hico[inverse], np.arange(80))
