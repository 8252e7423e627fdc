"""The official VSGNet label rule (hoi.inputs.pair_labels) against labels worked out by hand,
and the defaults / alternatives of pairs.label_rule and pairs.exclude_self_pairs."""

from __future__ import annotations

import numpy as np
import torch

from hoi.data.cache import ImageProposals
from hoi.hoi_config import load_config
from hoi.inputs.pair_labels import (
    GTPairs,
    any_gt_pair_labels,
    merge_boxes,
    official_iou,
    official_pair_labels,
)
from hoi.inputs.pairs import PairConfig, image_pairs

ROOT_CONFIG = "configs/hico/base.yaml"

# GT rows (annotation convention, integers): human, object, verb
#   0: A  [10,10,50,90]   X  [60,20,80,40]  verb 4
#   1: A' [11,11,50,90]   X' [61,21,80,40]  verb 9    A' ~ A (IoU 3081/3200), X' ~ X (361/400):
#                                                     merged
#   2: B  [100,10,140,90] Y  [150,20,170,40] verb 7
#   3: B                  X                  verb 2
#   4: C  [100,10,140,48] Y                  verb 11  C vs B: 1520/3200 = 0.475, a person of its own
GT_H = [[10, 10, 50, 90], [11, 11, 50, 90], [100, 10, 140, 90], [100, 10, 140, 90],
        [100, 10, 140, 48]]
GT_O = [[60, 20, 80, 40], [61, 21, 80, 40], [150, 20, 170, 40], [60, 20, 80, 40],
        [150, 20, 170, 40]]
GT_VERB = [4, 9, 7, 2, 11]
GT_OBJECT = [3, 3, 5, 3, 5]

# detections, as the detector's continuous boxes [left, top, right, bottom]; the files hold
# them in the annotation convention (+1 on x1, y1)
HUMANS_CONT = [
    [10, 10, 50, 90],   # h0 = A exactly
    [100, 10, 140, 90],  # h1 = B exactly
    [30, 10, 70, 90],   # h2: A at 1600/4800 = 0.33 -> no GT person
    [100, 10, 140, 70],  # h3: B at 2400/3200 = 0.75, C at 1520/2400 = 0.63 -> B only
]
OBJECTS_CONT = [
    [60, 20, 80, 40],   # o0 = X
    [150, 20, 170, 40],  # o1 = Y
    [60, 20, 75, 40],   # o2: X at 300/400 = 0.75
    [60, 20, 70, 40],   # o3: X at 200/400 = 0.5 exactly (X' alone: 171/390 = 0.44)
]
OBJECT_CLASS = [3, 5, 7, 3]  # o2's class differs from X's: the official rule does not look


def _stored(cont):
    return torch.tensor(cont, dtype=torch.float32) + torch.tensor([1.0, 1.0, 0.0, 0.0])


def _all_pairs(n_h: int, n_o: int):
    ph, po = torch.meshgrid(torch.arange(n_h), torch.arange(n_o), indexing="ij")
    return ph.reshape(-1), po.reshape(-1)


def _as_sets(labels: torch.Tensor, ph, po):
    return {(int(h), int(o)): set(np.flatnonzero(labels[k].numpy()).tolist())
            for k, (h, o) in enumerate(zip(ph, po))}


def _gt():
    return (torch.tensor(GT_H, dtype=torch.float32), torch.tensor(GT_O, dtype=torch.float32),
            torch.tensor(GT_OBJECT), torch.tensor(GT_VERB))


def test_official_iou_has_no_plus_one() -> None:
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [10.0, 0.0, 20.0, 10.0]])
    assert official_iou(a, b).tolist() == [[50 / 150, 0.0]]  # touching boxes do not overlap


def test_gt_boxes_merge_into_the_first_earlier_box() -> None:
    gt_h, gt_o, _, _ = _gt()
    assert merge_boxes(gt_h, 0.5).tolist() == [0, 0, 2, 2, 4]
    assert merge_boxes(gt_o, 0.5).tolist() == [0, 0, 2, 0, 2]


