"""The pair-labelling rules, chosen by ``pairs.label_rule`` from :data:`LABEL_RULES`.

``official`` (the default): pair labels as the official VSGNet code computes them
(``scripts_hico/helpers_preprocess.py``:
``clean_up_annotation``, ``get_compact_label``, ``IoU_box``), the default ``pairs.label_rule``.

1. Clean-up of the GT: the GT human boxes are truncated to integers; going through the image's
   GT rows in order, a human box whose IoU with an earlier kept human box is >= ``merge_iou``
   becomes that box (the first such), otherwise it is kept; object boxes likewise, over all
   rows of the image. Rows sharing a human box make one GT person with all their verbs.
2. Each detected human takes the single GT person of highest IoU (the first on ties); below
   ``label_iou`` it gets no label at all.
3. The pair (detected human, detected object) gets verb v when the object box overlaps, with
   IoU >= ``label_iou``, the (cleaned) object box of one of that person's GT rows of verb v.
   The object class is not checked.

IoU is the official ``IoU_box``: continuous boxes, area ``(x2 - x1) * (y2 - y1)``, no +1. It
compares the annotation's numbers with the detector's continuous box ``[left, top, right,
bottom]``; our detection files hold that box in the annotation convention (``x1 = left + 1``,
``y1 = top + 1``), so the detection boxes are shifted back by one pixel on x1 / y1 first.

``any_gt_pair``: a pair gets verb v when some GT pair of verb v overlaps its human box and its
object box with IoU >= ``label_iou`` each (the evaluation's inclusive IoU, +1 pixel).

A rule is ``rule(pairs, gt, cfg) -> (P, num_verbs) float32`` multi-hot labels, with ``pairs`` an
:class:`~hoi.inputs.pairs.ImagePairs`, ``gt`` the image's :class:`GTPairs` and ``cfg`` the
:class:`~hoi.inputs.pairs.PairConfig`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hoi.data.boxes import PIXEL_OFFSET, iou_matrix_inclusive
from hoi.registry import Table

if TYPE_CHECKING:
    from hoi.inputs.pairs import ImagePairs, PairConfig

_TO_CONTINUOUS = torch.tensor([PIXEL_OFFSET, PIXEL_OFFSET, 0.0, 0.0], dtype=torch.float64)


def official_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of continuous boxes a (N, 4) with b (M, 4), area (x2 - x1) * (y2 - y1) -> (N, M) float64.

    0 where the boxes do not overlap or the union is empty (the official code divides by zero
    there).
    """
    a, b = a.double(), b.double()
    iw = (torch.minimum(a[:, None, 2], b[None, :, 2]) - torch.maximum(a[:, None, 0],
                                                                      b[None, :, 0])).clamp(min=0)
    ih = (torch.minimum(a[:, None, 3], b[None, :, 3]) - torch.maximum(a[:, None, 1],
                                                                      b[None, :, 1])).clamp(min=0)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where((inter > 0) & (union > 0), inter / union.clamp(min=1e-300),
                       torch.zeros_like(inter))


def merge_boxes(boxes: torch.Tensor, merge_iou: float) -> torch.Tensor:
    """(N,) int64: for each box of ``boxes`` (N, 4), in order, the index of the first earlier
    kept box with IoU >= ``merge_iou``, or its own index (it is then kept)."""
    iou = official_iou(boxes, boxes)
    rep = torch.arange(len(boxes))
    kept: list[int] = []
    # greedy and order-dependent: the official clean-up; N is a few GT rows
    for i in range(len(boxes)):
        hits = [k for k in kept if iou[k, i] >= merge_iou]
        if hits:
            rep[i] = hits[0]
        else:
            kept.append(i)
    return rep


