"""The paper's COCO numbers (Ruan et al., TIP 2021, Tables I and V-VII; COCO val2017, 1x).

``COMPLEXITY``: whole-detector parameters (M) and FLOPs (G multiply-adds, mmdetection's counter
at 1280x800) that the paper prints: Mask R-CNN with ResNet-50 only (Table VII, and Table I for
SAC's reduction ratio l). ``AP``: box AP (and mask AP for the mask detectors) of every row of
Tables V-VII. Keys use our names: detector (``hoi.detection.config.DETECTORS``), ``--arch``, and
for Table I SAC's ratio l (None: the block's default, l = 32 for SAC, r = 16 otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Key = tuple[str, str, int | None]  # detector, arch, reduction (None: the block's default)


@dataclass(frozen=True)
class PaperComplexity:
    params_m: float
    flops_g: float
    table: str


@dataclass(frozen=True)
class PaperAP:
    bbox: float
    mask: float | None
    table: str


COMPLEXITY: dict[Key, PaperComplexity] = {
    ("mask_rcnn", "resnet50", None): PaperComplexity(44.4, 279.4, "VII"),
    ("mask_rcnn", "se_resnet50", None): PaperComplexity(46.9, 279.5, "VII"),
    ("mask_rcnn", "cbam_resnet50", None): PaperComplexity(46.9, 279.7, "VII"),
    ("mask_rcnn", "gc_resnet50", None): PaperComplexity(46.9, 279.6, "VII"),
    ("mask_rcnn", "sac_resnet50", None): PaperComplexity(45.7, 283.1, "VII"),
}
# Table I: SAC's reduction ratio l -> (params M, FLOPs G); l = 32 is the default row above
_TABLE_I = {1: (48.1, 290.2), 2: (46.9, 288.6), 4: (46.3, 284.8), 8: (45.9, 283.9),
            16: (45.8, 283.4), 32: (45.7, 283.1), 64: (45.7, 283.1), 128: (45.7, 282.9),
            256: (45.6, 282.9), 512: (45.6, 282.9)}
TABLE_I_RATIOS = tuple(_TABLE_I)
for _l, (_p, _f) in _TABLE_I.items():
    COMPLEXITY[("mask_rcnn", "sac_resnet50", _l)] = PaperComplexity(_p, _f, "I")

AP: dict[tuple[str, str], PaperAP] = {}


def _rows(detector: str, table: str, rows: dict[str, tuple[float, float | None]]) -> None:
    for arch, (bbox, mask) in rows.items():
        AP[(detector, arch)] = PaperAP(bbox, mask, table)


_rows("mask_rcnn", "V", {"resnet50": (37.3, 34.2), "gc_resnet50": (38.6, 35.2),
                         "sac_resnet50": (39.6, 35.9), "resnet101": (39.4, 35.9),
                         "gc_resnet101": (40.8, 37.0), "sac_resnet101": (41.0, 37.2)})
_rows("mask_rcnn", "VII", {"se_resnet50": (38.3, 35.0), "cbam_resnet50": (38.9, 35.4)})
_rows("cascade_mask_rcnn", "V", {"resnet50": (41.2, 35.7), "gc_resnet50": (42.6, 36.7),
                                 "sac_resnet50": (43.1, 37.3), "resnet101": (42.6, 37.0),
                                 "gc_resnet101": (43.9, 37.9), "sac_resnet101": (44.5, 38.4)})
_rows("faster_rcnn", "VI", {"resnet50": (36.4, None), "gc_resnet50": (37.5, None),
                            "sac_resnet50": (38.4, None), "resnet101": (38.5, None),
                            "gc_resnet101": (39.8, None), "sac_resnet101": (40.0, None)})
_rows("cascade_rcnn", "VI", {"resnet50": (40.5, None), "gc_resnet50": (42.0, None),
                             "sac_resnet50": (42.7, None), "resnet101": (42.0, None),
                             "gc_resnet101": (43.1, None), "sac_resnet101": (43.9, None)})
_rows("retinanet", "VI", {"resnet50": (35.6, None), "gc_resnet50": (37.1, None),
                          "sac_resnet50": (37.8, None), "resnet101": (37.7, None),
                          "gc_resnet101": (39.0, None), "sac_resnet101": (39.3, None)})


def paper_complexity(detector: str, arch: str | None,
                     reduction: int | None) -> PaperComplexity | None:
    """The paper's params / FLOPs of a row, or None where the paper gives none. ``reduction``:
    None for the block's default (Table VII), else SAC's l of Table I."""
    return None if arch is None else COMPLEXITY.get((detector, arch, reduction))


def paper_row_of(detector: str, arch: str | None, backbone: dict[str, Any],
                 canonical: dict[str, Any]) -> PaperComplexity | None:
    """The paper's row for a backbone config (as a dict): ``canonical`` is the config that
    ``arch`` names on COCO; a SAC config differing from it only in ``attention.reduction`` is
    Table I's row for that l. Any other difference: no paper row."""
    if arch is None:
        return None
    if backbone == canonical:
        return paper_complexity(detector, arch, None)
    att, ref = dict(backbone.get("attention", {})), dict(canonical.get("attention", {}))
    reduction = att.pop("reduction", None)
    ref.pop("reduction", None)
    same_otherwise = att == ref and {k: v for k, v in backbone.items() if k != "attention"} == {
        k: v for k, v in canonical.items() if k != "attention"}
    return paper_complexity(detector, arch, reduction) if same_otherwise else None
