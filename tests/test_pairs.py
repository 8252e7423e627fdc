"""Pair building, labels, spatial maps and geometry (hoi.inputs.pairs,
hoi.models.heads.pair_spatial)."""

from __future__ import annotations

import numpy as np
import torch

from hoi.data.cache import ImageProposals
from hoi.inputs.dataset import collate
from hoi.inputs.pairs import PairConfig, all_pairs, image_pairs, select_proposals
from hoi.models.heads.pair_spatial import (
    official_interaction_maps,
    official_pair_geometry,
    pixel_interaction_maps,
    pixel_pair_geometry,
)


def _dets(rows):
    rows = np.asarray(rows, dtype=np.float64)
    return ImageProposals(rows[:, :4], rows[:, 4], rows[:, 5].astype(int))


def test_selection_thresholds_caps_and_humans_as_objects() -> None:
    rng = np.random.default_rng(0)
    n = 40
    corners = np.sort(rng.uniform(1, 100, (n, 2, 2)), axis=1)
    boxes = corners.transpose(0, 2, 1).reshape(n, 4)[:, [0, 2, 1, 3]]
    scores = rng.uniform(0, 1, n)
    labels = np.where(np.arange(n) % 2 == 0, 49, 3)
    det = ImageProposals(boxes, scores, labels)
    cfg = PairConfig(max_humans=5, max_objects=7)
    humans, objects = select_proposals(det, cfg)
    assert len(humans) <= 5 and len(objects) <= 7
    assert (labels[humans] == 49).all() and (scores[humans] >= 0.6).all()
    assert np.all(np.diff(scores[humans]) <= 0)
    non_person = objects[labels[objects] != 49]
    assert (scores[non_person] >= 0.3).all()
    # non-person objects first, then humans; the 5 best qualifying non-person objects come first
    expected = np.flatnonzero((labels != 49) & (scores >= 0.3))
    expected = expected[np.argsort(-scores[expected], kind="stable")][:7]
    assert objects[: len(expected)].tolist() == expected.tolist()
    assert set(objects[len(expected):]) <= set(humans)
    assert not set(select_proposals(det, PairConfig(humans_as_objects=False))[1]) & set(humans)


def _official_caps(det: ImageProposals, cfg: PairConfig) -> tuple[list[int], list[int]]:
    """helpers_preprocess.get_detections (official VSGNet): persons >= 0.6 and objects >= 0.3
    in file order, the persons appended to the objects, both lists cut at 15."""
    persons = [i for i in range(len(det.scores)) if det.labels[i] == 49 and det.scores[i] >= 0.6]
    objects = [i for i in range(len(det.scores)) if det.labels[i] != 49 and det.scores[i] >= 0.3]
    objects = objects + persons
    return persons[:15], objects[:15]


def test_caps_of_15_humans_and_15_objects_and_their_order() -> None:
    cfg = PairConfig()
    assert (cfg.max_humans, cfg.max_objects, cfg.human_threshold, cfg.object_threshold,
            cfg.cap_order) == (15, 15, 0.6, 0.3, "score")
    rng = np.random.default_rng(3)
    for n_persons, n_objects in ((20, 20), (20, 8), (4, 30)):
        labels = np.array([49] * n_persons + [3] * n_objects)
        order = rng.permutation(len(labels))  # file order: not sorted by score
        scores = rng.uniform(0.65, 1.0, len(labels))[order]
        det = ImageProposals(np.tile([1.0, 1, 10, 10], (len(labels), 1)), scores, labels[order])
        want_h, want_o = _official_caps(det, cfg)
        humans, objects = select_proposals(det, PairConfig(cap_order="file"))
        assert (humans.tolist(), objects.tolist()) == (want_h, want_o)
        assert len(humans) == min(15, n_persons) and len(objects) == min(15, n_persons + n_objects)
        by_score = select_proposals(det, cfg)
        # the default keeps the highest-scored ones: the official choice on a file sorted by score
        ranked = np.argsort(-scores, kind="stable")
        sorted_det = ImageProposals(det.boxes[ranked], scores[ranked], det.labels[ranked])
        want_h, want_o = _official_caps(sorted_det, cfg)
        assert ranked[want_h].tolist() == by_score[0].tolist()
        assert ranked[want_o].tolist() == by_score[1].tolist()


def test_pairs_exclude_self_and_are_human_major() -> None:
    ph, po = all_pairs(torch.tensor([3, 5]), torch.tensor([7, 3, 5]), exclude_self=True)
    assert list(zip(ph.tolist(), po.tolist())) == [(0, 0), (0, 2), (1, 0), (1, 1)]
    ph, _ = all_pairs(torch.tensor([3, 5]), torch.tensor([7, 3, 5]), exclude_self=False)
    assert len(ph) == 6


def test_labels_from_gt_pairs() -> None:
    # humans 0, 1; object 2 (class 3); GT: human 0 + object 2 -> verbs 4 and 9;
    # human 1 + human 0 -> verb 7
    det = _dets([[10, 10, 50, 90, 0.9, 49], [60, 10, 100, 90, 0.8, 49], [20, 60, 40, 80, 0.5, 3]])
    anno = {"boxes_h": [[11, 10, 50, 90], [11, 10, 50, 90], [60, 10, 100, 90]],
            "boxes_o": [[20, 61, 40, 80], [20, 61, 40, 80], [10, 10, 50, 90]],
            "object": [3, 3, 49], "verb": [4, 9, 7], "hoi": [0, 0, 0]}
    old = PairConfig(label_rule="any_gt_pair", exclude_self_pairs=True)
    pairs = image_pairs(det, old, anno)
    # objects: [2, 0, 1]; pairs (h, o) excluding self
    got = {(int(h), int(o)): set(np.flatnonzero(pairs.labels[k].numpy()).tolist())
           for k, (h, o) in enumerate(zip(pairs.pair_h, pairs.pair_o))}
    assert got == {(0, 0): {4, 9}, (0, 2): set(), (1, 0): set(), (1, 1): {7}}
    # with the class required, a GT pair whose object class differs gives no label
    anno["object"] = [5, 5, 49]
    strict = image_pairs(det, PairConfig(label_rule="any_gt_pair", exclude_self_pairs=True,
                                         label_match_object=True), anno)
    assert strict.labels[0].sum() == 0 and strict.labels[3, 7] == 1


