"""Human-object pairs of one image for VSGNet: which detections take part, every (human,
object) pair among them, and the multi-hot verb labels of each pair from the ground truth.

The selection follows the official VSGNet code: humans (person detections) with score
>= ``human_threshold``, objects (other classes) with score >= ``object_threshold``; humans
are also objects (after the non-person objects), and each list keeps at most ``max_humans`` /
``max_objects`` entries, highest scores first. As in the official code (its humans are
appended to the object list and every human is paired with every object), a human is also
paired with its own box as an object; ``exclude_self_pairs`` leaves those pairs out.

Labels (``label_rule``): ``official`` is the official code's rule (GT boxes merged, each
detected human matched to one GT person; :mod:`hoi.inputs.pair_labels`); ``any_gt_pair``
labels a pair with verb v when some GT pair of verb v overlaps its human box and its object
box with IoU >= ``label_iou`` each (+1 pixel IoU). Either may also require the object class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from hoi.data.boxes import PIXEL_OFFSET
from hoi.data.cache import ImageProposals
from hoi.data.metadata import NUM_VERBS, PERSON_OBJECT
from hoi.inputs.pair_labels import official_pair_labels

LABEL_RULES = ("official", "any_gt_pair")


@dataclass
class PairConfig:
    human_threshold: float = 0.6  # minimum detection score of a human
    object_threshold: float = 0.3  # minimum detection score of a non-person object
    max_humans: int = 15
    max_objects: int = 15  # counting the humans that act as objects
    humans_as_objects: bool = True  # a person can be the object of another person
    exclude_self_pairs: bool = False  # official: a human is also paired with itself as an object
    label_rule: str = "official"  # official | any_gt_pair (see the module docstring)
    label_iou: float = 0.5  # IoU with a GT pair's human AND object box for its verb
    label_merge_iou: float = 0.5  # official rule: GT boxes overlapping an earlier one this much are merged
    label_match_object: bool = False  # also require the GT pair's object class (official: no)
    add_gt_boxes: bool = False  # training only: GT boxes join the proposals
    gt_score: float = 1.0  # detection score given to an added GT box
    person_label: int = PERSON_OBJECT
    num_verbs: int = NUM_VERBS


@dataclass
class ImagePairs:
    """The pairs of one image.

    Attributes:
        boxes_h: (H, 4) float32 human boxes; scores_h: (H,).
        boxes_o: (O, 4) float32 object boxes; scores_o: (O,); labels_o: (O,) int64 object class.
        pair_h, pair_o: (P,) int64 indices into the human / object lists.
        labels: (P, num_verbs) float32 multi-hot verbs, or None when no GT was given.
    """

    boxes_h: torch.Tensor
    scores_h: torch.Tensor
    boxes_o: torch.Tensor
    scores_o: torch.Tensor
    labels_o: torch.Tensor
    pair_h: torch.Tensor
    pair_o: torch.Tensor
    labels: torch.Tensor | None = None

    @property
    def num_pairs(self) -> int:
        return int(self.pair_h.numel())


def iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes a (N, 4) with boxes b (M, 4), inclusive pixel convention -> (N, M)."""
    iw = (torch.minimum(a[:, None, 2], b[None, :, 2]) - torch.maximum(a[:, None, 0], b[None, :, 0]) + PIXEL_OFFSET)
    ih = (torch.minimum(a[:, None, 3], b[None, :, 3]) - torch.maximum(a[:, None, 1], b[None, :, 1]) + PIXEL_OFFSET)
    inter = iw.clamp(min=0) * ih.clamp(min=0)
    area_a = (a[:, 2] - a[:, 0] + PIXEL_OFFSET) * (a[:, 3] - a[:, 1] + PIXEL_OFFSET)
    area_b = (b[:, 2] - b[:, 0] + PIXEL_OFFSET) * (b[:, 3] - b[:, 1] + PIXEL_OFFSET)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(inter > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def _top(mask: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    idx = np.flatnonzero(mask)
    order = np.argsort(-scores[idx], kind="stable")
    return idx[order][:k]


def gt_proposals(anno: Mapping[str, Any], person_label: int, score: float) -> ImageProposals:
    """The distinct GT boxes of one image's annotation record as detections of score ``score``:
    human boxes as persons, object boxes with their object class."""
    boxes_h = np.asarray(anno["boxes_h"], dtype=np.float32).reshape(-1, 4)
    boxes_o = np.asarray(anno["boxes_o"], dtype=np.float32).reshape(-1, 4)
    objects = np.asarray(anno["object"], dtype=np.int64).reshape(-1)
    rows = np.concatenate([
        np.concatenate([boxes_h, np.full((len(boxes_h), 1), person_label, np.float32)], axis=1),
        np.concatenate([boxes_o, objects[:, None].astype(np.float32)], axis=1),
    ])
    rows = np.unique(rows, axis=0) if len(rows) else rows.reshape(0, 5)
    return ImageProposals(rows[:, :4], np.full(len(rows), score, np.float32), rows[:, 4].astype(np.int64))


def merge_proposals(a: ImageProposals, b: ImageProposals) -> ImageProposals:
    """The detections of ``a`` followed by those of ``b``."""
    return ImageProposals(np.concatenate([a.boxes, b.boxes]), np.concatenate([a.scores, b.scores]),
                           np.concatenate([a.labels, b.labels]))


def select_proposals(det: ImageProposals, cfg: PairConfig) -> tuple[np.ndarray, np.ndarray]:
    """Indices into ``det`` of the humans (H,) and the objects (O,) that take part in pairs.

    Objects are the non-person detections first, then (``humans_as_objects``) the selected
    humans, each group by descending score; the object list is then cut at ``max_objects``.
    """
    person = det.labels == cfg.person_label
    humans = _top(person & (det.scores >= cfg.human_threshold), det.scores, cfg.max_humans)
    objects = _top(~person & (det.scores >= cfg.object_threshold), det.scores, cfg.max_objects)
    if cfg.humans_as_objects:
        objects = np.concatenate([objects, humans])[: cfg.max_objects]
    return humans, objects


def all_pairs(humans: torch.Tensor, objects: torch.Tensor, exclude_self: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (human, object) pair, human-major: (P,) indices into ``humans`` and ``objects``.

    ``humans`` (H,) and ``objects`` (O,) are detection ids; with ``exclude_self`` the pairs
    whose two ids are equal (a human as its own object) are left out.
    """
    ph, po = torch.meshgrid(torch.arange(len(humans)), torch.arange(len(objects)), indexing="ij")
    ph, po = ph.reshape(-1), po.reshape(-1)
    if exclude_self and len(ph):
        keep = humans[ph] != objects[po]
        ph, po = ph[keep], po[keep]
    return ph, po


def pair_labels(
    boxes_h: torch.Tensor,
    boxes_o: torch.Tensor,
    labels_o: torch.Tensor,
    gt_h: torch.Tensor,
    gt_o: torch.Tensor,
    gt_object: torch.Tensor,
    gt_verb: torch.Tensor,
    cfg: PairConfig,
) -> torch.Tensor:
    """Multi-hot verb labels (P, num_verbs) of pairs (boxes_h, boxes_o, labels_o: (P, ...))
    from the G GT pairs (gt_h, gt_o (G, 4), gt_object, gt_verb (G,))."""
    out = torch.zeros((len(boxes_h), cfg.num_verbs), dtype=torch.float32)
    if len(boxes_h) == 0 or len(gt_h) == 0:
        return out
    match = (iou_matrix(boxes_h, gt_h) >= cfg.label_iou) & (iou_matrix(boxes_o, gt_o) >= cfg.label_iou)
    if cfg.label_match_object:
        match &= labels_o[:, None] == gt_object[None, :]
    verbs = torch.nn.functional.one_hot(gt_verb, cfg.num_verbs).float()
    return (match.float() @ verbs > 0).float()


def image_pairs(det: ImageProposals, cfg: PairConfig, anno: Mapping[str, Any] | None = None,
                add_gt: bool = False) -> ImagePairs:
    """The pairs of one image from its detections; labels when ``anno`` (the image's
    annotation record) is given; ``add_gt`` adds its GT boxes to the proposals first."""
    if add_gt:
        if anno is None:
            raise ValueError("add_gt needs the image's annotation record")
        det = merge_proposals(det, gt_proposals(anno, cfg.person_label, cfg.gt_score))
    humans, objects = select_proposals(det, cfg)
    boxes = torch.from_numpy(det.boxes)
    scores = torch.from_numpy(det.scores)
    labels = torch.from_numpy(det.labels)
    h, o = torch.from_numpy(humans), torch.from_numpy(objects)
    ph, po = all_pairs(h, o, cfg.exclude_self_pairs)
    pairs = ImagePairs(boxes[h], scores[h], boxes[o], scores[o], labels[o], ph, po)
    if anno is not None:
        boxes = lambda key: torch.from_numpy(np.asarray(anno[key], np.float32).reshape(-1, 4))  # noqa: E731
        ints = lambda key: torch.from_numpy(np.asarray(anno[key], np.int64).reshape(-1))  # noqa: E731
        if cfg.label_rule == "official":
            pairs.labels = official_pair_labels(
                pairs.boxes_h, pairs.boxes_o, pairs.labels_o, ph, po, boxes("boxes_h"), boxes("boxes_o"),
                ints("object"), ints("verb"), cfg.num_verbs, cfg.label_iou, cfg.label_merge_iou,
                cfg.label_match_object)
        elif cfg.label_rule == "any_gt_pair":
            pairs.labels = pair_labels(
                pairs.boxes_h[ph], pairs.boxes_o[po], pairs.labels_o[po],
                boxes("boxes_h"), boxes("boxes_o"), ints("object"), ints("verb"), cfg,
            )
        else:
            raise ValueError(f"pairs.label_rule must be one of {LABEL_RULES}, got {cfg.label_rule!r}")
    return pairs