def official_pair_labels(
    det_h: torch.Tensor,
    det_o: torch.Tensor,
    labels_o: torch.Tensor,
    pair_h: torch.Tensor,
    pair_o: torch.Tensor,
    gt_h: torch.Tensor,
    gt_o: torch.Tensor,
    gt_object: torch.Tensor,
    gt_verb: torch.Tensor,
    num_verbs: int,
    label_iou: float,
    merge_iou: float,
    match_object: bool = False,
) -> torch.Tensor:
    """Multi-hot verb labels (P, num_verbs) float32 of the pairs (pair_h, pair_o (P,) indices
    into the detected humans det_h (H, 4) and objects det_o (O, 4), labels_o (O,)), from the
    image's G GT rows (gt_h, gt_o (G, 4), gt_object, gt_verb (G,)). Boxes in the annotation
    convention. ``match_object`` additionally requires the GT row's object class (not official).
    """
    out = torch.zeros((len(pair_h), num_verbs), dtype=torch.float32)
    if len(pair_h) == 0 or len(gt_h) == 0:
        return out
    gt_h = torch.trunc(gt_h.double())  # the official clean-up keeps int(coord) of human boxes
    gt_o = gt_o.double()
    person = merge_boxes(gt_h, merge_iou)  # (G,) the GT person (a row index) of each row
    obj_box = gt_o[merge_boxes(gt_o, merge_iou)]  # (G, 4) each row's cleaned object box
    # one entry per GT person; first-appearance order = sorted row index
    persons = torch.unique(person)
    iou_h = official_iou(det_h.double() - _TO_CONTINUOUS, gt_h[persons])  # (H, Gp)
    best_iou, best = iou_h.max(dim=1)  # torch.max returns the first maximal index
    human_row = (persons[best][:, None]
                 == person[None, :]) & (best_iou >= label_iou)[:, None]  # (H, G)
    object_row = official_iou(det_o.double() - _TO_CONTINUOUS, obj_box) >= label_iou  # (O, G)
    match = human_row[pair_h] & object_row[pair_o]  # (P, G)
    if match_object:
        match &= labels_o[pair_o][:, None] == gt_object[None, :]
    verbs = torch.nn.functional.one_hot(gt_verb, num_verbs).float()
    return (match.float() @ verbs > 0).float()


@dataclass
class GTPairs:
    """The G GT pairs of one image: ``boxes_h``, ``boxes_o`` (G, 4) float32 in the annotation
    convention, ``object``, ``verb`` (G,) int64."""

    boxes_h: torch.Tensor
    boxes_o: torch.Tensor
    object: torch.Tensor
    verb: torch.Tensor

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> GTPairs:
        """From an image's annotation record."""
        def array(key: str, dtype: type, shape: tuple[int, ...]) -> torch.Tensor:
            return torch.from_numpy(np.asarray(record[key], dtype).reshape(shape))

        return cls(array("boxes_h", np.float32, (-1, 4)), array("boxes_o", np.float32, (-1, 4)),
                   array("object", np.int64, (-1,)), array("verb", np.int64, (-1,)))


def official_rule(pairs: ImagePairs, gt: GTPairs, cfg: PairConfig) -> torch.Tensor:
    """``pairs.label_rule=official``: :func:`official_pair_labels` on an image's pairs."""
    return official_pair_labels(pairs.boxes_h, pairs.boxes_o, pairs.labels_o, pairs.pair_h,
                                pairs.pair_o,
                                gt.boxes_h, gt.boxes_o, gt.object, gt.verb, cfg.num_verbs,
                                cfg.label_iou,
                                cfg.label_merge_iou, cfg.label_match_object)


def any_gt_pair_labels(boxes_h: torch.Tensor, boxes_o: torch.Tensor, labels_o: torch.Tensor,
                       gt: GTPairs,
                       num_verbs: int, label_iou: float,
                       match_object: bool = False) -> torch.Tensor:
    """Multi-hot verb labels (P, num_verbs) of pairs (boxes_h, boxes_o (P, 4), labels_o (P,)):
    verb v where some GT pair of verb v overlaps both boxes with inclusive IoU >= ``label_iou``."""
    out = torch.zeros((len(boxes_h), num_verbs), dtype=torch.float32)
    if len(boxes_h) == 0 or len(gt.boxes_h) == 0:
        return out
    match = torch.from_numpy((iou_matrix_inclusive(boxes_h.numpy(),
                                                   gt.boxes_h.numpy()) >= label_iou)
                             & (iou_matrix_inclusive(boxes_o.numpy(),
                                                     gt.boxes_o.numpy()) >= label_iou))
    if match_object:
        match &= labels_o[:, None] == gt.object[None, :]
    verbs = torch.nn.functional.one_hot(gt.verb, num_verbs).float()
    return (match.float() @ verbs > 0).float()


def any_gt_pair_rule(pairs: ImagePairs, gt: GTPairs, cfg: PairConfig) -> torch.Tensor:
    """``pairs.label_rule=any_gt_pair``: :func:`any_gt_pair_labels` on an image's pairs."""
    ph, po = pairs.pair_h, pairs.pair_o
    return any_gt_pair_labels(pairs.boxes_h[ph], pairs.boxes_o[po], pairs.labels_o[po], gt,
                              cfg.num_verbs,
                              cfg.label_iou, cfg.label_match_object)


LABEL_RULES = Table("pairs.label_rule",
                    {"official": official_rule, "any_gt_pair": any_gt_pair_rule})