def test_gt_boxes_join_the_proposals_when_asked() -> None:
    det = _dets([[10, 10, 50, 90, 0.9, 49]])
    anno = {"boxes_h": [[60, 10, 100, 90]], "boxes_o": [[20, 60, 40, 80]], "object": [3],
            "verb": [4], "hoi": [0]}
    alone = image_pairs(det, PairConfig(), anno)
    assert alone.num_pairs == 1 and alone.labels.sum() == 0  # the human with itself, no GT match
    pairs = image_pairs(det, PairConfig(), anno, add_gt=True)
    assert len(pairs.boxes_h) == 2 and pairs.labels.sum() == 1


def test_spatial_maps_and_geometry() -> None:
    bh = torch.tensor([[1.0, 1.0, 50.0, 100.0]])
    bo = torch.tensor([[51.0, 51.0, 100.0, 100.0]])
    maps = pixel_interaction_maps(bh, bo, torch.tensor([[100.0, 100.0]]), 4, 100.0)
    assert maps.shape == (1, 2, 4, 4)
    expected_h = torch.zeros(4, 4)
    expected_h[:, :2] = 100
    expected_o = torch.zeros(4, 4)
    expected_o[2:, 2:] = 100
    assert torch.equal(maps[0, 0], expected_h) and torch.equal(maps[0, 1], expected_o)
    g = pixel_pair_geometry(bh, bo)
    torch.testing.assert_close(g, torch.tensor([[-50 / 50, -50 / 50, np.log(50 / 50),
                                                 np.log(100 / 50)]]).float())
    assert torch.isfinite(pixel_pair_geometry(torch.tensor([[5.0, 5, 4, 4]]),
                                              torch.tensor([[5.0, 5, 5, 5]]))).all()


def test_official_map_and_geometry_by_hand() -> None:
    # continuous human [0, 0, 50, 100], object [50, 50, 100, 100] in a 100 x 100 image
    bh = torch.tensor([[1.0, 1.0, 50.0, 100.0]])
    bo = torch.tensor([[51.0, 51.0, 100.0, 100.0]])
    size = torch.tensor([[100.0, 100.0]])
    maps = official_interaction_maps(bh, bo, size, 4, 100.0)
    # human: int([0, 0, 0.5, 1] x 4) = [0, 0, 2, 4]: columns 0..2 (inclusive), rows 0..3 (a
    # slice ending past the map); object: [2, 2, 4, 4] -> rows and columns 2..3
    expected_h = torch.zeros(4, 4)
    expected_h[:, :3] = 100
    expected_o = torch.zeros(4, 4)
    expected_o[2:, 2:] = 100
    assert torch.equal(maps[0, 0], expected_h) and torch.equal(maps[0, 1], expected_o)
    # on the 25 x 25 map: human cells [0, 0, 12, 25] (w 12, h 25), object [12, 12, 25, 25]
    # (w 13, h 13): dx = -12, dy = -12
    g = official_pair_geometry(bh, bo, size, (25, 25))
    torch.testing.assert_close(g, torch.tensor([[-12 / 13, -12 / 13, np.log(12 / 13),
                                                 np.log(25 / 13)]]).float())
    # same left/top cell: offset 0.001; a box within one cell: width and height 0 count as 1
    same = official_pair_geometry(torch.tensor([[1.0, 1.0, 2.0, 2.0]]),
                                  torch.tensor([[1.0, 1.0, 100.0, 100.0]]), size, (25, 25))
    torch.testing.assert_close(same, torch.tensor([[0.001 / 25, 0.001 / 25, np.log(1 / 25),
                                                    np.log(1 / 25)]]).float())


def test_collate_offsets_pairs_into_the_batch() -> None:
    def item(nh, no, pairs):
        return {"index": 0, "features": torch.zeros(2, 3, 3),
                "image_size": torch.tensor([10.0, 10.0]),
                "boxes_h": torch.zeros(nh, 4), "scores_h": torch.zeros(nh),
                "boxes_o": torch.zeros(no, 4),
                "scores_o": torch.zeros(no), "labels_o": torch.zeros(no, dtype=torch.long),
                "pair_h": torch.tensor([p[0] for p in pairs], dtype=torch.long),
                "pair_o": torch.tensor([p[1] for p in pairs], dtype=torch.long),
                "labels": torch.zeros(len(pairs), 117)}
    b = collate([item(2, 3, [(0, 2), (1, 0)]), item(0, 0, []), item(1, 2, [(0, 1)])])
    assert b["pair_h"].tolist() == [0, 1, 2] and b["pair_o"].tolist() == [2, 0, 4]
    assert b["pair_image"].tolist() == [0, 0, 2] and b["image_o"].tolist() == [0, 0, 0, 2, 2]
    assert b["labels"].shape == (3, 117)