def test_official_labels_by_hand() -> None:
    gt_h, gt_o, gt_object, gt_verb = _gt()
    ph, po = _all_pairs(len(HUMANS_CONT), len(OBJECTS_CONT))
    labels = official_pair_labels(_stored(HUMANS_CONT), _stored(OBJECTS_CONT),
                                  torch.tensor(OBJECT_CLASS), ph, po,
                                  gt_h, gt_o, gt_object, gt_verb, num_verbs=117, label_iou=0.5,
                                  merge_iou=0.5)
    got = _as_sets(labels, ph, po)
    expected = {
        # A owns rows 0 and 1 (merged): verbs 4 and 9 with X (X' merged into X)
        (0, 0): {4, 9}, (0, 1): set(), (0, 2): {4, 9}, (0, 3): {4, 9},
        # B owns rows 2 and 3: (Y, 7), (X, 2)
        (1, 0): {2}, (1, 1): {7}, (1, 2): {2}, (1, 3): {2},
        # h2 matches no GT person
        (2, 0): set(), (2, 1): set(), (2, 2): set(), (2, 3): set(),
        # h3 overlaps B and C; it takes B alone, so C's verb 11 with Y is not given
        (3, 0): {2}, (3, 1): {7}, (3, 2): {2}, (3, 3): {2},
    }
    assert got == expected


def test_any_gt_pair_rule_differs_where_expected() -> None:
    gt_h, gt_o, gt_object, gt_verb = _gt()
    ph, po = _all_pairs(len(HUMANS_CONT), len(OBJECTS_CONT))
    cfg = PairConfig(label_rule="any_gt_pair")
    labels = any_gt_pair_labels(_stored(HUMANS_CONT)[ph], _stored(OBJECTS_CONT)[po],
                                torch.tensor(OBJECT_CLASS)[po],
                                GTPairs(gt_h, gt_o, gt_object, gt_verb), cfg.num_verbs,
                                cfg.label_iou)
    got = _as_sets(labels, ph, po)
    assert got[(3, 1)] == {7, 11}  # every GT pair overlapping both boxes counts
    # +1-pixel IoU of o3: X 200/441 < 0.5 (no verb 4), X' 200/400 (verb 9)
    assert got[(0, 3)] == {9}
    assert got[(0, 0)] == {4, 9}


def test_image_pairs_default_is_official_with_self_pairs() -> None:
    # two humans and one object, scores above the thresholds; objects = [object, h0, h1]
    rows = ([[*b, 0.9, 49] for b in _stored(HUMANS_CONT[:2]).tolist()]
            + [[*_stored(OBJECTS_CONT[3:4])[0].tolist(), 0.8, 3]])
    rows = np.asarray(rows)
    det = ImageProposals(rows[:, :4], rows[:, 4], rows[:, 5].astype(int))
    anno = {"boxes_h": GT_H, "boxes_o": GT_O, "object": GT_OBJECT, "verb": GT_VERB, "hoi": [0] * 5}
    pairs = image_pairs(det, PairConfig(), anno)
    got = _as_sets(pairs.labels, pairs.pair_h, pairs.pair_o)
    assert got == {(0, 0): {4, 9}, (0, 1): set(), (0, 2): set(), (1, 0): {2}, (1, 1): set(),
                   (1, 2): set()}
    old = image_pairs(det, PairConfig(label_rule="any_gt_pair", exclude_self_pairs=True), anno)
    got_old = _as_sets(old.labels, old.pair_h, old.pair_o)
    assert set(got_old) == {(0, 0), (0, 2), (1, 0), (1, 1)}  # no human with itself
    # with +1 pixels o3 is 200/441 from X (rows 0, 3) but 200/400 from X' (row 1, verb 9)
    assert got_old[(0, 0)] == {9} and got_old[(1, 0)] == set()


def test_base_config_defaults_are_the_official_behaviours() -> None:
    cfg = load_config(ROOT_CONFIG)
    assert cfg.pairs.label_rule == "official" and cfg.pairs.exclude_self_pairs is False
    assert cfg.model.roi_pool == "official"
    assert PairConfig().label_rule == "official" and PairConfig().exclude_self_pairs is False
    alt = load_config(ROOT_CONFIG,
                      ["pairs.label_rule=any_gt_pair", "pairs.exclude_self_pairs=true",
                       "model.roi_pool=align"])
    assert (alt.pairs.label_rule, alt.pairs.exclude_self_pairs,
            alt.model.roi_pool) == ("any_gt_pair", True, "align")
