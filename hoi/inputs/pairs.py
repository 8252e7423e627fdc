"""Human-object pairs of one image for VSGNet: which detections take part, every (human,
object) pair among them, and the multi-hot verb labels of each pair from the ground truth.

The selection follows the official VSGNet code: humans (person detections) with score
>= ``human_threshold``, objects (other classes) with score >= ``object_threshold``; humans
are also objects (after the non-person objects), and each list keeps at most ``max_humans`` /
``max_objects`` entries, highest scores first (``cap_order``). As in the official code (its
humans are appended to the object list and every human is paired with every object), a human is
also paired with its own box as an object; ``exclude_self_pairs`` leaves those pairs out.

Labels (``label_rule``, a table in :mod:`hoi.inputs.pair_labels`): ``official`` is the
official code's rule (GT boxes merged, each detected human matched to one GT person);
``any_gt_pair`` labels a pair with verb v when some GT pair of verb v overlaps its human box and
its object box with IoU >= ``label_iou`` each (+1 pixel IoU). Either may also require the
object class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from hoi.config import AT_LEAST_ONE, FRACTION, Check
from hoi.data.cache import ImageProposals, gt_proposals
from hoi.data.metadata import NUM_OBJECTS, NUM_VERBS, PERSON_OBJECT
from hoi.inputs.pair_labels import LABEL_RULES, GTPairs
from hoi.registry import Table


@dataclass
class PairConfig:
    RANGES: ClassVar[dict[str, Check]] = {
        "human_threshold": Check(ge=0, le=1, why="a detection score"),
        "object_threshold": Check(ge=0, le=1, why="a detection score"),
        "max_humans": AT_LEAST_ONE, "max_objects": AT_LEAST_ONE,
        "label_iou": FRACTION, "label_merge_iou": FRACTION,
        "gt_score": Check(ge=0, le=1, why="a detection score"),
        "person_label": Check(ge=0, le=NUM_OBJECTS - 1, why="a HICO object class index"),
        "num_verbs": AT_LEAST_ONE,
    }

    human_threshold: float = 0.6  # minimum detection score of a human
    object_threshold: float = 0.3  # minimum detection score of a non-person object
    max_humans: int = 15
    max_objects: int = 15  # counting the humans that act as objects
    # which detections the caps keep: score (the highest) | file (the first listed, as the
    # official code; the same when the file is sorted by score, as Detectron2's output is)
    cap_order: str = "score"
    humans_as_objects: bool = True  # a person can be the object of another person
    exclude_self_pairs: bool = False  # official: a human is also paired with itself as an object
    label_rule: str = "official"  # official | any_gt_pair (see the module docstring)
    label_iou: float = 0.5  # IoU with a GT pair's human AND object box for its verb
    # official rule: GT boxes overlapping an earlier one this much are merged
    label_merge_iou: float = 0.5
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


def _by_score(idx: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return idx[np.argsort(-scores[idx], kind="stable")]


# pairs.cap_order: (detection ids in file order, scores) -> the ids in the order the caps cut
CAP_ORDERS = Table("pairs.cap_order", {
    "score": _by_score,  # highest score first, whatever the file's order
    "file": lambda idx, scores: idx,  # the official code's: as the detections file lists them
})


def _top(mask: np.ndarray, scores: np.ndarray, k: int, order: str) -> np.ndarray:
    return CAP_ORDERS[order](np.flatnonzero(mask), scores)[:k]


def select_proposals(det: ImageProposals, cfg: PairConfig) -> tuple[np.ndarray, np.ndarray]:
    """Indices into ``det`` of the humans (H,) and the objects (O,) that take part in pairs.

    Objects are the non-person detections first, then (``humans_as_objects``) the selected
    humans, each group by descending score (``cap_order: file``: in the file's order); the object
    list is then cut at ``max_objects``.
    """
    person = det.labels == cfg.person_label
    humans = _top(person & (det.scores >= cfg.human_threshold), det.scores, cfg.max_humans,
                  cfg.cap_order)
    objects = _top(~person & (det.scores >= cfg.object_threshold), det.scores, cfg.max_objects,
                   cfg.cap_order)
    if cfg.humans_as_objects:
        objects = np.concatenate([objects, humans])[: cfg.max_objects]
    return humans, objects


def all_pairs(humans: torch.Tensor, objects: torch.Tensor,
              exclude_self: bool) -> tuple[torch.Tensor, torch.Tensor]:
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


def image_pairs(det: ImageProposals, cfg: PairConfig, anno: Mapping[str, Any] | None = None,
                add_gt: bool = False) -> ImagePairs:
    """The pairs of one image from its proposals; labels (by ``cfg.label_rule``) when ``anno``
    (the image's annotation record) is given; ``add_gt`` adds its GT boxes to the proposals
    first."""
    if add_gt:
        if anno is None:
            raise ValueError("add_gt needs the image's annotation record")
        det = det + gt_proposals(anno, cfg.gt_score)
    humans, objects = select_proposals(det, cfg)
    boxes = torch.from_numpy(det.boxes)
    scores = torch.from_numpy(det.scores)
    labels = torch.from_numpy(det.labels)
    h, o = torch.from_numpy(humans), torch.from_numpy(objects)
    ph, po = all_pairs(h, o, cfg.exclude_self_pairs)
    pairs = ImagePairs(boxes[h], scores[h], boxes[o], scores[o], labels[o], ph, po)
    if anno is not None:
        pairs.labels = LABEL_RULES[cfg.label_rule](pairs, GTPairs.of(anno), cfg)
    return pairs
